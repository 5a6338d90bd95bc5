"""Pieces of hydrate that need no rig: prefix replacement, the pack archive reader's refusals,
the host lock, the prefix states."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from imagebuilder.errors import BadInput, Conflict, IntegrityError
from imagebuilder.install import packtar, relocate
from imagebuilder.install import prefix as pfx

OLD = b"/opt/placeholder_" + b"x" * 60


def test_binary_replacement_keeps_offsets():
    data = b"\x7fELF\0" + OLD + b"/lib:" + OLD + b"/bin\0tail\0" + OLD + b"\0"
    out = relocate.replace_binary(data, OLD, b"/short")
    assert len(out) == len(data)
    strings = out.split(b"\0")
    assert b"/short/lib:/short/bin" in strings and b"tail" in strings and b"/short" in strings
    # the padding NULs follow each string, where the longer text used to be
    assert out.index(b"tail") == data.index(b"tail")


def test_binary_replacement_refuses_a_longer_prefix():
    with pytest.raises(BadInput) as e:
        relocate.replace_binary(b"a" + OLD + b"\0", OLD, b"/" + b"y" * 100, "lib/libx.so")
    assert "lib/libx.so has room for 77" in e.value.message and "--no-pack" in e.value.hint


def test_text_replacement_and_long_shebangs():
    old, short, long = b"/P", b"/env", b"/" + b"d" * 140
    script = b"#!/P/bin/python3.11\nimport sys\n"
    assert relocate.replace_text(script, old, short) == b"#!/env/bin/python3.11\nimport sys\n"
    tramp = relocate.replace_text(script, old, long)
    assert tramp.startswith(b"#!/bin/sh\n'''exec' \"" + long + b'/bin/python3.11" "$0" "$@"\n')
    assert tramp.endswith(b"import sys\n")
    sh = relocate.replace_text(b"#!/P/bin/bash -e\necho\n", old, long)
    assert sh.startswith(b"#!/usr/bin/env bash -e\n")


def test_trampoline_runs(tmp_path):
    long_dir = tmp_path / ("d" * 130)
    long_dir.mkdir()
    (long_dir / "python").symlink_to(sys.executable)
    script = tmp_path / "s"
    script.write_bytes(
        relocate.replace_text(
            b"#!/P/python\nimport sys; print('ran', sys.argv[1])\n", b"/P", str(long_dir).encode()
        )
    )
    script.chmod(0o755)
    out = subprocess.run([script, "arg"], capture_output=True, text=True)
    assert out.stdout == "ran arg\n", out.stderr


def _pack(members: list[tarfile.TarInfo], path: Path, manifest: bool = True) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        if manifest:
            data = json.dumps({"schema": "imgbuild/pack/v1"}).encode()
            ti = tarfile.TarInfo(packtar.MANIFEST)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        for ti in members:
            tar.addfile(ti, io.BytesIO(b"x" * ti.size) if ti.isreg() else None)
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    return path


def _member(name: str, kind=tarfile.REGTYPE, link: str = "", size: int = 1) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, link
    ti.size = size if kind == tarfile.REGTYPE else 0
    return ti


@pytest.mark.parametrize(
    "members, why",
    [
        ([_member("../evil")], "unsafe path"),
        ([_member("/etc/evil")], "unsafe path"),
        ([_member("lib/x", tarfile.SYMTYPE, "../../etc")], "links outside"),
        ([_member("lib", tarfile.SYMTYPE, "/etc")], "links outside"),
        (
            [_member("d", tarfile.SYMTYPE, "sub"), _member("sub", tarfile.DIRTYPE), _member("d/f")],
            "through a symlink",
        ),
        ([_member("dev", tarfile.CHRTYPE)], "not a file"),
        ([_member("h", tarfile.LNKTYPE, "/etc/passwd")], "not a file"),
        ([_member("f", tarfile.SYMTYPE, "g"), _member("f")], "twice"),
        ([_member("a/b"), _member("a/b/c")], "through a symlink or a file"),
        ([_member("./x")], "unsafe path"),
    ],
)
def test_pack_reader_refuses_hostile_members(tmp_path, members, why):
    pack = _pack(members, tmp_path / "p.tar.zst")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError) as e:
        packtar.read(pack, dest)
    assert why in e.value.message
    assert not (tmp_path / "evil").exists()


def test_pack_reader_refuses_damage(tmp_path):
    good = _pack([_member("bin/x", size=5000)], tmp_path / "p.tar.zst")
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    good.write_bytes(bytes(data))
    (tmp_path / "d").mkdir()
    with pytest.raises(IntegrityError):
        packtar.read(good, tmp_path / "d")
    nomanifest = _pack([_member("a")], tmp_path / "n.tar.zst", manifest=False)
    (tmp_path / "e").mkdir()
    with pytest.raises(IntegrityError, match="no manifest"):
        packtar.read(nomanifest, tmp_path / "e")


def test_pack_writer_is_deterministic(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o700)
    (root / "lib").mkdir()
    (root / "lib" / "a.so.1").write_bytes(b"\0" * 100)
    (root / "lib" / "a.so").symlink_to("a.so.1")
    a = packtar.write(root, {"schema": "imgbuild/pack/v1"}, tmp_path / "a.tar.zst")
    time.sleep(0.01)
    (root / "lib" / "a.so.1").touch()
    packtar.write(root, {"schema": "imgbuild/pack/v1"}, tmp_path / "b.tar.zst")
    assert a == 110
    assert (tmp_path / "a.tar.zst").read_bytes() == (tmp_path / "b.tar.zst").read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    assert packtar.read(tmp_path / "a.tar.zst", out) == {"schema": "imgbuild/pack/v1"}
    assert (out / "lib" / "a.so").readlink() == Path("a.so.1")
    assert (out / "bin" / "tool").stat().st_mode & 0o777 == 0o755


_HOLDER = """
import sys, time
from imagebuilder.locks import file_lock
with file_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_lock_waits_for_holder_and_survives_its_death(tmp_path):
    from imagebuilder.locks import LockTimeout, file_lock

    lock = tmp_path / "l.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock), "30"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline() == "locked\n"
    seen = []
    with pytest.raises(LockTimeout), file_lock(lock, timeout=0.5, on_wait=seen.append):
        pass
    assert seen and str(holder.pid) in seen[0]
    holder.kill()  # SIGKILL: the kernel releases the lock
    holder.wait()
    t0 = time.monotonic()
    with file_lock(lock, timeout=5):
        assert time.monotonic() - t0 < 2


