"""Fixtures shared by tests/cache and tests/store (both conftests import them by name; a module
of its own, not a conftest: pytest loads a folder's conftest for that folder only)."""

import uuid

import helpers
import pytest

__all__ = ["base_packages", "isolated_home", "s3", "s3_env", "s3_url", "served"]


@pytest.fixture(scope="session")
def s3(rig):
    return helpers.S3Service(rig)


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    server = helpers.serve_rig_packages(tmp_path_factory.mktemp("served"))
    yield server
    server.stop()


@pytest.fixture
def base_packages(served):
    return helpers.base_packages(served)


@pytest.fixture
def s3_url(s3):
    return s3.url(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def s3_env(s3, monkeypatch):
    """S3 credentials and endpoint in this process's environment too."""
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return s3.env()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No test reads or writes the developer's ~/.imgbuild (local package cache included)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(home / ".imgbuild" / "cache"))
    monkeypatch.delenv("IMGBUILD_STORE", raising=False)
    return home
