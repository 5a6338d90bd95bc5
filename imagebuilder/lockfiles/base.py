"""What every lock format reads into and writes from.

A reader turns a file into `Locked` for one arch (pinned packages + the channels and indexes
they came from); `load_lock` (in __init__) turns that into a ResolvedEnv without solving. A
writer turns one or more ResolvedEnvs (one per arch) into the format's text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from imagebuilder.env import Package, ResolvedEnv


@dataclass(frozen=True)
class Locked:
    packages: tuple[Package, ...]
    channels: tuple[str, ...] = ()
    indexes: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    python: str | None = None  # target python the PyPI part was picked for, when it mattered
    notes: tuple[str, ...] = ()  # things the user should know (skipped packages, ...)


@dataclass
class ReadContext:
    """What a reader may need beyond the file: the target, and network look-ups.

    `lookup` is only used when the file lacks something identity needs (an explicit file with
    md5 only, a requirements file without URLs); readers never re-solve.
    """

    arch: str
    path: Path
    python: str | None = None
    lookup: Lookup | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.name}: "


class Lookup(Protocol):
    def repodata_record(self, channel: str, subdir: str, filename: str) -> dict | None: ...

    def index_files(
        self, indexes: tuple[str, ...], find_links: tuple[str, ...], name: str
    ) -> list[tuple[str, str, str | None]]:
        """(filename, url, sha256 or None) of every file of `name` the indexes list."""
        ...


@dataclass(frozen=True)
class Format:
    name: str
    summary: str
    read: Callable[[str, ReadContext], Locked]
    write: Callable[[list[ResolvedEnv]], str] | None
    multi_arch: bool  # one file holds several arches
    holds_conda: bool  # conda packages are first-class (else kept in comments/tool tables)
    suffix: str  # default output file name
