"""The base image's python run on this machine, to bake the .pyc of a venv env's packages.

A venv image (`--python-from-base`) runs on the base's interpreter, which no conda package
brings. Its packages' .pyc must be made by that very interpreter (the magic number and the
marshal format are its own), deterministically (stage.py: unchecked-hash .pyc, PYTHONHASHSEED=0,
one process per package). No container engine is needed or used: when the base is for this
machine's arch, its filesystem is unpacked once per base digest into the local cache
(`<cache>/base-root/<digest>/`) and its interpreter is started through the base's own dynamic
loader (`ld-linux*.so --inhibit-cache --library-path <the base's lib dirs> <python>`), so no
library of this machine is used. Other arches, musl or static bases, and anything that does not
answer correctly get no .pyc, exactly as before: which it is depends only on the base and this
machine's arch, as for conda envs.

Unpacking follows the layers' whiteouts and resolves every symlink inside the unpacked root
(as a chroot would): a base's `../` names or symlinks cannot make it write outside, and
absolute link targets are rewritten to stay inside, so the loader never reaches this machine's
files through them.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import struct
import subprocess
import tarfile
import tempfile
from pathlib import Path

from imagebuilder.oci.base import Base
from imagebuilder.oci.layer import decompressed

_LIB_DIRS = (
    "usr/local/lib",
    "lib/{triplet}",
    "usr/lib/{triplet}",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
)
_TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
_HOPS = 40  # symlinks followed per path at most: a loop in a base must not hang the bake


def can_run(base: Base, python: str, xy: str) -> bool:
    """Whether the base's python runs here (python_command), remembered per base digest: a
    bake whose layers are all known decides its layer keys without unpacking anything."""
    if not _same_arch(base):
        return False
    from imagebuilder.store.localcache import remembered

    assert base.digest is not None
    name = f"{base.digest.split(':')[-1]}-{xy}-{python.replace('/', '_')}"
    return remembered("base-root", name, lambda: python_command(base, python, xy) is not None)


def _same_arch(base: Base) -> bool:
    from imagebuilder.platforms import host_arch

    arch = base.platform.architecture if base.platform else None
    return not base.is_scratch and arch in _TRIPLETS and host_arch() == _conda_arch(arch)


def python_command(base: Base, python: str, xy: str) -> tuple[str, ...] | None:
    """argv prefix that runs the base's `python` (an absolute path in the image) here, or None
    when it cannot run on this machine."""
    if not _same_arch(base):
        return None
    arch = base.platform.architecture  # type: ignore[union-attr]
    try:
        root = materialize(base)
        cmd = _command(root, python, _TRIPLETS[arch])
    except (OSError, ValueError, tarfile.TarError):
        return None
    if cmd is None:
        return None
    probe = "import sys, os; print('%d.%d' % sys.version_info[:2]); print(os.__file__)"
    try:
        r = subprocess.run(
            [*cmd, "-I", "-S", "-c", probe],
            capture_output=True,
            text=True,
            timeout=60,
            env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "")},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = r.stdout.split()
    # The interpreter must be the base's X.Y with its own standard library, not this machine's.
    if r.returncode != 0 or len(lines) != 2 or lines[0] != xy:
        return None
    if not Path(lines[1]).resolve().is_relative_to(root.resolve()):
        return None
    return cmd


def _conda_arch(oci_arch: str) -> str:
    return {"amd64": "linux-64", "arm64": "linux-aarch64"}[oci_arch]


def _command(root: Path, python: str, triplet: str) -> tuple[str, ...] | None:
    exe = _inside(root, python)
    if exe is None or not exe.is_file():
        return None
    interp = _elf_interpreter(exe)
    if interp is None or "ld-linux" not in posixpath.basename(interp):
        return None  # static, or not glibc's loader (musl's takes other options)
    loader = _inside(root, interp)
    if loader is None or not loader.is_file():
        return None
    dirs = []
    for d in _LIB_DIRS:
        real = _inside(root, d.format(triplet=triplet))
        if real is not None and real.is_dir() and str(real) not in dirs:
            dirs.append(str(real))
    return (str(loader), "--inhibit-cache", "--library-path", ":".join(dirs), str(exe))


def _inside(root: Path, path: str) -> Path | None:
    """`path` of the base, resolved on disk: unpacking rewrote every link to stay inside the
    root, so this machine's resolver follows them as the image's would."""
    real = Path(os.path.realpath(root / path.lstrip("/")))
    return real if real.is_relative_to(os.path.realpath(root)) else None


def _elf_interpreter(path: Path) -> str | None:
    """PT_INTERP of a 64-bit little-endian ELF file (the loader it names), else None."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return None
        phoff, phentsize, phnum = (
            struct.unpack_from("<Q", head, 32)[0],
            *struct.unpack_from("<HH", head, 54),
        )
        for i in range(min(phnum, 256)):
            f.seek(phoff + i * phentsize)
            ph = f.read(56)
            if len(ph) < 56:
                return None
            p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", ph)
            if p_type == 3:  # PT_INTERP
                f.seek(p_offset)
                return f.read(min(p_filesz, 4096)).split(b"\0", 1)[0].decode("ascii", "replace")
    return None


