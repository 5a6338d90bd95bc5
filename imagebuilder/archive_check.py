"""Refuse hostile or broken package archives before anything unpacks them (issue 10).

`check_conda_archive(path)` (.conda, .tar.bz2), `check_wheel(path)` and `check_sdist(path)`
stream through the archive once, without extracting it, and raise IntegrityError (exit 6)
naming the archive and the member for: absolute or `..` paths, symlinks or hardlinks that
resolve outside the package (also through other symlinks), files written through a symlink,
device nodes and FIFOs, setuid/setgid bits, duplicate members, decompression bombs (total
size and ratio), and metadata that does not match the content (conda `info/paths.json`,
wheel `RECORD`). Every caller that unpacks (cache, hydrate, bake) calls it first: py-rattler
0.28 creates the escaping directory of a `../` entry even though it refuses the file.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from imagebuilder.errors import IntegrityError

# A package may unpack to at most this many bytes, and (past RATIO_FLOOR bytes) to at most
# MAX_RATIO times its compressed size: real packages compress 2-20x, bombs 1000x and more.
MAX_TOTAL = int(os.environ.get("IMGBUILD_MAX_UNPACKED_BYTES", 32 << 30))
MAX_RATIO = 250
RATIO_FLOOR = 256 << 20
MAX_MEMBERS = 500_000
# Deep checks (the default) also hash every file against info/paths.json / the wheel's RECORD:
# without them a package whose metadata lies about its content is stored, hydrated and baked
# (installer and py-rattler do not check those hashes; tests/reliability/test_hostile.py). A
# conda check decompresses the whole package anyway, so hashing adds ~30-60%; a wheel check
# reads every member (~2 s for a 34 MB scipy wheel here). IMGBUILD_DEEP_CHECK=0 turns it off.
DEEP = os.environ.get("IMGBUILD_DEEP_CHECK", "1") not in ("", "0")
_CHUNK = 1 << 20


class Hostile(IntegrityError):
    pass


def _fail(archive: Path, what: str) -> Hostile:
    return Hostile(
        f"refusing package {archive.name}: {what}",
        "the archive is corrupt or hostile; it was not stored or unpacked",
    )


def check_archive(path: str | os.PathLike, deep: bool | None = None) -> None:
    """Check any package archive by its file name (deep: default IMGBUILD_DEEP_CHECK;
    checkworkers.py passes its caller's)."""
    p = Path(path)
    if p.name.endswith((".conda", ".tar.bz2")):
        check_conda_archive(p, deep)
    elif p.name.endswith(".whl"):
        check_wheel(p, deep)
    else:
        check_sdist(p)


# --- member bookkeeping shared by tar and zip -----------------------------------------------
@dataclass
class _Tree:
    archive: Path
    compressed: int
    total: int = 0
    count: int = 0
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (sha256, size)
    links: dict[str, str] = field(default_factory=dict)  # symlink path -> target
    dirs: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)

    def name(self, raw: str) -> str:
        n = raw
        while n.startswith("./"):
            n = n[2:]
        n = n.rstrip("/")
        parts = n.split("/")
        if (
            not n
            or raw.startswith("/")
            or "\0" in raw
            or "" in parts
            or ".." in parts
            or (len(n) > 1 and n[1] == ":")
        ):
            raise _fail(self.archive, f"member {raw!r} has an unsafe path")
        return "/".join(p for p in parts if p != ".") if "." in parts else n

    def add(self, name: str, size: int) -> None:
        if name in self.seen:
            raise _fail(self.archive, f"member {name!r} appears twice")
        self.seen.add(name)
        self.count += 1
        self.total += max(size, 0)
        if self.count > MAX_MEMBERS:
            raise _fail(self.archive, f"more than {MAX_MEMBERS} members")
        if self.total > MAX_TOTAL or (
            self.total > RATIO_FLOOR and self.total > MAX_RATIO * max(self.compressed, 1)
        ):
            raise _fail(
                self.archive,
                f"decompression bomb: unpacks to more than {self.total} bytes "
                f"from {self.compressed} (limit {MAX_TOTAL} bytes, ratio {MAX_RATIO})",
            )

    def mode(self, name: str, mode: int) -> None:
        if mode & (stat.S_ISUID | stat.S_ISGID):
            raise _fail(self.archive, f"member {name!r} has setuid/setgid bits")

    def finish(self) -> None:
        """After the last member: links and paths must resolve inside the package."""
        if not self.links:
            return
        for name in sorted(self.seen):
            # Nothing may be written *through* a symlink (a parent that is a link).
            parts = name.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in self.links:
                    raise _fail(self.archive, f"member {name!r} is written through a symlink")
        for name, target in sorted(self.links.items()):
            self.resolve(name, target)

    def resolve(self, name: str, target: str) -> None:
        from imagebuilder.pathcheck import ABSOLUTE, LEAVES, link_escape

        e = link_escape(name, target, self.links)
        if e is None:
            return
        if e.kind == ABSOLUTE:
            raise _fail(self.archive, f"symlink {e.link!r} points to absolute path {e.target!r}")
        if e.kind == LEAVES:
            raise _fail(self.archive, f"symlink {name!r} -> {target!r} leaves the package")
        raise _fail(self.archive, f"symlink {name!r} loops")


