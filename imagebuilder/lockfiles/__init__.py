"""Lock files in and out: conda-lock.yml, pixi.lock, uv.lock / pylock.toml, @EXPLICIT,
requirements.txt with hashes.

`load_lock(path, arch)` reads a lock into a ResolvedEnv with exactly the locked packages (no
solve): its req_id comes from the lock's content (spec.lock = sha256 of the file), its full_id
from the packages as always, so the same packages give the same full_id whichever way they
came in. `export_lock(envs, fmt)` writes envs (one per arch) in a format; reading the result
back gives the same full_id (tests/interop check it for every format).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import BadInput, NotFound
from imagebuilder.lockfiles.base import Format, Locked, Lookup, ReadContext

__all__ = ["FORMATS", "Locked", "ReadContext", "export_lock", "load_lock", "read_lock", "sniff"]


def _fmt(name: str) -> Format:
    """Import a format's module only when it is used (pixi imports py-rattler)."""
    import importlib

    mod = importlib.import_module(f"imagebuilder.lockfiles.{_MODULES[name]}")
    spec = _SPECS[name]
    return Format(
        name=name,
        summary=spec[0],
        read=mod.read,
        write=getattr(mod, "write", None),
        multi_arch=spec[1],
        holds_conda=spec[2],
        suffix=spec[3],
    )


_MODULES = {
    "conda-lock": "condalock",
    "pixi": "pixi",
    "explicit": "explicit",
    "requirements": "requirements",
    "pylock": "pylock",
    "uv": "uvlock",
}
# name: (summary, one file holds several arches, conda packages first-class, default file name)
_SPECS = {
    "conda-lock": ("conda-lock unified lock file (v1)", True, True, "conda-lock.yml"),
    "pixi": ("pixi.lock (rattler-lock)", True, True, "pixi.lock"),
    "explicit": ("conda @EXPLICIT file, one arch", False, True, "conda-{arch}.lock"),
    "requirements": ("requirements.txt with --hash", False, False, "requirements.txt"),
    "pylock": ("pylock.toml (PEP 751)", False, False, "pylock.toml"),
    "uv": ("uv.lock (read through `uv export`)", False, False, "uv.lock"),
}
FORMATS = tuple(_MODULES)
EXPORT_FORMATS = tuple(f for f in FORMATS if f != "uv")


def get_format(name: str) -> Format:
    if name not in _MODULES:
        raise BadInput(f"unknown lock format {name!r}", f"use one of: {', '.join(FORMATS)}")
    return _fmt(name)


def sniff(path: Path, text: str) -> str:
    """The format of a lock file, from its name first, then its content."""
    from imagebuilder.lockfiles import explicit, pixi, pylock, requirements, uvlock

    name = path.name.lower()
    if name.endswith(("conda-lock.yml", "conda-lock.yaml")):
        return "conda-lock"
    if name == "pixi.lock":
        return "pixi"
    if name == "uv.lock":
        return "uv"
    if name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml")):
        return "pylock"
    if explicit.sniff(text):
        return "explicit"
    if re.search(r"(?m)^package:\s*$", text) and re.search(r"(?m)^metadata:\s*$", text):
        return "conda-lock"
    if pixi.sniff(text):
        return "pixi"
    if pylock.sniff(text):
        return "pylock"
    if uvlock.sniff(text):
        return "uv"
    if requirements.sniff(text):
        return "requirements"
    raise BadInput(
        f"{path}: cannot tell which lock format this is",
        f"supported: {', '.join(FORMATS)}; name the file after its format (e.g. conda-lock.yml)",
    )


def read_text(path: str | Path) -> tuple[Path, bytes]:
    p = Path(path)
    try:
        return p, p.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"lock file {p} does not exist") from None
    except OSError as e:
        raise BadInput(f"cannot read lock file {p}: {e.strerror}") from None


def read_lock(
    path: str | Path,
    arch: str,
    *,
    fmt: str | None = None,
    python: str | None = None,
    lookup: Lookup | None = None,
) -> tuple[str, str, Locked]:
    """(format, sha256 of the content, Locked) for one arch."""
    from imagebuilder.platforms import get_arch

    get_arch(arch)
    p, raw = read_text(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{p}: not a UTF-8 text file") from None
    name = fmt or sniff(p, text)
    if lookup is None:
        from imagebuilder.lockfiles.remote import RemoteLookup

        lookup = RemoteLookup()
    ctx = ReadContext(arch=arch, path=p, python=python, lookup=lookup)
    locked = get_format(name).read(text, ctx)
    _check_unique(locked, p)
    return name, hashlib.sha256(raw).hexdigest(), locked


def _check_unique(locked: Locked, path: Path) -> None:
    seen: dict[tuple[str, str], str] = {}
    for pkg in locked.packages:
        key = (pkg.kind, pkg.name)
        if key in seen:
            raise BadInput(
                f"{path}: {pkg.kind} package {pkg.name} is locked twice "
                f"({seen[key]} and {pkg.filename})",
                "a lock holds one version of each package per platform",
            )
        seen[key] = pkg.filename


def load_lock(
    path: str | Path,
    arch: str,
    *,
    fmt: str | None = None,
    python: str | None = None,
    lookup: Lookup | None = None,
) -> ResolvedEnv:
    """A lock file as a ResolvedEnv for `arch`: the locked packages, no solve."""
    from imagebuilder import __version__
    from imagebuilder.spec import make_spec

    name, digest, locked = read_lock(path, arch, fmt=fmt, python=python, lookup=lookup)
    has_conda_python = any(p.kind == "conda" and p.name == "python" for p in locked.packages)
    pure_pypi = not has_conda_python and any(p.kind == "pypi" for p in locked.packages)
    spec = make_spec(
        arch=arch,
        lock=digest,
        channels=locked.channels,
        indexes=locked.indexes,
        find_links=[f for f in locked.find_links if "://" in f],
        python=locked.python if pure_pypi else None,
        # Nothing in a PyPI-only lock provides python: the env runs on the base image's python.
        python_from_base=pure_pypi,
    )
    return ResolvedEnv(
        spec=spec,
        packages=locked.packages,
        resolver=(("imgbuild", __version__), ("lockfile", name)),
    )


def export_lock(envs: list[ResolvedEnv], fmt: str) -> str:
    """Write envs (one per arch) in `fmt`."""
    f = get_format(fmt)
    if f.write is None:
        raise BadInput(
            f"imgbuild reads {fmt} files but does not write them",
            f"export to one of: {', '.join(EXPORT_FORMATS)}",
        )
    if not envs:
        raise BadInput("nothing to export")
    arches = [e.arch for e in envs]
    if len(set(arches)) != len(arches):
        raise BadInput("two environments for the same arch cannot share one lock file")
    if len(envs) > 1 and not f.multi_arch:
        raise BadInput(
            f"{fmt} files hold one arch; this names {len(envs)} ({', '.join(arches)})",
            "pass --arch ARCH, or use --format conda-lock / pixi for all arches in one file",
        )
    sources = [p for e in envs for p in e.packages if p.is_source and p.kind == "conda"]
    if sources:
        raise BadInput(f"cannot export {sources[0].name}: not an archive")
    return f.write(sorted(envs, key=lambda e: e.arch))
