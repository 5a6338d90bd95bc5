"""Deterministic layer tars: same entries in, same bytes out, on any machine, any day.

The rules (docs/layering.md): entries sorted by path with every parent directory present,
mtime = the fixed epoch, uid/gid 0 and no user/group names, modes normalized (dirs and
executables 0755, other files 0644), hardlinks dereferenced (each path is a regular file, so
no entry depends on which path was seen first), PAX format (extended headers only where a name
or size needs one). One pass streams tar -> sha256 (diff_id) -> compressor -> sha256 (digest)
-> file; nothing is copied to a temp tar first.

Compressors: zstd through `zstandard` with at least one worker thread (its output is the same
for any worker count >= 1, which keeps digests independent of the core count) and gzip through
zlib with no name and mtime 0 in the header. Different zstd/zlib versions may still produce
other bytes: the store keeps every blob made (layerindex.py), so a known layer is reused, never
compressed again.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imagebuilder.errors import BadInput, Unavailable

LAYER_FORMAT = 1  # bump when the bytes a given input produces change (part of layer index keys)

MEDIA_TYPES = {
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6, "none": 0}
CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class Entry:
    """One member of a layer. `path` is relative to the image root ("opt/imgbuild/env/bin")."""

    path: str
    kind: str  # "file" | "dir" | "symlink"
    source: str | None = None  # file to read (kind == "file")
    target: str | None = None  # link target (kind == "symlink")
    executable: bool = False
    size: int = 0
    data: bytes | None = None  # in-memory content instead of `source` (generated files)


@dataclass(frozen=True)
class Compression:
    name: str  # "zstd" | "gzip" | "none"
    level: int

    @classmethod
    def of(cls, name: str, level: int | None = None) -> Compression:
        if name not in MEDIA_TYPES:
            raise BadInput(f"unknown compression {name!r}", "use zstd or gzip")
        return cls(name, DEFAULT_LEVELS[name] if level is None else level)

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.name]


@dataclass(frozen=True)
class LayerBlob:
    """What a written layer is: its compressed digest/size, the uncompressed diff_id, media type."""

    digest: str  # "sha256:<hex>" of the compressed blob
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int
    media_type: str

    def to_json(self) -> dict:
        return {
            "digest": self.digest,
            "diff_id": self.diff_id,
            "size": self.size,
            "media_type": self.media_type,
        }

    @classmethod
    def from_json(cls, d: dict) -> LayerBlob:
        return cls(d["digest"], d["diff_id"], int(d["size"]), d["media_type"])


# --- entries from a staged tree ----------------------------------------------------------------


def entry_for(root: str | os.PathLike, rel: str, dest_prefix: str) -> Entry:
    """An Entry for the file `root/rel`, placed at `dest_prefix/rel` in the image."""
    src = os.path.join(root, rel)
    st = os.lstat(src)
    dest = f"{dest_prefix.strip('/')}/{rel}".strip("/")
    if stat.S_ISLNK(st.st_mode):
        return Entry(dest, "symlink", target=os.readlink(src))
    if stat.S_ISDIR(st.st_mode):
        return Entry(dest, "dir")
    if stat.S_ISREG(st.st_mode):
        return Entry(dest, "file", source=src, executable=bool(st.st_mode & 0o111), size=st.st_size)
    raise BadInput(f"cannot put {src} into a layer: not a file, directory or symlink")


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """Sorted entries with every parent directory added (a tar must not rely on a lower layer
    to create the directories it writes into; runtimes then default their modes)."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        if e.path in by_path and by_path[e.path] != e:
            raise BadInput(f"two different entries for {e.path} in one layer")
        by_path[e.path] = e
        parts = e.path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in by_path:
                by_path[d] = Entry(d, "dir")
            elif by_path[d].kind != "dir":
                raise BadInput(f"{d} is both a directory and a {by_path[d].kind} in one layer")
    return [by_path[p] for p in sorted(by_path, key=_sort_key)]


def _sort_key(path: str) -> tuple[str, ...]:
    # Component-wise order: "a/b" before "a-b" would differ by plain string sort; this keeps a
    # directory's children right after it.
    return tuple(path.split("/"))


# --- the writer -------------------------------------------------------------------------------


