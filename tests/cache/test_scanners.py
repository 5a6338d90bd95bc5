"""The fast readers under archive checks see what tarfile and zipfile see, and refuse what
they refuse (imagebuilder/tarscan.py, imagebuilder/zipscan.py)."""

import hashlib
import io
import os
import struct
import tarfile
import zipfile

import pytest

from imagebuilder import tarscan
from imagebuilder.zipscan import ZipScanError, member_digests

# Sizes around block and buffer edges: 0, one block +-1, and past the 256 KiB read buffer.
_SIZES = [0, 1, 511, 512, 513, (256 << 10) - 1, (256 << 10) + 700, 3 << 20]


def _data(n: int, seed: int) -> bytes:
    # half random, half repetitive: compressible but not trivially so
    r = os.urandom(n // 2)
    return r + bytes([seed % 256]) * (n - len(r))


def _tar(fmt: int) -> tuple[bytes, dict[str, bytes]]:
    files = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        d = tarfile.TarInfo("pkg")
        d.type = tarfile.DIRTYPE
        t.addfile(d)
        for i, n in enumerate(_SIZES):
            name = f"pkg/{'long' * 30 if i % 2 else 'f'}{i}.bin"  # odd ones need long names
            data = _data(n, i)
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o755 if i == 3 else 0o644
            t.addfile(ti, io.BytesIO(data))
            files[name] = data
        s = tarfile.TarInfo("pkg/link")
        s.type, s.linkname = tarfile.SYMTYPE, "t" * 150 + "/x"  # a long link target
        t.addfile(s)
        h = tarfile.TarInfo("pkg/hard")
        h.type, h.linkname = tarfile.LNKTYPE, "pkg/f0.bin"
        t.addfile(h)
    return buf.getvalue(), files


class _ReadOnly:
    """A stream with read() and no readinto(), as some decompressors are."""

    def __init__(self, data: bytes) -> None:
        self.f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self.f.read(min(n, 1000))  # short reads too


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("wrap", [io.BytesIO, _ReadOnly])
def test_tarscan_sees_what_tarfile_sees(fmt, wrap):
    raw, files = _tar(fmt)
    want = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        for ti in t:
            want.append((ti.name, ti.mode, ti.linkname, ti.size if ti.isreg() else 0))
    got = list(tarscan.scan(wrap(raw), keep=frozenset({"pkg/f0.bin"})))
    # tarfile drops a directory's trailing slash; tarscan reports names as written
    assert [(m.name.rstrip("/"), m.mode, m.linkname, m.size) for m in got] == want
    kinds = {m.name.rstrip("/"): m.kind for m in got}
    assert kinds["pkg"] == tarscan.DIR and kinds["pkg/link"] == tarscan.SYMLINK
    assert kinds["pkg/hard"] == tarscan.HARDLINK
    for m in got:
        if m.kind == tarscan.FILE:
            assert m.sha256 == hashlib.sha256(files[m.name]).hexdigest(), m.name
    assert next(m for m in got if m.name == "pkg/f0.bin").data == files["pkg/f0.bin"]
    assert all(m.sha256 is None for m in tarscan.scan(io.BytesIO(raw), hash_files=False))


def test_tarscan_refuses_truncated_and_corrupt_streams():
    raw, _ = _tar(tarfile.PAX_FORMAT)
    for cut in (700, len(raw) // 2, 512 * 3 + 100):
        with pytest.raises(tarscan.TarError, match="truncated"):
            list(tarscan.scan(io.BytesIO(raw[:cut])))
    bad = bytearray(raw)
    bad[0] ^= 0xFF  # the first header's name: its checksum no longer matches
    with pytest.raises(tarscan.TarError, match="checksum"):
        list(tarscan.scan(io.BytesIO(bytes(bad))))


def test_tarscan_refuses_a_huge_extended_header():
    ti = tarfile.TarInfo("././@PaxHeader")
    ti.type, ti.size = tarfile.XHDTYPE, 1 << 30  # claims 1 GiB of PAX records
    hdr = ti.tobuf(format=tarfile.USTAR_FORMAT)
    with pytest.raises(tarscan.TarError, match="extended header"):
        list(tarscan.scan(io.BytesIO(hdr + bytes(4096))))


@pytest.fixture(params=["isal", "zlib"])
def inflate_lib(request, monkeypatch):
    """Every zipscan test runs with ISA-L (the default where installed) and with zlib (the
    fallback): both must give the same digests and the same refusals."""
    import zlib

    from imagebuilder import zipscan

    if request.param == "isal":
        from isal import isal_zlib as lib  # a declared dependency: never skipped
    else:
        lib = zlib
    monkeypatch.setattr(zipscan, "_inflate_lib", lib)
    monkeypatch.setattr(zipscan, "_INFLATE_ERRORS", (zlib.error, lib.error))
    return request.param


def _zip(path, method=zipfile.ZIP_DEFLATED) -> dict[str, bytes]:
    files = {f"m{i}.bin": _data(n, i) for i, n in enumerate(_SIZES)}
    files["zeros.bin"] = bytes(5 << 20)  # inflates in many bounded pieces
    with zipfile.ZipFile(path, "w", compression=method) as z:
        z.writestr("dir/", "")
        for n, d in files.items():
            z.writestr(n, d)
    return files


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_zipscan_digests_equal_zipfile_reads(inflate_lib, tmp_path, method):
    p = tmp_path / "a.whl"
    files = _zip(p, method)
    with zipfile.ZipFile(p) as z:
        got = {zi.filename: d for zi, d in member_digests(z, z.infolist())}
    assert got == {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}


def _member_offset(p, name) -> tuple[int, int]:
    """(offset of the member's data, its compressed size)."""
    with zipfile.ZipFile(p) as z:
        zi = z.getinfo(name)
    raw = p.read_bytes()
    n, e = struct.unpack("<2H", raw[zi.header_offset + 26 : zi.header_offset + 30])
    return zi.header_offset + 30 + n + e, zi.compress_size


def _scan(p):
    with zipfile.ZipFile(p) as z:
        return list(member_digests(z, z.infolist()))


def test_zipscan_refuses_changed_bytes(inflate_lib, tmp_path):
    p = tmp_path / "a.whl"
    _zip(p)
    off, size = _member_offset(p, "m7.bin")
    raw = bytearray(p.read_bytes())
    raw[off + size // 2] ^= 0x55
    p.write_bytes(bytes(raw))
    with pytest.raises(ZipScanError):  # CRC, or a deflate stream that no longer inflates
        _scan(p)
    with zipfile.ZipFile(p) as z, pytest.raises((zipfile.BadZipFile, Exception)):
        z.read("m7.bin")  # zipfile refuses it too


def test_zipscan_refuses_a_local_name_that_differs(inflate_lib, tmp_path):
    p = tmp_path / "a.whl"
    _zip(p)
    with zipfile.ZipFile(p) as z:
        at = z.getinfo("m2.bin").header_offset + 30
    raw = bytearray(p.read_bytes())
    raw[at : at + 2] = b"xx"  # the local header now names "xx.bin"
    p.write_bytes(bytes(raw))
    with pytest.raises(ZipScanError, match="differ"):
        _scan(p)


def test_zipscan_refuses_a_member_larger_than_declared(inflate_lib, tmp_path):
    p = tmp_path / "a.whl"
    _zip(p)
    with zipfile.ZipFile(p) as z:
        infos = z.infolist()
        zi = z.getinfo("zeros.bin")
        zi.file_size = 1000  # the directory lies: a bomb declares little
        with pytest.raises(ZipScanError, match="past its declared size"):
            list(member_digests(z, infos))


def test_zipscan_refuses_a_truncated_file(inflate_lib, tmp_path):
    p = tmp_path / "a.whl"
    _zip(p)
    with zipfile.ZipFile(p) as z:
        infos = z.infolist()
        fd = os.open(p, os.O_RDWR)
        try:
            os.truncate(fd, z.getinfo("zeros.bin").header_offset + 40)
        finally:
            os.close(fd)
        with pytest.raises(ZipScanError):
            list(member_digests(z, infos))
