"""Crash consistency and concurrency of the cache step (issue 4 must-shows).

SIGKILL at several points (IMGBUILD_TEST_KILL_AT, imagebuilder/testhooks.py), then: no object
under a final key differs from its hash, no env record without its packages (`imgbuild
verify`), and a rerun completes. Then 8 processes cache overlapping envs into one S3 prefix.
"""

import hashlib
import json
import random
import signal
import subprocess
import sys
import uuid

import pytest
from helpers import make_env, run_cache, run_imgbuild, write_env

from imagebuilder.store import open_store

POINTS = [
    "store.put:1",  # the lease, before any package
    "cache.download:3",  # mid-download of the third package
    "cache.verified:4",  # verified, not stored yet
    "store.put:5",  # a package complete in temp / about to be uploaded
    "cache.env:1",  # all packages stored, env record not written
    "store.put:12",  # the env record itself (1 lease + 10 packages + record)
]


def _all_objects_match_their_keys(store) -> int:
    """Every pkgs/<kind>/<sha256>/<file> object hashes to its key: nothing partial is visible."""
    from imagebuilder.store.verify import hash_object

    n = 0
    for key in store.list("pkgs/"):
        want = key.split("/")[2]
        got, _ = hash_object(store, key)
        assert got == want, f"{key} is partial or damaged"
        n += 1
    return n


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_sigkill_at_points_then_rerun(tmp_path, served, s3, s3_env, kind, base_packages):
    pkgs = sorted(base_packages, key=lambda p: p["size"])[:10]
    env = make_env(pkgs, f"crash-{kind}")
    f = write_env(tmp_path / "env.json", env)
    extra = s3.env() if kind == "s3" else {}
    for point in POINTS:
        url = (
            s3.url(f"crash-{uuid.uuid4().hex[:10]}-{point.replace(':', '-')}")
            if kind == "s3"
            else str(tmp_path / f"store-{point.replace(':', '-')}")
        )
        r = run_cache(f, url, {**extra, "IMGBUILD_TEST_KILL_AT": point, "IMGBUILD_CACHE_JOBS": "1"})
        assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr)
        store = open_store(url, _cfg(s3) if kind == "s3" else None)
        _all_objects_match_their_keys(store)
        v = run_imgbuild("verify", "--json", "--store", url, env=extra)
        assert v.returncode == 0, (point, v.stdout, v.stderr)
        has_record = any(True for _ in store.list("envs/"))
        assert (
            has_record == (point == "store.put:12" and kind == "local")
            or not has_record
            or (json.loads(v.stdout)["objects"] == len(pkgs))
        )
        g = run_imgbuild("gc", "--dry-run", "--json", "--store", url, env=extra)
        assert g.returncode == 0, g.stderr
        # rerun completes and the store is whole
        r = run_cache(f, url, extra)
        assert r.returncode == 0, (point, r.stderr)
        v = run_imgbuild("verify", "--json", "--store", url, env=extra)
        assert v.returncode == 0 and json.loads(v.stdout)["envs"] == 1, v.stdout + v.stderr
        assert json.loads(v.stdout)["objects"] == len(pkgs)
        assert _all_objects_match_their_keys(store) == len(pkgs)
        if kind == "local":
            # a killed writer's temp files are invisible as objects and gc removes them
            g = run_imgbuild("gc", "--grace", "0", "--json", "--store", url)
            assert g.returncode == 0
            assert not [p for p in (tmp_path / url).glob(".tmp/**/*") if p.is_file()]
            v = run_imgbuild("verify", "--store", url)
            assert v.returncode == 0, v.stderr


def _cfg(s3):
    from imagebuilder.config import load_config

    return load_config(flags={"s3_endpoint_url": s3.endpoint})


def test_eight_processes_overlapping_envs_one_s3_store(
    tmp_path, served, s3, s3_url, s3_env, base_packages
):
    rnd = random.Random(4)
    files = []
    for i in range(8):
        subset = rnd.sample(base_packages, k=min(len(base_packages), 14))
        files.append(write_env(tmp_path / f"env{i}.json", make_env(subset, f"conc{i % 5}")))
    here = __import__("pathlib").Path(__file__).with_name("cache_cli.py")
    import os

    procs = [
        subprocess.Popen(
            [sys.executable, str(here), str(f), s3_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **s3.env()},
        )
        for f in files
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * 8, [o[1][-500:] for o in outs]
    v = run_imgbuild("verify", "--json", "--store", s3_url, env=s3.env())
    assert v.returncode == 0, v.stdout + v.stderr
    rep = json.loads(v.stdout)
    assert rep["envs"] == len({json.loads(o[0])["key"] for o in outs})
    store = open_store(s3_url, _cfg(s3))
    _all_objects_match_their_keys(store)


def test_hash_helper_sanity():
    assert hashlib.sha256(b"").hexdigest().startswith("e3b0")
