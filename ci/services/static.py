"""The conda channel and the PyPI index: built by ci/channel/ and ci/pypi/, served here.

Interfaces (owned by those folders):
  python ci/channel/build.py --out DIR   -> an indexed channel; last stdout line = its path
  python ci/pypi/build.py --out DIR      -> a folder of wheels/sdists (last stdout line, else DIR)
  python ci/pypi/serve.py --root DIR --host 127.0.0.1 --port N
                                          -> first stdout line `http://127.0.0.1:N/simple`
The channel is served by python's http.server, which answers conditional requests with 304
(the py-rattler sharded-repodata trap the product must handle).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from services.base import ROOT, Rig, RigError, http_status, run

CHANNEL_BUILD = ROOT / "ci" / "channel" / "build.py"
PYPI_BUILD = ROOT / "ci" / "pypi" / "build.py"
PYPI_SERVE = ROOT / "ci" / "pypi" / "serve.py"


class Missing(RigError):
    """A builder that another part of ci/ provides is not there (yet)."""


def _py_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _build(rig: Rig, script: Path, out: Path, log: str) -> Path:
    if not script.exists():
        raise Missing(f"{script.relative_to(ROOT)} not present")
    with open(rig.log(log), "ab") as err:
        p = run(
            [sys.executable, str(script), "--out", str(out)],
            stderr=err,
            env=_py_env(),
            capture_output=False,
            stdout=-1,
            cwd=ROOT,
        )
    lines = [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]
    path = Path(lines[-1]) if lines else out
    if not path.is_dir():
        path = out
    if not path.is_dir():
        raise RigError(f"{script.relative_to(ROOT)} made no folder (see {rig.log(log)})")
    return path


def build_channel(rig: Rig) -> Path:
    return _build(rig, CHANNEL_BUILD, rig.dir / "channel", "channel-build")


def serve_channel(rig: Rig, path: Path) -> dict[str, str]:
    name = "channel"
    st = rig.service(name)
    url = f"http://127.0.0.1:{st.get('port')}"
    if (
        rig.alive(name)
        and st.get("path") == str(path)
        and http_status(url + "/noarch/repodata.json") == 200
    ):
        return st["env"]
    rig.stop(name)
    port = rig.port(name)
    url = f"http://127.0.0.1:{port}"
    rig.spawn(
        name,
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(path),
        ],
        env=_py_env(),
    )
    rig.wait_for(name, lambda: http_status(url + "/noarch/repodata.json") == 200, url, timeout=20)
    env = {"IMGBUILD_RIG_CHANNEL_URL": url, "IMGBUILD_RIG_CHANNEL_DIR": str(path)}
    rig.update(name, port=port, path=str(path), env=env)
    return env


def build_index(rig: Rig) -> Path:
    if not PYPI_SERVE.exists():
        raise Missing(f"{PYPI_SERVE.relative_to(ROOT)} not present")
    return _build(rig, PYPI_BUILD, rig.dir / "pypi", "pypi-build")


def serve_index(rig: Rig, path: Path) -> dict[str, str]:
    name = "pypi"
    st = rig.service(name)
    if (
        rig.alive(name)
        and st.get("path") == str(path)
        and http_status(st["env"]["IMGBUILD_RIG_INDEX_URL"] + "/") == 200
    ):
        return st["env"]
    rig.stop(name)
    port = rig.port(name)
    log = rig.log(name)
    start = log.stat().st_size if log.exists() else 0
    rig.spawn(
        name,
        [
            sys.executable,
            str(PYPI_SERVE),
            "--root",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=_py_env(),
        cwd=ROOT,
    )

    def announced() -> str | None:
        with open(log, "rb") as f:
            f.seek(start)
            for line in f.read().decode(errors="replace").splitlines():
                if line.startswith("http"):
                    return line.strip()
        return None

    rig.wait_for(name, lambda: announced() is not None, "the index URL on stdout", timeout=30)
    url = announced().rstrip("/")
    rig.wait_for(name, lambda: http_status(url + "/") == 200, url, timeout=20)
    env = {"IMGBUILD_RIG_INDEX_URL": url, "IMGBUILD_RIG_INDEX_DIR": str(path)}
    rig.update(name, port=port, path=str(path), env=env)
    return env
