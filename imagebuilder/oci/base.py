"""Base images as values: `scratch`, `oci:DIR[:REF]`, and (registry.py) a remote reference.

A base is its config and its layers as descriptors with lazy sources: nothing of a base's
layers is read unless a sink needs the bytes. The registry engineer adds remote bases through
`registry.open_remote_base(ref, platform, config) -> Base` (manifest + config fetched, layer
bytes fetched lazily by their BlobSource); `open_base` dispatches to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from imagebuilder.errors import BadInput, NotFound, UsageError
from imagebuilder.oci.image import (
    DOCKER_TO_OCI,
    MT_INDEX,
    MT_MANIFEST,
    Descriptor,
    FileBlob,
    Layer,
    Platform,
)

SCRATCH = "scratch"


@dataclass(frozen=True)
class Base:
    name: str  # "scratch", or the reference as recorded in the image annotations
    digest: str | None  # manifest digest (None for scratch)
    config: dict = field(compare=False, hash=False)
    layers: tuple[Layer, ...] = ()
    platform: Platform | None = None

    @property
    def is_scratch(self) -> bool:
        return self.digest is None

    @property
    def variant_key(self) -> str:
        """What the image tag's variant suffix hashes for this base (CONTRACT.md: tags)."""
        return self.digest or SCRATCH


def scratch(platform: Platform) -> Base:
    return Base(
        SCRATCH, None, {"config": {}, "rootfs": {"type": "layers", "diff_ids": []}}, (), platform
    )


def open_base(ref: str, platform: Platform, config=None) -> Base:
    if ref in ("", SCRATCH):
        return scratch(platform)
    if ref.startswith("oci:"):
        from imagebuilder.oci.sink import split_ref

        path, tag = split_ref(ref[len("oci:") :])
        return from_layout(Path(path).expanduser(), tag, platform)
    try:
        from imagebuilder.oci import registry
    except ImportError:
        raise UsageError(
            f"base images from a registry ({ref}) are not available in this build",
            "use --base scratch or --base oci:DIR:REF (e.g. after `skopeo copy docker://... oci:DIR:REF`)",
        ) from None
    return registry.open_remote_base(ref, platform, config)


def select_platform(entries: list[Descriptor], platform: Platform, where: str) -> Descriptor:
    """The manifest for `platform` from an index's entries (clear error when it is missing)."""
    for d in entries:
        p = d.platform
        if (
            p
            and (p.os, p.architecture) == (platform.os, platform.architecture)
            and (not platform.variant or p.variant in (None, platform.variant))
        ):
            return d
    have = ", ".join(sorted(str(d.platform) for d in entries if d.platform)) or "none"
    raise BadInput(
        f"base {where} has no {platform} image (it has: {have})",
        "pick a base built for that platform, or build for one the base has with --arch",
    )


def from_layout(root: Path, tag: str | None, platform: Platform) -> Base:
    from imagebuilder.oci.layout import blob_path, find_ref, read_blob

    if not root.is_dir():
        raise NotFound(f"base image folder {root} does not exist", "check the oci:DIR:REF path")
    where = f"oci:{root}" + (f":{tag}" if tag else "")
    desc = find_ref(root, tag)
    if desc.media_type == MT_INDEX:
        index = json.loads(read_blob(root, desc.digest))
        desc = select_platform(
            [Descriptor.from_json(m) for m in index["manifests"]], platform, where
        )
    if desc.media_type != MT_MANIFEST:
        raise BadInput(f"base {where} is a {desc.media_type}, not an image manifest")
    manifest = json.loads(read_blob(root, desc.digest))
    cfg_desc = Descriptor.from_json(manifest["config"])
    config = json.loads(read_blob(root, cfg_desc.digest))
    _check_platform(config, platform, where)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layer_descs = [Descriptor.from_json(d) for d in manifest.get("layers", [])]
    if len(diff_ids) != len(layer_descs):
        raise BadInput(f"base {where}: {len(layer_descs)} layers but {len(diff_ids)} diff_ids")
    layers = tuple(
        Layer(
            Descriptor(DOCKER_TO_OCI.get(d.media_type, d.media_type), d.digest, d.size),
            diff_id,
            FileBlob(blob_path(root, d.digest)),
            "base",
        )
        for d, diff_id in zip(layer_descs, diff_ids, strict=True)
    )
    return Base(tag or str(root.name), desc.digest, config, layers, platform)


def _check_platform(config: dict, platform: Platform, where: str) -> None:
    got = Platform(config.get("os", "?"), config.get("architecture", "?"), config.get("variant"))
    if (got.os, got.architecture) != (platform.os, platform.architecture):
        raise BadInput(
            f"base {where} is {got}, the environment is {platform}",
            "use a base for the environment's platform (or resolve for the base's)",
        )
