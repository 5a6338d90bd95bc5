"""The package cache on this machine for remote stores: `~/.imgbuild/cache/pkgs/...` mirrors
store keys, so hydrate and bake on an S3-backed store read each package from S3 once.

Files enter the cache only verified (the sha256 in their `pkgs/<kind>/<sha256>/<file>` key)
and by rename, so a reader never sees a partial file. For a local store, `fetch_to_local`
returns the store's own file (no copy).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from imagebuilder.errors import IntegrityError
from imagebuilder.store.base import Store, check_key

T = TypeVar("T")


def cache_root() -> Path:
    env = os.environ.get("IMGBUILD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".imgbuild" / "cache"


def remembered(folder: str, name: str, compute: Callable[[], T]) -> T:
    """compute(), kept as `<cache>/<folder>/<name>.json` (a JSON value): answers about a base
    image (its python, whether it runs here) are asked again on every push of the same base."""
    import json

    from imagebuilder.atomic import write_atomic

    path = cache_root() / folder / f"{name}.json"
    try:
        return json.loads(path.read_text())["value"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"value": value}).encode())
    except OSError:
        pass  # a read-only cache only costs the next call the same work
    return value


def key_sha256(key: str) -> str | None:
    """The content hash a `pkgs/<kind>/<sha256>/<file>` key names (None for other keys)."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == "pkgs" and len(parts[2]) == 64:
        return parts[2]
    return None


def local_file(key: str) -> Path:
    return cache_root() / check_key(key)


def adopt(key: str, path: Path) -> Path:
    """Move an already verified file into the cache under key (first one wins)."""
    dest = local_file(key)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, dest)  # keep the caller's file; fails if another process was faster
    except FileExistsError:
        pass
    except OSError:
        import shutil

        from imagebuilder.atomic import temp_path

        tmp = temp_path(dest, ".part")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
    return dest


def fetch_to_local(store: Store, key: str, sha256: str | None = None) -> Path:
    """A local, verified file with the content of store key (downloads it at most once)."""
    direct = store.local_path(key)
    if direct is not None:
        return direct
    want = sha256 or key_sha256(key)
    dest = local_file(key)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        store.get_file(key, tmp_path)
        if want:
            from imagebuilder.fetch import sha256_file

            got = sha256_file(tmp_path)
            if got != want:
                raise IntegrityError(
                    f"{key} in {store.url}: sha256 mismatch: expected {want}, got {got}",
                    "the store object is damaged; run `imgbuild verify`",
                )
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)
    return dest


def fetch_many(store: Store, keys: Iterable[str], jobs: int = 8) -> dict[str, Path]:
    """fetch_to_local for many keys in parallel (bounded)."""
    keys = list(dict.fromkeys(keys))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        paths = list(pool.map(lambda k: fetch_to_local(store, k), keys))
    return dict(zip(keys, paths, strict=True))
