"""Unpacked copies in the machine cache (extracted packages, base filesystems) are removed
once unused for IMGBUILD_CACHE_KEEP_DAYS (imagebuilder/cacheprune.py); used ones stay."""

from __future__ import annotations

import os
import time
from pathlib import Path

from imagebuilder import cacheprune

DAY = 86400


def _dir(path: Path, age_days: float, now: float) -> Path:
    path.mkdir(parents=True)
    (path / "f").write_text("x")
    t = now - age_days * DAY
    os.utime(path, (t, t))
    return path


def test_unused_copies_go_with_their_companions_used_ones_stay(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("IMGBUILD_CACHE_KEEP_DAYS", raising=False)
    now = time.time()
    ex = tmp_path / "extracted"
    old = _dir(ex / ("1" * 64), 40, now)
    _dir(ex / ("1" * 64 + ".meta"), 1, now)  # written recently, but goes with its copy
    _dir(ex / ("1" * 64 + ".prefix-abc"), 40, now)
    used = _dir(ex / ("2" * 64), 40, now)
    cacheprune.touch(used)  # a bake read it just now
    fresh = _dir(ex / ("3" * 64), 2, now)
    _dir(ex / ("3" * 64 + ".meta"), 50, now)  # its copy is fresh: stays
    stale_tmp = _dir(ex / ".1111-killed", 1, now)
    young_tmp = _dir(ex / ".2222-running", 0, now)
    orphan = _dir(ex / ("4" * 64 + ".meta"), 40, now)  # its copy is gone already
    br = tmp_path / "base-root"
    old_base = _dir(br / ("5" * 64), 31, now)
    new_base = _dir(br / ("6" * 64), 29, now)
    (br / "python-answer.json").write_text("{}")
    os.utime(br / "python-answer.json", (now - 90 * DAY, now - 90 * DAY))

    removed = set(cacheprune.prune(now))

    assert not old.exists() and not (ex / ("1" * 64 + ".meta")).exists()
    assert not (ex / ("1" * 64 + ".prefix-abc")).exists()
    assert used.exists() and fresh.exists() and (ex / ("3" * 64 + ".meta")).exists()
    assert not stale_tmp.exists() and young_tmp.exists() and not orphan.exists()
    assert not old_base.exists() and new_base.exists() and (br / "python-answer.json").exists()
    assert f"extracted/{'1' * 64}" in removed and f"base-root/{'5' * 64}" in removed
    assert not [p for p in ex.iterdir() if p.name.startswith(".trash-")]


def test_keep_days_setting_and_once_a_day(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(tmp_path))
    now = time.time()
    a = _dir(tmp_path / "extracted" / ("1" * 64), 5, now)
    monkeypatch.setenv("IMGBUILD_CACHE_KEEP_DAYS", "7")
    assert cacheprune.maybe_prune(now) == [] and a.exists()
    monkeypatch.setenv("IMGBUILD_CACHE_KEEP_DAYS", "3")
    assert cacheprune.maybe_prune(now + 60) == []  # pruned a minute ago: not again today
    assert a.exists()
    assert cacheprune.maybe_prune(now + DAY + 1) == [f"extracted/{'1' * 64}"]
    assert not a.exists()


def test_a_cold_bake_prunes_and_keeps_what_it_used(envs, tmp_path, monkeypatch):
    from imagebuilder.bake import BakeOptions, bake
    from imagebuilder.store.local import LocalStore

    cache = tmp_path / "cache"
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(cache))
    store = LocalStore(tmp_path / "store")
    env = envs.make(store, ["python", "libffi"])
    bake([env], store, BakeOptions())
    libffi = next(p for p in env.packages if p.name == "libffi")
    copy = cache / "extracted" / libffi.sha256
    assert copy.is_dir()
    long_ago = time.time() - 400 * DAY
    os.utime(copy, (long_ago, long_ago))
    stray = _dir(cache / "extracted" / ("9" * 64), 400, time.time())
    os.utime(cache / ".pruned", (long_ago, long_ago))
    for sub in ("layers", "blobs"):  # the layer cache goes cold: the copy is read again
        for p in sorted((tmp_path / "store" / sub).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    bake([env], store, BakeOptions())
    assert copy.is_dir() and not stray.exists()
