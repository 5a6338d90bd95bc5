"""A store in a local folder (the embedded default).

Write-once objects: written to `.tmp/` in the same filesystem, fsynced, then hard-linked to
the final key (link fails if the key exists, so the first writer wins and nothing is ever
overwritten), then the temp name is removed. Records: an flock per key serializes the
compare-and-swap; the content's sha256 is its etag.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from imagebuilder.atomic import temp_path
from imagebuilder.errors import NotFound, Unavailable
from imagebuilder.store.base import ObjectInfo, RaceLost, check_key
from imagebuilder.testhooks import kill_point

TMP = ".tmp"
LOCKS = ".locks"
HIDDEN = (TMP, LOCKS)


class LocalStore:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    # --- paths ---------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _tmpdir(self) -> Path:
        d = self.root / TMP
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise Unavailable(
                f"cannot write to store {self.url}: {e.strerror}", "check the path and permissions"
            ) from None
        return d

    def local_path(self, key: str) -> Path | None:
        p = self._path(key)
        return p if p.is_file() else None

    # --- reads -----------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{key} not found in store {self.url}") from None

    def get_file(self, key: str, dest: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise NotFound(f"{key} not found in store {self.url}")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(dest, ".part")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        for info in self.list_info(prefix):
            yield info.key

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        start = base if base.is_dir() else base.parent
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d not in HIDDEN]
            dirnames.sort()
            for name in sorted(filenames):
                key = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        continue
                    yield ObjectInfo(key, st.st_size, st.st_mtime)

    # --- write-once ------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> bool:
        if self.exists(key):
            return False
        with self._temp() as (fd, tmp):
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
            return self._publish(tmp, key)

    def put_file(self, key: str, src: Path, sha256: str | None = None) -> bool:
        if self.exists(key):
            return False
        with self._temp() as (fd, tmp):
            with open(src, "rb") as fin, os.fdopen(fd, "wb", closefd=False) as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            return self._publish(tmp, key)

    @contextmanager
    def _temp(self):
        fd, tmp = tempfile.mkstemp(dir=self._tmpdir(), prefix="put-")
        try:
            yield fd, tmp
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise Unavailable(
                    f"store {self.url} is out of space", "free disk space and rerun"
                ) from None
            raise
        finally:
            os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)

    def temp_path(self, prefix: str = "adopt-", suffix: str = "") -> Path:
        """A fresh empty file in the store's own temp folder, for `adopt`."""
        fd, tmp = tempfile.mkstemp(dir=self._tmpdir(), prefix=prefix, suffix=suffix)
        os.close(fd)
        return Path(tmp)

    def adopt(self, key: str, tmp: str | os.PathLike) -> bool:
        """Publish a file the caller wrote (a layer blob streamed straight to disk) under `key`
        without copying it: fsync, make readable, hard-link (first writer wins, like put_file).
        `tmp` must be in this store's temp folder (`temp_path`), else it is copied. The temp
        name is removed either way. True if this call stored the object."""
        tmp = Path(tmp)
        try:
            if tmp.parent != self.root / TMP:
                return self.put_file(key, tmp)
            if self.exists(key):
                return False
            return self._publish(str(tmp), key, kill=None)
        finally:
            tmp.unlink(missing_ok=True)

    def _publish(self, tmp: str, key: str, kill: str | None = "store.put") -> bool:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        if kill:
            kill_point(kill)  # adopt: the caller's own point covers "complete in a temp file"
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        return True

    def delete(self, key: str) -> None:
        with suppress(FileNotFoundError):
            self._path(key).unlink()

    # --- compare-and-swap records ----------------------------------------------------------------
    @contextmanager
    def _lock(self, key: str):
        d = self.root / LOCKS
        d.mkdir(parents=True, exist_ok=True)
        with open(d / hashlib.sha256(key.encode()).hexdigest()[:32], "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def get_record(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def put_record(self, key: str, data: bytes, expect: str | None) -> str:
        with self._lock(key):
            current = self.get_record(key)
            if (current is None) != (expect is None) or (current and current[1] != expect):
                raise RaceLost(
                    f"{key} was changed by another writer",
                    "read it again and retry (another imgbuild process wrote it first)",
                )
            with self._temp() as (fd, tmp):
                with os.fdopen(fd, "wb", closefd=False) as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                kill_point("store.record")
                final = self._path(key)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
        return hashlib.sha256(data).hexdigest()
