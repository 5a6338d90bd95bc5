"""Shared by tests/cache and tests/store: the real services and envs made from rig packages.

- `S3Service(rig)`: the rig's seaweedfs, with env vars for an imgbuild subprocess.
- `CountingServer`: a small HTTP server over a folder that counts GETs per path, so a test can
  say "the second cache downloaded nothing".
- `channel_env(...)`: a ResolvedEnv built by hand from the rig channel's repodata (and wheels),
  every package pointing at the counting server: cache_env is tested without a solver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class S3Service:
    """The rig's seaweedfs (tests/conftest.py `rig` fixture) seen by these tests."""

    def __init__(self, rig):
        rig.need("s3_endpoint")
        self.endpoint = rig.s3_endpoint
        self.access = rig.s3_access_key
        self.secret = rig.s3_secret_key
        self.bucket = rig.s3_bucket

    def env(self) -> dict[str, str]:
        """Environment for an imgbuild process using this S3 server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "IMGBUILD_S3_ENDPOINT_URL": self.endpoint,
        }

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )


class CountingServer:
    """HTTP server over root; counts GETs per path; can corrupt chosen files on the fly."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.gets: dict[str, int] = {}
        self.tamper: set[str] = set()
        self.faults: dict[
            str, list[str]
        ] = {}  # path -> faults for its next GETs ("503", "truncate")
        self.lock = threading.Lock()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                with server.lock:
                    server.gets[self.path] = server.gets.get(self.path, 0) + 1
                fault = None
                with server.lock:
                    if server.faults.get(self.path):
                        fault = server.faults[self.path].pop(0)
                if fault == "503":
                    self.send_error(503)
                    return
                if fault == "truncate":  # promise the whole body, send half, hang up
                    data = (server.root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if self.path in server.tamper:
                    data = (server.root / self.path.lstrip("/")).read_bytes()
                    data = data[:-1] + bytes([data[-1] ^ 1])
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def package_gets(self) -> int:
        with self.lock:
            return sum(
                n for p, n in self.gets.items() if p.endswith((".conda", ".tar.bz2", ".whl"))
            )

    def reset(self) -> None:
        with self.lock:
            self.gets.clear()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def build_channel() -> Path:
    out = subprocess.run(
        [sys.executable, str(ROOT / "ci/channel/build.py")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return Path(out.stdout.strip().splitlines()[-1])


def channel_packages(base_url: str, channel: Path, subdirs=("linux-64", "noarch")) -> list[dict]:
    """Every package of the channel's subdirs as Package JSON (url on base_url)."""
    pkgs = []
    for subdir in subdirs:
        repo = json.loads((channel / subdir / "repodata.json").read_text())
        for section in ("packages", "packages.conda"):
            for fn, r in sorted(repo.get(section, {}).items()):
                pkgs.append(
                    {
                        "kind": "conda",
                        "subdir": subdir,
                        "name": r["name"],
                        "version": r["version"],
                        "build": r["build"],
                        "sha256": r["sha256"],
                        "md5": r["md5"],
                        "filename": fn,
                        "url": f"{base_url}/{subdir}/{fn}",
                        "size": r["size"],
                        "depends": r.get("depends", []),
                        "channel": base_url,
                        "record": r,
                    }
                )
    return pkgs


def wheel_packages(base_url: str, wheels: Path) -> list[dict]:
    import hashlib

    pkgs = []
    for whl in sorted(wheels.glob("*.whl")):
        name, version, *_ = whl.name.split("-")
        data = whl.read_bytes()
        pkgs.append(
            {
                "kind": "pypi",
                "subdir": "noarch",
                "name": name.lower().replace("_", "-"),
                "version": version,
                "build": whl.name[:-4].split("-", 2)[2],
                "sha256": hashlib.sha256(data).hexdigest(),
                "filename": whl.name,
                "url": f"{base_url}/{whl.name}",
                "size": len(data),
            }
        )
    return pkgs


def make_env(packages: list[dict], tag: str = "test", arch: str = "linux-64"):
    from imagebuilder.env import Package, ResolvedEnv
    from imagebuilder.spec import make_spec

    spec = make_spec(arch=arch, conda=[f"tag-{tag}"])
    return ResolvedEnv(spec, tuple(Package.from_json(p) for p in packages))


def write_env(path: Path, env) -> Path:
    path.write_text(json.dumps(env.to_json()))
    return path


def run_cache(env_file: Path, store: str, env: dict | None = None, *args: str, timeout=300):
    """Run tests/cache/cache_cli.py (cache_env + put_env) in a subprocess."""
    return subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("cache_cli.py")),
            str(env_file),
            store,
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def run_imgbuild(*args: str, env: dict | None = None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "imagebuilder", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def serve_rig_packages(root: Path) -> CountingServer:
    """The rig channel (linux-64, noarch, osx-arm64) and PyPI files under one counting server."""
    import shutil

    channel = build_channel()
    for sub in ("linux-64", "noarch", "osx-arm64"):
        shutil.copytree(channel / sub, root / sub, copy_function=os.link)
    out = subprocess.run(
        [sys.executable, str(ROOT / "ci/pypi/build.py"), "--out", str(root / "pypi-src")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (root / "pypi").mkdir()
    for f in (root / "pypi-src" / "files").iterdir():
        if f.name.endswith((".whl", ".tar.gz")) and not any(
            x in f.name for x in ("macosx", "aarch64")
        ):
            os.link(f, root / "pypi" / f.name)
    return CountingServer(root)


def base_packages(server: CountingServer) -> list[dict]:
    """>= 20 real packages: every linux-64/noarch conda package plus the pure/linux wheels."""
    conda = channel_packages(server.url, server.root)
    wheels = [
        p
        for p in wheel_packages(server.url + "/pypi", server.root / "pypi")
        if p["name"] != "imgb-hello" or p["version"] == "2.0"
    ]
    return conda + wheels


def fake_env(tag: str, arch: str = "linux-64", n: int = 2):
    """An env record with made-up packages (alias and record tests need no archives)."""
    import hashlib

    pkgs = [
        {
            "kind": "conda",
            "subdir": arch,
            "name": f"pkg{i}",
            "version": "1.0",
            "build": "0",
            "sha256": hashlib.sha256(f"{tag}-{i}".encode()).hexdigest(),
            "filename": f"pkg{i}-1.0-0.conda",
            "url": f"http://example.invalid/{arch}/pkg{i}-1.0-0.conda",
            "size": 1,
        }
        for i in range(n)
    ]
    return make_env(pkgs, tag, arch)
