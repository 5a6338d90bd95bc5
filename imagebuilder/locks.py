"""Host-level file locks (flock) for work that two processes on one machine must not do at once,
such as creating the same prefix. Standard library only: the bootstrap imports it before any
dependency is available.

A lock is held by an open file description, so it is released when its process dies (SIGKILL
included): a crashed creator never blocks the next one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeout(Exception):
    pass


def lock_path_for(target: str | os.PathLike) -> Path:
    """The lock file guarding `target`: a hidden sibling, so it lives on the same filesystem
    (and is shared by every process, container or user that can see the target)."""
    t = Path(os.path.abspath(target))
    return t.parent / f".{t.name}.imgbuild-lock"


@contextmanager
def file_lock(
    path: str | os.PathLike,
    *,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    poll: float = 0.1,
) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing). If another process holds it, call
    on_wait(holder) once and wait, up to `timeout` seconds (None: forever)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _try(fd):
            if on_wait is not None:
                on_wait(_holder(fd))
            deadline = None if timeout is None else time.monotonic() + timeout
            while not _try(fd):
                if deadline is not None and time.monotonic() > deadline:
                    raise LockTimeout(f"timed out after {timeout:.0f}s waiting for {p}")
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {os.uname().nodename}\n".encode(), 0)
        yield
    finally:
        # Closing the descriptor releases the lock; the file stays (removing it would race with
        # a waiter that already opened it).
        os.close(fd)


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    except OSError:
        return "another process"
