"""Fixtures for registry tests: real docker-registry processes (plain, htpasswd, token auth)
started here, a counting/fault proxy in front of them, and isolated credential files.

These registries are started by this folder's fixtures (0.1 s each) rather than taken from the
rig, because the tests need auth variants and a private proxy per test; the rig's registry and
podman socket are used where an end-to-end run needs them (test_run.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ci.services.registry_proxy import Proxy  # noqa: E402
from ci.services.registry_token import (  # noqa: E402
    htpasswd_auth,
    start_registry,
    start_token_registry,
)

USER, PASSWORD = "imgb-user", "Sup3r-s3cret-pw"


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("reg-plain"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("reg-basic")
    reg = start_registry(root, htpasswd_auth(root, {USER: PASSWORD}))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    reg, server = start_token_registry(
        tmp_path_factory.mktemp("reg-token"),
        {USER: (PASSWORD, ("pull", "push")), "reader": ("reader-pw", ("pull",))},
    )
    reg.token_server = server
    yield reg
    reg.stop()
    server.stop()


@pytest.fixture
def proxy(registry):
    p = Proxy(registry.host).start()
    yield p
    p.stop()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real credentials: HOME, DOCKER_CONFIG and auth files point into tmp; fresh clients."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    from imagebuilder.oci import registry as sink_mod
    from imagebuilder.registry import base_remote

    base_remote._clients.clear()
    sink_mod._pushed.clear()
    yield home
    base_remote._clients.clear()
    sink_mod._pushed.clear()


def docker_config(home: Path, data: dict) -> Path:
    path = home / ".docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def auth_entry(user: str = USER, password: str = PASSWORD) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def write_helper(bin_dir: Path, name: str, secrets: dict[str, tuple[str, str]]) -> Path:
    """A docker-credential-<name> script answering `get` from a fixed table (host -> creds)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"table = {json.dumps(secrets)}\n"
        "if sys.argv[1:] != ['get']:\n    sys.exit(2)\n"
        "server = sys.stdin.read().strip()\n"
        "if server not in table:\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n"
        "u, s = table[server]\n"
        "print(json.dumps({'ServerURL': server, 'Username': u, 'Secret': s}))\n"
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def helper_path(tmp_path, monkeypatch):
    """A bin folder on PATH for credential helper scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def blob(data: bytes):
    """(digest, size, opener) for bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data), lambda: io.BytesIO(data)


def tiny_image(seed: str, nlayers: int = 2, labels: dict | None = None, arch: str = "amd64"):
    """A hand-made image value (oci.image) with small random-free layers."""
    import tarfile

    from imagebuilder.oci.image import BytesBlob, Descriptor, Layer, Platform, make_image

    layers = []
    for i in range(nlayers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            content = f"{seed}-{i}\n".encode() * 50
            info = tarfile.TarInfo(f"opt/{seed}/file{i}.txt")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        raw = buf.getvalue()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        layers.append(
            Layer(
                Descriptor("application/vnd.oci.image.layer.v1.tar", digest, len(raw)),
                digest,
                BytesBlob(raw),
                f"layer{i}",
            )
        )
    platform = Platform("linux", arch)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Labels": labels or {}, "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    return make_image(config, layers, platform, {})
