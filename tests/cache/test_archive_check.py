"""Hostile archives are refused before anything unpacks them (imagebuilder/archive_check.py).

Each case is a real .tar.bz2 / .conda / wheel written here; the rig channel's packages and the
PyPI wheels must all pass, deep or not.
"""

import base64
import bz2
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard
from helpers import make_env, run_cache, write_env

from imagebuilder.archive_check import check_conda_archive, check_wheel
from imagebuilder.errors import INTEGRITY, IntegrityError


def _ti(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, link=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.linkname = kind, mode, link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, data


def _tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in members:
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def _paths_json(members, drop=(), add=()):
    paths = []
    for ti, data in members:
        if ti.name.startswith("info/") or ti.type == tarfile.DIRTYPE or ti.name in drop:
            continue
        e = {
            "_path": ti.name,
            "path_type": "softlink" if ti.type == tarfile.SYMTYPE else "hardlink",
        }
        if ti.type == tarfile.REGTYPE:
            e |= {"sha256": hashlib.sha256(data).hexdigest(), "size_in_bytes": len(data)}
        paths.append(e)
    paths += [{"_path": a, "path_type": "hardlink"} for a in add]
    return json.dumps({"paths": paths, "paths_version": 1}).encode()


def conda_bz2(tmp: Path, members, name="evil-1.0-0.tar.bz2", paths=None, **pj) -> Path:
    info = [
        _ti("info/index.json", data=b'{"name":"evil","version":"1.0"}'),
        _ti("info/paths.json", data=paths if paths is not None else _paths_json(members, **pj)),
    ]
    p = tmp / name
    p.write_bytes(bz2.compress(_tar(info + members)))
    return p


def conda_zst(tmp: Path, members, name="evil-1.0-0.conda") -> Path:
    info = [_ti("info/paths.json", data=_paths_json(members))]
    p = tmp / name
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", '{"conda_pkg_format_version": 2}')
        for part, mem in (("pkg", members), ("info", info)):
            z.writestr(f"{part}-evil-1.0-0.tar.zst", zstandard.ZstdCompressor().compress(_tar(mem)))
    return p


def _record(files: dict[str, bytes], lie: str | None = None) -> bytes:
    rows = []
    for n, d in files.items():
        h = base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
        if n == lie:
            h = base64.urlsafe_b64encode(hashlib.sha256(b"other").digest()).rstrip(b"=").decode()
        rows.append(f"{n},sha256={h},{len(d)}")
    rows.append("evil-1.0.dist-info/RECORD,,")
    return ("\n".join(rows) + "\n").encode()


def wheel(tmp: Path, files: dict[str, bytes], record: bytes | None = None, symlink=None) -> Path:
    files = {"evil-1.0.dist-info/METADATA": b"Name: evil\n", **files}
    tmp = tmp / f"w{len(list(tmp.iterdir()))}"
    tmp.mkdir()
    p = tmp / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
        if symlink:
            zi = zipfile.ZipInfo(symlink)
            zi.external_attr = (0o120777) << 16
            z.writestr(zi, "../../etc/passwd")
        z.writestr("evil-1.0.dist-info/RECORD", record if record is not None else _record(files))
    return p


OK = _ti("lib/ok.txt", data=b"fine")
CONDA_CASES = {
    "dotdot": ([OK, _ti("../escape.txt", data=b"x")], "unsafe path"),
    "dotdot-inner": ([_ti("lib/../../escape.txt", data=b"x")], "unsafe path"),
    "absolute": ([_ti("/etc/evil", data=b"x")], "unsafe path"),
    "symlink-out": ([_ti("lib/l", tarfile.SYMTYPE, link="../../etc/passwd")], "leaves the package"),
    "symlink-abs": ([_ti("lib/l", tarfile.SYMTYPE, link="/etc/passwd")], "absolute path"),
    "write-through-symlink": (
        [_ti("lib/d", tarfile.SYMTYPE, link="."), _ti("lib/d/x", data=b"x")],
        "through a symlink",
    ),
    "symlink-chain": (
        [
            _ti("a", tarfile.SYMTYPE, link="b/.."),
            _ti("b", tarfile.SYMTYPE, link="c/.."),
            _ti("c", tarfile.SYMTYPE, link=".."),
        ],
        "leaves the package",
    ),
    "hardlink-out": ([_ti("lib/h", tarfile.LNKTYPE, link="../../etc/passwd")], "unsafe path"),
    "hardlink-unknown": ([_ti("lib/h", tarfile.LNKTYPE, link="lib/nothere")], "escapes"),
    "device": ([_ti("dev/null", tarfile.CHRTYPE)], "device node"),
    "fifo": ([_ti("lib/fifo", tarfile.FIFOTYPE)], "device node"),
    "setuid": ([_ti("bin/su", data=b"x", mode=0o4755)], "setuid"),
    "duplicate": ([OK, OK], "appears twice"),
}


@pytest.mark.parametrize("case", sorted(CONDA_CASES))
@pytest.mark.parametrize("fmt", ["tar.bz2", "conda"])
def test_hostile_conda_archives(tmp_path, case, fmt):
    members, words = CONDA_CASES[case]
    path = conda_bz2(tmp_path, members) if fmt == "tar.bz2" else conda_zst(tmp_path, members)
    with pytest.raises(IntegrityError) as e:
        check_conda_archive(path)
    assert words in e.value.message and path.name in e.value.message
    assert e.value.exit_code == INTEGRITY


def test_paths_json_mismatch(tmp_path):
    members = [OK, _ti("lib/two.txt", data=b"2")]
    for kw, words in (
        ({"drop": ("lib/two.txt",)}, "does not list"),
        ({"add": ("lib/ghost",)}, "lacks"),
    ):
        with pytest.raises(IntegrityError, match=words):
            check_conda_archive(conda_bz2(tmp_path, members, **kw))
    bad_size = json.loads(_paths_json(members))
    bad_size["paths"][0]["size_in_bytes"] = 99
    with pytest.raises(IntegrityError, match="size of"):
        check_conda_archive(conda_bz2(tmp_path, members, paths=json.dumps(bad_size).encode()))
    bad_hash = json.loads(_paths_json(members))
    bad_hash["paths"][0]["sha256"] = "0" * 64
    p = conda_bz2(tmp_path, members, paths=json.dumps(bad_hash).encode())
    check_conda_archive(p, deep=False)  # hashes are a deep check
    with pytest.raises(IntegrityError, match="sha256 of"):
        check_conda_archive(p, deep=True)


def test_decompression_bomb_refused_fast(tmp_path):
    import time

    size = 300 << 20
    p = tmp_path / "bomb-1.0-0.conda"
    ti = tarfile.TarInfo("lib/zeros")
    ti.size = size
    cctx = zstandard.ZstdCompressor(level=1)
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("metadata.json", "{}")
        with (
            z.open("pkg-bomb-1.0-0.tar.zst", "w") as raw,
            cctx.stream_writer(raw) as w,
            tarfile.open(fileobj=w, mode="w|") as t,
        ):
            t.addfile(ti, io.BytesIO(bytes(size)))
        z.writestr("info-bomb-1.0-0.tar.zst", cctx.compress(_tar([])))
    assert p.stat().st_size < 1 << 20
    start = time.monotonic()
    with pytest.raises(IntegrityError, match="decompression bomb"):
        check_conda_archive(p)
    assert time.monotonic() - start < 5


def test_conda_with_unexpected_member(tmp_path):
    p = conda_zst(tmp_path, [OK])
    with zipfile.ZipFile(p, "a") as z:
        z.writestr("../x", "x")
    with pytest.raises(IntegrityError, match="unexpected member"):
        check_conda_archive(p)


def test_hostile_wheels(tmp_path):
    good = {"evil/__init__.py": b"x = 1\n"}
    check_wheel(wheel(tmp_path, good), deep=True)
    cases = [
        (wheel(tmp_path, {**good, "../../escape.py": b"x"}), "unsafe path"),
        (wheel(tmp_path, {**good, "/abs.py": b"x"}), "unsafe path"),
        (wheel(tmp_path, good, symlink="evil/link"), "symlink or special"),
        (wheel(tmp_path, good, record=_record({})), "RECORD does not list"),
        (wheel(tmp_path, good, record=_record({**good, "evil/ghost.py": b""})), "lacks"),
    ]
    for path, words in cases:
        with pytest.raises(IntegrityError, match=words):
            check_wheel(path)
    liar = wheel(tmp_path, good, record=_record(good, lie="evil/__init__.py"))
    with pytest.raises(IntegrityError, match="RECORD hash"):
        check_wheel(liar, deep=True)


def test_rig_packages_pass(served):
    from imagebuilder.archive_check import check_archive

    files = [p for p in served.root.rglob("*") if p.name.endswith((".conda", ".tar.bz2", ".whl"))]
    assert len(files) > 20
    for p in files:
        check_archive(p)
        if p.name.endswith(".whl"):
            check_wheel(p, deep=True)
        else:
            check_conda_archive(p, deep=True)


def _evil_env(served, base_packages):
    evil = conda_bz2(
        served.root / "noarch", [_ti("../../escape.txt", data=b"x")], name="evil-1.0-0.tar.bz2"
    )
    data = evil.read_bytes()
    pkg = {
        "kind": "conda", "subdir": "noarch", "name": "evil", "version": "1.0", "build": "0",
        "sha256": hashlib.sha256(data).hexdigest(), "filename": evil.name,
        "url": f"{served.url}/noarch/{evil.name}", "size": len(data),
    }  # fmt: skip
    return make_env([*base_packages[:3], pkg], "evil")


@pytest.mark.parametrize("workers", ["0", "2"])  # checked in the cache's threads / in processes
def test_hostile_package_refused_by_cache(tmp_path, served, base_packages, workers):
    env = _evil_env(served, base_packages)
    r = run_cache(
        write_env(tmp_path / "env.json", env),
        str(tmp_path / "store"),
        {"IMGBUILD_CHECK_WORKERS": workers},
    )
    assert r.returncode == INTEGRITY, r.stderr
    assert "refusing package" in r.stderr and "evil" in r.stderr and "Traceback" not in r.stderr
    assert not list((tmp_path / "store").glob("pkgs/conda/*/evil*"))
    assert not list((tmp_path / "store").glob("envs/**/*.json"))
    assert not (tmp_path / "escape.txt").exists()


def test_refused_package_leaves_no_task_runtime_either(tmp_path, served, base_packages):
    """With the runtime hook on (runtime.py: the bootstrap's wheels, from local wheels here),
    a refused package still leaves nothing new in the store: the runtime is stored only after
    every package of the env was. The control run (a clean env) shows the hook does store."""
    from local_sources import runtime_wheels

    hook = {
        "IMGBUILD_RUNTIME_CACHE": "1",
        "IMGBUILD_RUNTIME_PYTHONS": "3.11",
        "IMGBUILD_RUNTIME_FIND_LINKS": str(runtime_wheels()),
        "IMGBUILD_RUNTIME_INDEX_URL": f"{served.url}/no-index",  # 404s: find-links only
    }
    bad = run_cache(
        write_env(tmp_path / "evil.json", _evil_env(served, base_packages)),
        str(tmp_path / "s1"),
        hook,
    )
    assert bad.returncode == INTEGRITY, bad.stderr
    assert not list((tmp_path / "s1").glob("pkgs/**/*.whl"))
    assert not list((tmp_path / "s1").glob("aliases/**/*.json"))
    good = run_cache(
        write_env(tmp_path / "good.json", make_env(base_packages[:3], "good")),
        str(tmp_path / "s2"),
        hook,
    )
    assert good.returncode == 0, good.stderr
    assert list((tmp_path / "s2").glob("pkgs/pypi/*/py_rattler-*.whl")), good.stderr
    assert list((tmp_path / "s2").glob("aliases/imgbuild-runtime/**/*.json"))
