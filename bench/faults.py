#!/usr/bin/env python3
"""The reliability suite's figures (issue 10): cases tried / passed per category.

    python bench/faults.py                   run `pytest -m reliability` and print the table
    python bench/faults.py -n 2              the same with 2 xdist workers (CI's setting)
    python bench/faults.py --results DIR     only print the table of an earlier run's results

Categories: hostile archives (each archive x phase: cache, hydrate, bake; and hostile packs),
crash points (SIGKILL + rerun + checks), concurrency runs (each of 8 processes, and the final
verification), fault-proxy scenarios, bad inputs, secret checks. A case counts as passed only
when its test passed: a skipped test is a failed case. The rig is used when IMGBUILD_RIG_ENV
names one (python ci/rig.py up --dir DIR), else the suite starts its own.

Exit status: 0 when every case passed and pytest succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))
from relcategories import CATEGORIES  # noqa: E402 - the suite's own list


def run_suite(results: Path, workers: int | None, extra: list[str]) -> tuple[int, float]:
    cmd = [sys.executable, "-m", "pytest", "-m", "reliability", "tests/reliability", "-q",
           "-p", "no:cacheprovider", "--durations=10"]  # fmt: skip
    if workers:
        cmd += ["-n", str(workers)]
    cmd += extra
    env = {**os.environ, "IMGBUILD_RELIABILITY_RESULTS": str(results)}
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, env=env)
    return p.returncode, time.monotonic() - t0


def load(results: Path) -> list[dict]:
    rows: list[dict] = []
    for f in sorted(results.glob("*.json")):
        rows += json.loads(f.read_text())["results"]
    return rows


def table(rows: list[dict]) -> tuple[str, bool]:
    lines = [f"{'category':<24}{'tried':>7}{'passed':>8}{'failed':>8}  seconds (sum of cases)"]
    ok = bool(rows)
    tried_all = passed_all = 0
    for cat in CATEGORIES:
        mine = [r for r in rows if r["category"] == cat]
        passed = sum(r["ok"] for r in mine)
        secs = sum(r.get("seconds", 0) for r in mine)
        ok &= bool(mine) and passed == len(mine)
        tried_all += len(mine)
        passed_all += passed
        lines.append(f"{cat:<24}{len(mine):>7}{passed:>8}{len(mine) - passed:>8}  {secs:8.1f}")
    lines.append(f"{'total':<24}{tried_all:>7}{passed_all:>8}{tried_all - passed_all:>8}")
    failed = [r for r in rows if not r["ok"]]
    if failed:
        lines.append("\nfailed cases:")
        lines += [f"  [{r['category']}] {r['case']}: {r['detail'][:300]}" for r in failed]
    return "\n".join(lines), ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, help="print the table of this results folder only")
    ap.add_argument("-n", "--workers", type=int, default=None, help="pytest-xdist workers")
    ap.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    a = ap.parse_args()
    code, wall = 0, None
    if a.results:
        results = a.results
    else:
        results = Path(tempfile.mkdtemp(prefix="imgbuild-faults-"))
        code, wall = run_suite(results, a.workers, a.pytest_args)
    rows = load(results)
    text, ok = table(rows)
    print()
    print(text)
    if wall is not None:
        print(f"\npytest -m reliability: exit {code}, wall time {wall:.1f} s ({wall / 60:.1f} min)")
        print(f"results: {results}")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
