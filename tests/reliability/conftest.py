"""Fixtures of the reliability suite (issue 10); every test here is marked `reliability`.

- `record`: counts sub-cases for bench/faults.py: `record(category, case_id, ok, detail)`. A test
  that runs a table of cases in parallel records each; a test that records nothing counts as
  one case of its module's `CATEGORY`. A failed test always adds a failed case, so a failure is
  never hidden behind green sub-cases. Results go to $IMGBUILD_RELIABILITY_RESULTS/<worker>.json
  when that variable names a folder (bench/faults.py sets it).
- `hostile` (session): the hostile conda channel (ci/channel/hostile.py) and PyPI index
  (ci/pypi/hostile.py), built in this session's temp folder and served on 127.0.0.1, with the
  sentinel folder every hostile path aims at.
- `runner(tmp)`: an `imgbuild` runner (tests/conftest.py's ImgbuildRunner) for any folder, so a
  test can give each parallel sub-case its own HOME and store.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE))  # relhelp, relcategories, hostile_packs (unique names)

from relcategories import CATEGORIES  # noqa: E402 - found through the path set just above

# --------------------------------------------------------------------------- results

_lock = threading.Lock()
_results: list[dict] = []


def _add(category: str, case: str, ok: bool, detail: str = "", seconds: float = 0.0, test=""):
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    with _lock:
        _results.append(
            {
                "category": category,
                "case": case,
                "ok": bool(ok),
                "detail": detail[-2000:],
                "seconds": round(seconds, 2),
                "test": test,
            }
        )


@dataclass
class Recorder:
    test: str
    n: int = 0
    failed: list[str] = field(default_factory=list)

    def __call__(self, category: str, case: str, ok: bool, detail: str = "", seconds=0.0):
        self.n += 1
        if not ok:
            self.failed.append(f"{case}: {detail}")
        _add(category, case, ok, detail, seconds, self.test)

    def check(self) -> None:
        """Fail the test when a sub-case failed, listing every failed one."""
        if self.failed:
            pytest.fail(
                f"{len(self.failed)} of {self.n} cases failed:\n" + "\n\n".join(self.failed),
                pytrace=False,
            )


@pytest.fixture
def record(request) -> Recorder:
    rec = Recorder(request.node.nodeid)
    request.node._rel_recorder = rec
    return rec


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.reliability)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not Path(str(item.fspath)).resolve().is_relative_to(HERE):
        return
    failed = rep.failed
    done = (rep.when == "call") or (rep.when == "setup" and (rep.failed or rep.skipped))
    if rep.when == "teardown" and rep.failed:
        done = True
    if not done:
        return
    category = getattr(item.module, "CATEGORY", None)
    rec: Recorder | None = getattr(item, "_rel_recorder", None)
    if rep.skipped:
        # a skipped case is never counted as passing
        _add(category or CATEGORIES[0], item.nodeid, False, "skipped", test=item.nodeid)
        return
    if rec is not None and rec.n and not failed:
        return
    if rec is not None and rec.n and failed and rec.failed:
        return  # the failed sub-cases are recorded already
    if category is None:
        return
    detail = str(rep.longrepr)[-2000:] if failed else ""
    _add(category, item.nodeid, not failed, detail, rep.duration, item.nodeid)


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("IMGBUILD_RELIABILITY_RESULTS")
    if not out or not _results:
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    tmp = folder / f".{worker}.json.tmp"
    tmp.write_text(json.dumps({"worker": worker, "results": _results}, indent=1))
    tmp.replace(folder / f"{worker}.json")


# --------------------------------------------------------------------------- runners


def _root_conftest(config):
    for plugin in config.pluginmanager.get_plugins():
        if Path(getattr(plugin, "__file__", "") or "-").resolve() == ROOT / "tests" / "conftest.py":
            return plugin
    raise RuntimeError("tests/conftest.py is not loaded")


@pytest.fixture(scope="session")
def runner(request):
    """runner(folder) -> tests/conftest.py's ImgbuildRunner with HOME and store in that folder
    (session scope: module fixtures seed stores with it too)."""
    cls = _root_conftest(request.config).ImgbuildRunner

    def make(folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder)

    return make


# --------------------------------------------------------------------------- hostile packages


@dataclass(frozen=True)
class Hostile:
    channel_url: str
    index_url: str
    sentinel: Path
    cases: tuple[dict, ...]

    def by_id(self, cid: str) -> dict:
        return next(c for c in self.cases if c["id"] == cid)


def _serve(cmd: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    f = open(log, "w")  # noqa: SIM115 - the server keeps it
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=f, text=True, cwd=ROOT)
    line = p.stdout.readline().strip()
    if not line:
        p.kill()
        raise RuntimeError(f"{cmd} printed no address; see {log}")
    return p, line


@pytest.fixture(scope="session")
def hostile(tmp_path_factory) -> Hostile:
    base = tmp_path_factory.mktemp("hostile")
    sentinel = base / "sentinel"
    sentinel.mkdir()
    (sentinel / "victim.txt").write_text("original\n")
    builds = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / script),
                "--out",
                str(base / out),
                "--sentinel",
                str(sentinel),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for script, out in (("ci/channel/hostile.py", "channel"), ("ci/pypi/hostile.py", "pypi"))
    ]
    docs = []
    for b in builds:
        out, err = b.communicate(timeout=300)
        assert b.returncode == 0, err[-3000:]
        docs.append(json.loads(out.strip().splitlines()[-1]))
    conda, pypi = docs
    servers = []
    try:
        chan, line = _serve(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
             "--directory", conda["channel"]],
            base / "channel.log",
        )  # fmt: skip
        servers.append(chan)
        port = re.search(r"port (\d+)", line).group(1)  # "Serving HTTP on 127.0.0.1 port N ..."
        idx, index_url = _serve(
            [sys.executable, "-u", str(ROOT / "ci/pypi/serve.py"), "--root", pypi["index"],
             "--host", "127.0.0.1", "--port", "0", "--quiet"],
            base / "pypi.log",
        )  # fmt: skip
        servers.append(idx)
        yield Hostile(
            channel_url=f"http://127.0.0.1:{port}",
            index_url=index_url.rstrip("/"),
            sentinel=sentinel,
            cases=tuple(conda["cases"] + pypi["cases"]),
        )
    finally:
        for p in servers:
            p.terminate()
        for p in servers:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
