"""HTTP for registry calls: a thin requests-like facade over urllib3.

Why not requests: importing it (charset_normalizer, idna, cookies...) cost ~0.15 s of CPU, a
third of a no-op `imgbuild push`; urllib3 under it costs ~50 ms more than http.client alone
and does the work: keep-alive pools (an idle connection the server closed is replaced before
reuse), TLS, (connect, read) timeouts, proxies (CONNECT for https; `http://` or `https://`
proxy URLs), redirects dropping Authorization across hosts, streaming. This module keeps the
part of requests' API the registry code uses (Session.request, Response with status_code/
headers/content/text/json()/raw, ConnectionError/Timeout/SSLError) and adds what urllib3
leaves to its callers:
- `verify`: a CA file, True = certifi's bundle (as requests), False = unverified (--insecure);
  one SSLContext per bundle, built on first https use (plain-HTTP registries never load one);
- proxies from HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY, Proxy-Authorization from the
  proxy URL's user info;
- only GET/HEAD follow redirects (blob downloads go to storage backends); no other retry: the
  registry client retries whole operations (client.py, upload.py);
- bodies are never decoded: blobs stream as their exact bytes.
Unlike requests, ~/.netrc is not read: registry credentials come from credentials.py only.
"""

from __future__ import annotations

import base64
import json as _json
import os
import ssl
import warnings
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as _Urllib3Error
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProxyError

MAX_REDIRECTS = 10
BLOCKSIZE = 1 << 20  # bytes per send() of a streamed request body
TIMEOUTS = (urllib3.exceptions.TimeoutError, TimeoutError)
POOL_SIZE = 8  # connections kept per host per Session (a stream holds one while others run)


class RequestException(OSError):
    """Any failure to get an answer (named after requests' exceptions, which callers knew)."""


class ConnectionError(RequestException):  # noqa: A001 - requests' name, on purpose
    pass


class Timeout(RequestException):
    pass


class SSLError(ConnectionError):
    pass


class Response:
    """An answer. With stream=True the body is left in `raw` (a file-like object, read(n))."""

    def __init__(self, url: str, resp: urllib3.BaseHTTPResponse, body: bytes | None) -> None:
        self.url = url
        self.status_code = resp.status
        self.reason = resp.reason
        self.headers = resp.headers  # case-insensitive .get() and `in`
        self.raw = resp
        self._content = body

    @property
    def content(self) -> bytes:
        if self._content is None:
            try:
                self._content = self.raw.read()
            except (OSError, _Urllib3Error) as e:
                raise _wrap(e, self.url) from None
            finally:
                self.close()
        return self._content

    @property
    def text(self) -> str:
        _, _, charset = (self.headers.get("Content-Type") or "").partition("charset=")
        try:
            return self.content.decode(charset.strip('"; ') or "utf-8", errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.content)  # ValueError when it is not JSON, as with requests

    def close(self) -> None:
        if self._content is None:  # a stream left unread: its connection cannot be reused
            self.raw.close()
        self.raw.release_conn()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Session:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {"Accept": "*/*"}
        self.verify: bool | str = True
        self._managers: dict[tuple, urllib3.PoolManager] = {}

    def get(self, url: str, **kwargs) -> Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        for manager in self._managers.values():
            manager.clear()
        self._managers.clear()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Iterable[tuple[str, str]] | Mapping[str, str] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
        stream: bool = False,
        allow_redirects: bool = True,
        verify: bool | str | None = None,
    ) -> Response:
        if params:
            items = params.items() if isinstance(params, Mapping) else params
            url += ("&" if urlsplit(url).query else "?") + urlencode(list(items))
        h = {**self.headers, **(headers or {})}
        if auth is not None:
            h["Authorization"] = _basic(*auth)
        if isinstance(data, Mapping):
            data = urlencode(list(data.items())).encode()
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif data is not None and not isinstance(data, bytes | bytearray) and hasattr(data, "read"):
            h["Content-Length"] = str(len(data))  # else urllib3 would send it chunked
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ConnectionError(f"unsupported URL {_where(url)}")
        connect_t, read_t = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        redirect = allow_redirects and method in ("GET", "HEAD")
        try:
            manager = self._manager(scheme, parts.hostname, parts.port, verify)
            resp = manager.urlopen(
                method,
                url,
                body=data,
                headers=h,
                redirect=redirect,
                retries=urllib3.Retry(
                    total=None, connect=0, read=0, status=0, other=0, redirect=MAX_REDIRECTS
                ),
                timeout=urllib3.Timeout(connect=connect_t, read=read_t),
                preload_content=not stream,
                decode_content=False,
            )
        except (OSError, _Urllib3Error) as e:
            raise _wrap(e, url) from None
        final = url
        for hop in resp.retries.history if resp.retries else ():
            if hop.redirect_location:
                final = urljoin(final, hop.redirect_location)
        return Response(final, resp, None if stream else resp.data)

    def _manager(self, scheme: str, host: str, port: int | None, verify) -> urllib3.PoolManager:
        verify = self.verify if verify is None else verify
        proxy = _proxy_for(scheme, host, port or (443 if scheme == "https" else 80))
        manager = self._managers.get((proxy, verify))
        if manager is None:
            # the context also serves redirects from http to https (verify=False costs nothing;
            # a CA bundle is only in use for https registries)
            ctx = _context(verify)
            if verify is False:  # asked for (--insecure, insecure_registries): no warning per
                # request; set per pool, as a test's catch_warnings() drops filters on its exit
                warnings.filterwarnings(
                    "ignore", category=urllib3.exceptions.InsecureRequestWarning
                )
            kw = {"num_pools": 4, "maxsize": POOL_SIZE, "blocksize": BLOCKSIZE, "ssl_context": ctx}
            if proxy:
                p = urlsplit(proxy)
                auth = p.username and _basic(unquote(p.username), unquote(p.password or ""))
                manager = urllib3.ProxyManager(
                    proxy,
                    proxy_headers={"Proxy-Authorization": auth} if auth else None,
                    proxy_ssl_context=ctx,  # an https:// proxy is checked like the registry
                    **kw,
                )
            else:
                manager = urllib3.PoolManager(**kw)
            self._managers[(proxy, verify)] = manager
        return manager


