"""The rig folder: persistent state, processes started in it, ports, locks.

State lives in DIR/state.json: per service the PIDs it started (with their kernel start time,
so a recycled PID is never mistaken for ours), its ports and its environment keys. Every PID
is written to disk as soon as the process exists, so `down` can stop what a failed `up` left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "ci" / "cache"

# Executables a service may leave behind outside its own session (conmon daemonizes).
# `down` ends such processes only when their command line names the rig folder.
STRAY_NAMES = {"conmon", "podman", "runc", "catatonit", "weed", "docker-registry"}


class RigError(RuntimeError):
    pass


# -- processes -------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Kernel start time of `pid` (clock ticks since boot), None if there is no such process."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, start: int | None = None) -> bool:
    fields = _stat(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return start is None or int(fields[19]) == start


def session_members(sid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[3]) == sid and fields[0] not in ("Z", "X"):
                out.append(int(entry.name))
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def strays(folder: Path) -> list[int]:
    """Processes of known service executables whose command line names `folder`."""
    mine = {os.getpid(), os.getppid()}
    prefix = str(folder)
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        args = cmdline(int(entry.name))
        if not args or Path(args[0]).name not in STRAY_NAMES:
            continue
        if any(a == prefix or prefix + "/" in a for a in args) and is_alive(int(entry.name)):
            out.append(int(entry.name))
    return out


def terminate(pids: list[int], grace: float = 10.0) -> list[int]:
    """SIGTERM `pids` (and their process groups), then SIGKILL what is left; return survivors."""

    def signal_all(sig: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def wait(seconds: float) -> list[int]:
        deadline = time.monotonic() + seconds
        while True:
            for pid in pids:  # reap our own children, if any
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
            left = [p for p in pids if is_alive(p)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    signal_all(signal.SIGTERM)
    left = wait(grace)
    if left:
        pids = left
        signal_all(signal.SIGKILL)
        left = wait(5.0)
    return left


# -- small helpers ---------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_taken: set[int] = set()
_taken_lock = threading.Lock()


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(prefer: int | None = None, also_free: tuple[int, ...] = ()) -> int:
    """A free TCP port on 127.0.0.1 (`prefer` if it is free). `also_free`: offsets that must be
    free too (e.g. seaweedfs' gRPC port = port + 10000)."""
    with _taken_lock:
        candidates = [prefer] if prefer else []
        for _ in range(200):
            port = candidates.pop() if candidates else _ephemeral()
            if port in _taken or not all(port_is_free(port + o) for o in (0, *also_free)):
                continue
            if any(port + o > 65535 for o in also_free):
                continue
            _taken.add(port)
            return port
    raise RigError("no free port found on 127.0.0.1")


def _ephemeral() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(
    url: str, timeout: float = 2.0, headers: dict[str, str] | None = None
) -> int | None:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command, raising RigError with its output when it fails."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    p = subprocess.run(argv, **kw)
    if p.returncode != 0:
        out = ((p.stdout or "") + (p.stderr or "")).strip()[-3000:]
        raise RigError(f"`{' '.join(map(str, argv))}` failed ({p.returncode}):\n{out}")
    return p


# -- the rig folder --------------------------------------------------------------------------


class Rig:
    """One rig folder. Thread-safe: services start in parallel threads."""

    def __init__(self, folder: Path | str):
        self.dir = Path(folder).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        self._lock = threading.RLock()
        self.state_file = self.dir / "state.json"
        self.state: dict = {"services": {}, "secrets": {}}
        if self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())
            self.state.setdefault("services", {})
            self.state.setdefault("secrets", {})

    # state
    def save(self) -> None:
        with self._lock:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, self.state_file)

    def service(self, name: str) -> dict:
        with self._lock:
            return self.state["services"].setdefault(name, {})

    def update(self, name: str, **data) -> None:
        with self._lock:
            self.service(name).update(data)
            self.save()

    def forget(self, name: str) -> None:
        with self._lock:
            self.state["services"].pop(name, None)
            self.save()

    def secret(self, name: str, nbytes: int = 12) -> str:
        """A random secret that stays the same for the life of this rig folder."""
        with self._lock:
            if name not in self.state["secrets"]:
                self.state["secrets"][name] = secrets.token_hex(nbytes)
                self.save()
            return self.state["secrets"][name]

    def log(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    def port(self, service: str, key: str = "port", also_free: tuple[int, ...] = ()) -> int:
        """A free port, the one `service` had before when it is still free (stable addresses
        across restarts keep registries.conf and clients valid)."""
        return free_port(self.service(service).get(key), also_free)

    # processes
    def spawn(
        self,
        service: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log: str | None = None,
    ) -> int:
        logfile = self.log(log or service)
        with open(logfile, "ab") as out:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=cwd,
            )
        with self._lock:
            procs = self.service(service).setdefault("pids", [])
            procs.append([p.pid, start_time(p.pid)])
            self.save()
        return p.pid

    def alive(self, service: str) -> bool:
        procs = self.service(service).get("pids", [])
        return bool(procs) and all(is_alive(pid, st) for pid, st in procs)

    def pids(self, service: str | None = None) -> list[int]:
        """Live processes of one service (or all): the recorded PIDs and their session members."""
        names = [service] if service else list(self.state["services"])
        out: set[int] = set()
        for name in names:
            for pid, st in self.state["services"].get(name, {}).get("pids", []):
                if is_alive(pid, st):
                    out.add(pid)
                    out.update(session_members(pid))
        return sorted(out)

    def stop(self, service: str) -> list[int]:
        left = terminate(self.pids(service))
        with self._lock:
            self.service(service)["pids"] = []
            self.save()
        return left

    def wait_for(
        self,
        service: str,
        check: Callable[[], bool],
        what: str,
        timeout: float = 30.0,
        log: str | None = None,
    ) -> None:
        """Poll `check` until true; fail early (with the log tail) if the service died."""
        deadline = time.monotonic() + timeout
        while not check():
            if not self.alive(service):
                raise RigError(
                    f"{service} exited while waiting for {what}:\n{tail(self.log(log or service))}"
                )
            if time.monotonic() > deadline:
                raise RigError(
                    f"{service}: timed out after {timeout:.0f}s waiting for {what}:\n"
                    f"{tail(self.log(log or service))}"
                )
            time.sleep(0.05)
