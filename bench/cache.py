#!/usr/bin/env python3
"""Benchmark: caching ~200 MB of real packages into the local S3 server.

    python bench/cache.py [--runs 3] [--mb 200] [--jobs 8]

imgbuild's cache phase (`cache_env`: HEAD, download from a local HTTP channel, verify sha256,
check the archive, upload with checksum, write-once) against a plain boto3 `upload_file` loop
of the same files from disk (which does none of that). Median of N runs each, ratio
imgbuild / boto3 (goal <= 1.2x), plus a warm run (everything already in the store).

The runtime: a store also keeps the task bootstrap's runtime wheels (runtime.py; ~4 uv
resolves and ~50 MB, once per store and imgbuild version). Each run's store gets it before the
clock starts, as every store has it after its first env; the first cache into an empty store,
runtime included, is timed once and printed on its own line.

Packages: the rig channel's --bench packages (numpy, scipy, pandas, ... converted from real
wheels) and the real wheels they came from (ci/cache/wheels). S3: the rig's seaweedfs when
IMGBUILD_RIG_ENV names a running rig, else a seaweedfs started here (ci/services/s3.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "ci"))


def packages(target_mb: int) -> list[Path]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "ci/channel/build.py"), "--bench"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"building the bench channel failed:\n{out.stderr[-2000:]}")
    channel = Path(out.stdout.strip().splitlines()[-1])
    files = sorted(
        (p for sub in ("linux-64", "noarch") for p in (channel / sub).iterdir()
         if p.name.endswith((".conda", ".tar.bz2"))),
        key=lambda p: -p.stat().st_size,
    )  # fmt: skip
    wheels = sorted(
        (p for p in (ROOT / "ci/cache/wheels").glob("*.whl")
         if "macosx" not in p.name and "aarch64" not in p.name),
        key=lambda p: -p.stat().st_size,
    )  # fmt: skip
    chosen, total = [], 0
    for p in files + wheels:
        if total >= target_mb * 1e6:
            break
        chosen.append(p)
        total += p.stat().st_size
    return chosen


def s3_service(tmp: Path):
    rig_env = os.environ.get("IMGBUILD_RIG_ENV")
    if rig_env and Path(rig_env).is_file():
        vals = dict(
            line.split("=", 1) for line in Path(rig_env).read_text().splitlines() if "=" in line
        )
        return vals, None
    from services import s3 as s3svc
    from services.base import Rig

    rig = Rig(tmp / "rig")
    return s3svc.up(rig), (s3svc, rig)


def make_env(files: list[Path], base_url: str, root: Path):
    from imagebuilder.env import Package, ResolvedEnv
    from imagebuilder.spec import make_spec

    pkgs = []
    for p in files:
        data = p.read_bytes()
        conda = p.name.endswith((".conda", ".tar.bz2"))
        stem = p.name.removesuffix(".conda").removesuffix(".tar.bz2").removesuffix(".whl")
        name, version, build = stem.rsplit("-", 2) if conda else stem.split("-", 2)
        pkgs.append(
            Package(
                kind="conda" if conda else "pypi", subdir="linux-64" if conda else "noarch",
                name=name, version=version, build=build,
                sha256=hashlib.sha256(data).hexdigest(), filename=p.name,
                url=f"{base_url}/{p.name}", size=len(data),
            )
        )  # fmt: skip
    return ResolvedEnv(make_spec(arch="linux-64", conda=["bench"]), tuple(pkgs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=8)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="imgb-bench-cache-"))
    files = packages(args.mb)
    total = sum(p.stat().st_size for p in files)
    serve = tmp / "serve"
    serve.mkdir()
    for p in files:
        os.link(p, serve / p.name)
    http = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(serve)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    started = None
    try:
        line = http.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (...)"
        port = int(line.split(" port ")[1].split()[0])
        vals, started = s3_service(tmp)
        endpoint = vals["IMGBUILD_RIG_S3_ENDPOINT"]
        bucket = vals.get("IMGBUILD_RIG_S3_BUCKET", "imgbuild-rig")
        os.environ.update(
            AWS_ACCESS_KEY_ID=vals["IMGBUILD_RIG_S3_ACCESS_KEY"],
            AWS_SECRET_ACCESS_KEY=vals["IMGBUILD_RIG_S3_SECRET_KEY"],
            AWS_DEFAULT_REGION="us-east-1",
        )
        env = make_env(files, f"http://127.0.0.1:{port}", serve)
        results = {"boto3": [], "imgbuild": [], "imgbuild_warm": [], "fetch+boto3": []}
        order = ("boto3", "imgbuild", "fetch+boto3")
        for run in range(args.runs):
            tag = f"bench-cache/{uuid.uuid4().hex[:8]}"
            for which in order if run % 2 == 0 else order[::-1]:
                results[which].append(
                    _time(which, files, env, endpoint, bucket, tag, tmp, args.jobs)
                )
            results["imgbuild_warm"].append(
                _time("imgbuild", files, env, endpoint, bucket, tag, tmp, args.jobs, warm=True)
            )
        fresh = f"bench-cache/{uuid.uuid4().hex[:8]}"
        results["imgbuild_first"] = [
            _time("imgbuild_first", files, env, endpoint, bucket, fresh, tmp, args.jobs)
        ]
        _report(files, total, results)
        _cleanup(endpoint, bucket)
    finally:
        http.terminate()
        http.wait()
        if started:
            started[0].down(started[1])
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _cleanup(endpoint: str, bucket: str) -> None:
    """Leave the S3 server as we found it (the bench writes ~1 GB over its runs)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="bench-cache/")
    for page in pages:
        for o in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=o["Key"])


