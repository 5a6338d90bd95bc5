"""Pure value tests: deterministic layers, the layer plan, image/index values, sink names,
layout and archive writers — on synthetic trees, no rattler, no services."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from pathlib import Path

import pytest
import zstandard

from imagebuilder.errors import BadInput, Conflict, ImgbuildError, UsageError
from imagebuilder.oci.base import scratch
from imagebuilder.oci.image import (
    MT_INDEX,
    BytesBlob,
    Descriptor,
    FileBlob,
    Layer,
    Platform,
    append,
    make_index,
)
from imagebuilder.oci.layer import Compression, Entry, entry_for, with_parents, write_layer
from imagebuilder.oci.layout import LayoutSink, read_index
from imagebuilder.oci.plan import PlanItem, Rules, bucket_of, check_collisions, plan_layers
from imagebuilder.oci.sink import parse_sink

AMD64 = Platform("linux", "amd64")


def tree(root: Path, umask_mode: int = 0o600) -> list[str]:
    files = {
        "bin/tool": (b"#!/bin/sh\necho hi\n", 0o700),
        "lib/python3.11/site-packages/a/__init__.py": (b"x = 1\n", umask_mode),
        "lib/big.bin": (random.Random(1).randbytes(3 << 20), umask_mode),
        "share/é-unicode.txt": (b"u", umask_mode),
        "share/" + "long" * 40 + ".txt": (b"long name", umask_mode),
    }
    for rel, (data, mode) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, mode)
    os.symlink("tool", root / "bin/alias")
    os.link(root / "bin/tool", root / "bin/hardlink")
    return sorted([*files, "bin/alias", "bin/hardlink"])


def layer_bytes(root: Path, rels, comp="zstd", epoch=0):
    out = io.BytesIO()
    blob = write_layer(
        [entry_for(root, r, "opt/imgbuild/env") for r in rels], out, Compression.of(comp), epoch
    )
    return blob, out.getvalue()


def members(data: bytes, comp: str) -> list[tarfile.TarInfo]:
    raw = (
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        if comp == "zstd"
        else gzip.decompress(data)
    )
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        return t.getmembers()


@pytest.mark.parametrize("comp", ["zstd", "gzip"])
def test_layer_is_deterministic_across_trees_modes_and_order(tmp_path, comp):
    a, b = tmp_path / "a", tmp_path / "b"
    rels = tree(a, 0o600)
    tree(b, 0o644)  # other modes, another folder, other inodes and mtimes
    os.utime(b / "bin/tool", (1e9, 1e9))
    blob_a, data_a = layer_bytes(a, rels, comp)
    blob_b, data_b = layer_bytes(b, list(reversed(rels)), comp)
    assert data_a == data_b and blob_a == blob_b
    assert blob_a.digest == "sha256:" + hashlib.sha256(data_a).hexdigest()
    assert blob_a.size == len(data_a)


def test_layer_normalizes_entries(tmp_path):
    rels = tree(tmp_path)
    blob, data = layer_bytes(tmp_path, rels, "zstd", epoch=1234)
    ms = members(data, "zstd")
    names = [m.name for m in ms]
    assert names[:4] == ["opt", "opt/imgbuild", "opt/imgbuild/env", "opt/imgbuild/env/bin"]
    by = {m.name: m for m in ms}
    for m in ms:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 1234)
        if m.isdir():
            assert m.mode == 0o755
    assert by["opt/imgbuild/env/bin/tool"].mode == 0o755
    assert by["opt/imgbuild/env/lib/big.bin"].mode == 0o644  # was 0600: readable by any user
    assert (
        by["opt/imgbuild/env/bin/alias"].issym()
        and by["opt/imgbuild/env/bin/alias"].linkname == "tool"
    )
    assert by["opt/imgbuild/env/bin/hardlink"].isreg()  # dereferenced, not order-dependent
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    assert blob.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert any(n.endswith("é-unicode.txt") for n in names)


def test_gzip_header_has_no_name_or_mtime(tmp_path):
    rels = tree(tmp_path)
    _, data = layer_bytes(tmp_path, rels, "gzip")
    assert data[:4] == b"\x1f\x8b\x08\x00"  # no FNAME flag
    assert data[4:8] == b"\0\0\0\0"  # mtime 0


def test_zstd_output_does_not_depend_on_thread_count(tmp_path, monkeypatch):
    rels = tree(tmp_path)
    _, one = layer_bytes(tmp_path, rels)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    _, other = layer_bytes(tmp_path, rels)
    assert one == other


def test_zstd_output_does_not_depend_on_the_threads_bake_gives(tmp_path):
    """bake shares the cores out between the layers it writes at once (threads=cores//jobs)."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20) + bytes(9 << 20))  # spans several zstd jobs
    rels = [*tree(tmp_path), "big.bin"]
    entries = [entry_for(tmp_path, r, "opt/imgbuild/env") for r in rels]
    outs = set()
    for threads in (1, 2, 4):
        out = io.BytesIO()
        write_layer(entries, out, Compression.of("zstd"), 0, threads)
        outs.add(out.getvalue())
    assert len(outs) == 1


def test_with_parents_rejects_file_dir_clash():
    with pytest.raises(BadInput):
        with_parents([Entry("a", "file", data=b""), Entry("a/b", "file", data=b"")])


def test_file_changing_size_is_refused(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"12345")
    e = entry_for(tmp_path, "f", "x")
    p.write_bytes(b"1")
    with pytest.raises(Exception, match="changed size"):
        write_layer([e], io.BytesIO(), Compression.of("zstd"))


# --- plan -----------------------------------------------------------------------------------------


def items(n_small=30, big=("python", "openssl", "numpy")):
    out = [
        PlanItem("conda", f"small{i}", f"{i:064x}", 1000 + i, ("python",)) for i in range(n_small)
    ]
    out.append(PlanItem("conda", "python", "a" * 64, 30 << 20, ("openssl",)))
    out.append(PlanItem("conda", "openssl", "b" * 64, 3 << 20, ()))
    out.append(PlanItem("conda", "numpy", "c" * 64, 8 << 20, ("python",)))
    return out


def test_plan_big_alone_small_bucketed_foundations_first():
    groups = plan_layers(items())
    names = [g.name for g in groups]
    assert names[:3] == ["conda/openssl", "conda/python", "conda/numpy"]
    assert all(n.startswith("bucket-") for n in names[3:])
    members = [m.ident for g in groups for m in g.members]
    assert sorted(members) == sorted(i.ident for i in items())


def test_plan_is_stable_under_unrelated_changes():
    before = {g.name: g.member_sha256s for g in plan_layers(items())}
    changed = [
        i if i.name != "small7" else PlanItem("conda", "small7", "f" * 64, 999, ()) for i in items()
    ]
    after = {g.name: g.member_sha256s for g in plan_layers(changed)}
    diff = [n for n in before if before[n] != after.get(n)]
    assert diff == [f"bucket-{bucket_of(changed[7], Rules().buckets)}"]
    added = plan_layers([*items(), PlanItem("pypi", "newleaf", "e" * 64, 10, ())])
    diff = [g.name for g in added if before.get(g.name) != g.member_sha256s]
    assert len(diff) == 1


def test_plan_budget():
    many = [PlanItem("conda", f"big{i}", f"{i:064x}", (2 << 20) + i, ()) for i in range(150)]
    groups = plan_layers(many, base_layers=10)
    assert len(groups) + 10 + 1 <= 100
    assert sum(len(g.members) for g in groups) == 150
    with pytest.raises(BadInput, match="layer budget"):
        plan_layers(many, base_layers=99)


def test_collisions():
    files = {"conda/a": ["bin/x", "lib/a"], "pypi/b": ["bin/x"], "conda/c": ["lib/c"]}
    with pytest.raises(Conflict, match="bin/x"):
        check_collisions(files, lambda p, a, b: False)
    owner = check_collisions(files, lambda p, a, b: True)
    assert owner["bin/x"] == "conda/a"


# --- image values ---------------------------------------------------------------------------------


def a_layer(data=b"x") -> Layer:
    return Layer(
        Descriptor(
            "application/vnd.oci.image.layer.v1.tar",
            "sha256:" + hashlib.sha256(data).hexdigest(),
            len(data),
        ),
        "sha256:" + hashlib.sha256(data).hexdigest(),
        BytesBlob(data),
        "l",
    )


def test_image_value_and_index():
    base = scratch(AMD64)
    kw = dict(env={"PATH": "/p"}, labels={"k": "v"}, annotations={"k": "v"}, epoch=0)
    img = append(base.config, base.layers, [a_layer()], platform=AMD64, **kw)
    again = append(base.config, base.layers, [a_layer()], platform=AMD64, **kw)
    assert img.digest == again.digest
    cfg, man = img.config_json(), img.manifest_json()
    assert cfg["rootfs"]["diff_ids"] == [a_layer().diff_id]
    assert cfg["created"] == "1970-01-01T00:00:00Z" and cfg["config"]["Labels"] == {"k": "v"}
    assert (
        man["annotations"] == {"k": "v"} and man["config"]["digest"] == img.config_descriptor.digest
    )
    arm = append(
        base.config, base.layers, [a_layer(b"y")], platform=Platform("linux", "arm64"), **kw
    )
    idx = make_index([arm, img], {})
    doc = json.loads(idx.index)
    assert doc["mediaType"] == MT_INDEX
    assert [m["platform"]["architecture"] for m in doc["manifests"]] == ["amd64", "arm64"]
    assert len(list(idx.blobs())) == 4


def test_sink_names(tmp_path):
    s = parse_sink(f"oci:{tmp_path}/x:tag1")
    assert s.root == tmp_path / "x" and s.extra_tag == "tag1"
    assert parse_sink(f"oci:{tmp_path}/y").extra_tag is None
    a = parse_sink(f"docker-archive:{tmp_path}/f.tar")
    assert a.path == tmp_path / "f.tar"
    with pytest.raises(UsageError):
        parse_sink("ftp:whatever")


def test_layout_writes_blobs_then_index_and_moves_tags(tmp_path):
    base = scratch(AMD64)
    kw = dict(env={}, labels={}, annotations={}, epoch=0)
    one = append(base.config, base.layers, [a_layer(b"1")], platform=AMD64, **kw)
    two = append(base.config, base.layers, [a_layer(b"2")], platform=AMD64, **kw)
    sink = LayoutSink(tmp_path / "lay")
    sink.write(one, ["t1", "shared"])
    sink.write(two, ["t2", "shared"])
    idx = read_index(tmp_path / "lay")
    tags = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in idx["manifests"]
    }
    assert tags == {"t1": one.digest, "t2": two.digest, "shared": two.digest}
    for m in idx["manifests"]:
        assert (tmp_path / "lay/blobs/sha256" / m["digest"].split(":")[1]).is_file()


