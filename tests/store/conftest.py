import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "cache"))
import helpers  # noqa: E402


@pytest.fixture(scope="session")
def s3(rig):
    return helpers.S3Service(rig)


@pytest.fixture
def s3_url(s3):
    return s3.url(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def s3_objstore(s3, s3_url, monkeypatch):
    from imagebuilder.store.s3 import S3Store

    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return S3Store(s3_url, endpoint_url=s3.endpoint)


def fake_env(tag: str, arch: str = "linux-64", n: int = 2):
    """An env record with made-up packages (alias and record tests need no archives)."""
    import hashlib

    pkgs = [
        {
            "kind": "conda",
            "subdir": arch,
            "name": f"pkg{i}",
            "version": "1.0",
            "build": "0",
            "sha256": hashlib.sha256(f"{tag}-{i}".encode()).hexdigest(),
            "filename": f"pkg{i}-1.0-0.conda",
            "url": f"http://example.invalid/{arch}/pkg{i}-1.0-0.conda",
            "size": 1,
        }
        for i in range(n)
    ]
    return helpers.make_env(pkgs, tag, arch)
