"""Fixtures every test folder can use.

- `rig` (session): the local services of ci/rig.py as a frozen `Rig`. With IMGBUILD_RIG_ENV
  naming a rig.env (a rig started by `python ci/rig.py up --dir .rig`, or by ci/test.sh) that
  rig is used and left running; otherwise one is started in a temp folder and stopped at session
  end (shared by xdist workers, stopped by the last one). Nothing starts unless a test asks.
  Tests using it are marked `rig` automatically (`-m "not rig"` runs the pure unit tests).
- `s3_store`: a unique `s3://BUCKET/<prefix>` in the rig's S3 server, with the env a
  subprocess needs (`.env` includes IMGBUILD_STORE).
- `imgbuild`: runs `python -m imagebuilder ARGS` with an isolated HOME and a per-test store
  (tests/clirunner.py, shared with the folders' own runners).

The pytest process leaves with os._exit(status) after the session (rig stopped, summary
printed): py-rattler may crash at interpreter exit. IMGBUILD_TEST_NO_HARD_EXIT=1 turns it off.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # clirunner, also under importlib mode
from clirunner import ImgbuildRunner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("IMGBUILD_RUNTIME_CACHE", "0")  # see clirunner.ImgbuildRunner.environ
RIG_PY = ROOT / "ci" / "rig.py"


def read_env_file(path: Path | str) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        k, sep, v = line.strip().removeprefix("export ").partition("=")
        if sep and k and not k.startswith("#"):
            out[k] = v
    return out


# --------------------------------------------------------------------------- registry log


@dataclass(frozen=True)
class Upload:
    repo: str
    uuid: str
    digest: str | None  # None: never committed
    bytes: int  # bytes the registry received for this upload session


@dataclass(frozen=True)
class RegistryLog:
    """The JSON log of a rig registry (distribution 2.8): one `response completed` line per
    request. Request body sizes are not logged; upload bytes are derived from the `_state`
    offsets of each upload session and, for committed uploads, the stored blob's size.

        mark = log.mark(); <push>; assert log.uploaded_bytes(mark) == 0
    """

    path: Path
    data: Path | None  # the registry's storage root

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def _settle(self) -> None:
        # the registry writes a line just after it answered: wait until the file stops growing
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            size = self.mark()
            if size != last:
                last, stable_since = size, time.monotonic()
            elif time.monotonic() - stable_since > 0.15:
                return
            time.sleep(0.03)

    def requests(self, since: int = 0) -> list[dict]:
        """Completed requests after `since`: dicts with method, uri, path, query, status, repo."""
        self._settle()
        out = []
        with open(self.path, "rb") as f:
            f.seek(since)
            for raw in f:
                try:
                    d = json.loads(raw)
                except ValueError:
                    continue
                if not str(d.get("msg", "")).startswith("response completed"):
                    continue
                uri = d.get("http.request.uri", "")
                parts = urllib.parse.urlsplit(uri)
                out.append(
                    {
                        "method": d.get("http.request.method"),
                        "uri": uri,
                        "path": parts.path,
                        "query": urllib.parse.parse_qs(parts.query),
                        "status": d.get("http.response.status"),
                        "repo": d.get("vars.name"),
                        "written": d.get("http.response.written", 0),
                    }
                )
        return out

    def _blob_size(self, digest: str) -> int | None:
        if not self.data:
            return None
        algo, hexd = digest.split(":", 1)
        p = self.data / "docker/registry/v2/blobs" / algo / hexd[:2] / hexd / "data"
        return p.stat().st_size if p.exists() else None

    def uploads(self, since: int = 0) -> list[Upload]:
        sessions: dict[str, dict] = {}
        for r in self.requests(since):
            m = re.match(r"^/v2/(.+)/blobs/uploads/([^/]*)$", r["path"])
            if not m:
                continue
            repo, uid = m.group(1), m.group(2)
            q = r["query"]
            if r["method"] == "POST" and "mount" in q:
                continue  # cross-repository mount: no bytes
            if r["method"] == "POST" and "digest" in q and r["status"] == 201:
                size = self._blob_size(q["digest"][0]) or 0  # monolithic POST
                sessions[f"post-{len(sessions)}"] = {
                    "repo": repo,
                    "digest": q["digest"][0],
                    "bytes": size,
                }
                continue
            if not uid:
                continue
            s = sessions.setdefault(uid, {"repo": repo, "digest": None, "bytes": 0})
            if "_state" in q:
                with contextlib.suppress(ValueError, KeyError):
                    st = q["_state"][0]
                    raw = base64.urlsafe_b64decode(st + "=" * (-len(st) % 4))
                    s["bytes"] = max(s["bytes"], int(json.loads(raw[32:])["Offset"]))
            if r["method"] == "PUT" and r["status"] == 201 and "digest" in q:
                s["digest"] = q["digest"][0]
                size = self._blob_size(s["digest"])
                if size is not None:
                    s["bytes"] = max(s["bytes"], size)
        return [Upload(v["repo"], k, v["digest"], v["bytes"]) for k, v in sessions.items()]

    def uploaded_bytes(self, since: int = 0) -> int:
        return sum(u.bytes for u in self.uploads(since))

    def manifest_puts(self, since: int = 0) -> list[tuple[str, str]]:
        """(repo, reference) of every accepted manifest PUT."""
        out = []
        for r in self.requests(since):
            m = re.match(r"^/v2/(.+)/manifests/([^/]+)$", r["path"])
            if m and r["method"] == "PUT" and r["status"] == 201:
                out.append((m.group(1), m.group(2)))
        return out


# --------------------------------------------------------------------------- the rig


_FIELDS = {  # Rig field -> rig.env key
    "channel_url": "IMGBUILD_RIG_CHANNEL_URL",
    "channel_dir": "IMGBUILD_RIG_CHANNEL_DIR",
    "index_url": "IMGBUILD_RIG_INDEX_URL",
    "index_dir": "IMGBUILD_RIG_INDEX_DIR",
    "registry": "IMGBUILD_RIG_REGISTRY",
    "registry_log": "IMGBUILD_RIG_REGISTRY_LOG",
    "registry_data": "IMGBUILD_RIG_REGISTRY_DATA",
    "registry_auth": "IMGBUILD_RIG_REGISTRY_AUTH",
    "registry_auth_log": "IMGBUILD_RIG_REGISTRY_AUTH_LOG",
    "registry_auth_data": "IMGBUILD_RIG_REGISTRY_AUTH_DATA",
    "registry_user": "IMGBUILD_RIG_REGISTRY_USER",
    "registry_password": "IMGBUILD_RIG_REGISTRY_PASSWORD",
    "s3_endpoint": "IMGBUILD_RIG_S3_ENDPOINT",
    "s3_access_key": "IMGBUILD_RIG_S3_ACCESS_KEY",
    "s3_secret_key": "IMGBUILD_RIG_S3_SECRET_KEY",
    "s3_bucket": "IMGBUILD_RIG_S3_BUCKET",
    "s3_backend": "IMGBUILD_RIG_S3_BACKEND",
    "podman_socket": "IMGBUILD_RIG_PODMAN_SOCKET",
    "containers_conf": "CONTAINERS_CONF",
    "containers_storage_conf": "CONTAINERS_STORAGE_CONF",
    "containers_registries_conf": "CONTAINERS_REGISTRIES_CONF",
    "base_image": "IMGBUILD_RIG_BASE_IMAGE",
    "base_digest": "IMGBUILD_RIG_BASE_DIGEST",
    "base_oci": "IMGBUILD_RIG_BASE_OCI",
    "pybase_image": "IMGBUILD_RIG_PYBASE_IMAGE",
    "pybase_digest": "IMGBUILD_RIG_PYBASE_DIGEST",
    "pybase_oci": "IMGBUILD_RIG_PYBASE_OCI",
}


@dataclass(frozen=True)
class Rig:
    """The rig's addresses (None: that service is not up; `need()` skips the test)."""

    dir: Path
    env_file: Path
    env: Mapping[str, str] = field(repr=False)
    channel_url: str | None = None
    channel_dir: str | None = None
    index_url: str | None = None
    index_dir: str | None = None
    registry: str | None = None  # 127.0.0.1:PORT, anonymous
    registry_log: str | None = None
    registry_data: str | None = None
    registry_auth: str | None = None  # 127.0.0.1:PORT, htpasswd Basic auth
    registry_auth_log: str | None = None
    registry_auth_data: str | None = None
    registry_user: str | None = None
    registry_password: str | None = field(default=None, repr=False)
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = field(default=None, repr=False)
    s3_bucket: str | None = None
    s3_backend: str | None = None  # seaweedfs | moto
    podman_socket: str | None = None  # unix:///.../podman.sock
    containers_conf: str | None = None
    containers_storage_conf: str | None = None
    containers_registries_conf: str | None = None
    base_image: str | None = None  # REGISTRY/imgbuild-rig/base:bookworm
    base_digest: str | None = None
    base_oci: str | None = None  # oci:DIR:bookworm
    pybase_image: str | None = None  # base + Debian python3 and pip
    pybase_digest: str | None = None
    pybase_oci: str | None = None

    @classmethod
    def from_file(cls, path: Path | str) -> Rig:
        env = read_env_file(path)
        values = {f: env.get(k) or None for f, k in _FIELDS.items()}
        return cls(
            dir=Path(env.get("IMGBUILD_RIG_DIR", Path(path).parent)),
            env_file=Path(path),
            env=env,
            **values,
        )

    def need(self, *names: str) -> None:
        """Skip the test unless these fields are set (e.g. `rig.need("channel_url")`)."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            skipped = self.env.get("IMGBUILD_RIG_SKIPPED", "")
            pytest.skip(
                f"rig has no {', '.join(missing)} (skipped services: {skipped or 'none'}; see {self.dir}/logs)"
            )

    def podman_env(self) -> dict[str, str]:
        """Env for the `podman` CLI and for Docker clients (DOCKER_HOST) on the rig's podman."""
        self.need("podman_socket")
        return {
            "CONTAINERS_CONF": self.containers_conf,
            "CONTAINERS_STORAGE_CONF": self.containers_storage_conf,
            "CONTAINERS_REGISTRIES_CONF": self.containers_registries_conf,
            "DOCKER_HOST": self.podman_socket,
        }

    def docker_client(self):
        import docker

        self.need("podman_socket")
        return docker.DockerClient(base_url=self.podman_socket, timeout=300)

    def s3_client(self, access_key: str | None = None, secret_key: str | None = None):
        import boto3
        from botocore.config import Config

        self.need("s3_endpoint")
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=access_key or self.s3_access_key,
            aws_secret_access_key=secret_key or self.s3_secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def registry_logs(self, auth: bool = False) -> RegistryLog:
        log, data = (
            (self.registry_auth_log, self.registry_auth_data)
            if auth
            else (self.registry_log, self.registry_data)
        )
        self.need("registry_auth_log" if auth else "registry_log")
        return RegistryLog(Path(log), Path(data) if data else None)


