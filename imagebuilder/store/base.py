"""The Store protocol: one key layout (CONTRACT.md) for a local folder and S3.

Two kinds of writes:
- write-once (`put_file`, `put_bytes`): content-addressed objects and env records. The object
  appears under its final key only when complete; an existing object is never overwritten.
  They return True when this call wrote the object, False when it was already there.
  `put_file(..., sha256=)` passes a digest the caller already computed (S3 sends it as the
  body checksum, so a body that changed in flight is refused).
- compare-and-swap (`put_record`): records that change (aliases). `expect=None` means "must
  not exist yet", else the etag read before; a lost race raises `RaceLost`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from imagebuilder.errors import Conflict


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float  # seconds since the epoch
    etag: str | None = None


class RaceLost(Conflict):
    """Another writer changed the record between our read and our write."""


@runtime_checkable
class Store(Protocol):
    url: str  # for messages and records: never contains credentials

    def exists(self, key: str) -> bool: ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def get_file(self, key: str, dest: Path) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> bool: ...

    def put_file(self, key: str, src: Path, sha256: str | None = None) -> bool: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def get_record(self, key: str) -> tuple[bytes, str] | None: ...

    def put_record(self, key: str, data: bytes, expect: str | None) -> str: ...

    def local_path(self, key: str) -> Path | None:
        """The object's file when the store is a local folder (read it in place), else None."""
        ...


def check_key(key: str) -> str:
    """Keys are relative, slash-separated, without '..' or empty parts (defence in depth:
    keys embed filenames that come from channels and indexes)."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in key
        or "\0" in key
    ):
        from imagebuilder.errors import IntegrityError

        raise IntegrityError(f"refusing unsafe store key {key!r}")
    return key
