"""HTTP client for one registry (OCI distribution spec v2): auth, retries, clear errors.

HTTP through http.py (a thin facade over urllib3; importing requests cost a third of a no-op
push), not oras-py: we need per-request token scopes (cross-repository mounts need
pull on the source repository), credential helpers, retries around whole upload sessions,
manifests as exact bytes of any media type, and the referrers API — oras-py's Registry does
its own auth and re-serializes manifests (LOCAL-SERVICES.md), so it would be bypassed for
most calls anyway. One session per thread (a session holds its connections); the auth
state (tokens) is shared.

Retries: connection errors, timeouts, 429 and 5xx are retried with exponential backoff
(`attempts` tries) for requests that can be repeated; uploads retry a whole session
(upload.py). Everything else becomes one ImgbuildError naming the registry.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from imagebuilder.errors import BadInput, Conflict, ImgbuildError, NotFound, Unavailable
from imagebuilder.registry import http
from imagebuilder.registry.auth import Auth, unauthorized
from imagebuilder.registry.credentials import find_credential
from imagebuilder.urls import redact

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[0], MANIFEST_TYPES[2]
TIMEOUT = (10, 300)  # connect, read
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "imgbuild"


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


class ManifestBlobUnknown(BadInput):
    """A manifest PUT refused because the registry does not see one of its blobs.

    Also what docker-registry answers, wrongly, while another client re-uploads one of the
    blobs: its filesystem driver truncates and rewrites the repository's blob link file, and a
    manifest check reading it in between finds no digest (DIGEST_INVALID +
    MANIFEST_BLOB_UNKNOWN). The sink re-checks its blobs and retries (oci/registry.py)."""


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    media_type: str
    digest: str

    def json(self) -> dict:
        import json

        return json.loads(self.raw)


class Retryable(Exception):
    """A failure worth another try (the caller decides how many)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RegistryClient:
    """One registry host. Repositories are per call; so are the scopes a call needs."""

    def __init__(
        self,
        host: str,
        insecure: bool = False,
        attempts: int = 4,
        backoff: float = 0.2,
        api_host: str | None = None,
    ) -> None:
        self.host = host
        self.insecure = insecure
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._api_host = api_host or host
        self._local = threading.local()
        self._scheme: str | None = None
        self._lock = threading.Lock()
        self.verify: bool | str = _ca_bundle() if not insecure else False
        self.auth = Auth(host, lambda: find_credential(host), self.verify)
        # Repositories this client pushes to: their reads ask for pull,push too, so one token
        # serves every call of a push (a no-op push costs one token request, not three).
        self.push_repos: set[str] = set()

    # --- transport ------------------------------------------------------------------------

    @property
    def session(self) -> http.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = http.Session()
            s.headers["User-Agent"] = USER_AGENT
            s.verify = self.verify
            self._local.session = s
        return s

    def base_url(self) -> str:
        if self._scheme is None:
            self.ping()
        return f"{self._scheme}://{self._api_host}"

    def ping(self) -> None:
        """GET /v2/: pick the scheme (https; http only when insecure) and learn the challenge.
        A dropped connection, 429 or 5xx is retried with backoff like any other request."""
        with self._lock:
            if self._scheme is not None:
                return
            last: Exception | None = None
            for attempt in range(self.attempts):
                last, transient = self._probe()
                if self._scheme is not None:
                    return
                if not transient or attempt + 1 == self.attempts:
                    break
                time.sleep(self.backoff * 2**attempt)
        raise self._down(last)

    def _probe(self) -> tuple[Exception | None, bool]:
        """One pass over the schemes: (the last failure, whether another pass may succeed)."""
        # Insecure hosts try plain HTTP first: the ping carries no credentials, and a TLS
        # attempt costs ~70 ms of SSL setup on every run against a plain-HTTP registry.
        schemes = ("http", "https") if self.insecure else ("https",)
        last: Exception | None = None
        transient = False
        for scheme in schemes:
            try:
                r = self.session.get(f"{scheme}://{self._api_host}/v2/", timeout=TIMEOUT)
            except http.SSLError as e:
                last = e
                continue
            except http.RequestException as e:
                last, transient = e, True
                if self.insecure and scheme == "http":
                    continue
                break
            if self.insecure and scheme == "http" and r.status_code == 400:
                continue  # a TLS server answering plain HTTP
            if r.status_code == 401:
                self.auth.challenged(r.headers.get("WWW-Authenticate"), ())
            elif r.status_code >= 500 or r.status_code == 429:
                last, transient = Retryable(f"HTTP {r.status_code}"), True
                break
            self._scheme = scheme
            return None, False
        return last, transient

    def _down(self, e: Exception | None) -> ImgbuildError:
        if isinstance(e, http.SSLError):
            return Unavailable(
                f"registry {self.host}: TLS failed ({_short(e)})",
                f"for a plain-HTTP registry add {self.host} to insecure_registries "
                "(or pass --insecure); for a private CA set SSL_CERT_FILE",
            )
        why = e.message if isinstance(e, Retryable) else _short(e)
        return Unavailable(
            f"registry {self.host} is unreachable ({why})",
            "check that it is running and the address in `registry` / --to",
        )

    def request(
        self,
        method: str,
        path: str,
        scopes: Iterable[str] = (),
        retry: bool = True,
        ok: tuple[int, ...] = (200,),
        **kwargs,
    ) -> http.Response:
        """Send a request with auth; retry transient failures; return a response whose status
        is in `ok` (or 404, which callers interpret). Other statuses raise ImgbuildError.
        With retry=False a transient failure raises Retryable for the caller to handle."""
        scopes = tuple(scopes)
        url = path if "://" in path else self.base_url() + path
        tries = self.attempts if retry else 1
        for attempt in range(tries):
            try:
                r = self._send_authorized(method, url, scopes, **kwargs)
            except Retryable as e:
                if not retry:
                    raise  # the caller retries a bigger unit (a whole upload session)
                if attempt + 1 >= tries:
                    raise Unavailable(
                        f"registry {self.host}: {method} {_path(url)} failed after {tries} "
                        f"tries ({e.message})",
                        "the registry is failing; retry later",
                    ) from None
                time.sleep(self.backoff * 2**attempt)
                continue
            if r.status_code in ok or r.status_code == 404:
                return r
            raise self.error(r, method, url)
        raise AssertionError("unreachable")

    def _send_authorized(self, method, url, scopes, **kwargs) -> http.Response:
        r = self._send(method, url, scopes, **kwargs)
        if r.status_code == 401 and self.auth.challenged(r.headers.get("WWW-Authenticate"), scopes):
            _rewind(kwargs.get("data"))
            r = self._send(method, url, scopes, **kwargs)
        if r.status_code == 401:
            raise unauthorized(self.host, self.auth.lookup, _error_detail(r))
        return r

    def _send(self, method, url, scopes, headers=None, **kwargs) -> http.Response:
        h = dict(headers or {})
        h.update(self.auth.header(scopes))
        kwargs.setdefault("timeout", TIMEOUT)
        try:
            r = self.session.request(method, url, headers=h, **kwargs)
        except (http.ConnectionError, http.Timeout) as e:
            raise Retryable(_short(e)) from None
        if r.status_code in RETRY_STATUS:
            r.close()
            raise Retryable(f"HTTP {r.status_code}")
        return r

    def error(self, r: http.Response, method: str, url: str) -> ImgbuildError:
        detail = _error_detail(r)
        where = f"registry {self.host}: {method} {_path(url)}"
        if _is_immutable(r.status_code, detail):
            return Conflict(
                f"{where}: the registry refuses to overwrite the tag ({detail})",
                "the repository has immutable tags: push under a new alias tag, or enable "
                "tag mutability",
            )
        if r.status_code == 403:
            return unauthorized(self.host, self.auth.lookup, f"403 denied: {detail}")
        if r.status_code == 400 and "MANIFEST_BLOB_UNKNOWN" in detail and "/manifests/" in url:
            return ManifestBlobUnknown(
                f"{where} was refused: HTTP 400 {detail}",
                "a blob the manifest names is not in the repository: push again",
            )
        if r.status_code in (400, 405, 409, 412, 413, 415, 422):
            return BadInput(f"{where} was refused: HTTP {r.status_code} {detail}")
        return Unavailable(f"{where}: HTTP {r.status_code} {detail}", "retry later")

    # --- blobs and manifests --------------------------------------------------------------

    def scope(self, repo: str) -> str:
        return push_scope(repo) if repo in self.push_repos else pull_scope(repo)

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", [self.scope(repo)])
        return r.status_code == 200

    def get_blob(self, repo: str, digest: str) -> http.Response:
        """A streaming response for a blob (follows redirects to storage backends)."""
        r = self.request("GET", f"/v2/{repo}/blobs/{digest}", [self.scope(repo)], stream=True)
        if r.status_code == 404:
            raise NotFound(f"blob {digest[:19]} not found in {self.host}/{repo}")
        return r

    def get_manifest(self, repo: str, ref: str, accept=MANIFEST_TYPES) -> Manifest | None:
        r = self.request(
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            [self.scope(repo)],
            headers={"Accept": ", ".join(accept)},
        )
        if r.status_code == 404:
            return None
        import hashlib

        digest = "sha256:" + hashlib.sha256(r.content).hexdigest()
        media_type = r.headers.get("Content-Type", "").split(";")[0].strip()
        if not media_type or media_type == "application/json":
            media_type = _embedded_media_type(r.content)
        return Manifest(r.content, media_type, digest)

    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """HEAD a manifest: its digest, or None when absent."""
        r = self.request(
            "HEAD",
            f"/v2/{repo}/manifests/{ref}",
            [self.scope(repo)],
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        if r.status_code == 404:
            return None
        return r.headers.get("Docker-Content-Digest") or (
            self.get_manifest(repo, ref).digest  # type: ignore[union-attr]
        )

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> http.Response:
        """PUT exact bytes (no re-serialization) under a digest or a tag."""
        r = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            [push_scope(repo)],
            ok=(201, 200, 202),
            data=raw,
            headers={"Content-Type": media_type},
        )
        if r.status_code == 404:
            raise NotFound(
                f"registry {self.host}: repository {repo} not found for manifest push "
                f"({_error_detail(r)})"
            )
        return r

    def list_tags(self, repo: str) -> list[str]:
        r = self.request("GET", f"/v2/{repo}/tags/list", [self.scope(repo)])
        if r.status_code == 404:
            return []
        return list(r.json().get("tags") or [])


