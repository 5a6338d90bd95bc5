"""Fixtures for bake tests: the local conda channel (ci/channel/build.py), stores holding
envs made straight from its repodata (no solver needed: names are picked with their
dependencies), small wheels made here, and a helper to run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ocikit import (  # noqa: F401 - re-exported for modules that load this file by path
    HOST_BASE_FILES,
    EnvFactory,
    have,
    make_wheel,
    rig_value,
    run_cli,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def channel() -> Path:
    r = subprocess.run(
        [sys.executable, str(ROOT / "ci/channel/build.py")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def envs(channel, tmp_path) -> EnvFactory:
    return EnvFactory(channel, tmp_path)


@pytest.fixture
def wheels(tmp_path) -> dict[str, Path]:
    d = tmp_path / "wheels"
    return {
        "imgb-uses-six": make_wheel(
            d,
            "imgb-uses-six",
            "1.0",
            {
                "imgb_uses_six.py": "import six\n\ndef main():\n    print('uses six', six.__version__)\n"
            },
            requires=["six"],
        ),
        "imgb-leaf-1": make_wheel(
            d / "1", "imgb-leaf", "1.0", {"imgb_leaf.py": "V = 1\ndef main(): print(V)\n"}
        ),
        "imgb-leaf-2": make_wheel(
            d / "2", "imgb-leaf", "2.0", {"imgb_leaf.py": "V = 2\ndef main(): print(V)\n"}
        ),
    }


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One rattler package cache for the session (tests that need a cold one set their own)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def isolated(tmp_path, shared_cache) -> dict[str, str]:
    """Environment for CLI subprocesses: own HOME and config, the session's package cache."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMGBUILD_", "METAFLOW_IMGBUILD_", "SOURCE_DATE_EPOCH"))
    }
    env.update(HOME=str(home), IMGBUILD_CACHE_DIR=str(shared_cache))
    return env


@pytest.fixture(scope="session")
def base_oci(tmp_path_factory) -> str:
    """`oci:DIR:REF` of a Debian-based base: the rig's when it has one, else one made here from
    this Debian machine's glibc and dash (one gzip layer, written with our own layer code)."""
    rig = rig_value("IMGBUILD_RIG_BASE_OCI")
    if rig:
        return rig if rig.startswith("oci:") else f"oci:{rig}"
    from imagebuilder.oci.image import Descriptor, FileBlob, Layer, Platform, append
    from imagebuilder.oci.layer import Compression, Entry, write_layer_file
    from imagebuilder.oci.layout import LayoutSink

    d = tmp_path_factory.mktemp("base")
    entries = []
    for f in HOST_BASE_FILES:
        real = os.path.realpath(f)
        entries.append(
            Entry(f.lstrip("/"), "file", source=real, executable=True, size=os.path.getsize(real))
        )
    entries.append(Entry("bin/sh", "symlink", target="dash"))
    entries.append(Entry("tmp", "dir"))
    blob = write_layer_file(entries, d / "layer", Compression.of("gzip"))
    layer = Layer(
        Descriptor(blob.media_type, blob.digest, blob.size),
        blob.diff_id,
        FileBlob(d / "layer"),
        "base",
    )
    cfg = {
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    img = append(
        cfg,
        [],
        [layer],
        platform=Platform("linux", "amd64"),
        env={},
        labels={},
        annotations={},
        epoch=0,
    )
    LayoutSink(d / "oci").write(img, ["bookworm"])
    return f"oci:{d / 'oci'}:bookworm"
