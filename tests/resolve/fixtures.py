"""Fixtures of the resolve tests (also used by tests/golden): the rig's channel and index, a
CLI runner with an isolated HOME and store, and a channel server of our own (ETag + 304,
request counting) for tests that change a channel. Loaded by both conftests under one module
name (load_fixtures), so both share one set of fixture functions.

py-rattler never runs in this process (it may crash at exit): solves go through the CLI, and
reindexing a channel copy through a child process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# --- the rig ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rig:
    channel_url: str
    channel_dir: Path
    index_url: str
    index_dir: Path


@pytest.fixture(scope="session")
def rig_services(rig):
    """The channel and index of the shared rig (tests/conftest.py). A rig without them fails
    the test rather than skipping it: these tests must run."""
    missing = [
        n for n in ("channel_url", "channel_dir", "index_url", "index_dir") if not getattr(rig, n)
    ]
    assert not missing, f"the rig has no {missing}: see {rig.dir}/logs"
    return Rig(
        rig.channel_url.rstrip("/"),
        Path(rig.channel_dir),
        rig.index_url.rstrip("/"),
        Path(rig.index_dir),
    )


# --- the CLI ------------------------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    args: tuple

    def json(self):
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"imgbuild {' '.join(self.args)} -> {self.returncode}\n{self.stdout}\n{self.stderr}"


class Cli:
    """`imgbuild ...` in a child process with its own HOME, cache and store."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.store = home / "store"
        self.cache = home / "cache"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGBUILD_", "UV_"))}
        env.update(
            HOME=str(self.home),
            IMGBUILD_STORE=str(self.store),
            IMGBUILD_CACHE_DIR=str(self.cache),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            UV_CACHE_DIR=str(_uv_cache()),
            # Caching an env also caches the task bootstrap runtime from PyPI: not our test.
            IMGBUILD_RUNTIME_CACHE=os.environ.get("IMGBUILD_RUNTIME_CACHE", "0"),
        )
        env.update(extra or {})
        return env

    def __call__(self, *args, expect: int | None = 0, env=None, cwd=None, timeout=600) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "imagebuilder", *map(str, args)],
            capture_output=True, text=True, env=self.env(env), cwd=cwd or self.home,
            timeout=timeout,
        )  # fmt: skip
        res = Result(proc.returncode, proc.stdout, proc.stderr, tuple(map(str, args)))
        if expect is not None:
            assert res.returncode == expect, str(res)
        assert "Traceback" not in res.stderr, str(res)
        return res

    def store_files(self) -> list[str]:
        if not self.store.exists():
            return []
        return sorted(
            str(p.relative_to(self.store))
            for p in self.store.rglob("*")
            if p.is_file() and not p.relative_to(self.store).parts[0].startswith(".")
        )


_UV_CACHE: list[Path] = []


def _uv_cache() -> Path:
    # One uv cache for the session: uv's wheel metadata cache is not what we test.
    if not _UV_CACHE:
        import tempfile

        _UV_CACHE.append(Path(tempfile.mkdtemp(prefix="imgb-test-uv-")))
    return _UV_CACHE[0]


@pytest.fixture
def cli(tmp_path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home)


# --- a channel we can change --------------------------------------------------------------------


def load_builder():
    name = "imgb_channel_builder"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "ci" / "channel" / "builder.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def reindex(channel: Path) -> None:
    """Reindex in a child process (rattler stays out of the test process)."""
    code = (
        "import importlib.util, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('b', {str(ROOT / 'ci/channel/builder.py')!r})\n"
        "b = importlib.util.module_from_spec(spec); sys.modules['b'] = b; spec.loader.exec_module(b)\n"
        f"b.reindex({str(channel)!r})\n"
        "sys.stdout.flush(); os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


class ChannelServer:
    """Serves a folder and counts GETs. etag=True: like a CDN (strong ETags, 304 on
    If-None-Match with the ETag repeated, no Last-Modified). etag=False: python's http.server
    as is (Last-Modified, and a bare 304 on If-Modified-Since: the py-rattler trap)."""

    def __init__(self, root: Path, etag: bool = True) -> None:
        self.root = Path(root)
        self.etag = etag
        self.gets: list[str] = []
        lock = threading.Lock()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(server.root), **kw)

            def log_message(self, *a):
                pass

            def do_GET(self):
                with lock:
                    server.gets.append(self.path)
                if not server.etag:
                    return super().do_GET()
                path = Path(self.translate_path(self.path))
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", etag)
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                self.wfile.write(data)

            def do_HEAD(self):
                if not server.etag:
                    return super().do_HEAD()
                path = Path(self.translate_path(self.path))
                self.send_response(200 if path.is_file() else 404)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def package_gets(self) -> list[str]:
        return [p for p in self.gets if p.endswith((".conda", ".tar.bz2"))]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def channel_copy(rig_services, tmp_path):
    """A private copy of the rig channel, served by ChannelServer; (server, folder)."""
    builder = load_builder()
    folder = builder.copy_channel(rig_services.channel_dir, tmp_path / "channel")
    server = ChannelServer(folder)
    yield server, folder
    server.stop()


@pytest.fixture
def plain_channel_copy(rig_services, tmp_path):
    """A private copy of the rig channel behind python's plain http.server."""
    builder = load_builder()
    folder = builder.copy_channel(rig_services.channel_dir, tmp_path / "channel")
    server = ChannelServer(folder, etag=False)
    yield server, folder
    server.stop()
