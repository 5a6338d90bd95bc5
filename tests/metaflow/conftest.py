"""Fixtures for the Metaflow plugin tests (helpers in mfhelp.py).

- `sources` (module): our own copies of the rig's channel and index, served here so a test
  can stop them (proving a baked task needs neither); the index copy also holds boto3 and its
  dependencies (Metaflow's own needs on an S3 datastore, not in the rig's index).
- `flows` (module): runs flows as subprocesses with a clean environment (temp HOME and
  METAFLOW_HOME, `--environment=conda`), and the imgbuild CLI with the same settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mfhelp import FlowRunner, serve_sources  # noqa: E402


@pytest.fixture(scope="module")
def sources(rig, tmp_path_factory):
    src = serve_sources(rig, tmp_path_factory.mktemp("sources"))
    yield src
    src.stop()


@pytest.fixture(scope="module")
def flows(tmp_path_factory) -> FlowRunner:
    return FlowRunner(tmp_path_factory.mktemp("flows"))