# --- tar streams -----------------------------------------------------------------------------
_KEEP = frozenset({"info/paths.json", "info/files", "info/index.json"})


def _walk_tar(tree: _Tree, fileobj, deep: bool = True) -> dict[str, bytes]:
    """Check every member of one tar stream; returns the bytes of info/ metadata we need."""
    from imagebuilder import tarscan

    keep: dict[str, bytes] = {}
    try:
        for m in tarscan.scan(fileobj, _KEEP, hash_files=deep):
            name = tree.name(m.name)
            tree.add(name, m.size)
            tree.mode(name, m.mode)
            if m.kind == tarscan.DIR:
                tree.dirs.add(name)
            elif m.kind == tarscan.SYMLINK:
                tree.links[name] = m.linkname
            elif m.kind == tarscan.HARDLINK:
                target = tree.name(m.linkname)
                if target not in tree.files:
                    raise _fail(tree.archive, f"hardlink {name!r} -> {m.linkname!r} escapes")
                tree.files[name] = tree.files[target]
            elif m.kind == tarscan.FILE:
                tree.files[name] = (m.sha256, m.size)
                if m.data is not None:
                    keep[name] = m.data
            else:
                raise _fail(tree.archive, f"member {name!r} is a device node, FIFO or special")
    except IntegrityError:
        raise
    except (tarscan.TarError, EOFError, OSError, ValueError) as e:
        raise _fail(tree.archive, f"not a readable tar stream ({type(e).__name__}: {e})") from None
    return keep


def _zstd_reader(raw: bytes | io.IOBase):
    import zstandard

    src = io.BytesIO(raw) if isinstance(raw, bytes | bytearray) else raw
    return zstandard.ZstdDecompressor().stream_reader(src, read_size=_CHUNK)