def _rig_cli(command: str, folder: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RIG_PY), command, "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


class _OwnRig:
    """A rig this test run starts; xdist workers share it, the last user stops it."""

    def __init__(self, root: Path, user: str):
        self.root, self.user = root, user
        self.folder = root / "rig"
        self.lock = root / "rig.lock"
        self.users = root / "rig.users"

    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        f = open(self.lock, "a+")  # noqa: SIM115 - closed by _unlock
        fcntl.flock(f, fcntl.LOCK_EX)
        return f

    def _read_users(self) -> list[str]:
        return json.loads(self.users.read_text()) if self.users.exists() else []

    def acquire(self) -> Path:
        f = self._locked()
        try:
            users = self._read_users()
            env = self.folder / "rig.env"
            if not users or not env.exists():
                p = _rig_cli("up", self.folder)
                if p.returncode != 0:
                    _rig_cli("down", self.folder)
                    pytest.fail(
                        f"ci/rig.py up failed ({p.returncode}):\n{p.stdout}\n{p.stderr}",
                        pytrace=False,
                    )
                users = []
            self.users.write_text(json.dumps([*users, self.user]))
            return env
        finally:
            f.close()

    def release(self) -> None:
        f = self._locked()
        try:
            users = [u for u in self._read_users() if u != self.user]
            self.users.write_text(json.dumps(users))
            if not users:
                p = _rig_cli("down", self.folder)
                if p.returncode != 0:
                    warnings.warn(f"ci/rig.py down: {p.stdout}{p.stderr}", stacklevel=1)
        finally:
            f.close()