class _HashingSink:
    """Compress, hash the compressed stream, write it to `out`."""

    def __init__(self, out: BinaryIO, compression: Compression, threads: int | None) -> None:
        self.out = out
        self.raw_hash = hashlib.sha256()
        self.blob_hash = hashlib.sha256()
        self.size = 0
        name = compression.name
        if name == "zstd":
            import zstandard

            # threads >= 1 always: zstd's multi-threaded output does not depend on the count.
            threads = max(1, min(threads or os.cpu_count() or 1, 8))
            self._c = zstandard.ZstdCompressor(level=compression.level, threads=threads)
            self._obj = self._c.compressobj()
        elif name == "gzip":
            self._obj = zlib.compressobj(compression.level, zlib.DEFLATED, 31)
        else:
            self._obj = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.raw_hash.update(data)
        out = self._obj.compress(data) if self._obj is not None else bytes(data)
        if out:
            self._emit(out)

    def _emit(self, out: bytes) -> None:
        self.blob_hash.update(out)
        self.out.write(out)
        self.size += len(out)

    def close(self) -> None:
        if self._obj is not None:
            self._emit(self._obj.flush())


def _header(e: Entry, epoch: int) -> bytes:
    """The tar header(s) of one entry: the bytes `tarfile` writes in PAX format (python 3.11),
    built directly (tarfile's TarInfo.tobuf costs ~100 us an entry: a second per 10k files).
    Rare cases (surrogate-escaped names, sizes or epochs beyond the ustar fields) go through
    tarfile itself; tests/oci compares both on edge cases."""
    name = e.path + ("/" if e.kind == "dir" else "")
    if e.kind == "dir":
        kind, mode, size, link = tarfile.DIRTYPE, 0o755, 0, ""
    elif e.kind == "symlink":
        kind, mode, size, link = tarfile.SYMTYPE, 0o777, 0, e.target or ""
    else:
        kind, mode, link = tarfile.REGTYPE, 0o755 if e.executable else 0o644, ""
        size = len(e.data) if e.data is not None else e.size
    if not (0 <= size < _OCTAL12 and 0 <= epoch < _OCTAL12):
        return _tarfile_header(e, epoch)
    pax: list[bytes] = []
    for key, value in ((b"path", name), (b"linkpath", link)):
        if value.isascii() and len(value) <= 100:
            continue
        try:
            pax.append(_pax_record(key, value.encode("utf-8", "strict")))
        except UnicodeEncodeError:  # surrogate escapes: tarfile's hdrcharset=BINARY path
            return _tarfile_header(e, epoch)
    head = b""
    if pax:
        records = b"".join(pax)
        head = _ustar(b"././@PaxHeader", 0, len(records), 0, tarfile.XHDTYPE, b"") + records
        if len(records) % BLOCK:
            head += b"\0" * (BLOCK - len(records) % BLOCK)
    return head + _ustar(
        name.encode("ascii", "replace"), mode, size, epoch, kind, link.encode("ascii", "replace")
    )


_OCTAL12 = 8**11  # the largest size / mtime a 12-byte octal ustar field holds, plus one
_USTAR_TAIL = b"ustar\x0000" + b"\0" * (32 + 32 + 8 + 8 + 155 + 12)  # magic, names, dev, prefix


def _ustar(name: bytes, mode: int, size: int, mtime: int, kind: bytes, link: bytes) -> bytes:
    """One ustar header block as tarfile's _create_header makes it (uid/gid 0, no user or
    group names, no device numbers, no prefix split)."""
    block = b"".join(
        (
            name[:100].ljust(100, b"\0"),
            b"%07o\0" % mode,
            b"0000000\x000000000\0",  # uid, gid
            b"%011o\0" % size,
            b"%011o\0" % mtime,
            b"        ",  # checksum field, counted as spaces
            kind,
            link[:100].ljust(100, b"\0"),
            _USTAR_TAIL,
        )
    )
    return block[:148] + b"%06o\0" % sum(block) + block[155:]


def _pax_record(key: bytes, value: bytes) -> bytes:
    """`<len> key=value\\n`, where len counts its own digits (tarfile's loop)."""
    n = len(key) + len(value) + 3
    p = 0
    while (m := n + len(str(p))) != p:
        p = m
    return b"%d %s=%s\n" % (p, key, value)