def check_conda_archive(path: str | os.PathLike, deep: bool | None = None) -> None:
    """Refuse a hostile .conda/.tar.bz2. deep: also hash each file against paths.json
    (default: IMGBUILD_DEEP_CHECK)."""
    deep = DEEP if deep is None else deep
    archive = Path(path)
    tree = _Tree(archive, archive.stat().st_size)
    if archive.name.endswith(".tar.bz2"):
        import bz2

        with bz2.open(archive, "rb") as f:
            keep = _walk_tar(tree, f, deep)
    elif archive.name.endswith(".conda"):
        keep = {}
        try:
            with zipfile.ZipFile(archive) as z:
                names = z.namelist()
                inner = [n for n in names if n.endswith(".tar.zst")]
                if not any(n.startswith("pkg-") for n in inner) or not any(
                    n.startswith("info-") for n in inner
                ):
                    raise _fail(archive, "a .conda must hold pkg-*.tar.zst and info-*.tar.zst")
                for n in names:
                    if "/" in n or n not in ("metadata.json", *inner):
                        raise _fail(archive, f"unexpected member {n!r} in a .conda")
                for n in sorted(inner, key=lambda x: not x.startswith("info-")):
                    with z.open(n) as raw, _zstd_reader(raw) as f:
                        keep.update(_walk_tar(tree, f, deep))
        except zipfile.BadZipFile as e:
            raise _fail(archive, f"not a valid .conda zip ({e})") from None
        except Exception as e:
            if isinstance(e, IntegrityError):
                raise
            raise _fail(archive, f"cannot read ({type(e).__name__}: {e})") from None
    else:
        raise _fail(archive, "not a conda archive (.conda or .tar.bz2)")
    tree.finish()
    _check_paths_json(tree, keep)


def _check_paths_json(tree: _Tree, keep: dict[str, bytes]) -> None:
    content = {
        n for n in tree.seen if not n.startswith("info/") and n not in tree.dirs
    }  # files, hardlinks and symlinks the package installs
    if "info/paths.json" in keep:
        try:
            doc = json.loads(keep["info/paths.json"])
            entries = {e["_path"]: e for e in doc["paths"]}
        except (ValueError, KeyError, TypeError):
            raise _fail(tree.archive, "info/paths.json is not valid") from None
        for p in entries:
            tree.name(p)
        listed = {p for p, e in entries.items() if e.get("path_type") != "directory"}
        missing = sorted(listed - content)
        extra = sorted(content - listed)
        if missing or extra:
            bad = (missing or extra)[0]
            what = "lists a file the archive lacks" if missing else "does not list"
            raise _fail(tree.archive, f"info/paths.json {what}: {bad!r}")
        for p, e in entries.items():
            kind = e.get("path_type", "hardlink")
            if kind == "softlink" and p not in tree.links:
                raise _fail(tree.archive, f"info/paths.json says {p!r} is a symlink; it is not")
            if kind == "hardlink" and p in tree.files:
                sha, size = tree.files[p]
                if e.get("size_in_bytes") is not None and e["size_in_bytes"] != size:
                    raise _fail(tree.archive, f"info/paths.json size of {p!r} does not match")
                if sha and e.get("sha256") and e["sha256"] != sha:
                    raise _fail(tree.archive, f"info/paths.json sha256 of {p!r} does not match")
    elif "info/files" in keep:
        listed = {ln.strip() for ln in keep["info/files"].decode(errors="replace").splitlines()}
        listed.discard("")
        if not listed <= content | tree.dirs:
            raise _fail(tree.archive, f"info/files lists {sorted(listed - content)[0]!r}")
    else:
        raise _fail(tree.archive, "no info/paths.json or info/files")


# --- zips (wheels, zip sdists) ------------------------------------------------------------------
def _walk_zip(tree: _Tree, z: zipfile.ZipFile, hash_files: bool) -> None:
    files: dict[zipfile.ZipInfo, str] = {}  # file member -> its normalized name
    for zi in z.infolist():
        name = tree.name(zi.filename)
        mode = zi.external_attr >> 16
        if zi.is_dir():
            tree.add(name, 0)
            tree.dirs.add(name)
            continue
        files[zi] = name
        tree.add(name, zi.file_size)
        tree.mode(name, mode)
        if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise _fail(tree.archive, f"member {name!r} is a symlink or special file")
        if (
            zi.compress_size
            and zi.file_size > RATIO_FLOOR
            and zi.file_size > MAX_RATIO * zi.compress_size
        ):
            raise _fail(tree.archive, f"decompression bomb: member {name!r}")
    if hash_files:
        from imagebuilder.zipscan import ZipScanError, member_digests

        try:
            for zi, digest in member_digests(z, files):
                tree.files[files[zi]] = (digest, zi.file_size)
        except ZipScanError as e:
            raise _fail(tree.archive, f"cannot read ({e})") from None
    else:
        for zi, name in files.items():
            tree.files[name] = (None, zi.file_size)
    tree.finish()


