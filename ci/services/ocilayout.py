"""A small, deterministic OCI image-layout writer (independent of the product's oci/ code).

Same input tree -> same bytes: entries sorted, mtime 0, uid/gid 0, no user/group names,
gzip without name or timestamp, JSON with sorted keys and no spaces.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

EPOCH = "1970-01-01T00:00:00Z"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Layer:
    blob: Blob
    diff_id: str  # sha256 of the uncompressed tar


class _HashWriter(io.RawIOBase):
    def __init__(self, out):
        self.out, self.h, self.n = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.h.update(b)
        self.n += len(b)
        if self.out is not None:
            self.out.write(b)
        return len(b)


class Layout:
    """An OCI image layout folder (blobs/sha256/..., oci-layout, index.json)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.split(":", 1)[1]

    def put_bytes(self, data: bytes, media_type: str) -> Blob:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        p = self.blob_path(digest)
        if not p.exists():
            tmp = p.with_name(p.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, p)
        return Blob(digest, len(data), media_type)

    def add_blob_file(self, src: Path, blob: Blob) -> None:
        """Reuse a blob from another layout (hardlink when possible)."""
        dst = self.blob_path(blob.digest)
        if dst.exists():
            return
        try:
            os.link(src, dst)
        except OSError:
            tmp = dst.with_name(dst.name + ".tmp")
            tmp.write_bytes(Path(src).read_bytes())
            os.replace(tmp, dst)

    def put_layer(self, entries: Iterable[tuple[str, Path]]) -> Layer:
        """A gzip tar layer of (name in image, path on disk) pairs, written deterministically."""
        tmp = self.path / "blobs" / "sha256" / f".layer-{os.getpid()}.tmp"
        with open(tmp, "wb") as raw:
            outer = _HashWriter(raw)
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=outer, compresslevel=6, mtime=0
            ) as gz:
                inner = _HashWriter(gz)
                write_tar(inner, entries)
        digest = "sha256:" + outer.h.hexdigest()
        os.replace(tmp, self.blob_path(digest))
        return Layer(Blob(digest, outer.n, MT_LAYER_GZIP), "sha256:" + inner.h.hexdigest())

    def put_image(
        self, layers: list[Layer], config: dict, tag: str, annotations: dict[str, str] | None = None
    ) -> Blob:
        config = {**config, "rootfs": {"type": "layers", "diff_ids": [ly.diff_id for ly in layers]}}
        cfg = self.put_bytes(canonical(config), MT_CONFIG)
        manifest: dict = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": cfg.descriptor(),
            "layers": [ly.blob.descriptor() for ly in layers],
        }
        if annotations:
            manifest["annotations"] = annotations
        man = self.put_bytes(canonical(manifest), MT_MANIFEST)
        self.tag(man, tag, {"architecture": config["architecture"], "os": config["os"]})
        return man

    def tag(self, manifest: Blob, tag: str, platform: dict) -> None:
        index_path = self.path / "index.json"
        index = (
            json.loads(index_path.read_text())
            if index_path.exists()
            else {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
        )
        index["manifests"] = [
            m
            for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
        ]
        index["manifests"].append(
            {
                **manifest.descriptor(),
                "platform": platform,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        )
        tmp = index_path.with_suffix(".tmp")
        tmp.write_bytes(canonical(index))
        os.replace(tmp, index_path)


def tree_entries(root: Path, include: set[str] | None = None) -> list[tuple[str, Path]]:
    """All paths under `root` as (relative name, path), sorted; `include` limits to those names
    (and keeps their parent directories)."""
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for n in dirnames + filenames:
            names.append(n if rel == "." else f"{rel}/{n}")
    if include is not None:
        keep = set()
        for n in include:
            parts = n.split("/")
            keep.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        names = [n for n in names if n in keep]
    return [(n, root / n) for n in sorted(names)]


def write_tar(out, entries: Iterable[tuple[str, Path]]) -> None:
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, path in entries:
            st = os.lstat(path)
            ti = tarfile.TarInfo(name)
            ti.mode = stat.S_IMODE(st.st_mode)
            ti.mtime = 0
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            elif stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(path)
                tar.addfile(ti)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen_inodes:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = seen_inodes[key]
                    tar.addfile(ti)
                    continue
                seen_inodes[key] = name
                ti.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(ti, f)
            # sockets, fifos and device nodes are not part of a base image
