import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # helpers, cache_store_fixtures
from cache_store_fixtures import *  # noqa: E402, F403  (the fixtures: registered by import)
