"""A no-op `imgbuild push` costs nothing (issue 7), counted by the rig registry's own access log:
pushing the same env on the same base again sends no upload, no manifest PUT and no blob
request; one HEAD of the image manifest by digest and the tag checks are all it asks. What
went missing in between is put back, and only that: a deleted or moved tag, a lost SBOM
referrer. Each test pushes to its own repository and copies the rig base into its own
repository too, so parallel tests cannot blur the counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from regkit import built_channel, store_with_env

from imagebuilder.registry.artifacts import fallback_tag, referrers
from imagebuilder.registry.client import RegistryClient
from imagebuilder.registry.upload import mount_blob

ROOT = Path(__file__).resolve().parents[2]
CDX = "application/vnd.cyclonedx+json"
pytestmark = pytest.mark.rig


@pytest.fixture(scope="module")
def store_env(tmp_path_factory):
    """A store with one mixed env (conda python + tinyfoo + six, and a wheel), alias team/noop."""
    tmp = tmp_path_factory.mktemp("noop")
    return store_with_env(tmp, built_channel(), "imgb-noop", {"imgb_noop.py": "V = 1\n"})


@pytest.fixture
def push(rig, store_env, tmp_path, isolated):
    """push(*extra) -> the JSON of `imgbuild push team/noop:v1` to a fresh repository, on a
    private copy of the rig base; `.repo`, `.base_repo`, `.client` for the checks."""
    rig.need("registry", "base_image")
    store, env = store_env
    reg = rig.registry
    run = uuid.uuid4().hex[:10]
    repo, base_repo = f"noop/env-{run}", f"noop/base-{run}"
    client = RegistryClient(reg, insecure=True)
    _copy_base(client, rig.base_image.split("/", 1)[1], base_repo)
    env_vars = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMGBUILD_", "METAFLOW_IMGBUILD_", "SOURCE_DATE_EPOCH", "DOCKER_"))
    }
    env_vars.update(
        HOME=str(isolated),
        IMGBUILD_STORE=str(store.root),
        IMGBUILD_CACHE_DIR=str(tmp_path / "cache"),
        IMGBUILD_INSECURE_REGISTRIES=reg,
    )
    _cli(["alias", env.full_id[:16], "team/noop:v1"], env_vars)

    def run_push(imports: list | None = None):
        """The push's JSON; with `imports` (a list), also the modules it imported."""
        args = ["push", "team/noop:v1", "--to", f"docker://{reg}/{repo}"]
        args += ["--base", f"{reg}/{base_repo}:bookworm", "--json"]
        r = _cli(args, env_vars, ["-X", "importtime"] if imports is not None else [])
        if imports is not None:
            imports += [ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines() if "|" in ln]
        return json.loads(r.stdout)

    run_push.repo, run_push.base_repo, run_push.client = repo, base_repo, client
    return run_push


def _cli(args, env, pyflags=()) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, *pyflags, "-m", "imagebuilder", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _copy_base(client: RegistryClient, src: str, dest: str) -> None:
    """The rig base under another name: blobs mounted, manifest PUT as the same bytes."""
    repo, _, tag = src.partition(":")
    man = client.get_manifest(repo, tag)
    doc = man.json()
    for d in [doc["config"], *doc["layers"]]:
        assert mount_blob(client, dest, d["digest"], repo)
    client.put_manifest(dest, "bookworm", man.raw, man.media_type)


def _in(repo: str, requests: list[dict]) -> list[tuple[str, str]]:
    # by path: the registry names the repository (vars.name) only on its error lines
    return [(r["method"], r["path"]) for r in requests if r["path"].startswith(f"/v2/{repo}/")]


def _tag_folder(rig, repo: str, tag: str) -> Path:
    return (
        Path(rig.registry_data) / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag
    )


def test_repeat_push_sends_no_blob_request_and_no_write(rig, push):
    log = rig.registry_logs()
    first = push()
    assert first["bytes_written"] > 0 and first["sboms"], first  # the SBOM, on a first push
    assert referrers(push.client, push.repo, first["digest"], CDX)
    mark = log.mark()
    imported: list[str] = []
    again = push(imported)
    assert again["digest"] == first["digest"] and again["refs"] == first["refs"]
    heavy = ("jsonschema", "cyclonedx", "packageurl", "requests", "docker", "rattler", "boto3")
    assert [m for m in imported if m.split(".")[0] in heavy] == []
    assert "imagebuilder.registry.http" in imported  # the check sees what was imported
    assert again["sboms"] == first["sboms"] and again["bytes_written"] == 0
    requests = log.requests(mark)
    mine, base = _in(push.repo, requests), _in(push.base_repo, requests)
    assert [u for u in log.uploads(mark) if u.repo == push.repo] == []
    assert [p for p in log.manifest_puts(mark) if p[0] == push.repo] == []
    assert [m for m, _ in mine if m not in ("GET", "HEAD")] == [], mine
    assert [p for _, p in mine + base if "/blobs/" in p] == [], mine + base
    by_digest = [r for r in mine if r[1].endswith(f"/manifests/{first['digest']}")]
    assert by_digest == [("HEAD", f"/v2/{push.repo}/manifests/{first['digest']}")]
    # the base: one GET of where its tag points (its config comes from this machine's cache)
    assert base == [("GET", f"/v2/{push.base_repo}/manifests/bookworm")], base


def test_deleted_or_moved_tag_is_put_back_alone(rig, push):
    log = rig.registry_logs()
    first = push()
    digest, alias_tag = first["digest"], "team__noop--v1"
    full_tag = next(t for t in first["tags"] if t != alias_tag)
    shutil.rmtree(_tag_folder(rig, push.repo, full_tag))
    assert push.client.manifest_digest(push.repo, full_tag) is None
    mark = log.mark()
    assert push()["digest"] == digest
    assert push.client.manifest_digest(push.repo, full_tag) == digest
    assert [p for p in log.manifest_puts(mark) if p[0] == push.repo] == [(push.repo, full_tag)]
    assert [u for u in log.uploads(mark) if u.repo == push.repo] == []
    # a tag moved to another manifest (the SBOM artifact's, whose blobs the repository has)
    other = push.client.get_manifest(push.repo, first["sboms"][0]["digest"])
    push.client.put_manifest(push.repo, alias_tag, other.raw, other.media_type)
    mark = log.mark()
    push()
    assert push.client.manifest_digest(push.repo, alias_tag) == digest
    assert [p for p in log.manifest_puts(mark) if p[0] == push.repo] == [(push.repo, alias_tag)]


def test_lost_sbom_referrer_is_attached_again(rig, push):
    log = rig.registry_logs()
    first = push()
    digest, sbom = first["digest"], first["sboms"][0]["digest"]
    shutil.rmtree(_tag_folder(rig, push.repo, fallback_tag(digest)))
    assert referrers(push.client, push.repo, digest, CDX) == []
    mark = log.mark()
    again = push()
    assert [d["digest"] for d in referrers(push.client, push.repo, digest, CDX)] == [sbom]
    assert again["sboms"][0]["digest"] == sbom  # the same bytes: deterministic
    puts = [p for p in log.manifest_puts(mark) if p[0] == push.repo]
    assert puts == [(push.repo, fallback_tag(digest))], puts
