"""Unpacked copies in this machine's cache, removed when unused for a while.

Bake keeps unpacked copies in the local cache: extracted conda packages
(`extracted/<sha256>/` with their `<sha256>.meta/` and `<sha256>.prefix-*/` companions;
install/inplace.py) and base image filesystems (`base-root/<digest>/`; oci/baseroot.py).
They are derived data, made again when needed, but nothing else would ever remove them. Each
is touched when used; at most once a day a cold bake removes those unused for
IMGBUILD_CACHE_KEEP_DAYS days (default 30), and the temp folders a killed process left behind
(an hour old). A copy is renamed away before it is removed: it is whole or gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

FOLDERS = ("extracted", "base-root")
KEEP_DAYS = 30
TEMP_AGE = 3600  # a temp folder older than this belongs to a process that is gone
EVERY = 86400  # seconds between two prunes


def touch(path: Path) -> None:
    """Mark a cached copy as used now."""
    with contextlib.suppress(OSError):
        os.utime(path)


def maybe_prune(now: float | None = None) -> list[str]:
    """prune(), unless this machine's cache was pruned within the last day."""
    from imagebuilder.store.localcache import cache_root

    now = time.time() if now is None else now
    marker = cache_root() / ".pruned"
    try:
        if now - marker.stat().st_mtime < EVERY:
            return []
    except OSError:
        pass
    with contextlib.suppress(OSError):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os.utime(marker, (now, now))
    return prune(now)


def prune(now: float | None = None) -> list[str]:
    """Remove copies unused for KEEP_DAYS and stale temp folders; returns what was removed
    (`<folder>/<name>`)."""
    from imagebuilder.store.localcache import cache_root

    now = time.time() if now is None else now
    days = os.environ.get("IMGBUILD_CACHE_KEEP_DAYS", "")
    keep = (float(days) if _number(days) else KEEP_DAYS) * 86400
    removed = []
    for folder in FOLDERS:
        top = cache_root() / folder
        try:
            entries = sorted(top.iterdir())
        except OSError:
            continue
        names = {e.name for e in entries}
        old = {  # copies unused for `keep`, by key (<sha256>.meta goes with <sha256>)
            e.name
            for e in entries
            if not e.name.startswith(".") and e.is_dir() and _age(e, now) > keep
        }
        for entry in entries:
            name = entry.name
            if name.startswith("."):  # a temp folder: being written, or left by a killed one
                if name.startswith(".trash-") or _age(entry, now) > TEMP_AGE:
                    _remove(entry, top)
                    removed.append(f"{folder}/{name}")
                continue
            if not entry.is_dir() or entry.is_symlink():
                continue  # remembered answers (small JSON files) stay
            key = name.split(".", 1)[0]
            if key in old or (key not in names and name in old):  # companion of a gone copy
                _remove(entry, top)
                removed.append(f"{folder}/{name}")
    return removed


def _number(s: str) -> bool:
    try:
        return float(s) >= 0
    except ValueError:
        return False


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except OSError:
        return 0.0


def _remove(entry: Path, top: Path) -> None:
    trash = entry
    if not entry.name.startswith(".trash-"):
        trash = top / f".trash-{entry.name}-{os.getpid()}"
        try:
            os.rename(entry, trash)
        except OSError:
            return  # gone already, or another process is removing it
    shutil.rmtree(trash, ignore_errors=True)
