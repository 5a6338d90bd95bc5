"""Crash consistency (issue 10, item 2): the CLI is SIGKILLed at named points spread over cache,
pack, bake, push and hydrate (`IMGBUILD_TEST_KILL_AT`, imagebuilder/testhooks.py), on local and
S3 stores; then, and again after a rerun that must succeed:

- `imgbuild verify` passes (no env record without its packages, no alias without its env);
- `imgbuild gc --dry-run --grace 0` runs and would remove nothing an env references;
- every content-addressed object (`pkgs/`, `blobs/`) hashes to its key, no temp name sits under
  a final key, every layer record's blob is there, every pack is a complete archive;
- the OCI layout's index.json reaches only present, intact blobs;
- the registry: every tag -> manifest -> blob answers (walked with GET/HEAD).

A point that is never reached fails its case (the process must die by SIGKILL).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from relhelp import consistency, open_any, rig_s3_environ, run_table

CATEGORY = "crash points"
REPO = "rel/crash"


@dataclass(frozen=True)
class Point:
    phase: str  # cache | pack | bake | push | hydrate
    store: str  # local | s3
    kill: str  # <point>:<n>
    why: str

    @property
    def id(self) -> str:
        return f"{self.phase}/{self.store}/{self.kill}"


POINTS = [
    # cache: `imgbuild resolve` of imgb-cli (2 packages) with an alias. Writes: lease, two
    # packages, env record (store.put 1..4), alias record (store.record 1).
    Point("cache", "local", "store.put:1", "the lease, before any package"),
    Point("cache", "local", "cache.download:2", "mid-download of the second package"),
    Point("cache", "local", "cache.verified:1", "a package verified, not stored"),
    Point("cache", "local", "store.put:2", "a package complete in .tmp, not linked"),
    Point("cache", "local", "cache.env:1", "every package stored, no env record"),
    Point("cache", "local", "store.put:4", "the env record complete in .tmp"),
    Point("cache", "local", "store.record:1", "the alias record about to be replaced"),
    Point("cache", "s3", "cache.download:1", "mid-download, S3 store"),
    Point("cache", "s3", "store.put:3", "a package about to be uploaded to S3"),
    Point("cache", "s3", "cache.env:1", "packages in S3, no env record"),
    Point("cache", "s3", "store.record:1", "the S3 alias record about to be written"),
    # pack of a python env (tinyfoo: 15 packages)
    Point("pack", "local", "pack.installed:1", "staged at the placeholder"),
    Point("pack", "local", "pack.written:1", "the pack complete locally"),
    Point("pack", "local", "store.put:1", "the pack complete in the store's .tmp"),
    Point("pack", "s3", "store.put:1", "the pack about to be uploaded to S3"),
    # bake into an OCI layout (imgb-cli on scratch: 2 package layers + metadata layer)
    Point("bake", "local", "bake.staged:1", "packages staged, no layer"),
    Point("bake", "local", "bake.layer:1", "a layer blob in a temp file"),
    Point("bake", "local", "bake.record:1", "a layer blob stored, no layer record"),
    Point("bake", "local", "store.put:2", "a layer record complete in .tmp"),
    Point("bake", "local", "layout.blob:2", "a blob under its temp name in the layout"),
    Point("bake", "local", "layout.index:1", "every blob in the layout, index.json not written"),
    Point("bake", "s3", "bake.record:1", "a layer blob in S3, no layer record"),
    # push to the registry
    Point("push", "local", "push.upload:1", "an upload session open, no byte committed"),
    Point("push", "local", "push.blob:1", "one blob uploaded, others not"),
    Point("push", "local", "push.manifest:1", "every blob uploaded, no manifest"),
    Point("push", "local", "push.tag:1", "the manifest stored by digest, no tag"),
    Point("push", "local", "push.upload:6", "uploading the SBOM artifact after the image"),
    # hydrate (imgbuild create)
    Point("hydrate", "local", "hydrate.fetched:1", "packages local, staging not made"),
    Point("hydrate", "local", "hydrate.installed:1", "staging complete, not renamed"),
]


# --------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class Seeds:
    small: Path  # store with imgb-cli (2 packages)
    small_full: str
    python: Path  # store with tinyfoo (python, 15 packages)
    python_full: str


@pytest.fixture(scope="module")
def seeds(rig, runner, tmp_path_factory) -> Seeds:
    rig.need("channel_url")
    base = tmp_path_factory.mktemp("crash-seeds")
    out = {}
    for name, spec in (("small", "imgb-cli"), ("python", "tinyfoo")):
        run = runner(base / name)
        r = run("resolve", "-c", rig.channel_url, "--conda", spec, "--arch", "linux-64", "--json")
        out[name] = (run.store, r.json()["full_id"][:16])
    return Seeds(out["small"][0], out["small"][1], out["python"][0], out["python"][1])


@pytest.fixture(scope="module")
def s3env(rig):
    rig.need("s3_endpoint")
    with rig_s3_environ(rig) as env:  # the checks below open the S3 store in this process too
        yield env


def copy_store(src: Path, dst: Path) -> None:
    """A private copy of a seed store (objects hard-linked: they are never written in place)."""
    shutil.copytree(
        src, dst, copy_function=os.link, ignore=shutil.ignore_patterns(".locks", ".tmp")
    )


# --------------------------------------------------------------------------- the test


def test_sigkill_then_rerun(rig, seeds, s3env, runner, tmp_path, record):
    rig.need("registry", "s3_bucket")

    def one(pt: Point) -> str | None:
        d = tmp_path / pt.id.replace("/", "-").replace(":", "-")
        run = runner(d)
        extra = {"IMGBUILD_INSECURE_REGISTRIES": rig.registry}
        if pt.store == "s3":
            url = f"s3://{rig.s3_bucket}/rel-crash-{uuid.uuid4().hex[:10]}"
            extra.update(s3env)
        else:
            url = str(run.store)
        extra["IMGBUILD_STORE"] = url
        seed, full = (
            (seeds.python, seeds.python_full)
            if pt.phase == "pack"
            else (seeds.small, seeds.small_full)
        )
        if pt.phase != "cache":
            if pt.store == "local":
                copy_store(seed, run.store)
            else:
                run("get", full, "--from", str(seed), "--with-packages", env=extra)
        sink = None
        if pt.phase == "cache":
            args = ["resolve", "-c", rig.channel_url, "--conda", "imgb-cli", "--arch", "linux-64",
                    "--alias", "rel/crash"]  # fmt: skip
        elif pt.phase == "pack":
            args = ["pack", full]
        elif pt.phase == "bake":
            sink = f"oci:{d / 'oci'}"
            args = ["push", full, "--base", "scratch", "--to", sink]
        elif pt.phase == "push":
            # a repository of its own: a push of an image the registry has is a no-op
            sink = f"{rig.registry}/{REPO}-{uuid.uuid4().hex[:12]}"
            args = ["push", full, "--base", "scratch", "--to", sink]
        else:
            args = ["create", full, "--prefix", d / "prefix"]
        r = run(*args, "--json", env={**extra, "IMGBUILD_TEST_KILL_AT": pt.kill}, expect=None)
        problems = []
        if r.returncode != -signal.SIGKILL:
            return f"not killed at {pt.kill} (exit {r.returncode}): {r.stderr[-1500:]}"
        problems += [f"after the kill: {p}" for p in consistency(run, url, extra, sink)]
        if pt.phase == "hydrate" and (d / "prefix").exists():
            problems.append("after the kill: a half-made prefix is visible")
        again = run(*args, "--json", env=extra, expect=None)
        if again.returncode != 0:
            problems.append(f"rerun exit {again.returncode}: {again.stderr[-1500:]}")
            return "\n".join(problems)
        problems += [f"after the rerun: {p}" for p in consistency(run, url, extra, sink, False)]
        problems += _complete(pt, run, url, extra, sink, full, d)
        return "\n".join(problems) or None

    run_table(record, CATEGORY, one, POINTS, name=lambda p: f"{p.id} ({p.why})")
    assert len(POINTS) >= 20


def _complete(pt: Point, run, url, extra, sink, full, d: Path) -> list[str]:
    """What the rerun must have finished."""
    store = open_any(url)
    if pt.phase == "cache":
        envs = list(store.list("envs/"))
        alias = store.exists("aliases/rel/crash/latest.json")
        return [] if len(envs) == 1 and alias else [f"after the rerun: envs {envs}, alias {alias}"]
    if pt.phase == "pack":
        return [] if list(store.list("packs/")) else ["after the rerun: no pack"]
    if pt.phase == "bake":
        idx = json.loads((Path(sink[4:]) / "index.json").read_text())
        tags = {
            (m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            for m in idx["manifests"]
        }
        return [] if full in tags else [f"after the rerun: tag {full} not in {tags}"]
    if pt.phase == "push":
        import requests

        host, repo = sink.split("/", 1)
        tags = (
            requests.get(f"http://{host}/v2/{repo}/tags/list", timeout=30).json().get("tags") or []
        )
        return [] if full in tags else [f"after the rerun: tag {full} not in {tags}"]
    ok = (d / "prefix" / "bin" / "imgb-cli").exists()
    return [] if ok else ["after the rerun: the prefix has no bin/imgb-cli"]
