"""Cache phase: every package of a ResolvedEnv fetched once, verified, checked, stored.

`cache_env(env, store)` is called after the solve and before the env record is written (so a
reader never finds an env whose packages are missing). Per package, in a bounded thread pool:
HEAD the store key (present -> nothing downloaded), else download with retries, verify
sha256 (or md5 where the channel gives only that; sha256 is then computed and returned in
the env), refuse hostile archives (archive_check), and put under `pkgs/<kind>/<sha256>/<file>`
(write-once). Sources (sdist/git/path) are then built into wheels (builds.py). With
`fmt=".conda"`, .tar.bz2 packages are also stored transmuted, recorded as `Package.alt`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from imagebuilder.checkworkers import CheckPool, worker_count
from imagebuilder.env import CONDA, AltFile, Package, ResolvedEnv
from imagebuilder.errors import BadInput, IntegrityError
from imagebuilder.store.base import Store
from imagebuilder.testhooks import kill_point

JOBS = int(os.environ.get("IMGBUILD_CACHE_JOBS", 8))


@dataclass
class Stats:
    present: int = 0
    downloaded: int = 0
    bytes: int = 0
    built: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


def cache_env(
    env: ResolvedEnv, store: Store, *, ui=None, fmt: str | None = None, jobs: int = JOBS
) -> ResolvedEnv:
    """Store every package of env; returns env with hashes/alt files filled in."""
    if fmt not in (None, ".conda", ".tar.bz2"):
        raise BadInput(f"unknown package format {fmt!r}", "use --format .conda or .tar.bz2")
    start = time.monotonic()
    stats = Stats()
    from imagebuilder.store.gc import write_lease
    from imagebuilder.store.verify import package_keys

    # Tell a concurrent `gc` which objects we are about to rely on (some may be present
    # already, so we will not upload them again): it keeps them while the lease is young.
    write_lease(store, sorted(package_keys(env)))
    total = sum(p.size or 0 for p in env.packages)
    # Big caches check archives in worker processes (started at the first archive to check).
    with (
        _workdir(store) as tmp,
        _progress(ui, total) as bar,
        CheckPool(worker_count(total)) as checks,
    ):
        updated = _run_all(
            [lambda p=p: _cache_one(p, store, tmp, fmt, stats, bar, checks) for p in env.packages],
            jobs,
        )
        env = env.with_packages(updated)
        sources = [p for p in env.packages if p.is_source]
        if sources:
            from imagebuilder.builds import ensure_built

            for p in sources:
                if ensure_built(p, env, store, tmp, ui=ui):
                    stats.add(built=1)
    kill_point("cache.env")
    if ui is not None:
        ui.info(
            f"cached {len(env.packages)} packages in {store.url}: {stats.present} present, "
            f"{stats.downloaded} downloaded ({stats.bytes / 1e6:.1f} MB)"
            + (f", {stats.built} built" if stats.built else "")
            + f" in {time.monotonic() - start:.1f}s"
        )
    # Tasks without a baked image hydrate with the bootstrap, whose runtime wheels must be in
    # this store too (never PyPI at task time); a no-op once cached, a warning if impossible.
    # Only after the packages: a refused package leaves nothing new in the store (it could run
    # alongside them, but on 2 cores that saved ~0.1 s of its ~2.5 s).
    from imagebuilder.runtime import ensure_for_env

    ensure_for_env(env, store, ui)
    return env


def record_env(env: ResolvedEnv, store: Store, *, ui=None, fmt: str | None = None) -> ResolvedEnv:
    """Write env's record after cache_env stored its packages, then check they are all still
    there. A concurrent `gc` that listed leases just before ours appeared may delete a package
    we found present (and so did not upload) — the one window leases alone leave (gc.py re-lists
    leases before each delete, which makes it a few requests wide). Anything gone is stored
    again, so the record never names a missing package for long."""
    from imagebuilder.store.envs import put_env

    put_env(store, env)  # after its packages (CONTRACT.md); write-once: no-op if present
    kill_point("cache.recorded")  # testhooks: the record is written, not yet re-checked
    keys = [p.store_key for p in env.packages if p.sha256 and not p.is_source]
    with ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="recheck") as pool:
        gone = [k for k, ok in zip(keys, pool.map(store.exists, keys), strict=True) if not ok]
    if gone:
        if ui is not None:
            ui.warn(f"{len(gone)} package(s) were removed by a concurrent gc; storing them again")
        cache_env(env, store, ui=ui, fmt=fmt)
    return env


def _progress(ui, total: int):
    if ui is not None and hasattr(ui, "progress"):
        return ui.progress(total, "caching packages", unit="bytes")
    from imagebuilder.cli.output import Progress

    return Progress(total, "caching packages", enabled=False)


def _run_all(tasks, jobs: int) -> list[Package]:
    """Run tasks in a bounded pool; on the first failure stop starting new ones and raise it
    (an IntegrityError wins over others: it is the one the user must see)."""
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="cache") as pool:
        futures = [pool.submit(t) for t in tasks]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [f.exception() for f in done if f.exception() is not None]
        if errors:
            for f in pending:
                f.cancel()
            wait(pending)
            errors += [f.exception() for f in pending if not f.cancelled() and f.exception()]
            errors.sort(key=lambda e: not isinstance(e, IntegrityError))
            raise errors[0]
        return [f.result() for f in futures]


class _workdir:
    """Temp folder for downloads: inside the store's .tmp for local stores (same filesystem,
    removed by gc if we die), else under the local package cache."""

    def __init__(self, store: Store) -> None:
        root = getattr(store, "root", None)
        if root is not None:
            base = Path(root) / ".tmp"
        else:
            from imagebuilder.store.localcache import cache_root

            base = cache_root() / "tmp"
        base.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="cache-", dir=base))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _cache_one(
    pkg: Package, store: Store, tmp: Path, fmt, stats: Stats, bar, checks: CheckPool
) -> Package:
    if pkg.is_source and pkg.source != "sdist":
        return pkg  # git/path sources have no archive; builds.py handles them
    want_alt = fmt == ".conda" and pkg.kind == CONDA and pkg.filename.endswith(".tar.bz2")
    if pkg.sha256 and store.exists(pkg.store_key):
        bar.advance(pkg.size or 0)
        if not want_alt or _alt_present(pkg, store):
            stats.add(present=1)
            return pkg
        local = None
    else:
        local = _fetch(pkg, tmp, stats, bar)
        pkg = replace(pkg, sha256=local.sha256, size=local.size)
        kill_point("cache.verified")
        _check(pkg, local.path, checks)
        stored = store.put_file(pkg.store_key, local.path, sha256=pkg.sha256)
        kept = _keep_locally(store, pkg.store_key, local.path)
        _remember_checked(store, pkg, local.path, stored, kept)
    if want_alt:
        pkg = _add_conda_alt(pkg, store, tmp, local.path if local else None)
    return pkg


def _fetch(pkg: Package, tmp: Path, stats: Stats, bar):
    from imagebuilder import fetch

    if not pkg.sha256 and not pkg.md5:
        raise IntegrityError(
            f"{pkg.label}: the channel gives no sha256 or md5 for {pkg.filename}",
            "imgbuild caches only packages it can verify; use a channel with hashes",
        )
    # the archive keeps its own name: refusals (archive_check) name the file the user knows
    dest = tmp / (pkg.sha256 or pkg.md5) / pkg.filename
    dest.parent.mkdir(exist_ok=True)
    got = fetch.download(
        pkg.url,
        dest,
        label=pkg.label,
        sha256=pkg.sha256 or None,
        md5=pkg.md5,
        size=pkg.size,
        progress=bar.advance,
    )
    stats.add(downloaded=1, bytes=got.size)
    return got


def _check(pkg: Package, path: Path, checks: CheckPool) -> None:
    from imagebuilder import archive_check

    checks.check(path, archive_check.DEEP)


def _keep_locally(store: Store, key: str, path: Path) -> Path | None:
    """For remote stores, keep the verified file in the local package cache: hydrate and bake
    on this machine then read it without downloading it again. Returns the kept file."""
    if store.local_path(key) is not None or getattr(store, "root", None) is not None:
        return None
    from imagebuilder.store.localcache import adopt

    with contextlib.suppress(OSError):  # the local cache is an optimization only
        return adopt(key, path)
    return None


def _remember_checked(store: Store, pkg: Package, checked: Path, stored: bool, kept) -> None:
    """Stamp this machine's copy of the archive just verified and checked (install/files.py
    remember_verified): the first hydrate or bake here (`imgbuild resolve && imgbuild push`)
    then neither hashes nor checks it again. Only a copy this process made from the checked
    file: the local store's object when this process stored it, the local cache's file when
    it is a hard link of the checked one."""
    from imagebuilder import archive_check
    from imagebuilder.install.files import remember_verified

    own = store.local_path(pkg.store_key) if stored else None
    if own is None and kept is not None:
        with contextlib.suppress(OSError):
            if os.path.samefile(kept, checked):
                own = kept
    if own is not None:
        with contextlib.suppress(OSError):  # the copy vanished (a concurrent gc): no stamp
            remember_verified(Path(own), pkg.sha256, archive_check.DEEP)


def _alt_present(pkg: Package, store: Store) -> bool:
    alt = next((a for a in pkg.alt if a.filename.endswith(".conda")), None)
    return alt is not None and store.exists(f"pkgs/conda/{alt.sha256}/{alt.filename}")


def _add_conda_alt(pkg: Package, store: Store, tmp: Path, local: Path | None) -> Package:
    """Store the .conda form of a .tar.bz2 package and record it as an alternative file."""
    from imagebuilder import fetch
    from imagebuilder.transmute import to_conda

    if local is None:
        from imagebuilder.store.localcache import fetch_to_local

        local = fetch_to_local(store, pkg.store_key)
    out = to_conda(local, tmp / f"transmuted-{pkg.sha256[:16]}", pkg.filename)
    sha = fetch.sha256_file(out)
    from imagebuilder import archive_check

    archive_check.check_conda_archive(out)
    store.put_file(f"pkgs/conda/{sha}/{out.name}", out, sha256=sha)
    alt = AltFile(out.name, sha, out.stat().st_size)
    others = tuple(a for a in pkg.alt if a.filename != out.name)
    return replace(pkg, alt=(*others, alt))
