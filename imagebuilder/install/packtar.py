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

    manifest = None
    try:
        with open(path, "rb") as raw, _Extractor(dest, path) as ex:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for m in tar:
                    if m.name == MANIFEST:
                        manifest = json.loads(tar.extractfile(m).read())
                        continue
                    ex.extract(tar, m)
                ex.check_links()
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


def _write(target: str, data: bytes, mode: int) -> None:
    # O_EXCL: never follow a symlink or reuse a name another member already took
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class _Extractor:
    """Writes members into an empty folder. Small files are written by a few threads (file
    creation is syscall-bound; the tar stream itself must be read in order); every check is
    done here, before a write is queued, without touching the filesystem: the folder starts
    empty and holds only what this extractor made."""

    JOBS = 4
    INFLIGHT = 64 << 20  # bytes read ahead of the writers at most
    SMALL = 4 << 20

    def __init__(self, dest: Path, pack: Path):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.dest, self.pack = str(dest), pack
        self.dirs: set[str] = {""}
        self.links: dict[str, str] = {}  # symlink -> its target
        self.names: set[str] = set()
        self.pool = ThreadPoolExecutor(self.JOBS, thread_name_prefix="unpack")
        self.pending: deque = deque()
        self.inflight = 0

    def __enter__(self) -> _Extractor:
        return self

    def __exit__(self, *exc) -> None:
        try:
            while self.pending:
                self.pending.popleft()[0].result()
        finally:
            self.pool.shutdown(wait=True)

    def _mkdirs(self, rel: str) -> None:
        if rel in self.dirs:
            return
        self._mkdirs(os.path.dirname(rel))
        if rel in self.links or rel in self.names:
            raise _bad(self.pack, rel, "would be written through a symlink or a file")
        os.makedirs(os.path.join(self.dest, rel), exist_ok=True)
        self.dirs.add(rel)

    def extract(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        name = m.name.rstrip("/") if m.isdir() else m.name
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or "." in parts or not name or "\0" in name:
            raise _bad(self.pack, m.name, "has an unsafe path")
        parent = os.path.dirname(name)
        if any("/".join(parts[:i]) in self.links for i in range(1, len(parts))):
            raise _bad(self.pack, name, "would be written through a symlink")
        if name in self.names or name in self.links or (name in self.dirs and not m.isdir()):
            raise _bad(self.pack, name, "is in the pack twice")
        target = os.path.join(self.dest, name)
        if m.isdir():
            self._mkdirs(name)
        elif m.isreg():
            self._mkdirs(parent)
            self.names.add(name)
            mode = 0o755 if m.mode & 0o111 else 0o644
            src = tar.extractfile(m)
            if m.size > self.SMALL:
                self._drain(0)
                with open(target, "xb") as f:
                    while chunk := src.read(1 << 20):
                        f.write(chunk)
                os.chmod(target, mode)
            else:
                data = src.read()
                self.pending.append((self.pool.submit(_write, target, data, mode), len(data)))
                self.inflight += len(data)
                self._drain(self.INFLIGHT)
        elif m.issym():
            link = m.linkname
            resolved = os.path.normpath(os.path.join(parent, link))
            if os.path.isabs(link) or resolved == ".." or resolved.startswith("../"):
                raise _bad(self.pack, name, f"links outside the prefix ({link})")
            self._mkdirs(parent)
            self.links[name] = link
            os.symlink(link, target)
        else:
            raise _bad(self.pack, name, "is not a file, folder or symlink")

    def check_links(self) -> None:
        """After the last member: every symlink, followed through the others, stays inside
        (each one alone may look inside: `a -> ..` then `b -> a/..` climbs out when followed)."""
        from imagebuilder.pathcheck import link_escape

        for name, target in sorted(self.links.items()):
            if link_escape(name, target, self.links) is not None:
                raise _bad(self.pack, name, f"links outside the prefix ({target})")

    def _drain(self, limit: int) -> None:
        while self.pending and (self.inflight > limit or self.pending[0][0].done()):
            fut, size = self.pending.popleft()
            fut.result()
            self.inflight -= size
