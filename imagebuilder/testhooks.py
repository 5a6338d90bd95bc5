"""Crash-test hook: `IMGBUILD_TEST_KILL_AT=<point>:<n>[,<point>:<n>...]` SIGKILLs this process
at the n-th time the code passes the named point (counted per process, across threads).

Used by the crash-consistency tests (tests/cache, tests/reliability): kill the CLI mid-write,
rerun, and check the store. The points are cheap no-ops when the variable is unset. Points:

- `store.put`      a write-once object is complete in a temp file / about to be uploaded
- `store.part`     a multipart S3 upload sent some bytes (mid-object)
- `store.record`   a compare-and-swap record (alias, build record) is about to be written
- `cache.download` a package download wrote its first chunk (mid-download)
- `cache.verified` a package was downloaded and verified, before it is stored
- `cache.env`      every package is stored, the env record is about to be written
- `cache.recorded` the env record is written, its packages not yet re-checked (cache.record_env)

Other phases add their own names (document them beside their call).
"""

from __future__ import annotations

import os
import signal
import threading

_lock = threading.Lock()
_counts: dict[str, int] = {}
_targets: dict[str, int] | None = None


def _parse() -> dict[str, int]:
    out: dict[str, int] = {}
    for item in os.environ.get("IMGBUILD_TEST_KILL_AT", "").split(","):
        name, _, n = item.strip().rpartition(":")
        if name and n.isdigit():
            out[name] = int(n)
    return out


def kill_point(name: str) -> None:
    """SIGKILL the process if IMGBUILD_TEST_KILL_AT names this point and count."""
    global _targets
    if _targets is None:
        _targets = _parse()
    if not _targets or name not in _targets:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name] == _targets[name]
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
