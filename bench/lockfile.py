"""Lock-file benchmark (not run in CI): median of N, in one run, on the rig's mixed env
(conda tinybar + python 3.11, PyPI imgb-uses-six + requests: 23 packages).

    python bench/lockfile.py [--runs 5]      # uses $IMGBUILD_RIG_ENV, else starts a rig

Prints, each as a median and a ratio against its baseline:
 (a) import: `resolve --lockfile conda-lock.yml --dry-run` vs `resolve --dry-run` of the
     request (baseline: the solve it replaces; goal <= 0.7x);
 (b) export: `export --format F` for each format (baseline: `show --json` of the same env,
     i.e. the cost of starting the CLI and reading the record; goal <= 1.5x);
 (c) sbom: `sbom ENV` vs `show --json` (goal <= 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("conda-lock", "pixi", "explicit", "requirements", "pylock")


def rig_env() -> tuple[dict[str, str], Path | None]:
    given = os.environ.get("IMGBUILD_RIG_ENV")
    started = None
    if not given or not Path(given).is_file():
        started = Path(tempfile.mkdtemp(prefix="imgbuild-bench-rig-"))
        subprocess.run([sys.executable, str(ROOT / "ci/rig.py"), "up", "--dir", str(started)],
                       check=True, capture_output=True)  # fmt: skip
        given = str(started / "rig.env")
    env = {}
    for line in Path(given).read_text().splitlines():
        k, sep, v = line.partition("=")
        if sep:
            env[k.strip()] = v.strip()
    return env, started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    rig, started = rig_env()
    tmp = Path(tempfile.mkdtemp(prefix="imgbuild-bench-lock-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("IMGBUILD_", "UV_", "PIP_"))},
        "HOME": str(tmp / "home"),
        "IMGBUILD_STORE": str(tmp / "store"),
        "IMGBUILD_RUNTIME_CACHE": "0",
        # with bytecode, as installed code runs (some shells set PYTHONDONTWRITEBYTECODE: every
        # run would then compile every module it imports); kept out of the repo
        "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def cli(*args) -> str:
        p = subprocess.run([sys.executable, "-m", "imagebuilder", *map(str, args)], env=env,
                           capture_output=True, text=True, cwd=tmp)  # fmt: skip
        if p.returncode:
            raise SystemExit(f"imgbuild {' '.join(map(str, args))}: {p.stderr[-2000:]}")
        return p.stdout

    def median(*args) -> float:
        times = []
        for _ in range(a.runs):
            t = time.perf_counter()
            cli(*args)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    try:
        request = ["--conda", "tinybar", "--conda", "python=3.11", "--pypi", "imgb-uses-six",
                   "--pypi", "requests", "-c", rig["IMGBUILD_RIG_CHANNEL_URL"], "--index-url",
                   rig["IMGBUILD_RIG_INDEX_URL"], "--arch", "linux-64"]  # fmt: skip
        d = json.loads(cli("resolve", *request, "--json", "-q"))
        ref = f"{d['req_id'][:16]}:{d['full_id'][:16]}"
        lock = tmp / "conda-lock.yml"
        cli("export", ref, "--format", "conda-lock", "-o", lock)
        cli("resolve", "--dry-run", *request, "-q")  # warm the repodata cache
        solve = median("resolve", "--dry-run", "--force", *request, "-q")
        imp = median("resolve", "--lockfile", lock, "--arch", "linux-64", "--dry-run", "-q")
        show = median("show", ref, "--json")
        print(f"packages: {len(d['packages'])}, runs: {a.runs} (medians)")
        print(f"(a) import {imp:.2f}s vs solve {solve:.2f}s: {imp / solve:.2f}x (goal <= 0.7x)")
        for fmt in FORMATS:
            t = median("export", ref, "--format", fmt)
            print(
                f"(b) export {fmt:<12} {t:.2f}s vs show {show:.2f}s: {t / show:.2f}x (goal <= 1.5x)"
            )
        t = median("sbom", ref)
        print(f"(c) sbom {t:.2f}s vs show {show:.2f}s: {t / show:.2f}x (goal <= 2x)")
    finally:
        if started is not None:
            subprocess.run([sys.executable, str(ROOT / "ci/rig.py"), "down", "--dir", str(started)],
                           capture_output=True)  # fmt: skip


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
