"""layer.py builds tar headers itself (tarfile's cost ~100 us an entry); they must be the bytes
tarfile writes in PAX format, or layer digests would change. Compared on edge cases: names of
99/100/101 bytes with and without the directory slash, non-ASCII and surrogate-escaped names,
long symlink targets, sizes and epochs at the ustar field limits."""

from __future__ import annotations

import random

import pytest

from imagebuilder.oci.layer import CHUNK, Entry, _header, _tarfile_header

NAMES = [
    "a",
    "x" * 98,
    "x" * 99,
    "x" * 100,
    "x" * 101,
    "d/" * 60 + "f",
    "opt/imgbuild/env/share/é-unicode.txt",
    "opt/é" * 30,
    "opt/\udcff-not-utf8",
    "opt/日本語/" + "y" * 120,
]
TARGETS = ["", "t", "t" * 100, "t" * 101, "../é", "z/" * 80, "\udcfe"]


def entries():
    for name in NAMES:
        yield Entry(name, "dir")
        for size in (0, 1, 511, 512, 8**11 - 1, 8**11):
            yield Entry(name, "file", source="/nonexistent", size=size)
            yield Entry(name, "file", source="/nonexistent", size=size, executable=True)
        yield Entry(name, "file", data=b"in memory")
        for target in TARGETS:
            yield Entry(name, "symlink", target=target)
    rnd = random.Random(6)
    alphabet = "abcdefghij/._-é日\udc80"
    for _ in range(2000):
        name = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 240)))
        kind = rnd.choice(["file", "dir", "symlink"])
        target = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 150)))
        yield Entry(name, kind, source="/x", size=rnd.randint(0, 1 << 40), target=target)


@pytest.mark.parametrize("epoch", [0, 1, 1700000000, 8**11 - 1, 8**11])
def test_headers_are_tarfiles_bytes(epoch):
    n = 0
    for e in entries():
        assert _header(e, epoch) == _tarfile_header(e, epoch), e
        n += 1
    assert n > 2000


@pytest.mark.parametrize(
    "sizes",
    [[0, 1, 511, 512, 513], [CHUNK - 1, CHUNK, CHUNK + 1, 7], [3 * CHUNK + 7, 100, CHUNK * 2]],
)
def test_file_contents_are_tarfiles_bytes(tmp_path, sizes):
    """File data goes through one reused buffer (readinto); the stream must still be what
    tarfile writes for the same entries, across the buffer's size."""
    import io
    import os
    import tarfile

    from imagebuilder.oci.layer import entry_for, write_tar

    entries = []
    for i, n in enumerate(sizes):
        (tmp_path / f"f{i}").write_bytes(os.urandom(n))
        entries.append(entry_for(tmp_path, f"f{i}", "p"))
    got = io.BytesIO()
    write_tar(entries, got, 0)
    want = io.BytesIO()
    with tarfile.open(fileobj=want, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.size, info.mode, info.mtime, info.uname, info.gname = e.size, 0o644, 0, "", ""
            with open(e.source, "rb") as f:
                t.addfile(info, f)
    # tarfile pads the archive to a multiple of its 10 KiB record; the layer ends after the
    # two zero blocks
    assert want.getvalue()[: len(got.getvalue())] == got.getvalue()
    assert not want.getvalue()[len(got.getvalue()) :].strip(b"\0")


@pytest.mark.parametrize("before,after", [(5, 6), (CHUNK + 5, CHUNK + 6), (CHUNK + 5, 3)])
def test_a_file_that_grows_or_shrinks_is_refused(tmp_path, before, after):
    import io

    from imagebuilder.oci.layer import entry_for, write_tar

    p = tmp_path / "f"
    p.write_bytes(b"x" * before)
    e = entry_for(tmp_path, "f", "p")
    p.write_bytes(b"y" * after)
    with pytest.raises(Exception, match="changed size"):
        write_tar([e], io.BytesIO(), 0)
