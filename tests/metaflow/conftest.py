"""Fixtures for the Metaflow plugin tests (helpers in mfhelp.py).

The expensive scenarios (a flow run, deploys that bake images) run once per test session,
even when pytest-xdist spreads a module's tests over several workers: `shared.once(name, fn)`
computes under a file lock in a folder every worker sees and the others read the result.
Tests then assert on what the scenario recorded, or run cheap commands against its state.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


class Shared:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def dir(self, name: str) -> Path:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def once(self, name: str, compute):
        """compute() once per session (its result must be JSON); every caller gets it."""
        result = self.root / f"{name}.json"
        with open(self.root / f"{name}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if result.exists():
                data = json.loads(result.read_text())
                if "error" in data:
                    pytest.fail(f"{name} failed in another worker:\n{data['error']}", pytrace=False)
                return data
            try:
                data = compute()
            except BaseException as e:
                result.write_text(json.dumps({"error": f"{type(e).__name__}: {e}"[-6000:]}))
                raise
            tmp = result.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, result)
            return data


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Shared:
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return Shared(root / "metaflow-shared")
