"""A custom CA reaches the registry client and boto3 too: push to a docker-registry served
over TLS, and cache into an S3 server (moto) served over TLS, with only SSL_CERT_FILE set."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from interop_support import Cli, Server, env_ref

CA_ONLY = {"REQUESTS_CA_BUNDLE": None, "CURL_CA_BUNDLE": None, "AWS_CA_BUNDLE": None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_https(url: str, ca: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url, verify=str(ca), timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture(scope="module")
def tls_registry(pki, tmp_path_factory):
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.fail("docker-registry not installed (ci/install.sh installs it)")
    folder = tmp_path_factory.mktemp("tls-registry")
    port = _free_port()
    (folder / "config.yml").write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
                "http": {
                    "addr": f"127.0.0.1:{port}",
                    "tls": {"certificate": str(pki.cert), "key": str(pki.key)},
                },
            }
        )
    )
    proc = subprocess.Popen(
        [exe, "serve", str(folder / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "log", "w"),  # noqa: SIM115 - lives as long as the process
    )
    try:
        _wait_https(f"https://127.0.0.1:{port}/v2/", pki.ca)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_push_to_a_tls_registry_with_a_custom_ca(shared, mixed, rig, pki, tls_registry):
    rig.need("base_oci")
    repo = f"{tls_registry}/interop/tls"
    env = {**CA_ONLY, "SSL_CERT_FILE": pki.ca}
    out = shared("push", env_ref(mixed), "--to", repo, "--base", rig.base_oci, "--json", "-q",
                 env=env).json()  # fmt: skip
    assert out["sboms"] and out["digest"].startswith("sha256:")
    r = requests.get(
        f"https://{tls_registry}/v2/interop/tls/manifests/{out['digest']}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        verify=str(pki.ca),
        timeout=10,
    )
    assert r.status_code == 200
    bad = shared("push", env_ref(mixed), "--to", repo, "--base", rig.base_oci, "--json",
                 env={**CA_ONLY, "SSL_CERT_FILE": None}, expect=None)  # fmt: skip
    assert bad.returncode == 5, bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def tls_s3(pki, tmp_path_factory):
    if shutil.which("moto_server") is None:
        pytest.fail("moto_server not installed (pip install 'moto[server]')")
    logs = tmp_path_factory.mktemp("tls-s3")
    port = _free_port()
    srv = Server(
        [
            "moto_server",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            str(pki.cert),
            "-k",
            str(pki.key),
        ],
        logs / "moto.log",
        ready=None,
        first_line=False,
        wait=lambda: _wait_https(f"https://127.0.0.1:{port}/", pki.ca),
    )
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=f"https://127.0.0.1:{port}",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
        verify=str(pki.ca),
    )
    s3.create_bucket(Bucket="tls-store")
    try:
        yield {"endpoint": f"https://127.0.0.1:{port}", "client": s3}
    finally:
        srv.stop()


def test_cache_into_s3_over_tls_with_a_custom_ca(rig, pki, tls_s3, tmp_path):
    rig.need("channel_url")
    cli = Cli(tmp_path)
    env = {
        **CA_ONLY,
        "SSL_CERT_FILE": pki.ca,
        "IMGBUILD_STORE": "s3://tls-store/t1",
        "IMGBUILD_S3_ENDPOINT_URL": tls_s3["endpoint"],
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    got = cli("resolve", "--conda", "tinyfoo", "-c", rig.channel_url, "--arch", "linux-64",
              "--json", "-q", env=env).json()  # fmt: skip
    keys = [o["Key"] for o in tls_s3["client"].list_objects_v2(Bucket="tls-store")["Contents"]]
    assert any(k.startswith("t1/envs/") for k in keys)
    assert any(k.endswith(got["packages"][0]["filename"]) for k in keys)
    bad = cli("resolve", "--conda", "tinyfoo", "-c", rig.channel_url, "--arch", "linux-64",
              "--force", "--json", env={**env, "SSL_CERT_FILE": None}, expect=None)  # fmt: skip
    assert bad.returncode == 5, bad.stdout + bad.stderr