# --- unpacking --------------------------------------------------------------------------------


def materialize(base: Base) -> Path:
    """The base's filesystem, unpacked once per digest in the local cache."""
    from imagebuilder.store.localcache import cache_root

    assert base.digest is not None
    top = cache_root() / "base-root"
    final = top / base.digest.split(":")[-1]
    if (final / ".complete").exists():
        from imagebuilder.cacheprune import touch

        touch(final)  # used: kept by cacheprune.py
        return final / "root"
    top.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=top))
    try:
        unpack_layers(base, tmp / "root")
        (tmp / ".complete").write_text("")
        try:
            os.rename(tmp, final)
        except OSError:  # another bake unpacked it meanwhile (or a stale partial one is there)
            if not (final / ".complete").exists():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "root"


def unpack_layers(base: Base, root: Path) -> None:
    root.mkdir(parents=True)
    links: dict[str, str] = {}  # real path (root-relative) -> symlink target as written on disk
    for layer in base.layers:
        mine: set[str] = set()  # paths this layer wrote: an opaque dir keeps them
        with layer.source.open() as f:
            stream = decompressed(layer.descriptor.media_type, f)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for m in tar:
                    _apply(root, links, mine, m, tar)


def _apply(root: Path, links: dict[str, str], mine: set[str], m: tarfile.TarInfo, tar) -> None:
    name = posixpath.normpath("/" + m.name).lstrip("/")  # "/.." and "../" clamp at the root
    if not name or name == ".":
        return
    head, tail = posixpath.split(name)
    parent = resolve_inside(links, head, follow_last=True)
    if tail == ".wh..wh..opq":
        _clear(root, links, parent, keep=mine)
        return
    if tail.startswith(".wh."):
        _clear(root, links, posixpath.join(parent, tail[4:]).lstrip("/"), keep=None)
        return
    rel = posixpath.join(parent, tail).lstrip("/")
    mine.add(rel)
    dest = root / rel
    (root / parent).mkdir(parents=True, exist_ok=True)
    if m.isdir():
        if (dest.is_symlink() or dest.exists()) and not (dest.is_dir() and not dest.is_symlink()):
            _remove(dest)
            links.pop(rel, None)
        dest.mkdir(exist_ok=True)
        return
    if dest.is_symlink() or dest.exists():
        _remove(dest)
    links.pop(rel, None)
    if m.issym():
        # Stay inside: absolute targets are taken from the root, `..` stops at it.
        target = posixpath.normpath(posixpath.join("/" + parent, m.linkname))
        rel_target = posixpath.relpath(target, "/" + parent) if parent else target.lstrip("/")
        os.symlink(rel_target or ".", dest)
        links[rel] = rel_target or "."
    elif m.islnk():
        src = root / resolve_inside(links, posixpath.normpath("/" + m.linkname).lstrip("/"), True)
        if src.is_file() and not src.is_symlink():
            os.link(src, dest)
    elif m.isfile():
        data = tar.extractfile(m)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(data, out, 1 << 20)
        os.chmod(dest, 0o755 if m.mode & 0o111 else 0o644)
    # devices, FIFOs: nothing a python needs to start


def resolve_inside(links: dict[str, str], rel: str, follow_last: bool) -> str:
    """rel (root-relative) with the symlinks of its parents (and of itself if follow_last)
    resolved inside the root, as a chroot would: `..` stops at the root, an absolute target
    starts from it. links: root-relative path -> target. Raises ValueError on a loop."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    out: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if out:
                out.pop()
            continue
        cur = "/".join([*out, p])
        target = links.get(cur)
        if target is not None and (parts or follow_last):
            hops += 1
            if hops > _HOPS:
                raise ValueError(f"symlink loop at /{cur}")
            if target.startswith("/"):
                out = []
            parts = [x for x in target.split("/") if x not in ("", ".")] + parts
            continue
        out.append(p)
    return "/".join(out)


def _clear(root: Path, links: dict[str, str], rel: str, keep: set[str] | None) -> None:
    """keep None: remove rel (a whiteout). Else rel is an opaque dir: remove its children but
    those in `keep` (written by the same layer)."""
    path = root / rel if rel else root
    prefix = rel + "/" if rel else ""
    if keep is None:
        if path.is_symlink() or path.exists():
            _remove(path)
        gone = [k for k in links if k == rel or k.startswith(prefix)]
    else:
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                if prefix + child.name not in keep:
                    _remove(child)
        gone = [k for k in links if k.startswith(prefix) and not _kept(k, prefix, keep)]
    for k in gone:
        del links[k]


def _kept(path: str, prefix: str, keep: set[str]) -> bool:
    top = prefix + path[len(prefix) :].split("/", 1)[0]
    return top in keep


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