def _cpu() -> float:
    """This process and its finished children (imgbuild's archive check workers end with each
    cache; the HTTP channel and the S3 server are still running, so not counted)."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


CPU: dict[str, list[float]] = {
    "boto3": [], "imgbuild": [], "imgbuild_warm": [], "fetch+boto3": [], "imgbuild_first": []
}  # fmt: skip


def _time(which, files, env, endpoint, bucket, tag, tmp, jobs, warm=False) -> float:
    if which == "imgbuild":
        from imagebuilder.runtime import ensure_for_env
        from imagebuilder.store.s3 import S3Store

        # not timed: the runtime every store has after its first env
        ensure_for_env(env, S3Store(f"s3://{bucket}/{tag}/imgbuild", endpoint_url=endpoint))
    c0 = _cpu()
    wall = _time_inner(which, files, env, endpoint, bucket, tag, tmp, jobs)
    CPU["imgbuild_warm" if warm else which].append(_cpu() - c0)
    return wall


def _time_inner(which, files, env, endpoint, bucket, tag, tmp, jobs) -> float:
    if which == "fetch+boto3":  # the naive equivalent: download each file, then upload_file
        import boto3
        import requests
        from botocore.config import Config

        start = time.perf_counter()
        client = boto3.client(
            "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"})
        )
        http = requests.Session()
        for p in env.packages:
            dest = tmp / f"naive-{p.filename}"
            with http.get(p.url, stream=True) as r, open(dest, "wb") as f:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
            client.upload_file(str(dest), bucket, f"{tag}/naive/{p.filename}")
            dest.unlink()
        return time.perf_counter() - start
    if which == "boto3":
        import boto3
        from botocore.config import Config

        start = time.perf_counter()
        client = boto3.client(
            "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"})
        )
        for p in files:
            client.upload_file(str(p), bucket, f"{tag}/boto3/{p.name}")
        return time.perf_counter() - start
    from imagebuilder.cache import cache_env
    from imagebuilder.store.s3 import S3Store

    os.environ["IMGBUILD_CACHE_DIR"] = str(tmp / f"localcache-{uuid.uuid4().hex[:6]}")
    start = time.perf_counter()
    store = S3Store(f"s3://{bucket}/{tag}/imgbuild", endpoint_url=endpoint)
    cache_env(env, store, jobs=jobs)
    return time.perf_counter() - start


def _report(files, total, results) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = med["imgbuild"] / med["boto3"]
    print(
        f"cache bench: {len(files)} packages, {total / 1e6:.1f} MB, median of {len(results['boto3'])}"
    )
    print(
        f"  {'boto3 upload_file loop':<28}{med['boto3']:7.2f} s  {total / 1e6 / med['boto3']:6.1f} MB/s"
    )
    print(
        f"  {'imgbuild cache_env (cold)':<28}{med['imgbuild']:7.2f} s  {total / 1e6 / med['imgbuild']:6.1f} MB/s"
    )
    print(
        f"  {'imgbuild cache_env (warm)':<28}{med['imgbuild_warm']:7.2f} s  (all present: HEAD only)"
    )
    print(
        f"  {'imgbuild, empty store':<28}{med['imgbuild_first']:7.2f} s  (once: runtime wheels "
        "resolved and stored too)"
    )
    print(f"  ratio imgbuild/boto3: {ratio:.2f}x (goal <= 1.2x); imgbuild/download+upload: "
          f"{med['imgbuild'] / med['fetch+boto3']:.2f}x")  # fmt: skip
    cpu = {k: statistics.median(v) for k, v in CPU.items() if v}
    print(
        "  client CPU s (median): "
        + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
        + "  (imgbuild also downloads, hashes and checks every archive; the S3 server and the"
        " HTTP channel run on the same cores)"
    )
    print(json.dumps({"mb": round(total / 1e6, 1), "median_s": med, "ratio": round(ratio, 3),
                      "runs": results, "cpu_s": CPU}))  # fmt: skip


if __name__ == "__main__":
    main()
