"""Concurrency (issue 10, item 3): 8 imgbuild processes at once, each with its own HOME (as on
8 machines), resolve and cache overlapping envs into ONE S3 store (the rig's seaweedfs), move
ONE mutable alias, and push to ONE registry repository. Then everything is verified:

- every process succeeded; `imgbuild verify` and `gc --dry-run` agree; every object in S3
  hashes to its key, no temp object is visible;
- the alias history is one unbroken chain (each entry's `previous` is the entry before it: no
  write was lost) ending at the alias's current target;
- every env's `<full_id16>` tag is in the registry and every tag -> manifest -> blob answers,
  and each image's labels name its env.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from relhelp import consistency, open_any, parallel

CATEGORY = "concurrency runs"

# overlapping requests: two identical ones, shared packages (python, tinyfoo, libimgb, zlib)
WORKERS = [
    ["imgb-cli"],
    ["imgb-cli"],
    ["imgb-cli", "zlib"],
    ["zlib", "bzip2"],
    ["tzdata", "ca-certificates"],
    ["tinyfoo"],
    ["tinyfoo"],
    ["tinybar"],
]


@pytest.fixture
def s3_extra(rig):
    rig.need("s3_endpoint", "registry", "channel_url")
    return {
        "AWS_ACCESS_KEY_ID": rig.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "IMGBUILD_S3_ENDPOINT_URL": rig.s3_endpoint,
        "IMGBUILD_INSECURE_REGISTRIES": rig.registry,
    }


def test_eight_processes_one_store_one_registry(
    rig, runner, s3_extra, tmp_path, record, monkeypatch
):
    for k, v in s3_extra.items():
        monkeypatch.setenv(k, v)  # the checks open the S3 store in this process too
    run_id = uuid.uuid4().hex[:10]
    url = f"s3://{rig.s3_bucket}/rel-conc-{run_id}"
    sink = f"{rig.registry}/rel/conc-{run_id}"
    alias = "rel/conc"
    extra = {**s3_extra, "IMGBUILD_STORE": url}
    start = threading.Barrier(len(WORKERS))

    def worker(i: int):
        run = runner(tmp_path / f"w{i}")
        args = ["resolve", "-c", rig.channel_url, "--arch", "linux-64", "--alias", alias, "--json"]
        for spec in WORKERS[i]:
            args += ["--conda", spec]
        start.wait(timeout=120)
        r = run(*args, env=extra, expect=None, timeout=600)
        if r.returncode != 0:
            raise AssertionError(
                f"worker {i} resolve exit {r.returncode}: {r.stderr[-2000:]}{r.stdout[-2000:]}"
            )
        full = r.json()["full_id"]
        p = run("push", full[:16], "--base", "scratch", "--to", sink, "--json", env=extra,
                expect=None, timeout=600)  # fmt: skip
        if p.returncode != 0:
            raise AssertionError(
                f"worker {i} push exit {p.returncode}: {p.stderr[-2000:]}{p.stdout[-2000:]}"
            )
        results[i] = (full, p.json()["digest"])

    results: dict[int, tuple[str, str]] = {}
    for i, ok, detail, secs in parallel(worker, list(range(len(WORKERS))), jobs=len(WORKERS)):
        record(CATEGORY, f"worker {i}: resolve+push {' '.join(WORKERS[i])}", ok, detail, secs)
    if record.failed:
        record.check()

    problems = []
    check_run = runner(tmp_path / "check")
    problems += consistency(check_run, url, extra, sink)
    envs = {full for full, _ in results.values()}
    v = check_run("verify", "--json", env=extra, expect=None)
    if v.returncode or v.json()["envs"] != len(envs):
        problems.append(f"verify: {v.stdout[-500:]}")
    problems += _alias_chain(open_any(url), alias, envs)
    problems += _registry_tags(sink, results)
    record(CATEGORY, "after 8 processes: store, alias history, registry verified", not problems,
           "\n".join(problems))  # fmt: skip
    record.check()


def _alias_chain(store, alias: str, envs: set[str]) -> list[str]:
    from imagebuilder.ids import AliasRef
    from imagebuilder.store.aliases import read_alias

    rec = read_alias(store, AliasRef(alias, "latest"))
    if rec is None:
        return ["the alias was never written"]
    problems = []
    prev = None
    for n, e in enumerate(rec.history):
        if e["full_id"] not in envs:
            problems.append(f"history entry {n} names an env no worker made: {e['full_id'][:16]}")
        if (e.get("previous") or {}).get("full_id") != (prev or {}).get("full_id"):
            problems.append(
                f"history entry {n}: previous {e.get('previous')} != {prev} (lost write)"
            )
        prev = {"req_id": e["req_id"], "full_id": e["full_id"]}
    now = rec.platforms["linux-64"].full_id
    if prev is None or prev["full_id"] != now:
        problems.append(f"the alias names {now[:16]}, its history ends at {prev}")
    return problems


def _registry_tags(sink: str, results: dict) -> list[str]:
    import requests

    host, repo = sink.split("/", 1)
    base = f"http://{host}/v2/{repo}"
    tags = set(requests.get(f"{base}/tags/list", timeout=30).json().get("tags") or [])
    problems = []
    for full, digest in results.values():
        if full[:16] not in tags:
            problems.append(f"tag {full[:16]} missing from {sink}")
            continue
        m = requests.get(
            f"{base}/manifests/{full[:16]}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            timeout=30,
        )
        if m.headers.get("Docker-Content-Digest") != digest:
            problems.append(
                f"tag {full[:16]} -> {m.headers.get('Docker-Content-Digest')}, pushed {digest}"
            )
        cfg = m.json()["config"]["digest"]
        labels = json.loads(requests.get(f"{base}/blobs/{cfg}", timeout=30).content)["config"][
            "Labels"
        ]
        if labels.get("dev.imgbuild.full_id") != full:
            problems.append(f"image {full[:16]} is labelled {labels.get('dev.imgbuild.full_id')}")
    return problems
