"""Blob uploads: cross-repository mount, monolithic PUT, chunked PATCH; retried and verified.

- Small blobs: POST to open a session, then one PUT with the body and `?digest=`.
- Big blobs (> `CHUNK_THRESHOLD`): PATCH chunks with Content-Range, then PUT `?digest=`; our
  own sha256 is checked before the final PUT, so a corrupted source never lands.
- A transient failure (dropped connection, 5xx, 429) restarts the whole session with backoff:
  a half-written session is never reused, so no partial blob is ever committed (the registry
  verifies the digest on the final PUT).
- Mount: `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other repo>` (201 = done,
  no bytes sent); anything else falls back to uploading.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from typing import BinaryIO
from urllib.parse import urljoin

from imagebuilder.errors import ImgbuildError, IntegrityError, NotFound, Unavailable
from imagebuilder.registry.client import RegistryClient, Retryable, push_scope
from imagebuilder.testhooks import kill_point

CHUNK_THRESHOLD = 64 * 1024 * 1024
CHUNK_SIZE = 16 * 1024 * 1024
Opener = Callable[[], BinaryIO]


class HashingReader:
    """A file wrapper that hashes what it hands out; `len()` gives the Content-Length."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size, self.sent = f, size, 0
        self.h = hashlib.sha256()

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n if n is not None and n >= 0 else self.size - self.sent)
        self.h.update(data)
        self.sent += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        # Only a rewind to the start is needed (a re-sent request after a 401 challenge).
        self.f.seek(0)
        self.h, self.sent = hashlib.sha256(), 0
        return 0

    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


def mount_blob(client: RegistryClient, repo: str, digest: str, from_repo: str) -> bool:
    """Ask the registry to link a blob it holds in `from_repo` into `repo` (no bytes sent)."""
    try:
        r = client.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}",
            [push_scope(repo), client.scope(from_repo)],
            ok=(201, 202),
        )
    except ImgbuildError as e:
        if e.kind == "unauthorized":  # no pull right on the source: upload instead
            return False
        raise
    if r.status_code == 202 and r.headers.get("Location"):
        # Not mounted: the registry opened an upload session instead; close it.
        _cancel(client, repo, _location(client, r))
    return r.status_code == 201


def upload_blob(
    client: RegistryClient,
    repo: str,
    digest: str,
    size: int,
    opener: Opener,
    chunk_threshold: int = CHUNK_THRESHOLD,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Upload one blob; returns the bytes sent in the successful session."""
    last = ""
    for attempt in range(client.attempts):
        try:
            if size > chunk_threshold:
                return _chunked(client, repo, digest, size, opener, chunk_size)
            return _monolithic(client, repo, digest, size, opener)
        except Retryable as e:
            last = e.message
            time.sleep(client.backoff * 2**attempt)
    raise Unavailable(
        f"registry {client.host}: upload of blob {digest[:19]} to {repo} failed after "
        f"{client.attempts} tries ({last})",
        "the registry is failing; retry later (blobs already uploaded are kept, no tag was "
        "written)",
    )


def _start(client: RegistryClient, repo: str) -> str:
    r = client.request(
        "POST", f"/v2/{repo}/blobs/uploads/", [push_scope(repo)], retry=False, ok=(202,)
    )
    if r.status_code == 404:
        raise NotFound(f"registry {client.host}: repository {repo} does not accept uploads")
    return _location(client, r)


def _monolithic(client, repo, digest, size, opener) -> int:
    url = _start(client, repo)
    kill_point("push.upload")  # testhooks: an upload session is open, no byte committed
    with opener() as f:
        body = HashingReader(f, size)
        try:
            r = client.request(
                "PUT",
                _with_digest(url, digest),
                [push_scope(repo)],
                retry=False,
                ok=(201,),
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            )
        except ImgbuildError:
            if body.sent == size and body.digest() != digest:
                raise _corrupt(digest, body.sent, size) from None
            raise
    _check(client, r, repo, digest, body, size)
    return body.sent


def _chunked(client, repo, digest, size, opener, chunk_size) -> int:
    url = _start(client, repo)
    h = hashlib.sha256()
    offset = 0
    with opener() as f:
        while offset < size:
            chunk = f.read(min(chunk_size, size - offset))
            if not chunk:
                break
            h.update(chunk)
            r = client.request(
                "PATCH",
                url,
                [push_scope(repo)],
                retry=False,
                ok=(202,),
                data=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
            )
            if r.status_code == 404:
                raise Retryable("upload session vanished")
            url = _location(client, r)
            offset += len(chunk)
    got = "sha256:" + h.hexdigest()
    if offset != size or got != digest:
        _cancel(client, repo, url)
        raise IntegrityError(
            f"blob {digest[:19]} changed while uploading (read {offset} of {size} bytes, "
            f"sha256 {got[7:19]})",
            "the local layer file is corrupt: rebuild the image",
        )
    r = client.request("PUT", _with_digest(url, digest), [push_scope(repo)], retry=False, ok=(201,))
    if r.status_code == 404:
        raise Retryable("upload session vanished")
    return offset


def _check(client, r, repo, digest, body: HashingReader, size: int) -> None:
    if r.status_code == 404:
        raise Retryable("upload session vanished")
    if body.sent != size or body.digest() != digest:
        raise _corrupt(digest, body.sent, size)


def _corrupt(digest: str, sent: int, size: int) -> IntegrityError:
    return IntegrityError(
        f"blob {digest[:19]} does not match its content (read {sent} of {size} bytes)",
        "the local layer file is corrupt: rebuild the image",
    )


def _location(client: RegistryClient, r) -> str:
    loc = r.headers.get("Location")
    if not loc:
        raise Unavailable(f"registry {client.host} opened an upload without a Location")
    return urljoin(client.base_url() + "/", loc)


def _with_digest(url: str, digest: str) -> str:
    return url + ("&" if "?" in url else "?") + f"digest={digest}"


def _cancel(client: RegistryClient, repo: str, url: str) -> None:
    # Best effort: abandoned sessions expire on the registry anyway.
    with contextlib.suppress(ImgbuildError, Retryable):
        client.request("DELETE", url, [push_scope(repo)], retry=False, ok=(204, 200, 202))