def _tarfile_header(e: Entry, epoch: int) -> bytes:
    info = tarfile.TarInfo(e.path + ("/" if e.kind == "dir" else ""))
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if e.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif e.kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, e.target or ""
    else:
        info.type, info.mode = tarfile.REGTYPE, 0o755 if e.executable else 0o644
        info.size = len(e.data) if e.data is not None else e.size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def write_tar(entries: list[Entry], sink, epoch: int) -> None:
    """Write `entries` (already sorted, parents included) as one tar stream into `sink`.

    Through one reused buffer that files are read into (`readinto`): no bytes object per file
    or chunk and no fresh allocation per flush. sink.write gets memoryviews of it, valid
    only during the call (hashlib and the compressors copy what they keep)."""
    out = _TarBuffer(sink)
    for e in entries:
        out.add(_header(e, epoch))
        if e.kind != "file":
            continue
        if e.data is not None:
            out.add(e.data)
            size = len(e.data)
        else:
            size = out.add_file(e)
        if size % BLOCK:
            out.add(_ZEROS[: BLOCK - size % BLOCK])
    out.add(_ZEROS[: 2 * BLOCK])
    out.flush()


_ZEROS = bytes(2 * BLOCK)


class _TarBuffer:
    def __init__(self, sink) -> None:
        self.sink = sink
        self.buf = bytearray(CHUNK + BLOCK)
        self.mv = memoryview(self.buf)
        self.n = 0

    def flush(self) -> None:
        if self.n:
            self.sink.write(self.mv[: self.n])
            self.n = 0

    def add(self, data: bytes) -> None:
        k = len(data)
        if self.n + k > len(self.buf):
            self.flush()
            if k > len(self.buf):
                self.sink.write(data)
                return
        self.mv[self.n : self.n + k] = data
        self.n += k

    def add_file(self, e: Entry) -> int:
        """Append the file's bytes; the size must not change since the entry was made (the
        header already holds it)."""
        assert e.source is not None
        want, n = e.size, 0
        with open(e.source, "rb", buffering=0) as f:
            while True:
                if self.n == len(self.buf):
                    self.flush()
                # one byte more than expected is asked for, to notice a file that grew
                room = min(len(self.buf) - self.n, want - n + 1)
                got = f.readinto(self.mv[self.n : self.n + room])
                if not got:
                    break
                self.n += got
                n += got
                if n > want:
                    break
        if n != want:
            raise Unavailable(
                f"{e.source} changed size while the layer was written ({want} -> {n})"
            )
        return n


def write_layer(
    entries: Iterable[Entry],
    out: BinaryIO,
    compression: Compression,
    epoch: int = 0,
    threads: int | None = None,
) -> LayerBlob:
    """Write one deterministic layer blob to `out`; return its digests and size. threads: zstd
    workers (default: one per core); the bytes do not depend on it."""
    sink = _HashingSink(out, compression, threads)
    write_tar(with_parents(entries), sink, epoch)
    sink.close()
    return LayerBlob(
        digest="sha256:" + sink.blob_hash.hexdigest(),
        diff_id="sha256:" + sink.raw_hash.hexdigest(),
        size=sink.size,
        media_type=compression.media_type,
    )


def write_layer_file(
    entries: Iterable[Entry], path: Path, compression: Compression, epoch: int = 0
) -> LayerBlob:
    try:
        with open(path, "wb") as f:
            return write_layer(entries, f, compression, epoch)
    except OSError as e:
        import errno

        if e.errno == errno.ENOSPC:
            raise Unavailable(
                f"out of disk space while writing a layer to {path.parent}",
                "free disk space and rerun",
            ) from None
        raise


def decompressed(media_type: str, f: BinaryIO) -> BinaryIO:
    """The uncompressed tar stream of a layer blob opened as `f`, for its media type."""
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(f)
    if "gzip" in media_type:
        import gzip

        return gzip.GzipFile(fileobj=f, mode="rb")
    return f


def decompressor(media_type: str):
    """A function bytes-stream -> uncompressed chunks, for a layer media type (docker-archive)."""
    return lambda f: _iter_reader(decompressed(media_type, f))


def _iter_reader(r):
    while chunk := r.read(CHUNK):
        yield chunk


def member_content(source, media_type: str, name: str) -> tuple | None:
    """("file", bytes) or ("link", target) of one member of a stored layer, None if absent
    (collision checks against layers that were not staged again)."""
    import io

    with source.open() as f:
        raw = b"".join(decompressor(media_type)(f))
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        try:
            m = tar.getmember(name)
        except KeyError:
            return None
        if m.issym():
            return ("link", m.linkname)
        data = tar.extractfile(m)
        return ("file", data.read()) if data is not None else None
