#!/usr/bin/env python3
"""Hydrate benchmark: `imgbuild create` against the raw tools, and pack vs per package.

    python bench/hydrate.py [--runs 5] [--big]

Env: conda python 3.11 + tinyfoo, six, imgb-cli (+ numpy, scipy, pandas, scikit-learn,
matplotlib from the bench channel with --big, ~400 MB) and PyPI imgb-hello, imgb-uses-six,
requests, setuptools, attrs, packaging, wheel; resolved once into a local store from the rig's
channel (built by ci/channel/build.py) and index (ci/pypi/build.py, served here).

Prints, median of N (runs interleaved so load on the machine hits both sides alike):
 1. warm: `imgbuild create` (whole CLI process: store lookup, verification, install, marker,
    rename) with a warm package cache, vs the baseline: a python process running raw
    `rattler.install` of the same records from a warm cache, plus `uv pip install --offline
    --no-deps` of the same wheels with a warm uv cache. Ratio goal <= 1.2x.
 2. per package vs pack, warm (local caches hold everything) and cold (fresh HOME: nothing
    extracted or downloaded yet — what a remote task sees), plus pack size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CONDA = ["python 3.11.*", "tinyfoo", "six", "imgb-cli"]
BIG = ["numpy", "scipy", "pandas", "scikit-learn", "matplotlib"]
PYPI = ["imgb-hello", "imgb-uses-six", "requests", "setuptools", "attrs", "packaging", "wheel"]

RAW_RATTLER = r"""
import asyncio, json, os, sys, tempfile
import rattler
from rattler import PrefixRecord, RepoDataRecord
recs, prefix, cache = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
out, tmp = [], tempfile.mkdtemp()
for i, d in enumerate(recs):
    p = os.path.join(tmp, f"{i}.json")
    json.dump(dict(d, files=[], paths_data={"paths_version": 1, "paths": []}), open(p, "w"))
    out.append(RepoDataRecord(PrefixRecord.from_path(p), d["fn"], d["url"], d.get("channel", "")))
asyncio.run(rattler.install(out, prefix, cache_dir=cache, installed_packages=[],
                            execute_link_scripts=False, show_progress=False))
