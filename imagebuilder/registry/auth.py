"""Registry auth: anonymous, Basic, and the Bearer token flow of Docker Hub, GHCR, ECR, Harbor.

The registry says what it wants in `WWW-Authenticate` on a 401. For `Basic` we send the user's
credentials; for `Bearer realm=...,service=...,scope=...` we ask the token endpoint (with the
credentials as Basic, or an identity token as an OAuth2 refresh token; anonymously when there
are none) for a token covering the scopes the operation needs, e.g.
`repository:team/envs:pull,push` plus `repository:base/img:pull` to mount from the base.
Tokens are cached per scope set until shortly before they expire.

Credentials are looked up lazily, on the first challenge, so anonymous registries never run a
credential helper. Errors name the registry and the credential source, never the secret.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from imagebuilder.errors import BAD_INPUT, UNAVAILABLE, ImgbuildError, Unavailable
from imagebuilder.registry import http
from imagebuilder.registry.credentials import Credential, Lookup

_PARAM_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
TOKEN_TIMEOUT = 30
DEFAULT_TOKEN_TTL = 60  # seconds, the spec's default when expires_in is absent


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" | "bearer"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """Parse one WWW-Authenticate value (`Bearer realm="..",service="..",scope=".."`)."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("basic", "bearer"):
        return None
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM_RE.finditer(rest)
    }
    return Challenge(scheme, params)


def unauthorized(host: str, lookup: Lookup | None, detail: str = "") -> ImgbuildError:
    """The message for a refused request: which registry, which source was tried, what to do.

    Exit code: 1 when credentials were sent and refused (they are wrong; retrying will not
    help), 5 when none were found (the registry is not usable as configured) — docs/registry.md.
    """
    detail = f" ({detail})" if detail else ""
    if lookup is not None and lookup.credential is not None:
        return ImgbuildError(
            f"registry {host} refused the {lookup.credential}{detail}",
            "check the user and password/token (docker login / podman login) and the "
            "repository permissions",
            "unauthorized",
            BAD_INPUT,
        )
    tried = ", ".join(lookup.tried) if lookup and lookup.tried else "none"
    return ImgbuildError(
        f"registry {host} requires authentication and no credentials were found{detail}; "
        f"looked in: {tried}",
        f"log in (docker login {host} / podman login {host}) or set REGISTRY_AUTH_FILE",
        "unauthorized",
        UNAVAILABLE,
    )


class Auth:
    """Authorization header per scope set for one registry host; thread-safe."""

    def __init__(self, host: str, find: Callable[[], Lookup], verify: bool | str = True) -> None:
        self.host = host
        self._find = find
        self._lookup: Lookup | None = None
        self._challenge: Challenge | None = None
        self._tokens: dict[frozenset[str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.verify = verify

    @property
    def lookup(self) -> Lookup | None:
        return self._lookup

    def credential(self) -> Credential | None:
        with self._lock:
            if self._lookup is None:
                self._lookup = self._find()
            return self._lookup.credential

    def header(self, scopes: Iterable[str]) -> dict[str, str]:
        """The Authorization header for a request needing `scopes` ({} before any challenge)."""
        ch = self._challenge
        if ch is None:
            return {}
        if ch.scheme == "basic":
            cred = self.credential()
            if cred is None:
                return {}
            return {"Authorization": _basic(cred)}
        key = frozenset(scopes)
        with self._lock:
            hit = self._tokens.get(key)
        if hit and hit[1] > time.monotonic():
            return {"Authorization": f"Bearer {hit[0]}"}
        token, ttl = self._fetch_token(key)
        with self._lock:
            # Refresh a little early so a long upload does not carry an expired token.
            self._tokens[key] = (token, time.monotonic() + max(ttl - 10, ttl / 2))
        return {"Authorization": f"Bearer {token}"}

    def challenged(self, www_authenticate: str | None, scopes: Iterable[str]) -> bool:
        """Record a 401's challenge; True when a retry with new authorization can help."""
        ch = parse_challenge(www_authenticate or "")
        if ch is None:
            return False
        if ch.scheme == "bearer" and ch.params.get("scope"):
            # The registry names the scope it wants; ask for it on top of ours next time.
            scopes = set(scopes) | set(ch.params["scope"].split(" "))
        with self._lock:
            first = self._challenge is None or self._challenge.scheme != ch.scheme
            self._challenge = ch
            self._tokens.pop(frozenset(scopes), None)
        if ch.scheme == "basic":
            return first and self.credential() is not None
        return True

    def _fetch_token(self, scopes: frozenset[str]) -> tuple[str, float]:
        ch = self._challenge
        assert ch is not None
        realm = ch.params.get("realm")
        if not realm:
            raise Unavailable(f"registry {self.host} sent a Bearer challenge without a realm")
        cred = self.credential()
        service = ch.params.get("service")
        try:
            if cred is not None and cred.identity_token:
                data = {
                    "grant_type": "refresh_token",
                    "refresh_token": cred.password,
                    "client_id": "imgbuild",
                    "scope": " ".join(sorted(scopes)),
                }
                if service:
                    data["service"] = service
                r = http.post(realm, data=data, timeout=TOKEN_TIMEOUT, verify=self.verify)
            else:
                params: list[tuple[str, str]] = [("scope", s) for s in sorted(scopes)]
                if service:
                    params.insert(0, ("service", service))
                basic = (cred.username, cred.password) if cred else None
                r = http.get(
                    realm, params=params, auth=basic, timeout=TOKEN_TIMEOUT, verify=self.verify
                )
        except http.RequestException as e:
            raise Unavailable(
                f"token service of registry {self.host} is unreachable "
                f"({_host_of(realm)}: {type(e).__name__})",
                "check the network or proxy settings",
            ) from None
        if r.status_code in (401, 403):
            raise unauthorized(self.host, self._lookup, f"token service answered {r.status_code}")
        if r.status_code != 200:
            raise Unavailable(
                f"token service of registry {self.host} answered HTTP {r.status_code}",
                "retry later",
            )
        try:
            body = r.json()
            token = body.get("token") or body.get("access_token")
            ttl = float(body.get("expires_in") or DEFAULT_TOKEN_TTL)
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise Unavailable(f"token service of registry {self.host} sent no token")
        return str(token), ttl


def _basic(cred: Credential) -> str:
    import base64

    raw = f"{cred.username}:{cred.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _host_of(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc.rpartition("@")[2]
