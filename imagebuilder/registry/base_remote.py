"""A base image by reference: only its manifest and config are fetched.

Documents named by digest (a platform manifest under an index, the config) are kept in this
machine's cache (`<cache>/oci/sha256/<hex>`, checked against the digest on every read), so a
re-push on the same base asks the registry one thing: what the tag points at now. A base
named by digest (`REPO@sha256:...`) already cached costs no request at all.

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

from imagebuilder.atomic import write_atomic
from imagebuilder.errors import BadInput, IntegrityError, NotFound
from imagebuilder.oci.base import Base, select_platform
from imagebuilder.oci.image import Descriptor, Layer, Platform
from imagebuilder.registry.client import INDEX_TYPES, Manifest, RegistryClient
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
        return r.raw  # the compressed bytes, exactly (http.py never decodes bodies)

    def local_path(self) -> Path | None:
        return None


def fetch_base(text: str, platform: Platform, config=None, insecure: bool = False) -> Base:
    """Resolve `text` (HOST/REPO[:TAG][@DIGEST], docker:// allowed) for `platform`: the
    manifest (through an index when there is one) and the config, nothing else."""
    ref = parse_reference(text, default_tag="latest")
    client = client_for(ref.registry, is_insecure(ref.registry, config, insecure))
    top = _cached_manifest(ref.digest) if ref.digest else None
    if top is None:
        top = client.get_manifest(ref.repository, ref.ref)
    if top is None:
        raise NotFound(
            f"base image {ref} not found in registry {ref.registry}",
            "check the name and tag (skopeo inspect docker://...), or push the base first",
        )
    if ref.digest and top.digest != ref.digest:
        raise IntegrityError(f"registry {ref.registry} served {top.digest} for {ref}")
    if ref.digest:
        _remember(top.digest, top.raw)
    man = top
    if top.media_type in INDEX_TYPES:
        entries = [Descriptor.from_json(m) for m in top.json().get("manifests") or []]
        entry = select_platform(entries, platform, str(ref))
        man = _cached_manifest(entry.digest) or client.get_manifest(ref.repository, entry.digest)
        if man is None or man.digest != entry.digest:
            raise IntegrityError(f"base {ref}: {platform} manifest missing or altered")
        _remember(man.digest, man.raw)
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
    return Base(str(ref), man.digest, cfg, layers, platform)


def _read_small(client: RegistryClient, ref: Reference, desc: Descriptor) -> bytes:
    cached = _cached(desc.digest)
    if cached is not None:
        return cached
    r = client.get_blob(ref.repository, desc.digest)
    with r:
        data = r.content
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc.digest:
        raise IntegrityError(f"base {ref}: config blob does not match {desc.digest[:19]}")
    _remember(desc.digest, data)
    return data


# --- the local cache of documents named by digest ----------------------------------------------


def _cache_file(digest: str) -> Path | None:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        return None
    from imagebuilder.store.localcache import cache_root

    try:
        return cache_root() / "oci" / "sha256" / hexd
    except RuntimeError:  # no home folder: no cache
        return None


def _cached(digest: str) -> bytes | None:
    """The bytes named by `digest` from the cache, only if they still hash to it."""
    path = _cache_file(digest)
    try:
        data = path.read_bytes() if path is not None else None
    except OSError:
        return None
    if data is None or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        return None
    return data


def _cached_manifest(digest: str) -> Manifest | None:
    from imagebuilder.registry.client import _embedded_media_type

    data = _cached(digest)
    return Manifest(data, _embedded_media_type(data), digest) if data is not None else None


def _remember(digest: str, data: bytes) -> None:
    """Best effort (a read-only cache only means asking the registry next time)."""
    path = _cache_file(digest)
    if path is None or path.is_file():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    except OSError:
        pass
