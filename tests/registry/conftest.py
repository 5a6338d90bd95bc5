"""Fixtures for registry tests: real docker-registry processes (plain, htpasswd, token auth)
started here, a counting/fault proxy in front of them, and isolated credential files.

These registries are started by this folder's fixtures (0.1 s each) rather than taken from the
rig, because the tests need auth variants and a private proxy per test; the rig's registry and
podman socket are used where an end-to-end run needs them (test_run.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from regkit import (  # noqa: E402, F401 - the helpers, re-exported for older imports
    PASSWORD,
    USER,
    auth_entry,
    blob,
    docker_config,
    tiny_image,
    write_helper,
)

from ci.services.registry_proxy import Proxy  # noqa: E402
from ci.services.registry_token import (  # noqa: E402
    htpasswd_auth,
    start_registry,
    start_token_registry,
)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("reg-plain"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("reg-basic")
    reg = start_registry(root, htpasswd_auth(root, {USER: PASSWORD}))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    reg, server = start_token_registry(
        tmp_path_factory.mktemp("reg-token"),
        {USER: (PASSWORD, ("pull", "push")), "reader": ("reader-pw", ("pull",))},
    )
    reg.token_server = server
    yield reg
    reg.stop()
    server.stop()


@pytest.fixture
def proxy(registry):
    p = Proxy(registry.host).start()
    yield p
    p.stop()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real credentials: HOME, DOCKER_CONFIG and auth files point into tmp; fresh clients."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    from imagebuilder.oci import registry as sink_mod
    from imagebuilder.registry import base_remote

    base_remote._clients.clear()
    sink_mod._pushed.clear()
    yield home
    base_remote._clients.clear()
    sink_mod._pushed.clear()


@pytest.fixture
def helper_path(tmp_path, monkeypatch):
    """A bin folder on PATH for credential helper scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir
