import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "cache"))  # helpers, cache_store_fixtures
from cache_store_fixtures import *  # noqa: E402, F403  (the fixtures: registered by import)


@pytest.fixture
def s3_objstore(s3, s3_url, s3_env):
    from imagebuilder.store.s3 import S3Store

    return S3Store(s3_url, endpoint_url=s3.endpoint)
