"""Prefix replacement for packs: the rules conda uses, applied when a pack is unpacked.

- text files: every occurrence of the old prefix becomes the new one; a `#!` line that grows
  past the kernel's 127-byte limit becomes a `/bin/sh` trampoline (python) or `/usr/bin/env`.
- binary files: inside each NUL-terminated string the old prefix is replaced and the string
  padded with NULs to its old length, so offsets in the file do not move. The new prefix must
  therefore not be longer than the old one (conda-build uses 255-character placeholders for
  binaries, so any sensible prefix fits).
Standard library only (the bootstrap unpacks packs before any dependency is installed).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from imagebuilder.errors import BadInput, IntegrityError

SHEBANG_MAX = 127


@dataclass(frozen=True)
class Replacement:
    path: str  # relative to the prefix
    placeholder: str
    mode: str  # "text" | "binary"

    def to_json(self) -> list:
        return [self.path, self.placeholder, self.mode]

    @classmethod
    def from_json(cls, d: list) -> Replacement:
        return cls(d[0], d[1], d[2])


def replace_text(data: bytes, old: bytes, new: bytes) -> bytes:
    out = data.replace(old, new)
    if out.startswith(b"#!"):
        out = fix_shebang(out)
    return out


def fix_shebang(data: bytes) -> bytes:
    """Keep a `#!` line under the kernel limit (what conda and rattler do for long prefixes)."""
    end = data.find(b"\n")
    line = data[: end if end >= 0 else len(data)]
    if len(line) <= SHEBANG_MAX:
        return data
    rest = data[len(line) :]
    interp, _, args = line[2:].strip().partition(b" ")
    if os.path.basename(interp).startswith(b"python"):
        # Valid sh that execs the interpreter, and a string literal python skips.
        tramp = b"#!/bin/sh\n'''exec' \"" + interp + b'" "$0" "$@"\n' + b"' '''"
        return tramp + rest
    env_line = b"#!/usr/bin/env " + os.path.basename(interp) + (b" " + args if args else b"")
    return env_line + rest


def replace_binary(data: bytes, old: bytes, new: bytes, where: str = "") -> bytes:
    if old not in data:
        return data
    if len(new) > len(old):
        raise BadInput(
            f"the prefix {new.decode()!r} is {len(new)} characters long; {where or 'a binary file'} "
            f"has room for {len(old)}",
            f"choose a prefix of at most {len(old)} characters (binary files keep the prefix in "
            "fixed-size strings), or create the env per package (--no-pack)",
        )
    pattern = re.compile(re.escape(old) + b"([^\0]*?)\0", re.DOTALL)

    def one(m: re.Match) -> bytes:
        s = m.group(0)
        n = s.count(old)
        return s.replace(old, new) + b"\0" * ((len(old) - len(new)) * n)

    out = pattern.sub(one, data)
    assert len(out) == len(data)
    return out


def apply(root: str, reps: list[Replacement], new_prefix: str) -> None:
    """Rewrite each listed file under root in place (mode and links preserved). The list comes
    from a pack's manifest: a path that is absolute, climbs with `..` or resolves outside root
    through a symlink is refused (IntegrityError), never followed."""
    new = new_prefix.encode()
    real_root = os.path.realpath(root)
    for r in reps:
        parts = r.path.split("/")
        path = os.path.join(root, r.path)
        real = os.path.realpath(path)
        if (
            not r.path
            or os.path.isabs(r.path)
            or ".." in parts
            or "\0" in r.path
            or not real.startswith(real_root + os.sep)
        ):
            raise IntegrityError(
                f"file to relocate {r.path!r} is outside the prefix",
                "the pack is corrupt or hostile; remove it from the store and run "
                "`imgbuild pack` again",
            )
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        old = r.placeholder.encode()
        if r.mode == "binary":
            out = replace_binary(data, old, new, r.path)
        else:
            out = replace_text(data, old, new)
        if out != data:
            _rewrite(path, out)


def _rewrite(path: str, data: bytes) -> None:
    """Write a new file (never through a hardlink shared with a package cache)."""
    mode = os.stat(path).st_mode & 0o7777
    tmp = path + ".imgbuild-tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def scan(root: str, placeholder: str, skip: set[str]) -> list[Replacement]:
    """Every regular file under root (except skip) that contains placeholder."""
    needle = placeholder.encode()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel in skip or os.path.islink(full):
                continue
            with open(full, "rb") as f:
                data = f.read()
            if needle in data:
                found.append(Replacement(rel, placeholder, "binary" if b"\0" in data else "text"))
    return found