def _ca_bundle() -> bool | str:
    # sources/tls.py points these at the one bundle the user named (IMGBUILD_CA_BUNDLE,
    # SSL_CERT_FILE, REQUESTS_CA_BUNDLE, ...); True: certifi's bundle, as requests used.
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True


def _rewind(data) -> None:
    if hasattr(data, "seek"):
        data.seek(0)


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def _short(e: BaseException | None) -> str:
    if e is None:
        return "no answer"
    text = str(e)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "Connection reset",
        "RemoteDisconnected",
        "Connection aborted",
    ):
        if marker in text:
            return marker.lower()
    return redact(type(e).__name__ + (f": {text[:160]}" if text else ""))


def _error_detail(r: http.Response) -> str:
    """The registry's own error code/message (OCI error body), without anything secret."""
    try:
        errors = r.json().get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors]
        text = "; ".join(p for p in parts if p)
    except (ValueError, AttributeError):
        text = r.text[:200] if r.text else ""
    return redact(text.strip()) or f"HTTP {r.status_code}"


def _is_immutable(status: int, detail: str) -> bool:
    d = detail.lower()
    return status in (400, 403, 409, 412) and (
        "immutable" in d or "already exists" in d or "tag_immutable" in d
    )


def _embedded_media_type(raw: bytes) -> str:
    import json

    try:
        doc = json.loads(raw)
    except ValueError:
        return ""
    if doc.get("mediaType"):
        return doc["mediaType"]
    return MANIFEST_TYPES[0] if "manifests" in doc else MANIFEST_TYPES[1]