def test_layout_never_names_a_missing_blob(tmp_path):
    """A blob source that fails mid-write leaves index.json untouched."""

    class Broken:
        def open(self):
            raise OSError(5, "I/O error")

        def local_path(self):
            return None

    base = scratch(AMD64)
    good = append(
        base.config,
        base.layers,
        [a_layer(b"ok")],
        platform=AMD64,
        env={},
        labels={},
        annotations={},
        epoch=0,
    )
    sink = LayoutSink(tmp_path / "lay")
    sink.write(good, ["good"])
    before = (tmp_path / "lay/index.json").read_bytes()
    bad_layer = Layer(a_layer(b"zz").descriptor, a_layer(b"zz").diff_id, Broken(), "bad")
    bad = append(
        base.config,
        base.layers,
        [bad_layer],
        platform=AMD64,
        env={},
        labels={},
        annotations={},
        epoch=0,
    )
    with pytest.raises(ImgbuildError):
        sink.write(bad, ["bad"])
    assert (tmp_path / "lay/index.json").read_bytes() == before


def test_file_blob_is_linked_not_copied(tmp_path):
    data = os.urandom(1000)
    (tmp_path / "blob").write_bytes(data)
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    layer = Layer(
        Descriptor("application/vnd.oci.image.layer.v1.tar", d, len(data)),
        d,
        FileBlob(tmp_path / "blob"),
        "l",
    )
    base = scratch(AMD64)
    img = append(
        base.config,
        base.layers,
        [layer],
        platform=AMD64,
        env={},
        labels={},
        annotations={},
        epoch=0,
    )
    w = LayoutSink(tmp_path / "lay").write(img, ["t"])
    assert w.bytes_written == len(img.config)  # the layer was hard-linked, only config copied
    assert (
        os.stat(tmp_path / "blob").st_ino == os.stat(tmp_path / "lay/blobs/sha256" / d[7:]).st_ino
    )
