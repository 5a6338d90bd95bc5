"""Archive checks in worker processes, for caches big enough to pay for starting them.

A check (archive_check.py) is Python around C decompressors and sha256. In the cache's
download threads the checks contend for the GIL with each other and with the downloads and
uploads: on the 2-core bench (bench/cache.py, ~200 MB) the threads spent ~1.5 CPU-s more than
the same work done one step at a time. Here each check runs in one of a few long-lived
`python -m imagebuilder.checkworkers` processes (one per core, at most 4), started when the
first archive needs checking; a cache thread hands over a path and waits (no GIL held).

The protocol is one JSON line each way on the worker's stdin/stdout: `{"path", "deep"}` ->
`{"ok": true}` | `{"error": {type, message, hint, kind, exit_code}}` (an ImgbuildError,
raised again here as the same class) | `{"crash": text}` (anything else: a bug). A worker
reads until its stdin closes, so it ends with the process that started it, even a killed one,
and it never holds that process's stdout or stderr. A worker that cannot start or dies is
replaced by checking in the calling thread: slower, never weaker.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from imagebuilder import errors

# Below this many bytes to check, starting workers (~0.1 s of interpreter start and imports)
# costs more than contention does.
MIN_BYTES = 32 << 20


def worker_count(total_bytes: int) -> int:
    """How many workers a cache of total_bytes should use (0: check in the calling thread).
    IMGBUILD_CHECK_WORKERS sets it (tests use it to send small envs through workers)."""
    forced = os.environ.get("IMGBUILD_CHECK_WORKERS", "")
    if forced.isdigit():
        return int(forced)
    cores = os.cpu_count() or 1
    return min(cores, 4) if cores >= 2 and total_bytes >= MIN_BYTES else 0


class CheckPool:
    """`check(path)` in a worker process when there are any, else in this thread."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._started = False

    def __enter__(self) -> CheckPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check(self, path: Path, deep: bool) -> None:
        if self.workers and self._start():
            w = self._idle.get()
            try:
                reply = w.ask(path, deep)
            finally:
                self._idle.put(w)
            if reply is not None:
                _raise(reply, path)
                return
        from imagebuilder.archive_check import check_archive

        check_archive(path, deep)

    def _start(self) -> bool:
        with self._lock:
            if not self._started:
                self._started = True
                for _ in range(self.workers):
                    w = _Worker.start()
                    if w is not None:
                        self._all.append(w)
                        self._idle.put(w)
            return bool(self._all)

    def close(self) -> None:
        for w in self._all:
            w.close()
        self._all.clear()


class _Worker:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.dead = False

    @classmethod
    def start(cls) -> _Worker | None:
        # the package's own folder first: the worker imports this imagebuilder, however the
        # parent found it
        here = str(Path(__file__).resolve().parents[1])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
        }
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "imagebuilder.checkworkers"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                text=True,
                bufsize=1,
            )
        except OSError:
            return None
        return cls(proc)

    def ask(self, path: Path, deep: bool) -> dict | None:
        """The worker's reply, or None when it is gone (the caller checks in-thread)."""
        if self.dead:
            return None
        try:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps({"path": str(path), "deep": deep}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            return json.loads(line)
        except (OSError, ValueError):
            self.dead = True
            self.close()
            return None

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _raise(reply: dict, path: Path) -> None:
    if reply.get("ok"):
        return
    err = reply.get("error")
    if isinstance(err, dict):
        cls = getattr(errors, str(err.get("type")), None)
        if cls is None:
            from imagebuilder import archive_check

            cls = getattr(archive_check, str(err.get("type")), None)
        message, hint = str(err.get("message", "")), str(err.get("hint", ""))
        if isinstance(cls, type) and issubclass(cls, errors.ImgbuildError):
            if cls is errors.ImgbuildError:
                raise errors.ImgbuildError(message, hint, err["kind"], err["exit_code"])
            raise cls(message, hint)
    raise RuntimeError(f"checking {path.name} failed: {reply.get('crash') or reply}")


def _serve() -> int:
    from imagebuilder.archive_check import check_archive

    for line in sys.stdin:
        req = json.loads(line)
        try:
            check_archive(Path(req["path"]), bool(req["deep"]))
            reply: dict = {"ok": True}
        except errors.ImgbuildError as e:
            reply = {
                "error": {
                    "type": type(e).__name__,
                    "message": e.message,
                    "hint": e.hint,
                    "kind": e.kind,
                    "exit_code": e.exit_code,
                }
            }
        except Exception as e:  # a bug: reported by the parent, with what happened
            reply = {"crash": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
