"""Unpacking a base image on this machine to run its python (oci/baseroot.py): whiteouts
applied, and nothing a layer names or links can write, or point, outside the unpacked root."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

from imagebuilder.oci import baseroot
from imagebuilder.oci.base import Base
from imagebuilder.oci.image import BytesBlob, Descriptor, Layer, Platform


def layer(*members: tuple) -> Layer:
    """(name, "file", data) | (name, "dir") | (name, "sym", target) | (name, "hard", target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in members:
            info = tarfile.TarInfo(m[0])
            data = b""
            if m[1] == "file":
                data = m[2]
                info.size = len(data)
            elif m[1] == "dir":
                info.type = tarfile.DIRTYPE
            elif m[1] == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, m[2]
            elif m[1] == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, m[2]
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    desc = Descriptor("application/vnd.oci.image.layer.v1.tar", digest, len(data))
    return Layer(desc, digest, BytesBlob(data), "base")


def base(*layers: Layer, arch: str = "amd64") -> Base:
    digest = hashlib.sha256(b"".join(x.source.data for x in layers)).hexdigest()
    return Base("test-base", f"sha256:{digest}", {}, tuple(layers), Platform("linux", arch))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _outside(tmp_path: Path, root: Path) -> list[str]:
    """Files under tmp_path that are neither in the unpacked root nor the cache's own."""
    return sorted(
        str(p)
        for p in tmp_path.rglob("*")
        if not p.is_dir() and not p.is_relative_to(root.parent.parent)
    )


def test_escaping_names_and_symlinks_stay_inside(tmp_path):
    b = base(
        layer(
            ("../../escape-by-name", "file", b"a"),
            ("/abs/file", "file", b"b"),
            ("up", "sym", "../../../../.."),  # a folder link that climbs out
            ("host", "sym", "/"),  # an absolute link: the root, not this machine's /
        ),
        layer(
            ("up/escape-through-link", "file", b"c"),
            ("host/tmp/through-abs-link", "file", b"d"),
        ),
    )
    root = baseroot.materialize(b)
    assert (root / "escape-by-name").read_bytes() == b"a"
    assert (root / "abs/file").read_bytes() == b"b"
    assert (root / "escape-through-link").read_bytes() == b"c"
    assert (root / "tmp/through-abs-link").read_bytes() == b"d"
    # the links on disk resolve inside the root too (the loader follows them)
    assert Path(os.path.realpath(root / "up")) == root.resolve()
    assert Path(os.path.realpath(root / "host")) == root.resolve()
    assert _outside(tmp_path, root) == []
    assert not Path("/escape-by-name").exists() and not Path("/tmp/through-abs-link").exists()


def test_whiteouts_and_opaque_folders(tmp_path):
    b = base(
        layer(
            ("etc/a", "file", b"1"),
            ("etc/b", "file", b"2"),
            ("opt/x/old", "file", b"3"),
            ("lib/link", "sym", "../etc/a"),
        ),
        layer(
            ("etc/.wh.a", "file", b""),
            ("lib/.wh.link", "file", b""),
            ("opt/x/new", "file", b"4"),  # written by the same layer as the opaque marker
            ("opt/x/.wh..wh..opq", "file", b""),
        ),
    )
    root = baseroot.materialize(b)
    assert not (root / "etc/a").exists() and (root / "etc/b").read_bytes() == b"2"
    assert not (root / "lib/link").is_symlink()
    assert sorted(p.name for p in (root / "opt/x").iterdir()) == ["new"]


def test_hardlinks_and_a_second_call_reuses_the_unpacked_root(tmp_path):
    b = base(layer(("usr/bin/tool", "file", b"#!x"), ("usr/bin/tool2", "hard", "usr/bin/tool")))
    root = baseroot.materialize(b)
    assert os.path.samefile(root / "usr/bin/tool", root / "usr/bin/tool2")
    (root / "marker").write_text("kept")
    assert baseroot.materialize(b) == root and (root / "marker").exists()


def test_symlink_loops_do_not_hang():
    b = base(layer(("a", "sym", "b"), ("b", "sym", "a")), layer(("a/f", "file", b"x")))
    with pytest.raises(ValueError, match="symlink loop"):
        baseroot.materialize(b)
    assert baseroot.python_command(b, "/usr/bin/python3.11", "3.11") is None


def test_elf_interpreter_of_this_python():
    interp = baseroot._elf_interpreter(Path(os.path.realpath(sys.executable)))
    assert interp is not None and "ld-linux" in interp


def test_other_arch_scratch_and_non_elf_bases_get_no_command(tmp_path):
    other = "arm64" if baseroot._conda_arch("amd64") == _host() else "amd64"
    b = base(layer(("usr/bin/python3.11", "file", b"#!/bin/sh\n")), arch=other)
    assert baseroot.python_command(b, "/usr/bin/python3.11", "3.11") is None
    assert not baseroot.can_run(b, "/usr/bin/python3.11", "3.11")
    assert not (tmp_path / "cache" / "base-root").exists()  # nothing unpacked for another arch
    same = base(layer(("usr/bin/python3.11", "file", b"#!/bin/sh\n")), arch=_oci_host())
    assert baseroot.python_command(same, "/usr/bin/python3.11", "3.11") is None  # not ELF
    assert not baseroot.can_run(same, "/usr/bin/python3.11", "3.11")
    scratch = Base("scratch", None, {}, (), Platform("linux", _oci_host()))
    assert not baseroot.can_run(scratch, "/usr/bin/python3.11", "3.11")


def _host() -> str:
    from imagebuilder.platforms import host_arch

    return host_arch()


def _oci_host() -> str:
    return "amd64" if _host() == "linux-64" else "arm64"
