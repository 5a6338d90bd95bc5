"""Archive checks in worker processes (imagebuilder/checkworkers.py): the same verdicts as in
the calling thread, a dead worker never weakens a check, and workers end with their parent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_archive_check import CONDA_CASES, OK, _ti, conda_zst, wheel

from imagebuilder.archive_check import check_archive
from imagebuilder.checkworkers import CheckPool, worker_count
from imagebuilder.errors import ImgbuildError, IntegrityError


def _verdict(fn):
    try:
        fn()
    except ImgbuildError as e:
        return type(e), e.message, e.hint, e.exit_code
    return None


def test_same_verdicts_as_in_thread(tmp_path):
    cases = {
        name: conda_zst(tmp_path / name, members)
        for name, (members, _) in CONDA_CASES.items()
        if not (tmp_path / name).mkdir()
    }
    (tmp_path / "ok").mkdir()
    cases["ok"] = conda_zst(tmp_path / "ok", [OK, _ti("lib/two", data=b"2")], "ok-1.0-0.conda")
    good = {"pkg/__init__.py": b"", "pkg-1.0.dist-info/METADATA": b"Name: pkg\n"}
    cases["wheel"] = wheel(tmp_path, good)
    with CheckPool(2) as pool:
        for name, path in sorted(cases.items()):
            want = _verdict(lambda p=path: check_archive(p, True))
            got = _verdict(lambda p=path: pool.check(p, True))
            assert got == want, name
            if name in CONDA_CASES:
                assert got is not None and issubclass(got[0], IntegrityError), name
        assert len(pool._all) == 2 and all(w.proc.poll() is None for w in pool._all)
        procs = [w.proc for w in pool._all]
    assert all(p.returncode == 0 for p in procs)  # closed: stdin ended, the workers left


def test_a_dead_worker_is_replaced_by_checking_here(tmp_path):
    bad = conda_zst(tmp_path, [_ti("bin/su", data=b"x", mode=0o4755)])
    with CheckPool(1) as pool:
        pool.check(conda_zst(tmp_path, [OK], "fine-1.0-0.conda"), True)
        pool._all[0].proc.kill()
        pool._all[0].proc.wait()
        with pytest.raises(IntegrityError, match="setuid"):
            pool.check(bad, True)


def test_no_workers_below_the_threshold(monkeypatch):
    monkeypatch.delenv("IMGBUILD_CHECK_WORKERS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert worker_count(1 << 20) == 0
    assert worker_count(200 << 20) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert worker_count(200 << 20) == 0
    monkeypatch.setenv("IMGBUILD_CHECK_WORKERS", "3")
    assert worker_count(0) == 3


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A killed cache (SIGKILL: the crash tests) must not leave workers behind, nor hold the
    pipes of whoever ran it (this test's capture would then never end)."""
    path = conda_zst(tmp_path, [OK], "fine-1.0-0.conda")
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from imagebuilder.checkworkers import CheckPool\n"
        "pool = CheckPool(2)\n"
        f"pool.check(Path({str(path)!r}), True)\n"
        "print(' '.join(str(w.proc.pid) for w in pool._all), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == -9, r.stderr
    pids = [int(x) for x in r.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (init reaps it)