def request(method: str, url: str, **kwargs) -> Response:
    """One request on a connection of its own (token endpoints)."""
    s = Session()
    try:
        r = s.request(method, url, **kwargs)
        _ = r.content
        return r
    finally:
        s.close()


def get(url: str, **kwargs) -> Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs) -> Response:
    return request("POST", url, **kwargs)


# --- helpers ----------------------------------------------------------------------------------

_contexts: dict[bool | str, ssl.SSLContext] = {}


def _context(verify: bool | str) -> ssl.SSLContext:
    """One context per CA bundle: loading certifi's costs ~10 ms, which urllib3 would spend on
    every new connection. verify=False loads no certificate at all (plain-HTTP registries)."""
    ctx = _contexts.get(verify)
    if ctx is None:
        if verify is False:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(
                cafile=verify if isinstance(verify, str) else _certifi()
            )
        _contexts[verify] = ctx
    return ctx


def _certifi() -> str | None:
    try:
        import certifi

        return certifi.where()
    except ImportError:
        return None  # the system's default CA store


def _proxy_for(scheme: str, host: str, port: int) -> str | None:
    if not any(k[-6:].lower() == "_proxy" for k in os.environ):
        return None  # the common case, without importing urllib.request (~5 ms)
    from urllib.request import getproxies_environment, proxy_bypass_environment

    proxies = getproxies_environment()
    if not proxies:
        return None
    if proxy_bypass_environment(host, proxies) or proxy_bypass_environment(
        f"{host}:{port}", proxies
    ):
        return None
    return proxies.get(scheme) or proxies.get("all")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _where(url: str) -> str:
    """scheme://host[:port] without user info (never a secret in a message)."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc.rpartition('@')[2]}"


def _wrap(e: BaseException, url: str = "") -> RequestException:
    """requests' vocabulary: SSLError, Timeout, or ConnectionError; the text says what (the
    underlying error, not urllib3's MaxRetryError, whose text holds the URL's path and query)."""
    if isinstance(e, MaxRetryError) and e.reason is not None:
        e = e.reason
    where = f" ({_where(url)})" if url else ""
    if isinstance(e, ProxyError) and e.original_error is not None:
        cause = e.original_error
        text = f"ProxyError: {e.args[0]}: {type(cause).__name__}: {cause}{where}"
        if isinstance(cause, TIMEOUTS) and not isinstance(cause, NewConnectionError):
            return Timeout(text)
        return ConnectionError(text)
    if isinstance(e, urllib3.exceptions.SSLError | ssl.SSLError | ssl.CertificateError):
        return SSLError(f"{type(e).__name__}: {e}{where}")
    # NewConnectionError (refused, unresolved) subclasses urllib3's ConnectTimeoutError
    if isinstance(e, TIMEOUTS) and not isinstance(e, NewConnectionError):
        return Timeout(f"timed out{where}")
    if isinstance(e, RequestException):
        return e
    return ConnectionError(f"{type(e).__name__}: {e}{where}")
