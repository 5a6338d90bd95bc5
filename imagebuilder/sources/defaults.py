"""Channels and indexes users already configured for conda, pip and uv.

Used only when neither the request nor imgbuild's own config names any (config.py puts these
below the Metaflow config file and above the built-in default):
- channels: `channels:` of $CONDARC or ~/.condarc (then ~/.conda/.condarc, ~/.config/conda/.condarc);
- index_url: $UV_DEFAULT_INDEX / $UV_INDEX_URL / $PIP_INDEX_URL, else uv.toml
  (`index-url`, or the `[[index]]` with `default = true`), else pip.conf (`index-url` of
  [global] or [install]), in pip's file order (later files win).
Each function returns (value, source) or None.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

from imagebuilder.errors import BadInput


def condarc_channels(environ: Mapping[str, str], home: Path) -> tuple[list[str], str] | None:
    candidates = []
    if environ.get("CONDARC"):
        candidates.append(Path(environ["CONDARC"]))
    candidates += [
        home / ".condarc",
        home / ".conda" / ".condarc",
        Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "conda" / ".condarc",
    ]
    for path in candidates:
        if not path.is_file():
            continue
        import yaml

        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__  # one line
            raise BadInput(f"cannot read {path}: {why}", "fix the file's YAML syntax") from None
        channels = data.get("channels") if isinstance(data, dict) else None
        if channels:
            chans = [str(c) for c in channels if str(c) != "defaults"]
            if chans:
                return chans, str(path)
    return None


def index_url(
    environ: Mapping[str, str], home: Path, cwd: Path | None = None
) -> tuple[str, str] | None:
    for var in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if environ.get(var):
            return environ[var].split()[0], f"env {var}"
    return _uv_toml(environ, home, cwd or Path.cwd()) or _pip_conf(environ, home)


def _uv_toml(environ: Mapping[str, str], home: Path, cwd: Path) -> tuple[str, str] | None:
    from imagebuilder.config import read_toml

    xdg = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    paths = [Path(environ["UV_CONFIG_FILE"])] if environ.get("UV_CONFIG_FILE") else []
    paths += [cwd / "uv.toml", xdg / "uv" / "uv.toml", Path("/etc/uv/uv.toml")]
    for path in paths:
        if not path.is_file():
            continue
        data = read_toml(path)
        for idx in data.get("index") or ():
            if isinstance(idx, dict) and idx.get("default") and idx.get("url"):
                return str(idx["url"]), str(path)
        if data.get("index-url"):
            return str(data["index-url"]), str(path)
    return None


def pip_conf_files(environ: Mapping[str, str], home: Path) -> list[Path]:
    """pip's order: global, user (legacy, then XDG), site, then $PIP_CONFIG_FILE; later wins."""
    xdg_dirs = (environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":")
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs] + [Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf"]
    files += [Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf"]
    if environ.get("VIRTUAL_ENV"):
        files.append(Path(environ["VIRTUAL_ENV"]) / "pip.conf")
    if environ.get("PIP_CONFIG_FILE") and environ["PIP_CONFIG_FILE"] != os.devnull:
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    return files


def _pip_conf(environ: Mapping[str, str], home: Path) -> tuple[str, str] | None:
    found = None
    for path in pip_conf_files(environ, home):
        if not path.is_file():
            continue
        cp = configparser.RawConfigParser()
        try:
            cp.read(path)
        except configparser.Error as e:
            raise BadInput(f"cannot read {path}: {e}") from None
        for section in ("global", "install"):
            if cp.has_option(section, "index-url"):
                found = (cp.get(section, "index-url").split()[0], str(path))
    return found