def _registry_answers(registry: str | None) -> bool:
    if not registry:
        return True
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=3):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rig(tmp_path_factory) -> Rig:
    given = os.environ.get("IMGBUILD_RIG_ENV")
    if given and Path(given).is_file():
        r = Rig.from_file(given)
        if not _registry_answers(r.registry):
            pytest.fail(
                f"IMGBUILD_RIG_ENV={given} but its registry {r.registry} does not answer; "
                f"start it: python ci/rig.py up --dir {r.dir}",
                pytrace=False,
            )
        yield r  # started by someone else: not ours to stop
        return
    if given:
        warnings.warn(
            f"IMGBUILD_RIG_ENV={given} does not exist: starting a rig for this session",
            stacklevel=1,
        )
    base = tmp_path_factory.getbasetemp()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    own = _OwnRig(base.parent if worker else base, worker or "main")
    env_file = own.acquire()
    try:
        yield Rig.from_file(env_file)
    finally:
        own.release()


# --------------------------------------------------------------------------- S3 store


@dataclass(frozen=True)
class S3Store:
    url: str  # s3://BUCKET/PREFIX
    bucket: str
    prefix: str
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    env: Mapping[str, str] = field(repr=False)  # for a subprocess: store URL, endpoint, keys

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def keys(self) -> list[str]:
        """Keys under the prefix, relative to it, sorted."""
        out = []
        for page in (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=self.prefix + "/")
        ):
            out += [o["Key"][len(self.prefix) + 1 :] for o in page.get("Contents", [])]
        return sorted(out)

    def read(self, key: str) -> bytes:
        return (
            self.client().get_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")["Body"].read()
        )


