"""The store as the bootstrap reads it: a local folder (imagebuilder.store.local, standard
library) or S3 through the standard-library reader. Read-only: a task never writes the store."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from imagebuilder.bootstrap.s3 import S3Error, S3Reader
from imagebuilder.errors import BadInput, NotFound, Unavailable
from imagebuilder.store.base import ObjectInfo, check_key


class S3ReadStore:
    def __init__(self, url: str, endpoint: str | None = None, env=None):
        rest = url[len("s3://") :]
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise BadInput(f"bad store URL {url!r}: no bucket", "use s3://bucket/prefix")
        self.prefix = prefix.strip("/")
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.endpoint = endpoint
        self.reader = S3Reader(self.bucket, endpoint, env)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, e: S3Error, key: str):
        if e.status == 404:
            return NotFound(f"{key} not found in store {self.url}")
        where = f"{self.url}" + (f" at {self.endpoint}" if self.endpoint else "")
        if e.status in (401, 403):
            return Unavailable(
                f"store {where} refused access to {key}: {e.code}",
                "check the task's AWS credentials (env, web identity, container or instance role)",
            )
        return Unavailable(f"store {where} is unavailable: {e.code} {e}", "retry later")

    def local_path(self, key: str) -> Path | None:
        return None

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with self.reader.request("HEAD", self._key(key)) as r:
                return ObjectInfo(
                    key, int(r.headers.get("Content-Length", 0)), 0.0, r.headers.get("ETag")
                )
        except S3Error as e:
            if e.status == 404:
                return None
            raise self._fail(e, key) from None

    def get_bytes(self, key: str) -> bytes:
        try:
            with self.reader.request("GET", self._key(key)) as r:
                return r.read()
        except S3Error as e:
            raise self._fail(e, key) from None

    def get_record(self, key: str) -> tuple[bytes, str] | None:
        try:
            with self.reader.request("GET", self._key(key)) as r:
                return r.read(), (r.headers.get("ETag") or "")
        except S3Error as e:
            if e.status == 404:
                return None
            raise self._fail(e, key) from None

    def get_file(self, key: str, dest: Path) -> None:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            with self.reader.request("GET", self._key(key)) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
            os.replace(tmp, dest)
        except S3Error as e:
            raise self._fail(e, key) from None
        finally:
            tmp.unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix.rstrip("/")) + ("/" if prefix.endswith("/") else "")
        try:
            keys = self.reader.list(full)
        except S3Error as e:
            raise self._fail(e, prefix) from None
        cut = len(self.prefix) + 1 if self.prefix else 0
        yield from (k[cut:] for k in keys)

    def _read_only(self, *a, **k):
        raise BadInput("the bootstrap reads the store; it never writes it")

    put_bytes = put_file = put_record = delete = _read_only


def open_read_store(url: str, endpoint: str | None):
    if url.startswith("s3://"):
        return S3ReadStore(url, endpoint)
    if "://" in url and not url.startswith("file://"):
        raise BadInput(f"unsupported store URL {url!r}", "use a folder path or s3://bucket/prefix")
    from imagebuilder.store.local import LocalStore

    return LocalStore(os.path.expanduser(url.removeprefix("file://")))
