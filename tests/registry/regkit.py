"""Helpers of the registry tests, under a name of their own (`from conftest import` picks
whichever folder's conftest was imported last when several test folders run in one session):
test credentials, docker config files, credential helper scripts, blobs and tiny images, and a
store holding one env made with tests/oci/ocikit.py."""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "imgb-user", "Sup3r-s3cret-pw"


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


@functools.cache
def ocikit():
    """tests/oci/ocikit.py (EnvFactory, make_wheel, run_cli), loaded by path: tests/oci is not
    on sys.path when only this folder runs."""
    spec = importlib.util.spec_from_file_location("oci_conftest", ROOT / "tests/oci/ocikit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def built_channel() -> Path:
    """The test channel folder (ci/channel/build.py builds it once and prints where)."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "ci/channel/build.py")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip().splitlines()[-1])


def store_with_env(tmp: Path, channel: Path, wheel: str, files: dict[str, str]):
    """(LocalStore under tmp, the env put there): conda python + tinyfoo + six from the test
    channel and one small wheel named `wheel` with these files."""
    from imagebuilder.store.local import LocalStore

    oci = ocikit()
    store = LocalStore(tmp / "store")
    whl = oci.make_wheel(tmp / "w", wheel, "1.0", files)
    env = oci.EnvFactory(channel, tmp).make(store, ["python", "tinyfoo", "six"], wheels=[whl])
    return store, env
