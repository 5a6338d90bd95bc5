"""Configuration: one key, many sources; the most specific wins (CONTRACT.md).

flag > IMGBUILD_<KEY> > METAFLOW_IMGBUILD_<KEY> > ./imgbuild.toml > ~/.config/imgbuild/config.toml
> Metaflow config file > built-in default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagebuilder.errors import BadInput
from imagebuilder.urls import redact

DEFAULTS: dict[str, Any] = {
    "store": "~/.imgbuild/store",
    "oci_dir": "~/.imgbuild/oci",
    "registry": None,
    "insecure_registries": "",
    "s3_endpoint_url": None,
    "base_image": "scratch",
    "compression": "zstd",
    "channels": None,
    "index_url": None,
}
KEYS = tuple(DEFAULTS)
SECRET_HINTS = ("password", "secret", "token")


@dataclass(frozen=True)
class Value:
    key: str
    value: Any
    source: str  # "flag", "env IMGBUILD_STORE", "./imgbuild.toml", ..., "default"


@dataclass(frozen=True)
class Config:
    values: tuple[Value, ...]
    # [auth."HOST"] tables of the TOML config files, most specific file first (secrets inside:
    # only imagebuilder.sources reads them; show() masks them).
    auth: tuple[Value, ...] = ()

    def _find(self, key: str) -> Value:
        for v in self.values:
            if v.key == key:
                return v
        raise KeyError(key)

    def get(self, key: str) -> Any:
        return self._find(key).value

    def source(self, key: str) -> str:
        return self._find(key).source

    @property
    def store(self) -> str:
        return expand(self.get("store"))

    @property
    def oci_dir(self) -> str:
        return expand(self.get("oci_dir"))

    @property
    def insecure_registries(self) -> frozenset[str]:
        raw = self.get("insecure_registries") or ""
        items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
        return frozenset(i.strip() for i in items if i.strip())

    @property
    def channels(self) -> tuple[str, ...]:
        raw = self.get("channels")
        if not raw:
            return ()
        items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
        return tuple(i.strip() for i in items if i.strip())

    @property
    def compression(self) -> str:
        c = str(self.get("compression")).lower()
        if c not in ("zstd", "gzip"):
            raise BadInput(
                f"compression {c!r} (from {self.source('compression')}) is not zstd or gzip"
            )
        return c

    def show(self) -> list[dict]:
        rows = [
            {"key": v.key, "value": mask(v.key, v.value), "source": v.source} for v in self.values
        ]
        for a in self.auth:
            for field_name, value in sorted(a.value.items()):
                key = f"{a.key}.{field_name}"
                secret = field_name in ("password", "token")
                rows.append(
                    {"key": key, "value": "***" if secret else mask(key, value), "source": a.source}
                )
        return rows


def expand(path: str) -> str:
    if "://" in path:
        return path
    return str(Path(os.path.expandvars(path)).expanduser())


def mask(key: str, value: Any) -> Any:
    """Secrets never printed: credentials in URLs, and values of secret-looking keys."""
    if value is None:
        return None
    if any(h in key for h in SECRET_HINTS) and not key.endswith("_env"):
        return "***"
    if isinstance(value, list | tuple):
        return [mask(key, v) for v in value]
    return redact(str(value)) if isinstance(value, str) else value


def load_config(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    home: str | os.PathLike | None = None,
) -> Config:
    env = os.environ if environ is None else environ
    home_dir = Path(home) if home else Path(env.get("HOME") or Path.home())
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("flag", {k: v for k, v in (flags or {}).items() if v is not None})
    ]
    layers.append(
        ("env", {k: env[f"IMGBUILD_{k.upper()}"] for k in KEYS if f"IMGBUILD_{k.upper()}" in env})
    )
    layers.append(
        (
            "env-metaflow",
            {
                k: env[f"METAFLOW_IMGBUILD_{k.upper()}"]
                for k in KEYS
                if f"METAFLOW_IMGBUILD_{k.upper()}" in env
            },
        )
    )
    local = Path(cwd or os.getcwd()) / "imgbuild.toml"
    layers.append((str(local), _toml_keys(local)))
    user = Path(env.get("XDG_CONFIG_HOME") or home_dir / ".config") / "imgbuild" / "config.toml"
    layers.append((str(user), _toml_keys(user)))
    mf_path, mf_values = _metaflow_config(env, home_dir)
    layers.append((mf_path, mf_values))
    # What users already configured for conda, pip and uv, below everything of imgbuild's own.
    from imagebuilder.sources.defaults import condarc_channels, index_url

    for found, key in (
        (condarc_channels(env, home_dir), "channels"),
        (index_url(env, home_dir, Path(cwd or os.getcwd())), "index_url"),
    ):
        if found is not None:
            layers.append((found[1], {key: found[0]}))

    values = []
    for key in KEYS:
        for source, layer in layers:
            if key in layer:
                label = source
                if source == "env":
                    label = f"env IMGBUILD_{key.upper()}"
                elif source == "env-metaflow":
                    label = f"env METAFLOW_IMGBUILD_{key.upper()}"
                values.append(Value(key, layer[key], label))
                break
        else:
            values.append(_default(key, env))
    auth = tuple(
        Value(f"auth.{host}", table, source)
        for source, host, table in auth_tables(cwd=cwd, home=home_dir, environ=env)
    )
    return Config(tuple(values), auth)


def _default(key: str, env: Mapping[str, str]) -> Value:
    if key == "s3_endpoint_url":
        for var in ("METAFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
            if env.get(var):
                return Value(key, env[var], f"env {var}")
    return Value(key, DEFAULTS[key], "default")


def _toml_keys(path: Path) -> dict[str, Any]:
    """Config keys at the top level of a TOML file (tables such as [environment] are not config)."""
    if not path.is_file():
        return {}
    data = read_toml(path)
    return {k: v for k, v in data.items() if k in KEYS}


def auth_tables(
    cwd: str | os.PathLike | None = None,
    home: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[tuple[str, str, dict]]:
    """(source, host, table) of every [auth."HOST"] table, most specific file first."""
    env = os.environ if environ is None else environ
    home_dir = Path(home) if home else Path(env.get("HOME") or Path.home())
    out = []
    for path in (
        Path(cwd or os.getcwd()) / "imgbuild.toml",
        Path(env.get("XDG_CONFIG_HOME") or home_dir / ".config") / "imgbuild" / "config.toml",
    ):
        if not path.is_file():
            continue
        tables = read_toml(path).get("auth") or {}
        if not isinstance(tables, dict):
            raise BadInput(f"{path}: `auth` must be a table of hosts", '[auth."host"] ...')
        for host, table in tables.items():
            if not isinstance(table, dict):
                raise BadInput(
                    f"{path}: [auth.{host!r}] must be a table",
                    'e.g. [auth."conda.example.com"] username = "me" password_env = "CONDA_PW"',
                )
            out.append((str(path), host, table))
    return out


def read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: invalid TOML: {e}", "fix the file's syntax") from None


def _metaflow_config(env: Mapping[str, str], home: Path) -> tuple[str, dict[str, Any]]:
    mf_home = Path(env.get("METAFLOW_HOME") or home / ".metaflowconfig")
    profile = env.get("METAFLOW_PROFILE")
    path = mf_home / (f"config_{profile}.json" if profile else "config.json")
    if not path.is_file():
        return str(path), {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read Metaflow config {path}: {e}") from None
    out = {}
    for key in KEYS:
        for name in (f"METAFLOW_IMGBUILD_{key.upper()}", f"IMGBUILD_{key.upper()}"):
            if name in data:
                out[key] = data[name]
                break
    return str(path), out
