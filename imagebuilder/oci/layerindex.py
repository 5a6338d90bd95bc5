"""The store's layer index (CONTRACT.md: store layout `layers/<key>.json`) and its blobs.

A record names a compressed layer blob by digest and says what it holds; the blob itself lives
in the store at `blobs/sha256/<hex>` (an addition to CONTRACT's layout, docs/layering.md), so
a known layer is never tarred or compressed again, even for a fresh sink or on a machine whose
compressor makes other bytes. The blob is written before the record; both are write-once.

The record also carries what a bake needs without staging the layer's packages again: the
paths the layer installs (collision checks), the variables their activation scripts export,
and which packages have link scripts that never ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imagebuilder.errors import IntegrityError, NotFound
from imagebuilder.ids import sha256_json
from imagebuilder.oci.layer import LAYER_FORMAT, Compression, Entry, LayerBlob
from imagebuilder.records import check_schema, schema_id
from imagebuilder.store.base import Store
from imagebuilder.testhooks import kill_point


def layer_key(
    sha256s: Sequence[str],
    python: str | None,
    prefix: str,
    compression: Compression,
    epoch: int,
    pyc: bool,
) -> str:
    """CONTRACT.md's layer key: sorted member sha256s, python version, prefix, compression and
    level, layer format version; the format part also fixes the epoch (mtimes) and whether
    .pyc files were made, because both change the bytes."""
    return sha256_json(
        {
            "packages": sorted(sha256s),
            "python": python,
            "prefix": prefix,
            "compression": compression.name,
            "level": compression.level,
            "format": {"version": LAYER_FORMAT, "epoch": epoch, "pyc": pyc},
        }
    )


def generated_key(entries: Sequence[Entry], compression: Compression, epoch: int) -> str:
    """The layer key of a layer made from in-memory entries (the env's metadata layer): its
    exact content, compression and level, layer format and epoch, so a known one is never
    tarred or compressed again."""
    members = [
        [
            e.path,
            e.kind,
            e.target,
            e.executable,
            hashlib.sha256(e.data).hexdigest() if e.data is not None else None,
        ]
        for e in entries
    ]
    if any(e.kind == "file" and e.data is None for e in entries):
        raise ValueError("generated layers hold in-memory files only")
    return sha256_json(
        {
            "generated": members,
            "compression": compression.name,
            "level": compression.level,
            "format": {"version": LAYER_FORMAT, "epoch": epoch},
        }
    )


def record_key(key: str) -> str:
    return f"layers/{key}.json"


def blob_key(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    return f"blobs/{algo}/{hexd}"


@dataclass(frozen=True)
class LayerRecord:
    key: str
    blob: LayerBlob
    members: tuple[str, ...]  # "kind/name/version/sha256" of each package
    paths: tuple[str, ...] = ()  # files installed, relative to the prefix
    activation: tuple[tuple[str, ...], ...] = ()  # (script, var, value) from activate.d
    link_scripts: tuple[str, ...] = ()  # packages whose link scripts were not run

    def to_json(self) -> dict:
        return {
            "schema": schema_id("layer"),
            "key": self.key,
            **self.blob.to_json(),
            "members": list(self.members),
            "paths": list(self.paths),
            "activation": [list(kv) for kv in self.activation],
            "link_scripts": list(self.link_scripts),
        }

    @classmethod
    def from_json(cls, d: dict, where: str = "") -> LayerRecord:
        check_schema(d, "layer", where)
        return cls(
            key=d["key"],
            blob=LayerBlob.from_json(d),
            members=tuple(d.get("members", ())),
            paths=tuple(d.get("paths", ())),
            activation=tuple(tuple(a) for a in d.get("activation", ())),
            link_scripts=tuple(d.get("link_scripts", ())),
        )


def get(store: Store, key: str) -> LayerRecord | None:
    """The record for `key` when both it and its blob are in the store."""
    rk = record_key(key)
    try:  # one read, no exists() first: on S3 that is one request per layer instead of two
        raw = store.get_bytes(rk)
    except NotFound:
        raw = None
    except Exception:  # noqa: BLE001 - a vanished record is a miss, the layer is rebuilt
        raw = None
    if raw is None:
        return None
    try:
        rec = LayerRecord.from_json(json.loads(raw), f"{store.url}/{rk}")
    except (ValueError, KeyError):
        raise IntegrityError(
            f"layer record {rk} in {store.url} is damaged", "delete it; the layer is rebuilt"
        ) from None
    if not store.exists(blob_key(rec.blob.digest)):
        return None  # the blob was collected: build the layer again
    return rec


def get_many(store: Store, keys: Sequence[str], jobs: int = 8) -> list[LayerRecord | None]:
    """`get` for several keys; in parallel when the store is remote (S3: each is a round trip)."""
    if len(keys) < 2 or getattr(store, "root", None) is not None:  # a local folder
        return [get(store, k) for k in keys]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(jobs, len(keys))) as pool:
        return list(pool.map(lambda k: get(store, k), keys))


def temp_blob(store: Store) -> tuple[BinaryIO, Path]:
    """An open temp file for a new blob, on the store's filesystem when the store is local
    (then publishing is a hard link, not a copy)."""
    if hasattr(store, "temp_path"):
        path = store.temp_path("layer-", ".blob")
        return open(path, "wb"), path  # noqa: SIM115 - the caller closes it
    fd, name = tempfile.mkstemp(prefix="layer-", suffix=".blob")
    return os.fdopen(fd, "wb"), Path(name)


def put(store: Store, record: LayerRecord, tmp_blob: Path) -> LayerRecord:
    """Publish the blob, then the record. When another builder won the race with other bytes
    (another compressor), its record stands and ours is dropped: return the one in force."""
    key = blob_key(record.blob.digest)
    if not store.exists(key):
        if hasattr(store, "adopt"):  # a local store: the temp file becomes the blob, no copy
            store.adopt(key, tmp_blob)
        else:
            store.put_file(key, tmp_blob)
    kill_point("bake.record")  # testhooks: the blob is stored, its layer record is not
    data = json.dumps(record.to_json(), sort_keys=True, separators=(",", ":")).encode()
    if not store.put_bytes(record_key(record.key), data):
        existing = get(store, record.key)
        if existing is not None:
            return existing
    return record


@dataclass(frozen=True)
class StoreBlob:
    """A blob in the store, read only when a sink needs its bytes."""

    store: Store
    digest: str

    def local_path(self) -> Path | None:
        return self.store.local_path(blob_key(self.digest))

    def open(self) -> BinaryIO:
        local = self.local_path()
        if local is not None:
            return open(local, "rb")
        fd, name = tempfile.mkstemp(prefix="blob-")
        os.close(fd)
        try:
            self.store.get_file(blob_key(self.digest), Path(name))
            return open(name, "rb")  # noqa: SIM115 - the caller closes it
        finally:
            os.unlink(name)  # the open file stays readable
