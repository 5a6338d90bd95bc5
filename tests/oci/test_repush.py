"""A re-push of a known env to an OCI layout: nothing staged, tarred or compressed (the metadata
layer comes from the layer index too), the SBOM found attached instead of built again; after
`gc`-like loss of the metadata layer's blob it is simply rebuilt, same digest."""

from __future__ import annotations

import json
import subprocess
import sys

from imagebuilder.ids import short
from imagebuilder.oci import layerindex
from imagebuilder.oci.layout import read_blob
from imagebuilder.sbom_attach import layout_referrers
from imagebuilder.store.local import LocalStore


def _push(env, store, isolated, out, importtime=False) -> tuple[dict, list[str]]:
    argv = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "imagebuilder"]
    argv += ["push", short(env.full_id), "--store", store.root, "--json", "--to", f"oci:{out}"]
    r = subprocess.run(argv, capture_output=True, text=True, env=isolated)
    assert r.returncode == 0, r.stdout + r.stderr
    mods = [ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines() if "|" in ln]
    return json.loads(r.stdout), mods


def test_repush_builds_nothing_and_keeps_one_sbom(envs, tmp_path, isolated):
    store = LocalStore(tmp_path / "store")
    env = envs.make(store, ["python", "tinyfoo"])
    out = tmp_path / "oci"
    first, _ = _push(env, store, isolated, out)
    assert first["layers_built"] > 0 and len(first["sboms"]) == 1
    records = sorted((store.root / "layers").iterdir())
    blobs = sorted((store.root / "blobs/sha256").iterdir())
    again, mods = _push(env, store, isolated, out, importtime=True)
    assert again["digest"] == first["digest"] and again["layers_built"] == 0
    assert again["sboms"] == first["sboms"]
    assert [m for m in mods if m.split(".")[0] in ("cyclonedx", "packageurl", "jsonschema")] == []
    assert "imagebuilder.bake" in mods
    # nothing new in the store: the metadata layer was found in the layer index
    assert sorted((store.root / "layers").iterdir()) == records
    assert sorted((store.root / "blobs/sha256").iterdir()) == blobs
    assert [d["digest"] for d in layout_referrers(out, first["digest"])] == [
        first["sboms"][0]["digest"]
    ]


def test_metadata_layer_rebuilt_when_its_blob_is_gone(envs, tmp_path, isolated):
    store = LocalStore(tmp_path / "store")
    env = envs.make(store, ["python", "tinyfoo"])
    first, _ = _push(env, store, isolated, tmp_path / "o1")
    man = json.loads(read_blob(tmp_path / "o1", first["digest"]))
    meta = man["layers"][-1]["digest"]
    blob = store.root / layerindex.blob_key(meta)
    blob.unlink()  # as gc would, past grace, were the env gone
    again, _ = _push(env, store, isolated, tmp_path / "o2")
    assert again["digest"] == first["digest"] and blob.is_file()
