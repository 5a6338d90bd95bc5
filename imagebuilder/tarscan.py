"""A minimal, fast reader of tar streams for archive checks (no extraction).

`scan(stream)` yields one `Member` per entry (name, type, mode, size, link target) with the
sha256 of a regular file's content computed on the way. It understands ustar, GNU long names
(L/K) and PAX headers (path, linkpath, size) — what conda, wheel and sdist tools write.
Anything it does not understand is reported as a TarError, never skipped.

Why not tarfile: checking a package decompresses all of it anyway, and Python-level work per
member (tarfile's, or a bytes copy of every chunk) cost as much again as the decompression. Here
the decompressor writes straight into one reused buffer (`readinto`), headers are parsed from
it and file contents are hashed from memoryviews of it: no bytes object per chunk, and the
data is still in the CPU cache when it is hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import NamedTuple

BLOCK = 512
# 256 KiB: big enough that per-call overhead vanishes, small enough to stay in L2 between the
# decompressor writing it and sha256 reading it (measured: 1 MiB is ~10% slower).
_BUF = 256 << 10
_MAX_HEADER_DATA = 1 << 20  # PAX / GNU long-name records bigger than this are not real
_ZERO = bytes(BLOCK)

FILE, HARDLINK, SYMLINK, DIR, SPECIAL = "file", "hardlink", "symlink", "dir", "special"
_TYPES = {
    b"0": FILE,
    b"\0": FILE,
    b"7": FILE,
    b"1": HARDLINK,
    b"2": SYMLINK,
    b"5": DIR,
    b"3": SPECIAL,
    b"4": SPECIAL,
    b"6": SPECIAL,
}


class TarError(Exception):
    pass


class Member(NamedTuple):  # a tuple: built once per member, thousands per package
    name: str
    kind: str
    mode: int
    size: int
    linkname: str
    sha256: str | None = None
    data: bytes | None = None  # kept only for names the caller asked for


class _Reader:
    """The stream's bytes through one buffer: [pos, end) is what is read and not consumed."""

    def __init__(self, stream) -> None:
        self.buf = bytearray(_BUF)
        self.mv = memoryview(self.buf)
        self.pos = self.end = 0
        readinto = getattr(stream, "readinto", None)
        self._readinto = readinto if readinto is not None else _readinto_from_read(stream)

    def fill(self, need: int) -> bool:
        """At least `need` (<= _BUF) bytes between pos and end; False at end of stream."""
        if self.end - self.pos >= need:
            return True
        rem = self.end - self.pos
        if rem:
            self.mv[:rem] = self.mv[self.pos : self.end]  # memoryview copy: memmove-safe
        self.pos, self.end = 0, rem
        while self.end < need:
            n = self._readinto(self.mv[self.end :])
            if not n:
                return False
            self.end += n
        return True

    def take(self, n: int) -> bytes:
        if n <= _BUF:
            if not self.fill(n):
                raise TarError("truncated tar stream")
            out = bytes(self.mv[self.pos : self.pos + n])
            self.pos += n
            return out
        parts: list[bytes] = []
        self.feed(n, parts.append, copy=True)
        return b"".join(parts)

    def feed(self, n: int, sink=None, copy: bool = False) -> None:
        """Consume n bytes, passing each buffered piece to sink (a memoryview, or bytes)."""
        while n:
            if self.pos == self.end and not self.fill(1):
                raise TarError("truncated tar stream")
            k = min(n, self.end - self.pos)
            if sink is not None:
                piece = self.mv[self.pos : self.pos + k]
                sink(bytes(piece) if copy else piece)
            self.pos += k
            n -= k


def _readinto_from_read(stream):
    def readinto(mv) -> int:
        data = stream.read(len(mv))
        mv[: len(data)] = data
        return len(data)

    return readinto


def _num(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        v = int.from_bytes(field[1:], "big")
        return v - (1 << (8 * (len(field) - 1))) if field[0] & 0x40 else v
    s = field.split(b"\0", 1)[0].strip()
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError:
        raise TarError(f"bad number field {field!r}") from None


def _str(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise TarError("bad PAX header") from None
        if length <= 0:
            raise TarError("bad PAX header")
        rec = data[sp + 1 : pos + length - 1]
        key, _, value = rec.partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def scan(stream, keep: frozenset[str] = frozenset(), hash_files: bool = True) -> Iterator[Member]:
    """Members of the tar stream; `keep` names files whose bytes are returned too;
    `hash_files=False` skips content hashing (sha256 is then None)."""
    r = _Reader(stream)
    long_name = long_link = None
    pax: dict[str, str] = {}
    sha256 = hashlib.sha256
    while True:
        if not r.fill(BLOCK):
            if r.end != r.pos:
                raise TarError("truncated tar stream")
            return  # tolerated: streams that end without the two zero blocks
        hdr = bytes(r.mv[r.pos : r.pos + BLOCK])
        r.pos += BLOCK
        if hdr == _ZERO:
            return
        if _num(hdr[148:156]) != sum(hdr) - sum(hdr[148:156]) + 256:
            raise TarError("bad header checksum")
        flag = hdr[156:157]
        size = _num(hdr[124:136])
        if flag in (b"L", b"K", b"x", b"g"):
            if not 0 <= size <= _MAX_HEADER_DATA:
                raise TarError(f"{size}-byte extended header")
            data = r.take(size)
            r.feed(-size % BLOCK)
            if flag == b"L":
                long_name = _str(data)
            elif flag == b"K":
                long_link = _str(data)
            elif flag == b"x":
                pax = _pax(data)
            continue
        name = _str(hdr[0:100])
        if hdr[257:262] == b"ustar":
            prefix = _str(hdr[345:500])
            if prefix:
                name = f"{prefix}/{name}"
        linkname = _str(hdr[157:257])
        if pax or long_name or long_link:
            name = pax.get("path", long_name or name)
            linkname = pax.get("linkpath", long_link or linkname)
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise TarError("bad PAX size") from None
            long_name = long_link = None
            pax = {}
        if size < 0:
            raise TarError(f"negative size for {name!r}")
        kind = _TYPES.get(flag)
        if kind is None:
            raise TarError(f"unsupported member type {flag!r} for {name!r}")
        mode = _num(hdr[100:108])
        digest = body = None
        if kind == FILE:
            h = sha256() if hash_files else None
            if keep and name.lstrip("./") in keep:
                body = r.take(size)
                if h is not None:
                    h.update(body)
            else:
                r.feed(size, h.update if h is not None else None)
            if h is not None:
                digest = h.hexdigest()
            r.feed(-size % BLOCK)
            yield Member(name, kind, mode, size, linkname, digest, body)
        else:
            r.feed(size + (-size % BLOCK))
            yield Member(name, kind, mode, 0, linkname)
