"""From an env's packages to verified archives on this machine, fetched in parallel.

Every archive is checked before anything unpacks it: sha256 against the env record (a
mismatch names both hashes, exit 6) and archive_check's hostile-archive rules. Checking a
500 MB env on every creation would cost seconds, so a file that passed is remembered by its
content hash and its inode/size/mtime (`<cache>/verified/<sha256>`): the same unchanged file
is not read again; any change to it (or a different file) is checked again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imagebuilder.atomic import write_atomic
from imagebuilder.env import CONDA, Package, ResolvedEnv
from imagebuilder.errors import BadInput, ImgbuildError, IntegrityError, NotFound
from imagebuilder.install.plan import CondaItem, WheelItem
from imagebuilder.store.base import Store

JOBS = int(os.environ.get("IMGBUILD_FETCH_JOBS", 8))


def conda_key(pkg: Package, store: Store) -> str:
    """The store key to install a conda package from: its own archive, else an alternative."""
    if store.exists(pkg.store_key):
        return pkg.store_key
    for alt in pkg.alt:
        key = f"pkgs/conda/{alt.sha256}/{alt.filename}"
        if store.exists(key):
            return key
    raise _missing(pkg, store)


def _missing(pkg: Package, store: Store) -> NotFound:
    return NotFound(
        f"package {pkg.label} ({pkg.filename}) is missing from store {store.url}",
        "cache it again with `imgbuild resolve` (packages are stored before env records), "
        "or check the store with `imgbuild verify`",
    )


def wheel_key(pkg: Package, store: Store, env: ResolvedEnv, python: str) -> tuple[str, str]:
    """(store key, sha256) of the wheel to install for a PyPI package (built for sources)."""
    if not pkg.is_source:
        return pkg.store_key, pkg.sha256
    from imagebuilder.builds import find_build

    build = find_build(store, pkg, env.arch, python)
    if build is None:
        raise NotFound(
            f"no wheel built from {pkg.label} ({pkg.source} source) for {env.arch} / python "
            f"{python} in store {store.url}",
            "run `imgbuild resolve` for this request on a machine of that platform (it builds "
            "sources once and stores the wheel)",
        )
    return build.key, build.sha256


def gather(
    env: ResolvedEnv,
    store: Store,
    python: str,
    *,
    jobs: int = JOBS,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[CondaItem], list[WheelItem]]:
    """Local verified files for every package of env, in the env's order."""
    jobs_list: list[tuple[Package, str, str]] = []  # package, key, sha256
    for pkg in env.packages:
        if pkg.kind == CONDA:
            key = _quiet_key(pkg, store)
            jobs_list.append((pkg, key, key.split("/")[2]))
        else:
            key, sha = wheel_key(pkg, store, env, python)
            jobs_list.append((pkg, key, sha))

    def one(job: tuple[Package, str, str]) -> Path:
        pkg, key, sha = job
        path = fetch_verified(store, key, sha, pkg.label)
        if progress is not None:
            progress(pkg.label)
        return path

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="fetch") as pool:
        paths = _all(pool, one, jobs_list)
    conda, wheels = [], []
    for (pkg, _, sha), path in zip(jobs_list, paths, strict=True):
        if pkg.kind == CONDA:
            conda.append(CondaItem.from_package(pkg, path))
        else:
            wheels.append(WheelItem(pkg.name, str(path), sha))
    return conda, wheels


def _quiet_key(pkg: Package, store: Store) -> str:
    # The common case needs no HEAD per package: a missing object surfaces at fetch time.
    return pkg.store_key if not pkg.alt else conda_key(pkg, store)


def _all(pool, fn, items) -> list:
    """Map in the pool; an IntegrityError wins over other errors (the one users must see)."""
    futures = [pool.submit(fn, it) for it in items]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        errors.sort(key=lambda e: not isinstance(e, IntegrityError))
        raise errors[0]
    return [f.result() for f in futures]


def fetch_verified(store: Store, key: str, sha256: str, label: str) -> Path:
    from imagebuilder.store.localcache import fetch_to_local

    try:
        path = fetch_to_local(store, key, sha256)
    except NotFound:
        raise NotFound(
            f"package {label} ({key.rsplit('/', 1)[-1]}) is missing from store {store.url}",
            "cache it again with `imgbuild resolve`, or check the store with `imgbuild verify`",
        ) from None
    verify(path, sha256, label)
    return path


# --- verification with memory ---------------------------------------------------------------


def _stamp_file(sha256: str) -> Path:
    from imagebuilder.store.localcache import cache_root

    return cache_root() / "verified" / sha256


def _deep() -> bool:
    # = archive_check.DEEP, read here so a warm creation does not import archive_check
    return os.environ.get("IMGBUILD_DEEP_CHECK", "1") not in ("", "0")


def _fingerprint(path: Path, deep: bool | None = None) -> dict:
    st = path.stat()
    return {
        # a stamp left by a shallower check does not vouch for a deep one
        "deep": _deep() if deep is None else deep,
        "path": str(path),
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }


def verify(path: Path, sha256: str, label: str) -> None:
    """sha256 + hostile-archive check, skipped when this exact file passed before."""
    stamp = _stamp_file(sha256)
    try:
        fp = _fingerprint(path)
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}") from None
    try:
        if json.loads(stamp.read_text()) == fp:
            return
    except (OSError, ValueError):
        pass
    from imagebuilder.fetch import sha256_file

    got = sha256_file(path)
    if got != sha256:
        raise IntegrityError(
            f"package {label} ({path.name}) is corrupted: expected sha256 {sha256}, got {got}",
            "the stored file was damaged; restore it (re-run `imgbuild resolve`) and run "
            "`imgbuild verify`",
        )
    _check_archive(path)
    # the fingerprint taken before reading: a file changed meanwhile does not match it later
    _write_stamp(sha256, fp)


def remember_verified(path: Path, sha256: str, deep: bool) -> None:
    """Record that this exact file (path, inode, size, mtime) was sha256-verified and checked
    (deep or not): the cache phase calls it for the copy it keeps on this machine, so the
    first hydrate or bake here does not hash and check the archive a second time."""
    _write_stamp(sha256, _fingerprint(path, deep))


def _write_stamp(sha256: str, fp: dict) -> None:
    stamp = _stamp_file(sha256)
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(stamp, json.dumps(fp).encode())
    except OSError:
        pass  # only an optimization


def _check_archive(path: Path) -> None:
    from imagebuilder import archive_check

    try:
        archive_check.check_archive(path)
    except ImgbuildError:
        raise
    except Exception as e:  # a truncated or unreadable archive
        raise IntegrityError(f"cannot read package archive {path.name}: {e}") from None
