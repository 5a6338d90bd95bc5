"""A prefix on disk: its marker (`imgbuild-env.json`), and creating it so that a half-made env
never looks complete.

An env is built in a hidden sibling folder and renamed into place with the marker already in
it, so the prefix appears complete or not at all. Where renaming is impossible (the prefix is a
mount point) it is built in place: `.imgbuild-partial` first, the marker last. Leftovers of a
killed creation (hidden siblings, partial prefixes) are removed by the next creation, which
holds the prefix lock, so no live creator owns them. Standard library only (bootstrap).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from imagebuilder.errors import BadInput, Conflict, Unavailable

MARKER = "imgbuild-env.json"
PARTIAL = ".imgbuild-partial"
SCHEMA = "imgbuild/prefix/v1"


@dataclass(frozen=True)
class PrefixMarker:
    req_id: str
    full_id: str
    env_name: str
    arch: str
    created_at: str
    method: str = "packages"  # "packages" (per-package install), "pack", "venv"
    python: str | None = None  # the env's interpreter

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "req_id": self.req_id,
            "full_id": self.full_id,
            "env_name": self.env_name,
            "arch": self.arch,
            "created_at": self.created_at,
            "method": self.method,
            "python": self.python,
        }

    @classmethod
    def from_json(cls, d: dict) -> PrefixMarker:
        if d.get("schema") != SCHEMA:
            raise BadInput(f"unsupported prefix marker schema {d.get('schema')!r}")
        return cls(
            d["req_id"],
            d["full_id"],
            d["env_name"],
            d["arch"],
            d["created_at"],
            d.get("method", "packages"),
            d.get("python"),
        )

    @classmethod
    def for_env(cls, env, method: str, python: str | None) -> PrefixMarker:
        return cls(
            env.req_id,
            env.full_id,
            env.name,
            env.arch,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            method,
            python,
        )


def read_marker(prefix: str | os.PathLike) -> PrefixMarker | None:
    try:
        return PrefixMarker.from_json(json.loads((Path(prefix) / MARKER).read_text()))
    except (OSError, ValueError, KeyError, BadInput):
        return None


def state(prefix: Path) -> str:
    """'absent', 'empty', 'env' (complete), 'partial' (ours, unfinished) or 'foreign'."""
    if not prefix.exists() and not prefix.is_symlink():
        return "absent"
    if not prefix.is_dir():
        return "foreign"
    if read_marker(prefix) is not None:
        return "env"
    names = set(os.listdir(prefix))
    if not names:
        return "empty"
    return "partial" if PARTIAL in names else "foreign"


def check_target(prefix: Path, env, force: bool) -> bool:
    """True when prefix already holds env (nothing to do). Raise when it must not be touched."""
    st = state(prefix)
    if st == "env":
        marker = read_marker(prefix)
        assert marker is not None
        if marker.full_id == env.full_id and marker.arch == env.arch and not force:
            return True
        if not force:
            raise Conflict(
                f"{prefix} already holds another environment ({marker.env_name})",
                "pass --force to replace it, or choose another --prefix/--name",
            )
    elif st == "foreign":
        raise BadInput(
            f"{prefix} exists and is not an imgbuild environment",
            "choose another --prefix, or remove it yourself (imgbuild never deletes folders it did not create)",
        )
    return False


def _siblings(prefix: Path, kind: str) -> list[Path]:
    stem = f".{prefix.name}.imgbuild-{kind}-"
    try:
        return [prefix.parent / n for n in os.listdir(prefix.parent) if n.startswith(stem)]
    except FileNotFoundError:
        return []


def clean_leftovers(prefix: Path) -> None:
    """Remove what killed creations left. Call only while holding the prefix lock."""
    for p in _siblings(prefix, "tmp") + _siblings(prefix, "old"):
        shutil.rmtree(p, ignore_errors=True)
    if state(prefix) == "partial":
        _empty(prefix)


def _empty(folder: Path) -> None:
    for name in os.listdir(folder):
        p = folder / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def new_staging(prefix: Path) -> tuple[Path, bool]:
    """A folder to build the env in, and whether it is the prefix itself (mount points)."""
    try:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        if prefix.is_dir() and os.path.ismount(prefix):
            _empty(prefix)
            (prefix / PARTIAL).write_text(f"{os.getpid()}\n")
            return prefix, True
        staging = prefix.parent / f".{prefix.name}.imgbuild-tmp-{os.getpid()}-{time.time_ns()}"
        staging.mkdir()
        return staging, False
    except OSError as e:
        raise os_error(e, prefix) from None


def publish(staging: Path, prefix: Path, marker: PrefixMarker, in_place: bool) -> None:
    """Write the marker last, then make the env appear at prefix in one rename."""
    data = json.dumps(marker.to_json(), indent=2, sort_keys=True) + "\n"
    try:
        tmp = staging / (MARKER + ".tmp")
        tmp.write_text(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, staging / MARKER)
        if in_place:
            (staging / PARTIAL).unlink(missing_ok=True)
            return
        old = None
        if prefix.exists() or prefix.is_symlink():
            if prefix.is_dir() and not prefix.is_symlink() and not os.listdir(prefix):
                prefix.rmdir()
            else:
                old = prefix.parent / f".{prefix.name}.imgbuild-old-{os.getpid()}-{time.time_ns()}"
                os.rename(prefix, old)
        os.rename(staging, prefix)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise os_error(e, prefix) from None


def discard(staging: Path, in_place: bool) -> None:
    if in_place:
        return  # the partial marker makes the next creation clear it
    shutil.rmtree(staging, ignore_errors=True)


def os_error(e: OSError, prefix: Path):
    if e.errno == errno.ENOSPC:
        return Unavailable(
            f"no space left on the device while creating {prefix}",
            "free disk space (or choose another --prefix) and rerun",
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BadInput(
            f"cannot create {prefix}: {e.strerror} ({e.filename or prefix})",
            "choose a --prefix in a folder you can write to",
        )
    return BadInput(f"cannot create {prefix}: {e}")
