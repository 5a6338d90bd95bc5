#!/usr/bin/env python3
"""Build (or reuse) the local conda test channel.

    python ci/channel/build.py [--out DIR] [--bench] [--rebuild]

The channel is built once into ``ci/cache/channel-<key>/`` (``channel-bench-<key>`` with
``--bench``), where ``<key>`` hashes this folder's sources (and ci/pypi/fetch.py), and reused
until they change. ``--out DIR`` gives a private copy at DIR (package archives hardlinked,
index files copied; an up-to-date DIR is left as is); without it the cache folder itself is
the channel (treat it as read-only). The channel's path is the last line on stdout; progress
goes to stderr. Safe to run concurrently: a file lock serializes builders, a build happens in
a temp folder and is renamed into place.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import builder  # noqa: E402

FORMAT = "imgb-channel-v1"  # bump to force a rebuild everywhere
MARKER = ".imgb-channel"  # file in a finished channel folder: holds its key


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def source_key(bench: bool = False) -> str:
    import recipes

    h = hashlib.sha256(FORMAT.encode())
    files = sorted(
        p
        for p in HERE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".md"
    )
    files.append(ROOT / "ci" / "pypi" / "fetch.py")
    for p in files:
        h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(str(recipes.source_python_prefix()).encode())
    if bench:
        h.update(b"bench")
    return h.hexdigest()[:16]


@contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def is_done(path: Path, key: str) -> bool:
    m = path / MARKER
    return m.is_file() and m.read_text().strip() == key


def publish(tmp: Path, final: Path, key: str) -> None:
    """Mark ``tmp`` finished and rename it to ``final`` (replacing a stale ``final``)."""
    (tmp / MARKER).write_text(key + "\n")
    if final.exists():
        trash = final.with_name(f".trash-{final.name}-{os.getpid()}")
        os.rename(final, trash)
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, final)


def build_cached(bench: bool, rebuild: bool = False) -> Path:
    import recipes

    cache = ROOT / "ci" / "cache"
    key = source_key(bench)
    final = cache / (f"channel-bench-{key}" if bench else f"channel-{key}")
    with locked(cache / f".{final.name}.lock"):
        if is_done(final, key) and not rebuild:
            log(f"channel: reusing {final}")
            return final
        t0 = time.monotonic()
        tmp = cache / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            if bench:
                base = build_cached(False)
                builder.copy_channel(base, tmp)
                (tmp / MARKER).unlink()
                import bench as bench_recipes

                bench_recipes.build_bench(tmp, log)
                builder.reindex(tmp)
            else:
                recipes.build_all(tmp, log)
            publish(tmp, final, key)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"channel: built {final} in {time.monotonic() - t0:.1f}s")
        return final


def materialize(src: Path, out: Path) -> Path:
    """Make ``out`` a private copy of the channel ``src`` (idempotent, concurrency-safe)."""
    key = (src / MARKER).read_text().strip()
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.parent / f".{out.name}.lock"):
        if is_done(out, key):
            log(f"channel: {out} is up to date")
            return out
        tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        builder.copy_channel(src, tmp)
        publish(tmp, out, key)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, help="where the channel should be (a copy of the cached build)"
    )
    ap.add_argument(
        "--bench",
        action="store_true",
        help="also add the big benchmark packages (numpy, scipy, ...)",
    )
    ap.add_argument(
        "--rebuild", action="store_true", help="rebuild even if the cache is up to date"
    )
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    path = build_cached(args.bench, args.rebuild)
    if args.out:
        path = materialize(path, args.out)
    log(f"channel: ready in {time.monotonic() - t0:.1f}s")
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
