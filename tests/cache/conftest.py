import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import helpers  # noqa: E402


@pytest.fixture(scope="session")
def s3(rig):
    return helpers.S3Service(rig)


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """The rig channel (linux-64 + noarch) and PyPI wheels/sdists under one counting server."""
    root = tmp_path_factory.mktemp("served")
    channel = helpers.build_channel()
    for sub in ("linux-64", "noarch", "osx-arm64"):
        shutil.copytree(channel / sub, root / sub, copy_function=os.link)
    out = subprocess.run(
        [sys.executable, str(helpers.ROOT / "ci/pypi/build.py"), "--out", str(root / "pypi-src")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (root / "pypi").mkdir()
    for f in (root / "pypi-src" / "files").iterdir():
        if (
            f.name.endswith((".whl", ".tar.gz"))
            and "macosx" not in f.name
            and "aarch64" not in f.name
        ):
            os.link(f, root / "pypi" / f.name)
    server = helpers.CountingServer(root)
    server.channel = channel
    yield server
    server.stop()


@pytest.fixture
def base_packages(served):
    """>= 20 real packages: every linux-64/noarch conda package plus the pure wheels."""
    conda = helpers.channel_packages(served.url, served.root)
    wheels = [
        p
        for p in helpers.wheel_packages(served.url + "/pypi", served.root / "pypi")
        if p["name"] not in ("imgb-hello",) or p["version"] == "2.0"
    ]
    return conda + wheels


@pytest.fixture
def s3_url(s3):
    return s3.url(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(home / ".imgbuild" / "cache"))
    return home
