"""The protocols resolvers implement, and what every solve is given besides the spec."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from imagebuilder.env import Package
from imagebuilder.spec import EnvSpec


def default_cache_dir() -> Path:
    """This machine's cache root, as store/localcache.py defines it (IMGBUILD_CACHE_DIR, else
    ~/.imgbuild/cache); the resolver keeps repodata under <root>/repodata. Not imported from
    there: the store package is not needed by `resolve --dry-run`."""
    env = os.environ.get("IMGBUILD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".imgbuild" / "cache"


@dataclass(frozen=True)
class Context:
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    cache_dir: Path = field(default_factory=default_cache_dir)
    progress: Callable[[str], None] | None = None  # short status lines ("solving linux-64")

    def say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)


@dataclass(frozen=True)
class Provided:
    """A Python distribution the conda part already installs (mixed envs)."""

    name: str  # PyPI name, canonical
    version: str
    conda_name: str


class CondaResolver(Protocol):
    name: str

    def version(self) -> str: ...

    def solve(self, spec: EnvSpec, specs: list[str], ctx: Context) -> list[Package]:
        """Pin `specs` (conda match specs) for spec.arch from spec.channels."""
        ...


class PypiResolver(Protocol):
    name: str

    def version(self) -> str: ...

    def solve(
        self, spec: EnvSpec, python: str, provided: list[Provided], ctx: Context
    ) -> list[Package]:
        """Pin spec's PyPI requirements for spec.arch and `python` (X.Y or X.Y.Z); packages in
        `provided` are already installed (by conda) and must not be returned."""
        ...
