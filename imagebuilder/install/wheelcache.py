"""Unpacked wheels, kept once per machine and hardlinked into prefixes (what uv does).

A wheel is installed once, by `installer`, into a tree laid out like a prefix
(`<cache>/wheels/<wheel sha256>/<layout>/tree`), with scripts naming a placeholder interpreter.
Installing it again is then one hardlink per file (a copy across filesystems), plus the few
files that name the interpreter (scripts), written with the real one, and the RECORD files,
rewritten with those scripts' hashes. Creating a file costs several times a link on a busy
disk, and nothing is unzipped or decompressed twice.

Files in a prefix share their inode with the cache, as conda's and uv's do: edit an installed
file by replacing it (what pip, editors that save atomically and patch tools do), not in place.
"""

from __future__ import annotations

import base64
import csv
import errno
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

from imagebuilder.fetch import sha256_file

PLACEHOLDER = "/__imgbuild_wheel_python__/bin/python"
META = "imgbuild-tree.json"


def unpacked(wheel: Path, sha256: str | None, site: str, cache: Path) -> tuple[Path, list[str]]:
    """(tree, files naming the interpreter) for wheel installed with site-packages at site."""
    key = sha256 or sha256_file(wheel)
    layout = hashlib.sha256(site.encode()).hexdigest()[:16]
    final = cache / "wheels" / key / layout
    try:
        meta = json.loads((final / META).read_text())
        return final / "tree", meta["python_files"]
    except (OSError, ValueError, KeyError):
        pass
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{layout}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tree = tmp / "tree"
        _install(wheel, tree, site)
        needle = PLACEHOLDER.encode()
        found = []
        for dirpath, _, filenames in os.walk(tree):
            for name in filenames:
                full = os.path.join(dirpath, name)
                if os.path.islink(full):
                    continue
                with open(full, "rb") as f:
                    if needle in f.read():
                        found.append(os.path.relpath(full, tree))
        (tmp / META).write_text(json.dumps({"wheel": wheel.name, "python_files": sorted(found)}))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / META).exists():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "tree", sorted(found)


def _install(wheel: Path, tree: Path, site: str) -> None:
    from installer import install as install_wheel
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    version_dir = Path(site).parent.name  # python3.11
    scheme = {
        "purelib": str(tree / site),
        "platlib": str(tree / site),
        "headers": str(tree / "include" / version_dir),
        "scripts": str(tree / "bin"),
        "data": str(tree),
    }
    destination = SchemeDictionaryDestination(scheme, PLACEHOLDER, "posix")
    with WheelFile.open(wheel) as source:
        install_wheel(source, destination, {"INSTALLER": b"imgbuild\n"})


def link_into(tree: Path, python_files: list[str], dest: Path, python: str) -> None:
    """Place tree's files under dest: hardlinks, scripts written for python, RECORDs updated.
    A file that already exists under dest raises FileExistsError (another package has it)."""
    from imagebuilder.install.relocate import replace_text

    rewrite = set(python_files)
    records = []
    for dirpath, dirnames, filenames in os.walk(tree):
        rel_dir = os.path.relpath(dirpath, tree)
        out_dir = dest if rel_dir == "." else dest / rel_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in dirnames:  # symlinked folders are walked as names only
            src = os.path.join(dirpath, name)
            if os.path.islink(src):
                os.symlink(os.readlink(src), out_dir / name)
        for name in filenames:
            src = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            dst = out_dir / name
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            elif rel in rewrite:
                with open(src, "rb") as f:
                    data = replace_text(f.read(), PLACEHOLDER.encode(), python.encode())
                _write_new(dst, data, os.stat(src).st_mode & 0o777)
            elif name == "RECORD" and rel_dir.endswith(".dist-info"):
                records.append((src, dst, rel_dir))
            else:
                _link(src, dst)
    for src, dst, rel_dir in records:
        _write_record(Path(src), dst, dest, tree, rel_dir, rewrite)


def _link(src: str, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        if dst.exists():
            raise FileExistsError(errno.EEXIST, "File exists", str(dst)) from None
        shutil.copy2(src, dst)


def _write_new(dst: Path, data: bytes, mode: int) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(dst, mode)


def _write_record(src: Path, dst: Path, dest: Path, tree: Path, rel_dir: str, rewrite) -> None:
    """RECORD with the hashes of the rewritten scripts (paths are relative to site-packages)."""
    site_dir = os.path.dirname(rel_dir)
    rows = list(csv.reader(io.StringIO(src.read_text())))
    for row in rows:
        if len(row) < 3 or not row[1]:
            continue
        rel = os.path.normpath(os.path.join(site_dir, row[0]))
        if rel in rewrite:
            data = (dest / rel).read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            row[1], row[2] = f"sha256={digest.decode()}", str(len(data))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    _write_new(dst, buf.getvalue().encode(), 0o644)
