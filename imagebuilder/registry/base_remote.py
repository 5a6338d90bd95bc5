"""A base image by reference: only its manifest and config are fetched.

Its layers become `Layer` values whose source is a `RemoteBlob`: a registry sink on the same
registry mounts them across repositories (no bytes move); a sink that needs the bytes (an OCI
layout, a docker-archive, another registry) streams them from the base's registry on demand.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from imagebuilder.errors import BadInput, IntegrityError, NotFound
from imagebuilder.oci.image import Descriptor, Layer, Platform
from imagebuilder.registry.client import INDEX_TYPES, RegistryClient
from imagebuilder.registry.reference import Reference, parse_reference

_clients: dict[tuple[str, bool], RegistryClient] = {}


def client_for(host: str, insecure: bool) -> RegistryClient:
    """One client per registry host and process, so tokens and connections are shared."""
    key = (host, insecure)
    if key not in _clients:
        from imagebuilder.registry.reference import DOCKER_HUB, DOCKER_HUB_API

        api = DOCKER_HUB_API if host == DOCKER_HUB else host
        _clients[key] = RegistryClient(host, insecure=insecure, api_host=api)
    return _clients[key]


def is_insecure(host: str, config=None, insecure: bool = False) -> bool:
    """Plain HTTP only with --insecure or when the host is in `insecure_registries`."""
    if insecure:
        return True
    return config is not None and host in config.insecure_registries


@dataclass(frozen=True)
class RemoteBlob:
    """A BlobSource in a registry; `registry`/`repository` let a registry sink mount it."""

    registry: str
    repository: str
    digest: str
    insecure: bool = field(default=False, compare=False)

    def open(self) -> BinaryIO:
        r = client_for(self.registry, self.insecure).get_blob(self.repository, self.digest)
        r.raw.decode_content = False  # the compressed bytes, exactly
        return r.raw

    def local_path(self) -> Path | None:
        return None


@dataclass(frozen=True)
class RemoteBase:
    """The base as `oci.image.append` takes it: config, layers, and what to annotate."""

    name: str  # the reference as given (org.opencontainers.image.base.name)
    digest: str  # manifest digest of the chosen platform (org.opencontainers.image.base.digest)
    config: dict
    layers: tuple[Layer, ...]
    platform: Platform
    reference: Reference

    def to_json(self) -> dict:
        return {"name": self.name, "digest": self.digest, "platform": str(self.platform)}


def fetch_base(text: str, platform: Platform, config=None, insecure: bool = False) -> RemoteBase:
    """Resolve `text` (HOST/REPO[:TAG][@DIGEST], docker:// allowed) for `platform`."""
    ref = parse_reference(text, default_tag="latest")
    client = client_for(ref.registry, is_insecure(ref.registry, config, insecure))
    top = client.get_manifest(ref.repository, ref.ref)
    if top is None:
        raise NotFound(
            f"base image {ref} not found in registry {ref.registry}",
            "check the name and tag (skopeo inspect docker://...), or push the base first",
        )
    if ref.digest and top.digest != ref.digest:
        raise IntegrityError(f"registry {ref.registry} served {top.digest} for {ref}")
    man = top
    if top.media_type in INDEX_TYPES:
        entry = _pick(top.json(), platform, ref)
        man = client.get_manifest(ref.repository, entry["digest"])
        if man is None or man.digest != entry["digest"]:
            raise IntegrityError(f"base {ref}: {platform} manifest missing or altered")
    doc = man.json()
    if "config" not in doc or "layers" not in doc:
        raise BadInput(f"base {ref} is not an image manifest ({man.media_type or 'unknown'})")
    cfg_desc = Descriptor.from_json(doc["config"])
    cfg_bytes = _read_small(client, ref, cfg_desc)
    cfg = json.loads(cfg_bytes)
    got = Platform(cfg.get("os", ""), cfg.get("architecture", ""), cfg.get("variant"))
    if (got.os, got.architecture) != (platform.os, platform.architecture):
        raise BadInput(
            f"base image {ref} is {got.os}/{got.architecture}, not {platform}",
            "pick a base built for the env's arch, or a multi-arch base",
        )
    diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(doc["layers"]):
        raise IntegrityError(
            f"base {ref}: config lists {len(diff_ids)} diff_ids for {len(doc['layers'])} layers"
        )
    insecure_ = client.insecure
    layers = tuple(
        Layer(
            Descriptor.from_json(d),
            diff_id,
            RemoteBlob(ref.registry, ref.repository, d["digest"], insecure_),
            "base",
        )
        for d, diff_id in zip(doc["layers"], diff_ids, strict=True)
    )
    return RemoteBase(str(ref), man.digest, cfg, layers, platform, ref)


def _pick(index: dict, platform: Platform, ref: Reference) -> dict:
    entries = index.get("manifests") or []
    have = []
    for e in entries:
        p = e.get("platform") or {}
        have.append(
            f"{p.get('os')}/{p.get('architecture')}"
            + (f"/{p['variant']}" if p.get("variant") else "")
        )
        if (
            p.get("os") == platform.os
            and p.get("architecture") == platform.architecture
            and (platform.variant is None or p.get("variant") in (None, platform.variant))
        ):
            return e
    raise NotFound(
        f"base image {ref} has no {platform} image (it has: {', '.join(sorted(set(have))) or 'none'})",
        "choose a base that is built for this arch, or resolve the env for an arch it has",
    )


def _read_small(client: RegistryClient, ref: Reference, desc: Descriptor) -> bytes:
    r = client.get_blob(ref.repository, desc.digest)
    with r:
        data = r.content
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc.digest:
        raise IntegrityError(f"base {ref}: config blob does not match {desc.digest[:19]}")
    return data
