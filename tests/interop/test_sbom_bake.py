"""A conda-lock.yml written by hand imports, caches and bakes; the pushed image's SBOM is found
again the way `oras discover` finds it (referrers API, else the `sha256-<hex>` tag fallback:
docker-registry 2.8 has no referrers API, so the fallback is what this rig exercises); the SBOM
validates against CycloneDX 1.6 and lists every package of the env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from interop_support import env_ref

from imagebuilder.sbom import MEDIA_TYPE, validate_sbom

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _records(channel_dir: Path) -> dict[str, tuple[str, dict]]:
    """name -> (subdir, record + fn) of the newest linux-64/noarch build of each package."""
    out: dict[str, tuple[str, dict]] = {}
    for sub in ("noarch", "linux-64"):
        data = json.loads((channel_dir / sub / "repodata.json").read_text())
        for table in ("packages", "packages.conda"):
            for fn, rec in data.get(table, {}).items():
                have = out.get(rec["name"])
                if have is None or rec.get("timestamp", 0) > have[1].get("timestamp", 0):
                    out[rec["name"]] = (sub, {**rec, "fn": fn})
    return out


def hand_written_lock(rig, want=("python", "tinyfoo")) -> str:
    recs = _records(Path(rig.channel_dir))
    todo, names = list(want), []
    while todo:  # the dependency closure, by name
        n = todo.pop()
        if n in names or n not in recs:
            continue
        names.append(n)
        todo += [d.split()[0] for d in recs[n][1].get("depends", ())]
    lines = [
        "# Written by hand in conda-lock's unified format (docs/lockfiles.md).",
        "version: 1",
        "metadata:",
        "  content_hash: {linux-64: handwritten}",
        "  channels:",
        f"    - url: {rig.channel_url}",
        "      used_env_vars: []",
        "  platforms: [linux-64]",
        "  sources: [environment.yml]",
        "package:",
    ]
    for n in sorted(names):
        sub, r = recs[n]
        deps = ", ".join(f"{d.split()[0]}: '{' '.join(d.split()[1:])}'" for d in r["depends"])
        lines += [
            f"  - name: {n}",
            f"    version: '{r['version']}'",
            "    manager: conda",
            "    platform: linux-64",
            f"    dependencies: {{{deps}}}",
            f"    url: {rig.channel_url.rstrip('/')}/{sub}/{r['fn']}",
            f"    hash: {{md5: {r['md5']}, sha256: {r['sha256']}}}",
            "    category: main",
            "    optional: false",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def baked(shared, rig, tmp_path_factory):
    rig.need("channel_url", "channel_dir", "registry", "base_oci")
    tmp = tmp_path_factory.mktemp("handlock")
    lock = tmp / "team.conda-lock.yml"
    lock.write_text(hand_written_lock(rig))
    env = shared("resolve", "--lockfile", lock, "--arch", "linux-64", "--json", "-q").json()
    repo = f"{rig.registry}/interop/handlock"
    cfg = {"IMGBUILD_INSECURE_REGISTRIES": rig.registry}
    pushed = shared(
        "push", env_ref(env), "--to", repo, "--base", rig.base_oci, "--json", "-q", env=cfg
    ).json()
    layout = tmp / "oci"
    local = shared(
        "push", env_ref(env), "--to", f"oci:{layout}", "--base", rig.base_oci, "--json", "-q"
    ).json()
    return {"env": env, "pushed": pushed, "layout": layout, "local": local, "rig": rig}


def test_hand_written_lock_imports_with_the_locked_packages(baked):
    env = baked["env"]
    names = {p["name"] for p in env["packages"]}
    assert {"python", "tinyfoo", "openssl"} <= names
    assert all(p["kind"] == "conda" for p in env["packages"])


def test_sbom_found_through_registry_referrers_or_tag_fallback(baked, shared):
    rig, pushed, env = baked["rig"], baked["pushed"], baked["env"]
    base = f"http://{rig.registry}/v2/interop/handlock"
    digest = pushed["digest"]
    # 1. the referrers API (OCI distribution 1.1) ...
    r = requests.get(f"{base}/referrers/{digest}", headers={"Accept": MT_INDEX}, timeout=10)
    if r.status_code == 200 and r.headers.get("Content-Type", "").startswith(MT_INDEX):
        index = r.json()
    else:  # ... 2. else the tag schema fallback (what docker-registry 2.8 needs)
        assert r.status_code == 404
        tag = digest.replace(":", "-")
        r = requests.get(f"{base}/manifests/{tag}", headers={"Accept": MT_INDEX}, timeout=10)
        assert r.status_code == 200, r.text
        index = r.json()
    sboms = [m for m in index["manifests"] if m.get("artifactType") == MEDIA_TYPE]
    assert len(sboms) == 1
    man = requests.get(
        f"{base}/manifests/{sboms[0]['digest']}", headers={"Accept": MT_MANIFEST}, timeout=10
    ).json()
    assert man["subject"]["digest"] == digest and man["artifactType"] == MEDIA_TYPE
    blob = requests.get(f"{base}/blobs/{man['layers'][0]['digest']}", timeout=10).content
    validate_sbom(blob)
    _lists_every_package(blob, env)
    # the bytes are the env's SBOM: `imgbuild sbom` prints exactly them
    assert shared("sbom", env_ref(env)).stdout.encode() == blob


def test_sbom_found_in_the_oci_layout(baked):
    from imagebuilder.oci.layout import read_blob
    from imagebuilder.sbom_attach import layout_referrers

    layout, local, env = baked["layout"], baked["local"], baked["env"]
    (desc,) = layout_referrers(layout, local["digest"])
    man = json.loads(read_blob(layout, desc["digest"]))
    blob = read_blob(layout, man["layers"][0]["digest"])
    validate_sbom(blob)
    _lists_every_package(blob, env)
    # the image itself is still reachable by its tag (the artifact entry is untagged)
    index = json.loads((layout / "index.json").read_text())
    tagged = [
        m
        for m in index["manifests"]
        if "org.opencontainers.image.ref.name" in m.get("annotations", {})
    ]
    assert [m["digest"] for m in tagged] == [local["digest"]]


def test_pushing_again_adds_no_second_sbom(baked, shared):
    rig, env = baked["rig"], baked["env"]
    cfg = {"IMGBUILD_INSECURE_REGISTRIES": rig.registry}
    again = shared(
        "push", env_ref(env), "--to", f"{rig.registry}/interop/handlock", "--base",
        rig.base_oci, "--json", "-q", env=cfg,
    ).json()  # fmt: skip
    assert again["sboms"][0]["digest"] == baked["pushed"]["sboms"][0]["digest"]
    tag = again["digest"].replace(":", "-")
    idx = requests.get(
        f"http://{rig.registry}/v2/interop/handlock/manifests/{tag}",
        headers={"Accept": MT_INDEX},
        timeout=10,
    ).json()
    assert len(idx["manifests"]) == 1


def _lists_every_package(blob: bytes, env: dict) -> None:
    doc = json.loads(blob)
    comps = {(c["name"], c["version"]): c for c in doc["components"]}
    assert len(doc["components"]) == len(env["packages"])
    for p in env["packages"]:
        c = comps[(p["name"], p["version"])]
        assert c["purl"].startswith(f"pkg:{p['kind']}/{p['name']}@{p['version']}")
        assert c["hashes"] == [{"alg": "SHA-256", "content": p["sha256"]}]
    assert doc["serialNumber"].startswith("urn:uuid:")
    assert doc["metadata"]["timestamp"].startswith("1970-01-01")


def test_sbom_of_mixed_env_is_valid_deterministic_and_licensed(shared, mixed):
    a = shared("sbom", env_ref(mixed), "--validate").stdout.encode()  # schema-checked here too
    b = shared("sbom", env_ref(mixed), env={"PYTHONHASHSEED": "123"}).stdout.encode()
    assert a == b
    validate_sbom(a)
    _lists_every_package(a, mixed)
    doc = json.loads(a)
    by_name = {c["name"]: c for c in doc["components"]}
    # conda records carry a license; wheels get theirs from the cached METADATA
    assert by_name["python"]["licenses"]
    assert by_name["requests"]["licenses"]
    assert by_name["six"]["purl"].startswith("pkg:pypi/six@")
    assert "subdir=linux-64" in by_name["python"]["purl"]