sys.stdout.flush(); os._exit(0)
"""


def sh(cmd, env=None, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return p


CPU: dict[int, float] = {}  # id(list of times) -> CPU seconds, filled by timed()


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmds, env=None, cpu: list | None = None) -> float:
    """Wall seconds of running cmds one after the other; their CPU seconds go into cpu."""
    c0, t0 = _children_cpu(), time.perf_counter()
    for c in cmds:
        sh(c, env)
    if cpu is not None:
        cpu.append(_children_cpu() - c0)
    return time.perf_counter() - t0


def last_line(p: subprocess.CompletedProcess) -> str:
    return p.stdout.strip().splitlines()[-1]


def serve_index(index_dir: str):
    p = subprocess.Popen(
        [PY, str(ROOT / "ci/pypi/serve.py"), "--root", index_dir, "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    return p, p.stdout.readline().strip()


def cli_env(home: Path, store: Path) -> dict:
    drop = ("IMGBUILD_", "AWS_", "METAFLOW_", "UV_", "CONDA_")
    e = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    e.update(HOME=str(home), IMGBUILD_STORE=str(store), IMGBUILD_RUNTIME_CACHE="0")
    # with bytecode, as installed code runs (a shell's PYTHONDONTWRITEBYTECODE would make every
    # run compile every module); kept out of the repo
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e["PYTHONPYCACHEPREFIX"] = str(home.parent / "pycache")
    return e


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def runtime_wheels() -> Path:
    """This imgbuild's runtime wheels for linux-64 / cp3XY (pip download, cached in ci/cache)."""
    from importlib.metadata import version

    from imagebuilder.runtime import DISTS

    out = ROOT / "ci/cache/runtime-wheels"
    pins = [f"{d}=={version(d)}" for d in DISTS]
    names = [p.replace("-", "_").replace("==", "-") for p in pins]
    have = [f.name for f in out.glob("*.whl")] if out.is_dir() else []
    if not all(any(h.startswith(n) for h in have) for n in names):
        xy = f"{sys.version_info.major}.{sys.version_info.minor}"
        sh([PY, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:"]
           + ["--python-version", xy, "--platform", "manylinux2014_x86_64", "-d", out, *pins])  # fmt: skip
    return out


def rig_s3() -> dict | None:
    """Store env for an S3 store on the rig's seaweedfs (IMGBUILD_RIG_ENV), else None."""
    path = os.environ.get("IMGBUILD_RIG_ENV")
    if not path or not Path(path).is_file():
        return None
    rig = dict(ln.split("=", 1) for ln in Path(path).read_text().splitlines() if "=" in ln)
    url = f"s3://{rig['IMGBUILD_RIG_S3_BUCKET']}/bench-hydrate-{os.getpid()}-{int(time.time())}"
    return {
        "IMGBUILD_STORE": url,
        "IMGBUILD_S3_ENDPOINT_URL": rig["IMGBUILD_RIG_S3_ENDPOINT"],
        "AWS_ACCESS_KEY_ID": rig["IMGBUILD_RIG_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": rig["IMGBUILD_RIG_S3_SECRET_KEY"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big", action="store_true", help="add the ~400 MB data-science packages")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (for profiling)")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-hydrate-"))
    print(f"work folder {work}", file=sys.stderr)
    server = None
    try:
        channel = last_line(sh([PY, ROOT / "ci/channel/build.py"]))
        channels = [channel]
        if a.big:
            channels.append(last_line(sh([PY, ROOT / "ci/channel/build.py", "--bench"])))
        index_dir = last_line(sh([PY, ROOT / "ci/pypi/build.py"]))
        server, index_url = serve_index(index_dir)
        store, home = work / "store", work / "home"
        env = cli_env(home, store)
        args = ["resolve", "--json", "--index-url", index_url]
        for c in channels:
            args += ["-c", c]
        for s in CONDA + (BIG if a.big else []):
            args += ["--conda", s]
        for r in PYPI:
            args += ["--pypi", r]
        resolved = json.loads(sh([PY, "-m", "imagebuilder", *args], env).stdout)
        # the store remote tasks read: S3 on the rig when there is one, else a local folder;
        # with the bootstrap runtime cached by cache_env, from local wheels
        task = rig_s3() or {"IMGBUILD_STORE": str(work / "task-store")}
        task_env = {
            **cli_env(work / "task-home", store),
            **task,
            "IMGBUILD_RUNTIME_CACHE": "1",
            "IMGBUILD_RUNTIME_PYTHONS": f"{sys.version_info.major}.{sys.version_info.minor}",
            "IMGBUILD_RUNTIME_FIND_LINKS": str(runtime_wheels()),
            "IMGBUILD_RUNTIME_INDEX_URL": index_url,
        }
        sh([PY, "-m", "imagebuilder", *args], task_env)
        server.terminate()
        server = None
        ref = f"{resolved['req_id']}:{resolved['full_id']}"
        rec_file = store / "envs" / resolved["req_id"][:16] / f"{resolved['full_id'][:16]}.json"
        pkgs = json.loads(rec_file.read_text())["packages"]
        conda = [p for p in pkgs if p["kind"] == "conda"]
        wheels = [p for p in pkgs if p["kind"] == "pypi"]
        print(f"env {ref[:16]}..: {len(conda)} conda packages, {len(wheels)} wheels", flush=True)

        # baseline inputs: the same archives, from the same store files
        recs = []
        for p in conda:
            f = store / "pkgs/conda" / p["sha256"] / p["filename"]
            recs.append(dict(p["record"], url=f.as_uri(), fn=p["filename"]))
        (work / "recs.json").write_text(json.dumps(recs))
        (work / "raw.py").write_text(RAW_RATTLER)
        whl = [store / "pkgs/pypi" / p["sha256"] / p["filename"] for p in wheels]
        import uv as uv_pkg

        uv = uv_pkg.find_uv_bin()  # the binary itself, not a shim in front of it
        raw_cache, uv_cache = work / "raw-cache", work / "uv-cache"

        def baseline(prefix: Path) -> list[list]:
            return [
                [PY, work / "raw.py", work / "recs.json", prefix, raw_cache],
                [uv, "pip", "install", "--offline", "--no-deps", "--no-index", "--quiet"]
                + ["--cache-dir", uv_cache, "--python", prefix / "bin/python", *whl],
            ]

        def create(prefix: Path, *flags) -> list[list]:
            return [[PY, "-m", "imagebuilder", "create", ref, "--prefix", prefix, "-q", *flags]]

        # warm-up: fill every cache once (and check both sides work)
        timed(baseline(work / "warm-b"))
        timed(create(work / "warm-i"), env)
        sh([PY, "-m", "imagebuilder", "pack", ref, "-q"], env)
        sh([PY, "-m", "imagebuilder", "pack", ref, "-q"], task_env)

        def boot(prefix: Path, home_dir: Path, *flags) -> tuple[list[list], dict]:
            e = {**task_env, "HOME": str(home_dir), "PYTHONPATH": str(ROOT)}
            e.pop("IMGBUILD_RUNTIME_CACHE", None)
            cmd = [PY, "-S", "-m", "imagebuilder.bootstrap", ref, prefix, *flags]
            return [cmd], e

        size_env, size_pack = du(work / "warm-i"), next((store / "packs").rglob("*.tar.zst"))
        size_pack = size_pack.stat().st_size

        t_img, t_base, t_pk_w, t_pack_w, t_pk_c, t_pack_c = [], [], [], [], [], []
        c_img, c_base = [], []
        t_boot_pk, t_boot_pack = [], []
        for i in range(a.runs):
            cmds, e = boot(work / f"bp{i}", work / f"boot-a{i}", "--no-pack")
            t_boot_pk.append(timed(cmds, e))
            cmds, e = boot(work / f"bk{i}", work / f"boot-b{i}")
            t_boot_pack.append(timed(cmds, e))
            t_base.append(timed(baseline(work / f"b{i}"), cpu=c_base))
            t_img.append(timed(create(work / f"i{i}"), env, cpu=c_img))
            t_pack_w.append(timed(create(work / f"pw{i}", "--from-pack"), env))
            cold = cli_env(work / f"cold-a{i}", store)
            t_pk_c.append(timed(create(work / f"pc{i}"), cold))
            cold = cli_env(work / f"cold-b{i}", store)
            t_pack_c.append(timed(create(work / f"kc{i}", "--from-pack"), cold))
            for d in (
                f"b{i}",
                f"i{i}",
                f"pw{i}",
                f"pc{i}",
                f"kc{i}",
                f"cold-a{i}",
                f"cold-b{i}",
            ) + (f"bp{i}", f"bk{i}", f"boot-a{i}", f"boot-b{i}"):
                shutil.rmtree(work / d, ignore_errors=True)
        t_pk_w = t_img

        print(f"installed size {size_env / 1e6:.1f} MB, pack {size_pack / 1e6:.1f} MB")
        print(f"median of {a.runs}:")
        print(f"  warm  imgbuild create (per package)            {med(t_img):6.2f} s")
        print(f"  warm  raw rattler.install + uv pip --offline    {med(t_base):6.2f} s")
        ratio = med(t_img) / med(t_base)
        print(f"  ratio imgbuild / raw                            {ratio:6.2f}x  (goal <= 1.2x)")
        cr = med(c_img) / med(c_base)
        print(
            f"  CPU seconds: imgbuild {med(c_img):.2f}, raw {med(c_base):.2f}, ratio {cr:.2f}x "
            f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        print(f"  warm  per package {med(t_pk_w):6.2f} s   from pack {med(t_pack_w):6.2f} s")
        print(f"  cold  per package {med(t_pk_c):6.2f} s   from pack {med(t_pack_c):6.2f} s")
        where = (
            "S3 (rig seaweedfs)" if task_env["IMGBUILD_STORE"].startswith("s3://") else "a folder"
        )
        print(
            f"  task start (bootstrap, python -S, fresh HOME, store in {where}, runtime from the "
            f"store):\n        per package {med(t_boot_pk):6.2f} s   from pack {med(t_boot_pack):6.2f} s"
        )
        faster = "pack" if med(t_boot_pack) < med(t_boot_pk) else "per package"
        print(f"  cold task start: {faster} is faster")
    finally:
        if server is not None:
            server.terminate()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
