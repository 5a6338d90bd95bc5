"""Fixtures for the interop tests (lock files, SBOM, config, private sources).

Session fixtures resolve a few small envs from the rig once, into one store, through the CLI;
tests then export / import / push them. py-rattler never runs in this process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from interop_support import Cli, make_pki  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Cli:
    """One store for the session's resolved envs (tests that only read it share it)."""
    return Cli(tmp_path_factory.mktemp("interop-shared"))


def _resolve(cli: Cli, rig, *args) -> list[dict]:
    r = cli("resolve", *args, "-c", rig.channel_url, "--json", "-q")
    d = r.json()
    return d.get("envs", [d])


@pytest.fixture(scope="session")
def mixed(shared, rig) -> dict:
    """conda (tinybar, python 3.11) + PyPI (imgb-uses-six, requests) for linux-64."""
    rig.need("channel_url", "index_url")
    (env,) = _resolve(
        shared, rig, "--conda", "tinybar", "--conda", "python=3.11", "--pypi", "imgb-uses-six",
        "--pypi", "requests", "--index-url", rig.index_url, "--arch", "linux-64",
    )  # fmt: skip
    return env


@pytest.fixture(scope="session")
def conda_multi(shared, rig) -> list[dict]:
    """Pure conda (tinybar + python 3.11) for linux-64 and linux-aarch64, aliased interop/multi."""
    rig.need("channel_url")
    return _resolve(
        shared, rig, "--conda", "tinybar", "--conda", "python=3.11", "--arch", "linux-64",
        "--arch", "linux-aarch64", "--alias", "interop/multi",
    )  # fmt: skip
