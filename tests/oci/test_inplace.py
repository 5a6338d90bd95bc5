"""Conda packages read in place (imagebuilder/install/inplace.py): a package with nothing to
rewrite is read from its extracted archive instead of being linked into the staging folder.
Either way, the image must be the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ocikit import EnvFactory

from imagebuilder.bake import BakeOptions, bake
from imagebuilder.install import inplace
from imagebuilder.install.plan import CondaItem
from imagebuilder.store.local import LocalStore

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "https://gh.072103.xyz/opt/imgbuild/env"
sys.path.insert(0, str(ROOT / "ci" / "channel"))
import builder  # noqa: E402  (ci/channel/builder.py: real conda archives)

DEMO_FILES = {
    "bin/demo-tool": builder.File(b"#!/bin/sh\necho demo\n", mode=0o755),
    "bin/demo-group-x": builder.File(b"#!/bin/sh\n", mode=0o654),  # x for the group only
    "lib/libdemo.so.1.2": builder.File(b"\x7fELF not really\0" * 64, mode=0o755),
    "lib/libdemo.so.1": builder.Link("libdemo.so.1.2"),
    "lib/libdemo.so": builder.Link("libdemo.so.1"),
    "share/demo/deep/er/data.txt": "data\n",
    "share/demo/b-c.txt": "sorts between a/ and b/ by component\n",
    "share/demo/b/x.txt": "x\n",
    "etc/conda/activate.d/demo.sh": "export DEMO_HOME=${CONDA_PREFIX}/share/demo\n",
    "bin/.demo-post-link.sh": "echo never run\n",
}


def _add(ch: Path, name: str, files: dict, **kw) -> tuple[str, dict]:
    subdir = "noarch" if kw.get("noarch") else "linux-64"
    res = builder.make_package(ch, subdir, name, "1.0", "h_0", files, **kw)
    data = res.path.read_bytes()
    rec = {
        **res.index,
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
        "size": len(data),
    }
    return f"{subdir}/{res.filename}", rec


@pytest.fixture
def demo(channel, tmp_path) -> tuple[EnvFactory, dict]:
    ch = builder.copy_channel(channel, tmp_path / "channel")
    replace = {
        "demo": _add(ch, "demo", DEMO_FILES),
        # text placeholders are written in (as rattler does); binary ones and shebangs rattler
        # would rewrite (too long) are left to rattler
        "demo-prefix": _add(
            ch,
            "demo-prefix",
            {
                "etc/demo.conf": f"home={builder.PLACEHOLDER}\nagain={builder.PLACEHOLDER}/x\n",
                "bin/demo-py": builder.File(
                    f"#!{builder.PLACEHOLDER}/bin/python\nprint(1)\n".encode(), mode=0o755
                ),
                "etc/conda/activate.d/p.sh": f"export DEMO_P={builder.PLACEHOLDER}/p\n",
                "share/plain.txt": "no placeholder\n",
            },
        ),
        "demo-binary": _add(
            ch, "demo-binary", {"lib/libbin.so": b"\0" + builder.PLACEHOLDER.encode() + b"\0\0"}
        ),
        "demo-longbang": _add(
            ch,
            "demo-longbang",
            {"bin/x": f"#!{builder.PLACEHOLDER}/bin/python {'-X dev ' * 20}\n".encode()},
        ),
        "demo-bz2": _add(ch, "demo-bz2", {"share/bz2.txt": "old format\n"}, fmt=".tar.bz2"),
        "demo-py": _add(
            ch,
            "demo-py",
            {"site-packages/demo_py.py": "X = 1\n"},
            noarch="python",
            depends=["python"],
        ),  # fmt: skip
    }
    return EnvFactory(ch, tmp_path), replace


NAMES = [
    "python", "libffi", "xz", "tzdata", "demo", "demo-prefix", "demo-bz2", "demo-py",
    "demo-binary", "demo-longbang",
]  # fmt: skip


def test_layers_are_the_same_bytes_in_place_or_linked(demo, tmp_path, monkeypatch):
    factory, replace = demo
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(tmp_path / "cache"))
    linked_store, in_place_store = LocalStore(tmp_path / "s1"), LocalStore(tmp_path / "s2")
    env = factory.make(linked_store, NAMES, replace=replace)
    assert factory.make(in_place_store, NAMES, replace=replace).full_id == env.full_id

    with monkeypatch.context() as m:
        m.setattr(inplace, "package_dir", lambda item, sha256, prefix: None)
        linked = bake([env], linked_store, BakeOptions())
    assert not (tmp_path / "cache" / "extracted").exists()
    in_place = bake([env], in_place_store, BakeOptions())

    assert in_place.layers_built == linked.layers_built > 0
    assert [x.descriptor.digest for x in in_place.artifact.layers] == [
        x.descriptor.digest for x in linked.artifact.layers
    ]
    assert in_place.digest == linked.digest  # config too: DEMO_HOME from an in-place package
    assert b"DEMO_HOME=/opt/imgbuild/env/share/demo" in in_place.artifact.config
    assert b"DEMO_P=/opt/imgbuild/env/p" in in_place.artifact.config
    read = {
        p.name
        for p in env.packages
        if (tmp_path / "cache" / "extracted" / p.sha256 / "info" / "paths.json").is_file()
    }
    assert {"demo", "demo-prefix", "libffi", "xz", "tzdata"} <= read
    # binary placeholder, long shebang, .tar.bz2, noarch: python and python: linked by rattler
    assert not read & {"demo-binary", "demo-longbang", "demo-bz2", "demo-py", "python"}
    # the post-link script is reported for an in-place package as for a linked one
    assert in_place.warnings == linked.warnings and any("demo" in w for w in linked.warnings)


def _item(factory: EnvFactory, replace: dict, name: str) -> tuple[CondaItem, str]:
    pkg, path = next(
        (p, path) for p, path in factory.conda_packages([name], replace=replace) if p.name == name
    )
    return CondaItem.from_package(pkg, path), pkg.sha256


def test_which_packages_are_read_in_place(demo, tmp_path, monkeypatch):
    factory, replace = demo
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(tmp_path / "cache"))
    got = {n: inplace.package_dir(*_item(factory, replace, n), PREFIX) for n in replace}
    root = tmp_path / "cache" / "extracted"
    assert got["demo"].root == root / _item(factory, replace, "demo")[1]
    assert got["demo"].rewritten_root is None
    for linked in ("demo-binary", "demo-longbang", "demo-bz2", "demo-py"):
        assert got[linked] is None, linked
    assert not (root / _item(factory, replace, "demo-longbang")[1]).exists()
    pre = got["demo-prefix"]
    assert set(pre.rewritten) == {"etc/demo.conf", "bin/demo-py", "etc/conda/activate.d/p.sh"}
    assert (pre.rewritten_root / "etc/demo.conf").read_text() == (
        f"home={PREFIX}\nagain={PREFIX}/x\n"
    )
    assert (pre.rewritten_root / "bin/demo-py").stat().st_mode & 0o111
    assert builder.PLACEHOLDER in (pre.root / "etc/demo.conf").read_text()  # the copy is kept
    d = got["demo"].root
    assert os.readlink(d / "lib/libdemo.so") == "libdemo.so.1"
    assert (d / "bin/demo-tool").stat().st_mode & 0o111
    assert stat.S_IMODE((d / "bin/demo-group-x").stat().st_mode) & 0o010
    # what an archive holds beyond paths.json never lands in the prefix
    name, data = inplace.meta_record(_item(factory, replace, "demo")[0], got["demo"], PREFIX)
    files = json.loads(data)["files"]
    assert name == "demo-1.0-h_0.json" and not any(f.startswith("info/") for f in files)
    assert files.index("share/demo/b/x.txt") < files.index("share/demo/b-c.txt")  # components


def test_unreadable_archive_is_left_to_the_installer(demo, tmp_path, monkeypatch):
    factory, replace = demo
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(tmp_path / "cache"))
    item, sha = _item(factory, replace, "demo")
    bad = tmp_path / "demo-1.0-h_0.conda"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    assert inplace.package_dir(CondaItem(item.record, str(bad)), sha, PREFIX) is None
    assert not (tmp_path / "cache" / "extracted" / sha).exists()


def test_a_cache_that_cannot_take_the_copy_leaves_the_package_to_rattler(
    demo, tmp_path, monkeypatch
):
    factory, replace = demo
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "extracted").write_text("not a folder")  # fails for root too, unlike a chmod
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(cache))
    assert inplace.package_dir(*_item(factory, replace, "demo"), PREFIX) is None


def test_a_failed_extraction_leaves_nothing_and_a_kept_one_is_reused(demo, tmp_path, monkeypatch):
    factory, replace = demo
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(tmp_path / "cache"))
    item, sha = _item(factory, replace, "demo")
    real = inplace._extract

    def dies(archive, dest):
        (dest / "info").mkdir(parents=True)
        (dest / "info" / "paths.json").write_text("{}")  # looks done, is not
        raise OSError("disk full")

    monkeypatch.setattr(inplace, "_extract", dies)
    assert inplace.package_dir(item, sha, PREFIX) is None  # left to rattler's installer
    root = tmp_path / "cache" / "extracted"
    assert list(root.iterdir()) == []  # no final folder, no temp folder

    monkeypatch.setattr(inplace, "_extract", real)
    d = inplace.package_dir(item, sha, PREFIX)
    assert d is not None and (d.root / "share/demo/b/x.txt").read_text() == "x\n"
    monkeypatch.setattr(inplace, "_extract", dies)  # kept: not extracted again
    assert inplace.package_dir(item, sha, PREFIX) == d

    # the conda-meta record is kept beside it; a damaged copy is made again
    name, data = inplace.meta_record(item, d, PREFIX)
    kept = list((root / f"{sha}.meta").iterdir())
    assert len(kept) == 1
    kept[0].write_text("{not json")
    assert inplace.meta_record(item, d, PREFIX) == (name, data)
    assert json.loads(kept[0].read_text())["name"] == name


def test_rattler_and_tarfile_extract_the_same(demo, tmp_path):
    """The CLI extracts with py-rattler (in its own process), other callers with tarfile: the
    bytes, links and x bits a layer reads must not differ."""
    factory, replace = demo
    trees = {}
    for how in ("tarfile", "rattler"):
        cache = tmp_path / f"cache-{how}"
        item, sha = _item(factory, replace, "demo")
        script = (
            "import json, os, sys\n"
            "from imagebuilder import exitmode\n"
            "from imagebuilder.install import inplace\n"
            "from imagebuilder.install.plan import CondaItem\n"
            f"exitmode.allow_inprocess({how == 'rattler'})\n"
            "d = json.loads(sys.stdin.read())\n"
            "print(inplace.package_dir(CondaItem(d['record'], d['path']), d['sha'], 'https://gh.072103.xyz/p').root)\n"
            "sys.stdout.flush(); os._exit(0)\n"
        )
        r = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps({"record": item.record, "path": item.path, "sha": sha}),
            capture_output=True,
            text=True,
            env={**os.environ, "IMGBUILD_CACHE_DIR": str(cache)},
        )
        assert r.returncode == 0, r.stderr
        trees[how] = _tree(Path(r.stdout.strip()))
    assert trees["rattler"] == trees["tarfile"]
    assert "lib/libdemo.so" in trees["tarfile"]


def _tree(root: Path) -> dict:
    out = {}
    for dp, _, fs in os.walk(root):
        for f in fs:
            p = Path(dp, f)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            else:
                out[rel] = ("file", p.read_bytes(), bool(p.stat().st_mode & 0o111))
    return out
