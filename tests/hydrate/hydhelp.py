"""Helpers for hydrate tests: our own copies of the rig's channel and index (served here, so a
test can stop them and prove creation is offline), envs resolved once per module into an S3
store on the rig's seaweedfs, and a runner for `imgbuild` with a shared package cache."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass
class Sources:
    """A conda channel and a PyPI index served by this test module (stoppable)."""

    channel_url: str
    index_url: str
    procs: list

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    @property
    def up(self) -> bool:
        for url in (self.channel_url + "/noarch/repodata.json", self.index_url + "/"):
            try:
                with urllib.request.urlopen(url, timeout=2):
                    pass
            except OSError:
                return False
        return True


def serve_sources(rig, tmp: Path) -> Sources:
    rig.need("channel_dir", "index_dir")
    channel = tmp / "channel"
    shutil.copytree(rig.channel_dir, channel, copy_function=os.link)
    port = _free_port()
    ch = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=channel,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ix = subprocess.Popen(
        [sys.executable, str(ROOT / "ci/pypi/serve.py"), "--root", rig.index_dir, "--port", "0"]
        + ["--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    index_url = ix.stdout.readline().strip()
    src = Sources(f"http://127.0.0.1:{port}", index_url, [ch, ix])
    try:
        _wait(src.channel_url + "/noarch/repodata.json")
        _wait(index_url + "/")
    except OSError:
        src.stop()
        raise
    return src


@dataclass
class Store:
    url: str
    env: dict  # what a subprocess needs to reach it (store URL, endpoint, keys)


def rig_s3(rig, name: str) -> Store:
    rig.need("s3_endpoint")
    url = f"s3://{rig.s3_bucket}/t/hydrate-{name}-{uuid.uuid4().hex[:8]}"
    return Store(
        url,
        {
            "IMGBUILD_STORE": url,
            "IMGBUILD_S3_ENDPOINT_URL": rig.s3_endpoint,
            "AWS_ACCESS_KEY_ID": rig.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )


@dataclass(frozen=True)
class Result:
    args: tuple
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def _clip(text: str, n: int = 6000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def run_cli(args, env: dict, home: Path, expect: int | None = 0, timeout: float = 600, cwd=None):
    """Run `python -m imagebuilder ARGS` with HOME=home and env on top of a clean environment."""
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMGBUILD_", "METAFLOW_", "AWS_", "XDG_", "CONDA_", "VIRTUAL_ENV"))
    }
    e.update(
        IMGBUILD_RUNTIME_CACHE="0",  # tests that need the bootstrap runtime turn it on
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONDONTWRITEBYTECODE="1",
    )
    e.update({k: str(v) for k, v in env.items() if v is not None})
    argv = tuple(str(a) for a in args)
    Path(home).mkdir(parents=True, exist_ok=True)
    p = subprocess.run(
        [sys.executable, "-m", "imagebuilder", *argv],
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or home,
    )
    r = Result(argv, p.returncode, p.stdout, p.stderr)
    if expect is not None and p.returncode != expect:
        pytest.fail(
            f"imgbuild {' '.join(argv)}: exit {p.returncode}, expected {expect}\n"
            f"--- stdout\n{_clip(p.stdout)}\n--- stderr\n{_clip(p.stderr)}",
            pytrace=False,
        )
    return r


MIXED = [
    "--conda", "python 3.11.*", "--conda", "tinyfoo", "--conda", "six", "--conda", "imgb-cli",
    "--pypi", "imgb-uses-six", "--pypi", "imgb-hello",
]  # fmt: skip


def resolve(sources: Sources, store: Store, home: Path, *args, alias: str | None = None) -> dict:
    extra = ["--alias", alias] if alias else []
    r = run_cli(
        ["resolve", *args, "-c", sources.channel_url, "--index-url", sources.index_url, "--json"]
        + extra,
        store.env,
        home,
    )
    return r.json()


RUNTIME_WHEELS = ROOT / "ci" / "cache" / "runtime-wheels"


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
