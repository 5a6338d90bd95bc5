"""The pack archive: a deterministic tar of a prefix, zstd-compressed, with its manifest first.

Write: entries sorted, mtime fixed, uid/gid 0 without names, modes normalized (0755 for
executables and folders, 0644 otherwise), every file stored as a regular file (prefixes are full
of hardlinks into package caches), symlinks kept. Same staged prefix -> same bytes.

Read: streamed (no temp file), every member checked before it is written: no absolute or `..`
names, no device nodes, no symlink leaving the prefix, nothing written through a symlink.
zstd frames carry a checksum, so a damaged pack fails loudly. Reading needs only `zstandard`.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

from imagebuilder.errors import IntegrityError

MANIFEST = ".imgbuild-pack.json"
EPOCH = 0
LEVEL = int(os.environ.get("IMGBUILD_PACK_LEVEL", 10))


def _info(name: str, st: os.stat_result | None = None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mtime = EPOCH
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if st is not None:
        ti.mode = 0o755 if st.st_mode & 0o111 else 0o644
    return ti


def write(root: Path, manifest: dict, out: Path) -> int:
    """Tar root (manifest first) into out.tar.zst; returns the uncompressed size."""
    import zstandard

    cctx = zstandard.ZstdCompressor(level=LEVEL, threads=-1, write_checksum=True)
    total = 0
    with (
        open(out, "wb") as raw,
        cctx.stream_writer(raw, closefd=False) as zf,
        tarfile.open(fileobj=zf, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        ti = _info(MANIFEST)
        ti.mode, ti.size = 0o644, len(data)
        tar.addfile(ti, io.BytesIO(data))
        for rel in _walk(root):
            full = root / rel
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                ti = _info(rel)
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, os.readlink(full), 0o777
                tar.addfile(ti)
            elif stat.S_ISDIR(st.st_mode):
                ti = _info(rel, st)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            elif stat.S_ISREG(st.st_mode):
                ti = _info(rel, st)
                ti.size = st.st_size
                total += st.st_size
                with open(full, "rb") as f:
                    tar.addfile(ti, f)
    return total


def _walk(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        keep = []
        for d in sorted(dirnames):
            (keep if not os.path.islink(os.path.join(dirpath, d)) else filenames).append(d)
        dirnames[:] = keep
        for name in sorted(keep + filenames):
            out.append(name if rel_dir == "." else f"{rel_dir}/{name}")
    return sorted(out)


def read(path: Path, dest: Path) -> dict:
    """Unpack path into dest (an empty folder); returns the manifest."""
    import zstandard

    dest_real = os.path.realpath(dest)
    manifest = None
    try:
        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for m in tar:
                    if m.name == MANIFEST:
                        manifest = json.loads(tar.extractfile(m).read())
                        continue
                    _extract(tar, m, dest, dest_real, path)
    except (tarfile.TarError, zstandard.ZstdError, EOFError, ValueError) as e:
        raise IntegrityError(
            f"pack {path.name} is damaged: {e}",
            "remove it from the store and run `imgbuild pack` again",
        ) from None
    if manifest is None:
        raise IntegrityError(f"pack {path.name} has no manifest", "run `imgbuild pack` again")
    return manifest


def _bad(pack: Path, name: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"refusing pack {pack.name}: member {name!r} {why}",
        "the pack is corrupt or hostile; remove it from the store and run `imgbuild pack` again",
    )


def _extract(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: Path, real: str, pack: Path) -> None:
    name = m.name
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or not name or "\0" in name:
        raise _bad(pack, name, "has an unsafe path")
    target = os.path.join(dest, name)
    parent = os.path.dirname(target)
    if os.path.realpath(parent) != os.path.join(real, os.path.dirname(name)).rstrip("/"):
        raise _bad(pack, name, "would be written through a symlink")
    if m.isdir():
        os.makedirs(target, exist_ok=True)
    elif m.isreg():
        os.makedirs(parent, exist_ok=True)
        with open(target, "wb") as f:
            src = tar.extractfile(m)
            while chunk := src.read(1 << 20):
                f.write(chunk)
        os.chmod(target, 0o755 if m.mode & 0o111 else 0o644)
    elif m.issym():
        link = m.linkname
        resolved = os.path.normpath(os.path.join(os.path.dirname(name), link))
        if os.path.isabs(link) or resolved.startswith("../") or resolved == "..":
            raise _bad(pack, name, f"links outside the prefix ({link})")
        os.makedirs(parent, exist_ok=True)
        os.symlink(link, target)
    else:
        raise _bad(pack, name, "is not a file, folder or symlink")
