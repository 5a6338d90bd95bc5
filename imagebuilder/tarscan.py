"""A minimal, fast reader of tar streams for archive checks (no extraction).

`scan(stream)` yields one `Member` per entry (name, type, mode, size, link target) with the
sha256 of a regular file's content computed on the way. It understands ustar, GNU long names
(L/K) and PAX headers (path, linkpath, size) — what conda, wheel and sdist tools write — and
reads the stream in 1 MiB chunks: Python's tarfile costs several times the decompression
itself on packages with thousands of small files, which made checking dominate caching.
Anything it does not understand is reported as a TarError, never skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

BLOCK = 512
_READ = 1 << 20
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


@dataclass(frozen=True)
class Member:
    name: str
    kind: str
    mode: int
    size: int
    linkname: str
    sha256: str | None = None
    data: bytes | None = None  # kept only for names the caller asked for


class _Buffered:
    def __init__(self, stream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.pos = 0
        self._scratch: bytearray | None = None

    def _fill(self, n: int) -> bool:
        while len(self.buf) - self.pos < n:
            chunk = self.stream.read(_READ)
            if not chunk:
                return False
            if self.pos:
                del self.buf[: self.pos]
                self.pos = 0
            self.buf += chunk
        return True

    def take(self, n: int) -> bytes:
        if not self._fill(n):
            raise TarError("truncated tar stream")
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def feed(self, n: int, sink) -> None:
        """Pass n bytes to sink(memoryview) without building one big bytes object."""
        while n:
            if self.pos >= len(self.buf) and not self._fill(1):
                raise TarError("truncated tar stream")
            k = min(n, len(self.buf) - self.pos)
            with memoryview(self.buf) as mv:
                sink(mv[self.pos : self.pos + k])
            self.pos += k
            n -= k

    def skip(self, n: int, sink=None) -> None:
        """Consume n bytes, passing them to sink if given. Past what is buffered, read straight
        from the stream into one scratch buffer: no copy into the header buffer, no new bytes
        objects (most of a package is file data we only skip or hash)."""
        avail = len(self.buf) - self.pos
        if n <= avail:
            if sink is not None:
                with memoryview(self.buf) as mv:
                    sink(mv[self.pos : self.pos + n])
            self.pos += n
            return
        if avail:
            if sink is not None:
                with memoryview(self.buf) as mv:
                    sink(mv[self.pos :])
            n -= avail
        self.buf.clear()
        self.pos = 0
        readinto = getattr(self.stream, "readinto", None)
        if readinto is None:
            self.feed(n, sink or _discard)
            return
        if self._scratch is None:
            self._scratch = bytearray(_READ)
        with memoryview(self._scratch) as scratch:
            while n:
                k = readinto(scratch[: min(n, _READ)])
                if not k:
                    raise TarError("truncated tar stream")
                if sink is not None:
                    sink(scratch[:k])
                n -= k

    def at_end(self) -> bool:
        return not self._fill(1)


def _discard(_data) -> None:
    pass


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
    r = _Buffered(stream)
    long_name = long_link = None
    pax: dict[str, str] = {}
    while True:
        if r.at_end():
            return  # tolerated: streams that end without the two zero blocks
        hdr = r.take(BLOCK)
        if hdr == _ZERO:
            return
        chk = _num(hdr[148:156])
        if chk != sum(hdr[:148]) + 256 + sum(hdr[156:]):
            raise TarError("bad header checksum")
        flag = hdr[156:157]
        size = _num(hdr[124:136])
        if flag in (b"L", b"K", b"x", b"g"):
            data = r.take(size)
            r.take(-size % BLOCK)
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
        name = pax.get("path", long_name or name)
        linkname = pax.get("linkpath", long_link or linkname)
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise TarError("bad PAX size") from None
        long_name = long_link = None
        pax = {}
        kind = _TYPES.get(flag)
        if kind is None:
            raise TarError(f"unsupported member type {flag!r} for {name!r}")
        mode = _num(hdr[100:108])
        digest = body = None
        if kind == FILE:
            h = hashlib.sha256() if hash_files else None
            if name.lstrip("./") in keep:
                body = r.take(size)
                if h is not None:
                    h.update(body)
            else:
                r.skip(size, h.update if h is not None else None)
            digest = h.hexdigest() if h is not None else None
        elif size:
            r.skip(size)
        r.take(-size % BLOCK)
        yield Member(name, kind, mode, size if kind == FILE else 0, linkname, digest, body)