class _Env:
    req_id, full_id, name, arch = "a" * 64, "b" * 64, "metaflow_x_y", "linux-64"


def test_prefix_states(tmp_path):
    env = _Env()
    p = tmp_path / "env"
    assert pfx.state(p) == "absent" and pfx.check_target(p, env, False) is False
    p.mkdir()
    assert pfx.state(p) == "empty"
    (p / pfx.PARTIAL).write_text("1")
    (p / "junk").write_text("")
    assert pfx.state(p) == "partial"
    pfx.clean_leftovers(p)
    assert pfx.state(p) == "empty"
    (p / "mine").write_text("")
    assert pfx.state(p) == "foreign"
    with pytest.raises(BadInput):
        pfx.check_target(p, env, True)
    (p / "mine").unlink()
    staging, in_place = pfx.new_staging(p)
    assert (
        not in_place
        and staging.parent == tmp_path
        and staging.name.startswith(".env.imgbuild-tmp-")
    )
    (staging / "bin").mkdir()
    pfx.publish(staging, p, pfx.PrefixMarker.for_env(env, "packages", None), False)
    assert pfx.state(p) == "env" and pfx.check_target(p, env, False) is True
    other = _Env()
    other.full_id = "c" * 64
    with pytest.raises(Conflict):
        pfx.check_target(p, other, False)
    assert pfx.check_target(p, other, True) is False


def _wheel(path: Path) -> Path:
    """A tiny real wheel with a module, a console script and a data file."""
    import base64
    import hashlib
    import zipfile

    files = {
        "tw/__init__.py": b"def main():\n    print('tw ran')\n",
        "tw-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tw\nVersion: 1.0\n",
        "tw-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "tw-1.0.dist-info/entry_points.txt": b"[console_scripts]\ntw = tw:main\n",
        "tw-1.0.data/data/share/tw/readme.txt": b"data\n",
    }
    rows = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(data)}")
    rows.append("tw-1.0.dist-info/RECORD,,")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("tw-1.0.dist-info/RECORD", "\n".join(rows) + "\n")
    return path


def test_wheel_cache_links_and_writes_scripts(tmp_path):
    import base64
    import csv
    import hashlib

    from imagebuilder.install import wheelcache

    whl = _wheel(tmp_path / "tw-1.0-py3-none-any.whl")
    site = "lib/python3.11/site-packages"
    tree, scripts = wheelcache.unpacked(whl, None, site, tmp_path / "cache")
    assert scripts == ["bin/tw"]
    meta = tree.parent / wheelcache.META
    stamp = meta.stat().st_mtime_ns
    for n, python in enumerate(["/envs/a/bin/python", "/" + "p" * 140 + "/bin/python"]):
        dest = tmp_path / f"env{n}"
        again = wheelcache.unpacked(whl, None, site, tmp_path / "cache")
        assert again == (tree, scripts) and meta.stat().st_mtime_ns == stamp  # built once
        wheelcache.link_into(tree, scripts, dest, python)
        module = dest / site / "tw" / "__init__.py"
        assert module.stat().st_nlink >= 2  # a hardlink into the cache
        script = (dest / "bin" / "tw").read_bytes()
        assert python.encode() in script and wheelcache.PLACEHOLDER.encode() not in script
        assert (dest / "share/tw/readme.txt").read_text() == "data\n"
        record = dest / site / "tw-1.0.dist-info" / "RECORD"
        for row in csv.reader(record.open()):
            if row[1]:
                data = (dest / site / row[0]).resolve().read_bytes()
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                assert row[1] == "sha256=" + digest.decode(), row
    (tmp_path / "env2" / site / "tw").mkdir(parents=True)
    (tmp_path / "env2" / site / "tw" / "__init__.py").write_text("conda's")
    with pytest.raises(FileExistsError):
        wheelcache.link_into(tree, scripts, tmp_path / "env2", "/x/bin/python")
