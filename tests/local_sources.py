"""A conda channel folder and a PyPI index root served by the test process itself (so a test
can stop them and prove a step runs offline), and the bootstrap runtime's wheels; shared by the
helpers of tests/hydrate and tests/metaflow (a unique module name: pytest's rootdir imports).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_WHEELS = ROOT / "ci" / "cache" / "runtime-wheels"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    """Until url answers (any HTTP status); raise OSError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop_procs(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@dataclass
class ServedSources:
    """A conda channel and a PyPI index served by this test process (stoppable)."""

    channel_url: str
    index_url: str
    procs: list

    def stop(self) -> None:
        stop_procs(self.procs)

    @property
    def up(self) -> bool:
        for url in (self.channel_url + "/noarch/repodata.json", self.index_url + "/"):
            try:
                with urllib.request.urlopen(url, timeout=2):
                    pass
            except OSError:
                return False
        return True


def serve_channel_and_index(channel: Path, index_root: Path) -> ServedSources:
    """`python -m http.server` over a channel folder and ci/pypi/serve.py over an index root,
    both on 127.0.0.1, answering when this returns."""
    port = free_port()
    ch = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=channel,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ix = subprocess.Popen(
        [sys.executable, str(ROOT / "ci/pypi/serve.py"), "--root", str(index_root), "--port", "0"]
        + ["--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    src = ServedSources(f"http://127.0.0.1:{port}", ix.stdout.readline().strip(), [ch, ix])
    try:
        wait_http(src.channel_url + "/noarch/repodata.json")
        wait_http(src.index_url + "/")
    except OSError:
        src.stop()
        raise
    return src


def runtime_wheels() -> Path:
    """Wheels of the bootstrap runtime (this imgbuild's py-rattler, zstandard, installer) for
    linux-64 / CPython 3.11 (the rig's python-base image), downloaded once with pip."""
    from importlib.metadata import version

    from imagebuilder.locks import file_lock
    from imagebuilder.runtime import DISTS

    pins = [f"{d}=={version(d)}" for d in DISTS]
    names = [p.replace("-", "_").replace("==", "-") for p in pins]

    def complete() -> bool:
        have = [f.name for f in RUNTIME_WHEELS.glob("*.whl")]
        return all(any(h.startswith(n) for h in have) for n in names)

    RUNTIME_WHEELS.mkdir(parents=True, exist_ok=True)
    with file_lock(RUNTIME_WHEELS / ".lock"):  # xdist workers: one downloads, others wait
        if not complete():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
                + ["--only-binary", ":all:", "--python-version", "3.11"]
                + ["--platform", "manylinux2014_x86_64", "-d", str(RUNTIME_WHEELS), *pins],
                check=True,
            )
    return RUNTIME_WHEELS
