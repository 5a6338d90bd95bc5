"""OCI artifacts that refer to an image (`subject`), and finding them again (OCI distribution
spec 1.1: the referrers API, with the tag-schema fallback for registries without it).

Used for SBOMs (issue 9): `push_artifact(..., artifact_type="application/vnd.cyclonedx+json")`.
An artifact manifest is an image manifest with `artifactType`, the empty config
(`application/vnd.oci.empty.v1+json`, `{}`), the files as layers and `subject` naming the
image. When the registry does not answer with `OCI-Subject` (it does not index referrers),
the artifact is also listed in the index tagged `sha256-<hex of subject>`, as the spec's
fallback asks; readers try `GET /v2/<repo>/referrers/<digest>` first and fall back to that tag.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from imagebuilder.ids import canonical_json
from imagebuilder.registry.client import RegistryClient
from imagebuilder.registry.upload import upload_blob

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Subject:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def fallback_tag(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    return f"{algo}-{hexd}"


def push_artifact(
    client: RegistryClient,
    repo: str,
    subject: Subject,
    artifact_type: str,
    files: Sequence[tuple[str, bytes]],  # (media type, content)
    annotations: Mapping[str, str] | None = None,
) -> dict:
    """Push an artifact referring to `subject`; returns its descriptor (as in a referrers
    index). Blobs first, manifest by digest, then the fallback index when needed."""
    client.push_repos.add(repo)
    layers = [
        {"mediaType": media_type, "digest": _digest(data), "size": len(data)}
        for media_type, data in files
    ]
    manifest: dict = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": MT_EMPTY, "digest": _digest(EMPTY), "size": len(EMPTY)},
        "layers": layers,
        "subject": subject.to_json(),
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    raw = canonical_json(manifest).encode()
    digest = _digest(raw)
    desc = {"mediaType": MT_MANIFEST, "digest": digest, "size": len(raw)}
    desc["artifactType"] = artifact_type
    if annotations:
        desc["annotations"] = dict(annotations)
    if client.manifest_digest(repo, digest) == digest:
        # Pushed before (a re-push of the same image): no blob or manifest write, only make
        # sure it can be found.
        if not any(m.get("digest") == digest for m in referrers(client, repo, subject.digest)):
            _add_to_fallback(client, repo, subject.digest, desc)
        return desc
    for _, data in [*files, (MT_EMPTY, EMPTY)]:
        d = _digest(data)
        if not client.blob_exists(repo, d):
            upload_blob(client, repo, d, len(data), lambda data=data: io.BytesIO(data))
    r = client.put_manifest(repo, digest, raw, MT_MANIFEST)
    if not r.headers.get("OCI-Subject"):
        _add_to_fallback(client, repo, subject.digest, desc)
    return desc


def _add_to_fallback(client: RegistryClient, repo: str, subject: str, desc: dict) -> None:
    tag = fallback_tag(subject)
    current = client.get_manifest(repo, tag, accept=(MT_INDEX,))
    index = (
        current.json() if current else {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
    )
    entries = [m for m in index.get("manifests", []) if m.get("digest") != desc["digest"]]
    index["manifests"] = [*entries, desc]
    client.put_manifest(repo, tag, canonical_json(index).encode(), MT_INDEX)


def referrers(
    client: RegistryClient, repo: str, digest: str, artifact_type: str | None = None
) -> list[dict]:
    """Descriptors of the artifacts that refer to `digest` (referrers API, else tag schema)."""
    path = f"/v2/{repo}/referrers/{digest}"
    if artifact_type:
        path += f"?artifactType={artifact_type}"
    r = client.request("GET", path, [client.scope(repo)], headers={"Accept": MT_INDEX})
    manifests: list[dict] | None = None
    if r.status_code == 200 and r.headers.get("Content-Type", "").startswith(MT_INDEX):
        manifests = json.loads(r.content).get("manifests") or []
    if manifests is None:
        idx = client.get_manifest(repo, fallback_tag(digest), accept=(MT_INDEX,))
        manifests = (idx.json().get("manifests") or []) if idx else []
    if artifact_type:
        manifests = [m for m in manifests if m.get("artifactType") == artifact_type]
    return manifests


def fetch_artifact_file(client: RegistryClient, repo: str, desc: dict, index: int = 0) -> bytes:
    """The content of the `index`-th file of an artifact (digest-checked)."""
    from imagebuilder.errors import IntegrityError, NotFound

    man = client.get_manifest(repo, desc["digest"])
    if man is None:
        raise NotFound(f"artifact {desc['digest'][:19]} not found in {client.host}/{repo}")
    layer = man.json()["layers"][index]
    with client.get_blob(repo, layer["digest"]) as r:
        data = r.content
    if _digest(data) != layer["digest"]:
        raise IntegrityError(f"artifact file {layer['digest'][:19]} does not match its digest")
    return data
