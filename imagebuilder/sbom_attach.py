"""Attach each image's SBOM as an OCI artifact that refers to it (`subject`).

An SBOM artifact is an image manifest with `artifactType: application/vnd.cyclonedx+json`, the
empty config, the SBOM as its one layer, and `subject` = the per-arch image manifest. Its bytes
are deterministic (the SBOM is, and annotations use the fixed epoch), so pushing the same
image again writes nothing new.

- registry sinks: pushed with registry/artifacts.push_artifact, which also keeps the
  `sha256-<hex>` fallback tag index when the registry has no referrers API (docker-registry 2.8
  has none), so `referrers()` finds it either way;
- OCI layout sinks: blobs and manifest written into the layout and the manifest listed,
  untagged, in index.json, where referrer-aware tools (oras `discover --oci-layout`) find it
  by its `subject`;
- docker-archive: no place for artifacts; skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from imagebuilder.sbom import MEDIA_TYPE, build_sbom, fixed_epoch

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def annotations(env) -> dict[str, str]:
    return {
        "org.opencontainers.image.created": fixed_epoch().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dev.imgbuild.req_id": env.req_id,
        "dev.imgbuild.full_id": env.full_id,
    }


def artifact_manifest(sbom: bytes, subject: dict, notes: dict[str, str]) -> bytes:
    from imagebuilder.ids import canonical_json

    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "artifactType": MEDIA_TYPE,
        "config": {"mediaType": MT_EMPTY, "digest": _digest(EMPTY), "size": len(EMPTY)},
        "layers": [{"mediaType": MEDIA_TYPE, "digest": _digest(sbom), "size": len(sbom)}],
        "subject": subject,
        "annotations": notes,
    }
    return canonical_json(manifest).encode()


def _pairs(artifact, envs):
    """(env, per-arch image) pairs, matched by platform."""
    from imagebuilder.platforms import oci_platform

    images = {(i.platform.os, i.platform.architecture): i for i in artifact.manifests}
    for env in envs:
        img = images.get(oci_platform(env.arch))
        if img is not None:
            yield env, img


def attach_sboms(sink, artifact, envs, store) -> list[dict]:
    """Attach one SBOM per env to its image in `sink`; returns the artifact descriptors."""
    kind = type(sink).__name__
    if kind not in ("RegistrySink", "LayoutSink"):
        return []
    out = []
    for env, img in _pairs(artifact, envs):
        sbom = build_sbom(env, store)
        subject = {"mediaType": img.media_type, "digest": img.digest, "size": len(img.manifest)}
        notes = annotations(env)
        if kind == "RegistrySink":
            from imagebuilder.registry.artifacts import Subject, push_artifact

            desc = push_artifact(
                sink.client,
                sink.repo,
                Subject(img.media_type, img.digest, len(img.manifest)),
                MEDIA_TYPE,
                [(MEDIA_TYPE, sbom)],
                notes,
            )
        else:
            desc = _write_layout(Path(sink.root), sbom, subject, notes)
        out.append({**desc, "subject": img.digest, "arch": env.arch})
    return out


def _write_layout(root: Path, sbom: bytes, subject: dict, notes: dict[str, str]) -> dict:
    from imagebuilder.oci.layout import read_index, write_bytes_blob

    raw = artifact_manifest(sbom, subject, notes)
    digest = _digest(raw)
    for data in (sbom, EMPTY, raw):  # blobs before the manifest, index.json last
        write_bytes_blob(root, data, _digest(data))
    desc = {
        "mediaType": MT_MANIFEST,
        "digest": digest,
        "size": len(raw),
        "artifactType": MEDIA_TYPE,
        "annotations": notes,
    }
    # The layout sink's lock file (oci/layout.py), so concurrent writers never lose an entry.
    with open(root / ".imgbuild.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        index = read_index(root)
        entries = [m for m in index.get("manifests", []) if m.get("digest") != digest]
        index["manifests"] = [*entries, desc]
        path = root / "index.json"
        tmp = path.with_name(f".index.json.{os.getpid()}.tmp")
        tmp.write_bytes(json.dumps(index, indent=1, sort_keys=True).encode())
        os.replace(tmp, path)
    return desc


def layout_referrers(root: Path, digest: str, artifact_type: str | None = MEDIA_TYPE) -> list:
    """Manifests in an OCI layout whose `subject` is `digest` (what oras discover lists)."""
    from imagebuilder.oci.layout import read_blob, read_index

    out = []
    for m in read_index(Path(root)).get("manifests", []):
        if m.get("mediaType") != MT_MANIFEST:
            continue
        man = json.loads(read_blob(Path(root), m["digest"]))
        if (man.get("subject") or {}).get("digest") != digest:
            continue
        if artifact_type and man.get("artifactType") != artifact_type:
            continue
        out.append({**m, "artifactType": man.get("artifactType")})
    return out


def attach_for_push(ui, sink, artifact, env_ref: str, arches) -> list[dict]:
    """`imgbuild push`'s step after the image is written: the envs it baked, their SBOMs."""
    from imagebuilder.catalog import find_envs
    from imagebuilder.store import open_store

    cfg = ui.config()
    store = open_store(cfg.store, cfg)
    envs = [e for e in find_envs(store, env_ref) if not arches or e.arch in arches]
    out = attach_sboms(sink, artifact, envs, store)
    for d in out:
        ui.info(f"sbom {d['arch']}: {d['digest'][:19]} -> {d['subject'][:19]}")
    return out
