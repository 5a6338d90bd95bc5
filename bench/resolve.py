#!/usr/bin/env python3
"""How much does `imgbuild resolve --dry-run` add to the solvers it drives?

    python bench/resolve.py [--runs 5] [--skip-importtime] [--realtime]

Whole-process wall time, median of N (runs interleaved, caches warm), on the rig's channel and
index (from IMGBUILD_RIG_ENV, else a rig of our own is started with ci/rig.py and stopped):

- conda:  imgbuild resolve --conda 'tinyfoo>=1' --arch linux-64 --dry-run
          vs a raw py-rattler script doing the same solve (same virtual packages)
- pypi:   imgbuild resolve --pypi requests --python-from-base --python 3.11 --dry-run
          vs raw `uv pip compile` with the same target and output format
- mixed:  imgbuild resolve --conda python --conda six --pypi imgb-uses-six --pypi requests
          vs the raw rattler script + raw uv pip compile, run one after the other

Prints, per case, both medians, the ratio and the absolute overhead; goal: overhead <= 200 ms
and ratio <= 1.25x. Then the import time of the CLI path (`python -X importtime`), split into
imagebuilder's own modules and what they pull in.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RAW_RATTLER = textwrap.dedent(
    """
    import asyncio, os, sys
    import rattler
    from rattler import BuildString, Channel, Gateway, GenericVirtualPackage, PackageName, Version

    VPS = [("__archspec", "1", "x86_64"), ("__glibc", "2.28", "0"), ("__linux", "5.10", "0"),
           ("__unix", "0", "0")]

    async def main(channel, cache, specs):
        vps = [GenericVirtualPackage(PackageName(n), Version(v), BuildString(b)) for n, v, b in VPS]
        records = await rattler.solve([Channel(channel)], specs, gateway=Gateway(cache_dir=cache),
                                      platforms=["linux-64", "noarch"], virtual_packages=vps)
        for r in records:
            print(r.file_name, r.sha256.hex() if r.sha256 else "")

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
    sys.stdout.flush()
    os._exit(0)  # py-rattler may crash at interpreter exit (LOCAL-SERVICES.md)
    """
)


def rig_urls(tmp: Path) -> tuple[dict[str, str], Path | None]:
    def read(path):
        out = {}
        for line in Path(path).read_text().splitlines():
            k, sep, v = line.strip().removeprefix("export ").partition("=")
            if sep:
                out[k] = v.strip().strip("'\"")
        return out

    env_file = os.environ.get("IMGBUILD_RIG_ENV")
    if env_file and Path(env_file).is_file():
        values = read(env_file)
        if values.get("IMGBUILD_RIG_CHANNEL_URL") and values.get("IMGBUILD_RIG_INDEX_URL"):
            return values, None
    own = tmp / "rig"
    print("starting a rig (channel, pypi) with ci/rig.py ...", file=sys.stderr)
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "ci/rig.py"),
            "up",
            "--dir",
            str(own),
            "--only",
            "channel,pypi",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return read(own / "rig.env"), own


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree)."""
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True)
    wall = time.perf_counter() - t0
    after = os.times()
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr.decode()[-2000:]}")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def run_case(name, ours, raw, env, cwd, runs) -> dict:
    """Interleave: warm-up of both, then ours/raw alternately, so load changes hit both."""
    for cmds in (ours, raw):
        for c in cmds:
            timed(c, env, cwd)
    ow, oc, rw, rc = [], [], [], []
    for _ in range(runs):
        w = c = 0.0
        for cmd in ours:
            dw, dc = timed(cmd, env, cwd)
            w, c = w + dw, c + dc
        ow.append(w)
        oc.append(c)
        w = c = 0.0
        for cmd in raw:
            dw, dc = timed(cmd, env, cwd)
            w, c = w + dw, c + dc
        rw.append(w)
        rc.append(c)
    med = statistics.median
    return {
        "case": name,
        "ours": med(ow),
        "raw": med(rw),
        "ours_cpu": med(oc),
        "raw_cpu": med(rc),
    }