@pytest.fixture
def s3_store(rig, request) -> S3Store:
    rig.need("s3_endpoint")
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50]
    prefix = f"t/{slug}-{uuid.uuid4().hex[:8]}"
    url = f"s3://{rig.s3_bucket}/{prefix}"
    env = {
        "IMGBUILD_STORE": url,
        "IMGBUILD_S3_ENDPOINT_URL": rig.s3_endpoint,
        "AWS_ENDPOINT_URL": rig.s3_endpoint,
        "AWS_ACCESS_KEY_ID": rig.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return S3Store(
        url, rig.s3_bucket, prefix, rig.s3_endpoint, rig.s3_access_key, rig.s3_secret_key, env
    )


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def imgbuild(tmp_path) -> ImgbuildRunner:
    return ImgbuildRunner(tmp_path)


# --------------------------------------------------------------------------- hooks


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "rig" in getattr(item, "fixturenames", ()) or "s3_store" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.rig)


_session_ref: list = []


def pytest_sessionstart(session):
    _session_ref.append(session)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave with os._exit: session fixtures (the rig) are torn down and the summary printed by
    now; interpreter finalization (where py-rattler may crash) never runs."""
    if os.environ.get("IMGBUILD_TEST_NO_HARD_EXIT") or not _session_ref:
        return
    if _session_ref[-1].config is not config:  # an inner (pytester) run: not ours to end
        return
    status = int(_session_ref[-1].exitstatus)
    with contextlib.suppress(Exception):
        config.get_terminal_writer().flush()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
