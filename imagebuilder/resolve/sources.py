"""Identity of PyPI sources that are not published archives (CONTRACT.md: full_id).

- sdist: the sha256 of the sdist file (from the index).
- git: sha256 of the text "git:<commit>" (the full 40-hex commit uv resolved).
- local path: a tree hash, sha256 of the canonical JSON of
  ["imgbuild-tree/v1", [[relpath, kind, digest], ...]] sorted by relpath, where kind is
  "f" (file), "x" (executable file) or "l" (symlink; digest = the link target), digest of files
  = sha256 of their bytes. Skipped: VCS folders, caches and build outputs (TREE_SKIP), which
  change without changing the source.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from imagebuilder.fetch import sha256_file
from imagebuilder.ids import sha256_json

TREE_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".tox", ".nox", ".venv", "build", "dist"}
TREE_SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")


def git_source_sha256(commit: str) -> str:
    return hashlib.sha256(f"git:{commit}".encode()).hexdigest()


def tree_sha256(root: str | os.PathLike) -> str:
    root = Path(root)
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in TREE_SKIP_DIRS and not d.endswith(TREE_SKIP_SUFFIXES)
        )
        for name in sorted(filenames):
            if name.endswith(TREE_SKIP_SUFFIXES):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries.append([rel, "l", os.readlink(path)])
                continue
            kind = "x" if os.access(path, os.X_OK) else "f"
            entries.append([rel, kind, sha256_file(path)])
        for d in list(dirnames):  # symlinked folders are links, not trees to descend
            if (Path(dirpath) / d).is_symlink():
                dirnames.remove(d)
                rel = (Path(dirpath) / d).relative_to(root).as_posix()
                entries.append([rel, "l", os.readlink(Path(dirpath) / d)])
    return sha256_json(["imgbuild-tree/v1", sorted(entries)])


def static_version(root: str | os.PathLike) -> str | None:
    """The version a source tree declares statically (pyproject [project] version, setup.cfg
    [metadata] version, PKG-INFO), else None: uv does not report versions of local folders."""
    root = Path(root)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        from imagebuilder.config import read_toml

        version = read_toml(pyproject).get("project", {}).get("version")
        if version:
            return str(version)
    cfg = root / "setup.cfg"
    if cfg.is_file():
        import configparser

        cp = configparser.ConfigParser()
        cp.read(cfg)
        if cp.has_option("metadata", "version"):
            return cp.get("metadata", "version")
    pkg_info = root / "PKG-INFO"
    if pkg_info.is_file():
        for line in pkg_info.read_text(errors="replace").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return None
