"""Bake benchmark (not run in CI): median of N on a ~400 MB data-science env made of the
bench channel's big packages (`python ci/channel/build.py --bench`).

    python bench/bake.py [--runs 3] [--keep DIR]

Prints, each figure against its goal (issue 6):
 (a) layer cache cold: build time vs raw `tar | zstd -3 -T0` of the staged prefix (<= 1.5x);
     with gzip, vs a naive single layer `tar | gzip -6` (<= 0.7x);
 (b) every layer known: build time (<= 0.5 s);
 (c) one package changed (tqdm 4.66.1 -> 4.66.2): rebuild time (<= 2 s);
 (d) bytes shared between those two envs (>= 95%).
Build = `bake()` (stage what is missing, write missing layers to the store, make the image
value) in a process set up as the CLI's is (py-rattler runs in it; it leaves through
os._exit); (b) also shows the time to write the image to a fresh oci: folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "oci"))

NAMES = ["python", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "tqdm"]


def channel() -> Path:
    r = subprocess.run(
        [sys.executable, str(ROOT / "ci/channel/build.py"), "--bench"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(r.stdout.strip().splitlines()[-1])


def tqdm_record(ch: Path, version: str):
    import json

    rd = json.loads((ch / "linux-64" / "repodata.json").read_text())
    for key in ("packages", "packages.conda"):
        for fn, rec in rd.get(key, {}).items():
            if rec["name"] == "tqdm" and rec["version"] == version:
                return (f"linux-64/{fn}", rec)
    raise SystemExit(f"bench channel has no tqdm {version}")


CPU: dict[str, list[float]] = {}  # CPU seconds (this process and children) per measurement


def _cpu() -> float:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def timed(fn, name: str = "") -> float:
    t, c = time.perf_counter(), _cpu()
    fn()
    if name:
        CPU.setdefault(name, []).append(_cpu() - c)
    return time.perf_counter() - t


def shell(cmd: str, name: str = "") -> float:
    return timed(lambda: subprocess.run(["bash", "-c", cmd], check=True), name)


def forget_layers(store) -> None:
    """Drop layer records and blobs: the layer cache goes cold."""
    for sub in ("layers", "blobs"):
        d = Path(store.root) / sub
        if not d.exists():
            continue
        for p in list(d.rglob("*")):
            if p.is_file():
                p.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temp one)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="imgbuild-bench-bake-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("IMGBUILD_CACHE_DIR", str(work / "cache"))

    from conftest import EnvFactory

    from imagebuilder.install.plan import allow_inprocess

    allow_inprocess()  # as imgbuild's CLI does: this process leaves through os._exit

    from imagebuilder.bake import BakeOptions, bake
    from imagebuilder.oci.layout import LayoutSink
    from imagebuilder.stage import stage_files
    from imagebuilder.store.local import LocalStore

    ch = channel()
    store = LocalStore(work / "store")
    factory = EnvFactory(ch, work)
    env_a = factory.make(store, NAMES, replace={"tqdm": tqdm_record(ch, "4.66.1")})
    env_b = factory.make(store, NAMES, replace={"tqdm": tqdm_record(ch, "4.66.2")})
    zstd, gzip = BakeOptions(), BakeOptions(compression="gzip")

    # The staged prefix for the baselines (and a warm rattler package cache for every build).
    staged = work / "staged"
    if not staged.exists():
        # every conda package linked: a whole prefix in that folder, .pyc included
        stage_files(env_a, list(env_a.packages), store, staged, pyc=True, in_place=False).compile()
    size = int(
        subprocess.run(["du", "-sb", str(staged)], capture_output=True, text=True).stdout.split()[0]
    )
    print(f"env: {len(env_a.packages)} packages, staged prefix {size / 1e6:.0f} MB", flush=True)

    # Untimed: this machine's package caches (rattler's, and the extracted copies packages
    # are read from in place) warm, as the baseline is given its staged prefix; what each
    # timed build finds cold is the layer cache (forget_layers).
    bake([env_a], store, zstd)
    split: list[dict] = []  # stage/layers seconds of each cold build (zstd, gzip, zstd, ...)
    res: dict[str, list[float]] = {
        k: [] for k in ("zstd", "tar_zstd", "gzip", "tar_gzip", "known", "known_write", "changed")
    }
    for i in range(args.runs):
        forget_layers(store)
        res["zstd"].append(timed(lambda: split.append(bake([env_a], store, zstd).timings), "zstd"))
        res["tar_zstd"].append(
            shell(f"tar -C {staged} -cf - . | zstd -3 -T0 -q -c > /dev/null", "tar_zstd")
        )
        forget_layers(store)
        res["gzip"].append(timed(lambda: split.append(bake([env_a], store, gzip).timings), "gzip"))
        res["tar_gzip"].append(
            shell(f"tar -C {staged} -cf - . | gzip -6 -c > /dev/null", "tar_gzip")
        )
        forget_layers(store)
        baked_a = bake([env_a], store, zstd)
        res["known"].append(timed(lambda: bake([env_a], store, zstd)))
        out = work / f"oci-{i}"

        def write(out=out):
            b = bake([env_a], store, zstd)
            LayoutSink(out).write(b.artifact, b.tags)

        res["known_write"].append(timed(write))
        shutil.rmtree(out, ignore_errors=True)
        baked_b = None

        def rebuild():
            nonlocal baked_b
            baked_b = bake([env_b], store, zstd)

        res["changed"].append(timed(rebuild))
        assert baked_b.layers_built == 1, baked_b.layers_built
        # (B's new layer is forgotten again by forget_layers() at the top of the next run)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in res.items()), flush=True)

    med = {k: statistics.median(v) for k, v in res.items()}
    # Ratios per run, then their median: the load of a shared machine changes between runs
    # more than within one (build and baseline run back to back).
    rz = statistics.median(a / b for a, b in zip(res["zstd"], res["tar_zstd"], strict=True))
    rg = statistics.median(a / b for a, b in zip(res["gzip"], res["tar_gzip"], strict=True))
    st_z = statistics.median(t["stage"] for t in split[0::2])
    ly_g = statistics.median(t["layers"] for t in split[1::2])
    ly_z = statistics.median(t["layers"] for t in split[0::2])
    la = {layer.descriptor.digest: layer.descriptor.size for layer in baked_a.artifact.layers}
    lb = {layer.descriptor.digest: layer.descriptor.size for layer in baked_b.artifact.layers}
    shared = sum(s for d, s in lb.items() if d in la) / sum(lb.values())
    rows = [
        (
            "(a) cold build, zstd",
            med["zstd"],
            f"tar|zstd -3 -T0 {med['tar_zstd']:.2f}s",
            rz,
            "<= 1.5x",
        ),
        (
            "(a) cold build, gzip",
            med["gzip"],
            f"tar|gzip -6 {med['tar_gzip']:.2f}s",
            rg,
            "<= 0.7x",
        ),
        (
            "(b) every layer known",
            med["known"],
            f"+ write oci: {med['known_write']:.2f}s",
            None,
            "<= 0.5 s",
        ),
        ("(c) one package changed", med["changed"], "", None, "<= 2 s"),
    ]
    print(
        f"\nbake bench, median of {args.runs}, {size / 1e6:.0f} MB staged, {os.cpu_count()} cores"
    )
    for name, t, base, ratio, goal in rows:
        r = f"{ratio:.2f}x" if ratio is not None else ""
        print(f"  {name:26s} {t:7.2f}s  {base:28s} {r:7s} goal {goal}")
    print(f"  {'(d) bytes shared':26s} {shared * 100:6.1f}%  {'':28s} {'':7s} goal >= 95%")
    print(f"  layers: {len(lb)} (base scratch), blob bytes {sum(lb.values()) / 1e6:.0f} MB zstd")
    print(f"  cold zstd build = staging {st_z:.2f}s + layers {ly_z:.2f}s; gzip layers {ly_g:.2f}s")
    print("  ratios: median of per-run ratios (build and baseline back to back)")
    cpu = {k: statistics.median(v) for k, v in CPU.items()}
    print(
        f"  CPU seconds (user+sys, all threads and children): zstd build {cpu['zstd']:.1f} vs "
        f"tar|zstd {cpu['tar_zstd']:.1f} ({cpu['zstd'] / cpu['tar_zstd']:.2f}x); gzip build "
        f"{cpu['gzip']:.1f} vs tar|gzip {cpu['tar_gzip']:.1f} ({cpu['gzip'] / cpu['tar_gzip']:.2f}x)"
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
