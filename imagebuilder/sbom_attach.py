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

A re-push costs no SBOM build: when the image already has this env's SBOM attached (found by
its subject and the `dev.imgbuild.full_id` annotation, and its manifest is there), nothing is
built or written. A first push (no such referrer) always builds and attaches it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path

from imagebuilder.atomic import write_atomic
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
        if kind == "RegistrySink":
            desc = _attached_in_registry(sink, img.digest, env) or _push_registry(
                sink, img, env, store
            )
        else:
            root = Path(sink.root)
            desc = _attached_in_layout(root, img.digest, env) or _write_layout(
                root,
                build_sbom(env, store),
                {"mediaType": img.media_type, "digest": img.digest, "size": len(img.manifest)},
                annotations(env),
            )
        out.append({**desc, "subject": img.digest, "arch": env.arch})
    return out


def _is_ours(desc: dict, env) -> bool:
    return (
        desc.get("artifactType") == MEDIA_TYPE
        and (desc.get("annotations") or {}).get("dev.imgbuild.full_id") == env.full_id
    )


def _attached_in_registry(sink, subject: str, env) -> dict | None:
    """The descriptor of this env's SBOM already referring to `subject`, if its manifest is
    there (a fallback tag index may outlive a deleted artifact)."""
    from imagebuilder.registry.artifacts import referrers

    client = sink.client
    for desc in referrers(client, sink.repo, subject, MEDIA_TYPE):
        if (
            _is_ours(desc, env)
            and client.manifest_digest(sink.repo, desc["digest"]) == desc["digest"]
        ):
            return _descriptor(desc)
    return None


def _push_registry(sink, img, env, store) -> dict:
    from imagebuilder.registry.artifacts import Subject, push_artifact

    return push_artifact(
        sink.client,
        sink.repo,
        Subject(img.media_type, img.digest, len(img.manifest)),
        MEDIA_TYPE,
        [(MEDIA_TYPE, build_sbom(env, store))],
        annotations(env),
    )


def _attached_in_layout(root: Path, subject: str, env) -> dict | None:
    """The index.json entry of this env's SBOM for `subject`, if its manifest blob is there."""
    from imagebuilder.oci.layout import read_blob, read_index

    for desc in read_index(root).get("manifests", []):
        if desc.get("mediaType") != MT_MANIFEST or not _is_ours(desc, env):
            continue
        try:
            man = json.loads(read_blob(root, desc["digest"]))
        except (OSError, ValueError):
            continue
        if (man.get("subject") or {}).get("digest") == subject:
            return _descriptor(desc)
    return None


def _descriptor(desc: dict) -> dict:
    """The keys a freshly attached SBOM reports, so a re-push prints the same JSON."""
    keys = ("mediaType", "digest", "size", "artifactType", "annotations")
    return {k: desc[k] for k in keys if k in desc}


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
        write_atomic(path, json.dumps(index, indent=1, sort_keys=True).encode())
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


def attach_for_push(ui, sink, artifact, envs, store) -> list[dict]:
    """`imgbuild push`'s step after the image is written: the SBOMs of the envs it baked."""
    out = attach_sboms(sink, artifact, envs, store)
    for d in out:
        ui.info(f"sbom {d['arch']}: {d['digest'][:19]} -> {d['subject'][:19]}")
    return out
