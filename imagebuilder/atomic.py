"""Whole-file writes that readers never see half done: a temp file beside the destination,
then `os.replace`.

The temp name carries the thread as well as the process: threads of one process write the same
files (two arches resolved at once share the repodata cache), and a name made of the pid alone
let one thread rename away the other's temp file. The pid stays the last dotted part, so
sweepers (oci/layout.py) can still tell a dead writer's leftovers.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def temp_path(dest: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A temp name beside dest, unique per thread of a process: `.<name>.<thread>.<pid><suffix>`."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.{threading.get_ident()}.{os.getpid()}{suffix}")


def write_atomic(dest: str | os.PathLike, data: bytes, fsync: bool = False) -> None:
    """Write data to dest in one step (a temp file, then os.replace); fsync first if asked."""
    tmp = temp_path(dest)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
