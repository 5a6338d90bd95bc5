"""The resolver's few downloads: hashing an archive whose index gives no sha256 (old conda
channels publish md5 only; full_id needs sha256). Streams, never keeps the file."""

from __future__ import annotations

import hashlib

from imagebuilder.errors import IntegrityError, Unavailable
from imagebuilder.urls import strip_credentials


def sha256_of_url(url: str, md5: str | None = None, timeout: float = 120) -> str:
    """sha256 of the file at url (file:// or http[s]://), checked against md5 when given."""
    import urllib.error
    import urllib.request

    h256, h5 = hashlib.sha256(), hashlib.md5()
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as r:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                h256.update(chunk)
                h5.update(chunk)
    except (urllib.error.URLError, OSError) as e:
        raise Unavailable(
            f"cannot download {strip_credentials(url)} to hash it: {getattr(e, 'reason', e)}",
            "check the channel URL and your network",
        ) from None
    if md5 and h5.hexdigest() != md5:
        raise IntegrityError(
            f"{strip_credentials(url)}: md5 {h5.hexdigest()} does not match the channel's {md5}",
            "the channel serves a different file than its index says; tell its maintainers",
        )
    return h256.hexdigest()


def _request(url: str):
    """A Request carrying user:password@ from the URL as Basic auth (urllib does not)."""
    import base64
    import urllib.request
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    req = urllib.request.Request(strip_credentials(url) if parts.username else url)
    if parts.username:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        req.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    return req