def check_wheel(path: str | os.PathLike, deep: bool | None = None) -> None:
    """Refuse a hostile wheel. Always: paths, types, modes, declared sizes, RECORD listing
    exactly the files. deep (default IMGBUILD_DEEP_CHECK): also every RECORD hash."""
    deep = DEEP if deep is None else deep
    archive = Path(path)
    tree = _Tree(archive, archive.stat().st_size)
    try:
        with zipfile.ZipFile(archive) as z:
            _walk_zip(tree, z, hash_files=deep)
            records = [
                n for n in tree.files if n.count("/") == 1 and n.endswith(".dist-info/RECORD")
            ]
            if len(records) != 1:
                raise _fail(archive, "a wheel must hold exactly one *.dist-info/RECORD")
            record = z.read(records[0]).decode("utf-8", errors="replace")
    except zipfile.BadZipFile as e:
        raise _fail(archive, f"not a valid wheel zip ({e})") from None
    except (OSError, EOFError, RuntimeError) as e:  # CRC errors, truncated members
        raise _fail(archive, f"cannot read ({type(e).__name__}: {e})") from None
    _check_record(tree, records[0], record)


def _check_record(tree: _Tree, record_name: str, text: str) -> None:
    dist_info = record_name.rsplit("/", 1)[0]
    unsigned = {record_name, f"{dist_info}/RECORD.jws", f"{dist_info}/RECORD.p7s"}
    listed: set[str] = set()
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0]:
            continue
        path = row[0]
        name = tree.name(path)
        listed.add(name)
        digest = row[1] if len(row) > 1 else ""
        if name in unsigned:
            continue
        if name not in tree.files:
            raise _fail(tree.archive, f"RECORD lists {path!r}, which the wheel lacks")
        if not digest:
            raise _fail(tree.archive, f"RECORD has no hash for {path!r}")
        algo, _, b64 = digest.partition("=")
        if algo != "sha256":
            raise _fail(tree.archive, f"RECORD uses {algo!r} for {path!r}; only sha256 is accepted")
        size = row[2] if len(row) > 2 else ""
        if size and size.isdigit() and int(size) != tree.files[name][1]:
            raise _fail(tree.archive, f"RECORD size of {path!r} does not match its content")
        if tree.files[name][0] is None:
            continue  # not a deep check: hashes are verified at install time
        got = base64.urlsafe_b64encode(bytes.fromhex(tree.files[name][0])).rstrip(b"=").decode()
        if got != b64.rstrip("="):
            raise _fail(tree.archive, f"RECORD hash of {path!r} does not match its content")
    unlisted = sorted(set(tree.files) - listed - unsigned)
    if unlisted:
        raise _fail(tree.archive, f"RECORD does not list {unlisted[0]!r}")


def check_sdist(path: str | os.PathLike) -> None:
    """Source archives are unpacked by build tools: same path and link rules, no metadata."""
    archive = Path(path)
    tree = _Tree(archive, archive.stat().st_size)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                _walk_zip(tree, z, hash_files=False)
            return
        with tarfile.open(archive, "r:*") as probe:  # picks gz/bz2/xz
            probe.next()
    except (tarfile.TarError, OSError, zipfile.BadZipFile) as e:
        raise _fail(archive, f"not a readable source archive ({type(e).__name__})") from None
    opener = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}.get(archive.suffix)
    if opener is None:
        with open(archive, "rb") as f:
            _walk_tar(tree, f)
    else:
        mod = __import__(opener)
        with mod.open(archive, "rb") as f:
            _walk_tar(tree, f)
    tree.finish()
