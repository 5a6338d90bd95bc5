"""Helpers for hydrate tests: our own copies of the rig's channel and index (served here, so a
test can stop them and prove creation is offline), envs resolved once per module into an S3
store on the rig's seaweedfs, and a runner for `imgbuild` with a shared package cache."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from clirunner import clean_environ, run_checked  # tests/ (on sys.path: tests/conftest.py)
from local_sources import (
    ServedSources,
    runtime_wheels,  # noqa: F401  (tests import it from here)
    serve_channel_and_index,
)

ROOT = Path(__file__).resolve().parents[2]


def serve_sources(rig, tmp: Path) -> ServedSources:
    rig.need("channel_dir", "index_dir")
    channel = tmp / "channel"
    shutil.copytree(rig.channel_dir, channel, copy_function=os.link)
    return serve_channel_and_index(channel, Path(rig.index_dir))


@dataclass
class Store:
    url: str
    env: dict  # what a subprocess needs to reach it (store URL, endpoint, keys)


def rig_s3(rig, name: str) -> Store:
    rig.need("s3_endpoint")
    url = f"s3://{rig.s3_bucket}/t/hydrate-{name}-{uuid.uuid4().hex[:8]}"
    return Store(
        url,
        {
            "IMGBUILD_STORE": url,
            "IMGBUILD_S3_ENDPOINT_URL": rig.s3_endpoint,
            "AWS_ACCESS_KEY_ID": rig.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )


# what run_cli leaves out of the inherited environment
_DROP = ("IMGBUILD_", "METAFLOW_", "AWS_", "XDG_", "CONDA_", "VIRTUAL_ENV")


def run_cli(args, env: dict, home: Path, expect: int | None = 0, timeout: float = 600, cwd=None):
    """Run `python -m imagebuilder ARGS` with HOME=home and env on top of a clean environment."""
    fixed = {
        "IMGBUILD_RUNTIME_CACHE": "0",  # tests that need the bootstrap runtime turn it on
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    argv = tuple(str(a) for a in args)
    Path(home).mkdir(parents=True, exist_ok=True)
    return run_checked(
        [sys.executable, "-m", "imagebuilder", *argv],
        env=clean_environ(_DROP, fixed, env),
        cwd=cwd or home,
        what=f"imgbuild {' '.join(argv)}",
        expect=expect,
        timeout=timeout,
        args=argv,
    )


MIXED = [
    "--conda", "python 3.11.*", "--conda", "tinyfoo", "--conda", "six", "--conda", "imgb-cli",
    "--pypi", "imgb-uses-six", "--pypi", "imgb-hello",
]  # fmt: skip


def resolve(
    sources: ServedSources, store: Store, home: Path, *args, alias: str | None = None
) -> dict:
    extra = ["--alias", alias] if alias else []
    r = run_cli(
        ["resolve", *args, "-c", sources.channel_url, "--index-url", sources.index_url, "--json"]
        + extra,
        store.env,
        home,
    )
    return r.json()
