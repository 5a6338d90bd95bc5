"""Fixtures for hydrate tests (helpers in hydhelp.py): our own copies of the rig's channel and
index, stopped after resolving, so every create here runs with no channel or index reachable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hydhelp import MIXED, resolve, rig_s3, serve_sources  # noqa: E402


@pytest.fixture(scope="module")
def sources(rig, tmp_path_factory):
    src = serve_sources(rig, tmp_path_factory.mktemp("sources"))
    yield src
    src.stop()


@pytest.fixture(scope="module")
def module_home(tmp_path_factory) -> Path:
    """A HOME shared by a module's CLI runs (one package cache: warm after the first create)."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def s3_envs(rig, sources, module_home):
    """Envs resolved into one S3 store; the channel and index are stopped afterwards."""
    store = rig_s3(rig, "mixed")
    envs = {
        "mixed": resolve(sources, store, module_home, *MIXED, alias="hyd/mixed:v1"),
        "tiny": resolve(sources, store, module_home, "--conda", "tzdata", alias="hyd/tiny"),
        "aarch64": resolve(
            sources, store, module_home, "--conda", "imgb-cli", "--arch", "linux-aarch64"
        ),
        "osx": resolve(sources, store, module_home, "--conda", "imgb-cli", "--arch", "osx-arm64"),
    }
    sources.stop()
    assert not sources.up
    return store, envs
