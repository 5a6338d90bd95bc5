"""Downloads: HTTP(S) and file URLs, retries with backoff, streaming sha256/md5.

Every download goes through `download()`, which retries on connection errors, timeouts,
dropped bodies, 429 and 5xx (exponential backoff with jitter), hashes while it writes, and
refuses a body whose size or hashes differ from what the caller expects (IntegrityError,
exit 6; nothing is kept). Credentials: records hold URLs without them (urls.strip_credentials);
`authorize()` is the one place that puts them back for the request, from URLs registered by
the resolver (the user's channel/index URLs as given) or from a provider installed later
(`set_credentials_provider`). Messages only ever show redacted URLs.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from imagebuilder.errors import IntegrityError, NotFound, Unavailable
from imagebuilder.testhooks import kill_point
from imagebuilder.urls import redact, strip_credentials

ATTEMPTS = int(os.environ.get("IMGBUILD_FETCH_ATTEMPTS", 5))
BACKOFF = float(os.environ.get("IMGBUILD_FETCH_BACKOFF", 0.5))
TIMEOUT = (10, 60)  # connect, read (between bytes)
_CHUNK = 1 << 20
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}

_registered: dict[str, str] = {}  # credential-free URL prefix -> the same prefix with them
_provider: Callable[[str], str | None] | None = None
_local = threading.local()


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str
    md5: str
    size: int


# --- credentials (one place) ----------------------------------------------------------------
def register_credentials(url: str) -> None:
    """Remember a URL given with credentials (user:pass@, /t/<token>/) so downloads of URLs
    under it get them back. Called by the resolver with the channels/indexes as typed."""
    clean = strip_credentials(url).rstrip("/")
    if clean != url.rstrip("/"):
        _registered[clean] = url.rstrip("/")


def set_credentials_provider(fn: Callable[[str], str | None] | None) -> None:
    """Install a provider: clean URL -> URL with credentials (or None). Tried first."""
    global _provider
    _provider = fn


def authorize(url: str) -> str:
    """The URL to request: `url` with credentials put back when we know some."""
    if _provider is not None:
        got = _provider(url)
        if got:
            return got
    best = ""
    for clean in _registered:
        if url.startswith(clean + "/") and len(clean) > len(best):
            best = clean
    if best:
        return _registered[best] + url[len(best) :]
    from imagebuilder.sources import url_with_credentials  # config [auth], netrc, remembered

    return url_with_credentials(url)


# --- HTTP --------------------------------------------------------------------------------------
def session():
    """One requests.Session per thread (connection reuse; Session is not thread-safe)."""
    s = getattr(_local, "session", None)
    if s is None:
        import requests
        from requests.adapters import HTTPAdapter

        s = requests.Session()
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=8, max_retries=0)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        s.headers["User-Agent"] = "imgbuild"
        try:  # one CA bundle for every client (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, config)
            from imagebuilder.sources import ca_bundle

            bundle = ca_bundle()
            if bundle:
                s.verify = bundle
        except ImportError:
            pass
        _local.session = s
    return s


def _sleep(attempt: int) -> None:
    time.sleep(min(8.0, BACKOFF * (2**attempt)) * (0.5 + random.random() / 2))


def download(
    url: str,
    dest: Path,
    *,
    label: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Fetched:
    """Fetch url into dest (written in place; the caller owns dest's folder). Verifies the
    expected size/hashes given; returns what was computed. Raises NotFound, Unavailable,
    IntegrityError (dest removed)."""
    label = label or strip_credentials(url).rsplit("/", 1)[-1]
    dest = Path(dest)
    last = ""
    want_md5 = bool(md5) and not sha256  # sha256 is the stronger check: md5 only if alone
    for attempt in range(ATTEMPTS):
        try:
            got = _fetch_once(url, dest, progress, want_md5)
        except _Retry as e:
            last = str(e)
            dest.unlink(missing_ok=True)
            if attempt + 1 < ATTEMPTS:
                _sleep(attempt)
            continue
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        try:
            _verify(label, got, sha256=sha256, md5=md5 if want_md5 else None, size=size)
        except IntegrityError:
            dest.unlink(missing_ok=True)
            raise
        return got
    raise Unavailable(
        f"could not download {label} from {redact(strip_credentials(url))} after {ATTEMPTS} attempts: {last}",
        "check that the channel/index server is up; rerun to resume (finished packages are kept)",
    )


class _Retry(Exception):
    pass


def _fetch_once(url: str, dest: Path, progress, want_md5: bool = True) -> Fetched:
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        src = Path(unquote(parts.path)) if parts.scheme else Path(url)
        return _copy_file(src, dest, progress, want_md5)
    import requests

    shown = redact(strip_credentials(url))
    try:
        r = session().get(authorize(url), stream=True, timeout=TIMEOUT)
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Retry(f"{type(e).__name__}") from None
    with r:
        if r.status_code in _RETRY_STATUS:
            raise _Retry(f"HTTP {r.status_code}")
        if r.status_code == 404:
            raise NotFound(
                f"{shown} is not there (HTTP 404)",
                "resolve again: the package may have been removed",
            )
        if r.status_code in (401, 403):
            raise Unavailable(
                f"{shown} refused access (HTTP {r.status_code})",
                "give the channel/index credentials (URL, ~/.netrc or config)",
            )
        if r.status_code >= 400:
            raise Unavailable(f"{shown} answered HTTP {r.status_code}")
        h256, h5, n = hashlib.sha256(), (hashlib.md5() if want_md5 else None), 0
        first = True
        try:
            with open(dest, "wb") as f:
                for chunk in r.iter_content(_CHUNK):
                    f.write(chunk)
                    h256.update(chunk)
                    if h5 is not None:
                        h5.update(chunk)
                    n += len(chunk)
                    if progress:
                        progress(len(chunk))
                    if first:
                        first = False
                        kill_point("cache.download")
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as e:
            raise _Retry(f"connection dropped ({type(e).__name__})") from None
        expected = r.headers.get("Content-Length")
        if (
            expected
            and r.headers.get("Content-Encoding") in (None, "identity")
            and int(expected) != n
        ):
            raise _Retry(f"truncated body ({n} of {expected} bytes)")
    return Fetched(dest, h256.hexdigest(), h5.hexdigest() if h5 else "", n)


def _copy_file(src: Path, dest: Path, progress, want_md5: bool = False) -> Fetched:
    if not src.is_file():
        raise NotFound(f"{src} does not exist")
    h256, h5, n = hashlib.sha256(), (hashlib.md5() if want_md5 else None), 0
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        for chunk in iter(lambda: fin.read(_CHUNK), b""):
            fout.write(chunk)
            h256.update(chunk)
            if h5 is not None:
                h5.update(chunk)
            n += len(chunk)
            if progress:
                progress(len(chunk))
    return Fetched(dest, h256.hexdigest(), h5.hexdigest() if h5 else "", n)


def _verify(label: str, got: Fetched, *, sha256, md5, size) -> None:
    if sha256 and got.sha256 != sha256.lower():
        raise IntegrityError(
            f"{label}: sha256 mismatch: expected {sha256.lower()}, got {got.sha256}",
            "the download was tampered with or the index is wrong; nothing was stored",
        )
    if md5 and got.md5 != md5.lower():
        raise IntegrityError(
            f"{label}: md5 mismatch: expected {md5.lower()}, got {got.md5}",
            "the download was tampered with or the index is wrong; nothing was stored",
        )
    if size is not None and got.size != size:
        raise IntegrityError(
            f"{label}: size mismatch: expected {size} bytes, got {got.size}",
            "the download was tampered with or the index is wrong; nothing was stored",
        )


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def copy_verified(src: Path, dest: Path, sha256: str, label: str) -> None:
    """Copy a local file, refusing it unless it hashes to sha256."""
    from imagebuilder.atomic import temp_path

    tmp = temp_path(dest, ".part")
    try:
        got = _copy_file(Path(src), tmp, None)
        _verify(label, got, sha256=sha256, md5=None, size=None)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
