"""The image as an immutable value: descriptors, config, manifest, index (OCI image spec).

Built by `append(base, layers, ...)` in the spirit of go-containerregistry's mutate.Append:
nothing is written until a sink is asked to (sink.py). Blobs are referenced by descriptor and
a lazy `BlobSource`, so a sink that already has a blob (a registry, a layout folder) never
reads it. Every JSON document is serialized once, canonically (sorted keys, no spaces); the
digest is that of those exact bytes, which sinks must write unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Protocol

from imagebuilder.ids import canonical_json

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_TO_OCI = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.container.image.v1+json": MT_CONFIG,
    "application/vnd.docker.distribution.manifest.v2+json": MT_MANIFEST,
    "application/vnd.docker.distribution.manifest.list.v2+json": MT_INDEX,
}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def iso_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- blobs -------------------------------------------------------------------------------------


class BlobSource(Protocol):
    """Where a blob's bytes come from, opened only when a sink needs them."""

    def open(self) -> BinaryIO: ...

    def local_path(self) -> Path | None: ...


@dataclass(frozen=True)
class BytesBlob:
    data: bytes

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)

    def local_path(self) -> Path | None:
        return None


@dataclass(frozen=True)
class FileBlob:
    path: Path

    def open(self) -> BinaryIO:
        return open(self.path, "rb")

    def local_path(self) -> Path | None:
        return Path(self.path)


# --- descriptors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def to_json(self) -> dict:
        d = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        return d

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()
    platform: Platform | None = None

    def to_json(self) -> dict:
        d: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform is not None:
            d["platform"] = self.platform.to_json()
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> Descriptor:
        p = d.get("platform")
        return cls(
            media_type=DOCKER_TO_OCI.get(d["mediaType"], d["mediaType"]),
            digest=d["digest"],
            size=int(d["size"]),
            annotations=tuple(sorted((d.get("annotations") or {}).items())),
            platform=Platform(p["os"], p["architecture"], p.get("variant")) if p else None,
        )

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor  # the compressed blob
    diff_id: str  # sha256 of the uncompressed tar
    source: BlobSource = field(compare=False, hash=False)
    name: str = ""  # what it holds ("conda/python", "bucket-3", "env metadata", "base")


# --- images ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """One platform's image: config and manifest bytes plus the layers they name."""

    config: bytes
    manifest: bytes
    layers: tuple[Layer, ...]
    platform: Platform

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def media_type(self) -> str:
        return MT_MANIFEST

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(MT_MANIFEST, self.digest, len(self.manifest), platform=self.platform)

    @property
    def config_descriptor(self) -> Descriptor:
        return Descriptor(MT_CONFIG, sha256_digest(self.config), len(self.config))

    def config_json(self) -> dict:
        return json.loads(self.config)

    def manifest_json(self) -> dict:
        return json.loads(self.manifest)

    def blobs(self) -> Iterator[tuple[Descriptor, BlobSource]]:
        """Every blob the manifest names (layers, then config), once each."""
        seen: set[str] = set()
        for layer in self.layers:
            if layer.descriptor.digest not in seen:
                seen.add(layer.descriptor.digest)
                yield layer.descriptor, layer.source
        yield self.config_descriptor, BytesBlob(self.config)

    @property
    def manifests(self) -> tuple[Image, ...]:
        return (self,)


@dataclass(frozen=True)
class ImageIndex:
    """A multi-platform image: an OCI index over per-platform manifests."""

    index: bytes
    images: tuple[Image, ...]

    @property
    def digest(self) -> str:
        return sha256_digest(self.index)

    @property
    def media_type(self) -> str:
        return MT_INDEX

    @property
    def manifest(self) -> bytes:
        return self.index

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(MT_INDEX, self.digest, len(self.index))

    @property
    def manifests(self) -> tuple[Image, ...]:
        return self.images

    def blobs(self) -> Iterator[tuple[Descriptor, BlobSource]]:
        seen: set[str] = set()
        for img in self.images:
            for desc, src in img.blobs():
                if desc.digest not in seen:
                    seen.add(desc.digest)
                    yield desc, src


Artifact = Image | ImageIndex


def make_image(
    config: Mapping, layers: Sequence[Layer], platform: Platform, annotations: Mapping[str, str]
) -> Image:
    config_bytes = canonical_json(config).encode()
    manifest: dict = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": Descriptor(MT_CONFIG, sha256_digest(config_bytes), len(config_bytes)).to_json(),
        "layers": [layer.descriptor.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return Image(config_bytes, canonical_json(manifest).encode(), tuple(layers), platform)


def make_index(images: Sequence[Image], annotations: Mapping[str, str]) -> ImageIndex:
    ordered = sorted(images, key=lambda i: (str(i.platform), i.digest))
    index: dict = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [i.descriptor.to_json() for i in ordered],
    }
    if annotations:
        index["annotations"] = dict(annotations)
    return ImageIndex(canonical_json(index).encode(), tuple(ordered))


def append(
    base_config: Mapping,
    base_layers: Sequence[Layer],
    layers: Sequence[Layer],
    *,
    platform: Platform,
    env: Mapping[str, str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    epoch: int,
    user: str | None = None,
    workdir: str | None = None,
) -> Image:
    """A new image: the base's layers then `layers`, with the config changes applied.

    Env entries replace the base's variables of the same name (PATH is given in full by the
    caller); labels are merged over the base's; the base's entrypoint and cmd are kept."""
    created = iso_time(epoch)
    cfg = json.loads(canonical_json(base_config))  # a deep copy
    inner = cfg.setdefault("config", {}) or {}
    cfg["config"] = inner
    base_env = [e for e in inner.get("Env") or [] if e.split("=", 1)[0] not in env]
    inner["Env"] = base_env + [f"{k}={v}" for k, v in env.items()]
    inner["Labels"] = {**(inner.get("Labels") or {}), **labels}
    if user is not None:
        inner["User"] = user
    if workdir is not None:
        inner["WorkingDir"] = workdir
    cfg["architecture"] = platform.architecture
    cfg["os"] = platform.os
    if platform.variant:
        cfg["variant"] = platform.variant
    cfg["created"] = created
    rootfs = cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["type"] = "layers"
    rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + [layer.diff_id for layer in layers]
    cfg["history"] = list(cfg.get("history") or []) + [
        {"created": created, "created_by": f"imgbuild: {layer.name}"} for layer in layers
    ]
    return make_image(cfg, list(base_layers) + list(layers), platform, annotations)