def importtime(cmd: list[str], env, cwd) -> list[tuple[str, int, int]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd[1:]],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        rows.append((parts[2].rstrip(), int(parts[0]), int(parts[1])))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-importtime", action="store_true")
    ap.add_argument(
        "--realtime",
        action="store_true",
        help="time under SCHED_FIFO (root): on a machine busy with other work, both sides then "
        "run as on an idle one (the rig's servers are not boosted)",
    )
    args = ap.parse_args()
    if args.realtime:  # inherited by every child we time: theirs and ours alike
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))

    tmp = Path(tempfile.mkdtemp(prefix="imgb-bench-resolve-"))
    values, own = rig_urls(tmp)
    channel, index = values["IMGBUILD_RIG_CHANNEL_URL"], values["IMGBUILD_RIG_INDEX_URL"]
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGBUILD_", "UV_"))}
    env.update(HOME=str(home), IMGBUILD_CACHE_DIR=str(home / "cache"), UV_CACHE_DIR=str(tmp / "uv"))
    # As installed code runs: with bytecode (some shells set PYTHONDONTWRITEBYTECODE, which
    # would make every run compile imagebuilder's sources). Kept out of the repo.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    script = tmp / "raw_rattler.py"
    script.write_text(RAW_RATTLER)
    from uv import find_uv_bin

    uv = find_uv_bin()
    (tmp / "requests.in").write_text("requests\n")
    (tmp / "mixed.in").write_text("imgb-uses-six\nrequests\n")

    imgbuild = [sys.executable, "-m", "imagebuilder", "resolve", "--dry-run", "--json", "-q",
                "--arch", "linux-64"]  # fmt: skip
    raw_solve = [sys.executable, str(script), channel, str(tmp / "raw-repodata")]
    uv_compile = [uv, "pip", "compile", "--quiet", "--no-config", "--format", "pylock.toml",
                  "--python-platform", "x86_64-manylinux_2_28", "--index-url", index]  # fmt: skip
    cases = [
        (
            "conda (rattler)",
            [[*imgbuild, "--conda", "tinyfoo>=1", "-c", channel]],
            [[*raw_solve, "tinyfoo>=1"]],
        ),
        (
            "pypi (uv)",
            [
                [
                    *imgbuild,
                    "--pypi",
                    "requests",
                    "--python-from-base",
                    "--python",
                    "3.11",
                    "--index-url",
                    index,
                ]
            ],  # fmt: skip
            [[*uv_compile, "--python-version", "3.11", "requests.in", "-o", "pylock.toml"]],
        ),
        (
            "mixed (rattler+uv)",
            [
                [
                    *imgbuild,
                    "--conda",
                    "python",
                    "--conda",
                    "six",
                    "-c",
                    channel,
                    "--pypi",
                    "imgb-uses-six",
                    "--pypi",
                    "requests",
                    "--index-url",
                    index,
                ]
            ],  # fmt: skip
            [
                [*raw_solve, "python", "six"],
                [*uv_compile, "--python-version", "3.11.7", "mixed.in", "-o", "pylock.toml"],
            ],
        ),
    ]
    load = os.getloadavg()[0]
    print(f"bench/resolve: median of {args.runs}, warm caches, {os.cpu_count()} CPUs, "
          f"load average {load:.1f}{', SCHED_FIFO' if args.realtime else ''}")  # fmt: skip
    if load > (os.cpu_count() or 1) and not args.realtime:
        print("  (the machine is busy: wall times are inflated; CPU times are steadier)")
    header = f"{'case':<20} {'imgbuild':>9} {'raw':>9} {'ratio':>7} {'overhead':>9}   cpu: {'imgbuild':>8} {'raw':>8} {'overhead':>9}"  # noqa: E501
    print(header)
    results = []
    for name, ours, raw in cases:
        r = run_case(name, ours, raw, env, tmp, args.runs)
        results.append(r)
        print(
            f"{name:<20} {r['ours'] * 1000:>7.0f}ms {r['raw'] * 1000:>7.0f}ms "
            f"{r['ours'] / r['raw']:>6.2f}x {(r['ours'] - r['raw']) * 1000:>7.0f}ms"
            f"   cpu: {r['ours_cpu'] * 1000:>6.0f}ms {r['raw_cpu'] * 1000:>6.0f}ms "
            f"{(r['ours_cpu'] - r['raw_cpu']) * 1000:>7.0f}ms"
        )
    print("goal: overhead <= 200 ms and ratio <= 1.25x")

    if not args.skip_importtime:
        rows = importtime(cases[0][1][0], env, tmp)
        total = sum(s for _, s, _ in rows)
        mine = [s for n, s, _ in rows if n.strip().startswith("imagebuilder")]
        ours_total = sum(mine)
        top = sorted(rows, key=lambda r: -r[2])
        print(f"\nimport time of `imgbuild resolve --conda ... --dry-run`: {total / 1000:.0f} ms "
              f"in all, {ours_total / 1000:.0f} ms in imagebuilder's own modules (self time)")  # fmt: skip
        print("largest cumulative imports:")
        shown = 0
        for name, _self_us, cum_us in top:
            if name.startswith("  ") and shown >= 6:
                continue
            print(f"  {cum_us / 1000:>7.1f} ms  {name.strip()}")
            shown += 1
            if shown >= 12:
                break
    if own is not None:
        subprocess.run([sys.executable, str(ROOT / "ci/rig.py"), "down", "--dir", str(own)],
                       stdout=subprocess.DEVNULL)  # fmt: skip


if __name__ == "__main__":
    main()
