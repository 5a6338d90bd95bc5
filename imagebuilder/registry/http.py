"""A small HTTP/1.1 client over the standard library's http.client, for registry calls.

Why not requests: importing it (urllib3, charset_normalizer, idna, cookies...) costs ~0.15 s
of CPU, a third of a no-op `imgbuild push`, and the registry protocol uses little of it. This
module keeps the part of requests' API the registry code uses (Session.request, Response with
status_code/headers/content/text/json()/raw, ConnectionError/Timeout/SSLError) and what
requests did for it:
- keep-alive: one connection per (scheme, host, port) per Session (one Session per thread, as
  before); an idle connection the server closed is noticed before reuse and replaced;
- TLS verified against the CA bundle (`verify`: a file, True = certifi's bundle like requests,
  False = no verification for --insecure registries), SNI and hostname checks by ssl;
- (connect, read) timeouts; request bodies as bytes, forms, or file-like objects with len();
- proxies from the environment (HTTPS_PROXY/HTTP_PROXY/ALL_PROXY, NO_PROXY; an `http://`
  proxy, CONNECT tunnel for https), Proxy-Authorization from the proxy URL's user info;
- redirects of GET/HEAD (blob downloads go to storage backends), Authorization dropped when
  the redirect leaves the host;
- bodies are never decoded (Accept-Encoding: identity): blobs stream as their exact bytes.
Unlike requests, ~/.netrc is not read: registry credentials come from credentials.py only.
"""

from __future__ import annotations

import base64
import http.client
import json as _json
import os
import select
import socket
import ssl
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlencode, urljoin, urlsplit

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
BLOCKSIZE = 1 << 20  # bytes per send() of a streamed request body


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

    def __init__(
        self,
        url: str,
        resp: http.client.HTTPResponse,
        body: bytes | None,
        conn: http.client.HTTPConnection | None = None,
    ) -> None:
        self.url = url
        self.status_code = resp.status
        self.reason = resp.reason
        self.headers = resp.headers  # case-insensitive .get() and `in`
        self.raw = resp
        self._content = body
        self._conn = conn  # a streamed answer's own connection, closed with it

    @property
    def content(self) -> bytes:
        if self._content is None:
            try:
                self._content = self.raw.read()
            except (OSError, http.client.HTTPException) as e:
                raise _wrap(e) from None
            finally:
                self.close()
        return self._content

    @property
    def text(self) -> str:
        charset = self.headers.get_content_charset() or "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.content)  # ValueError when it is not JSON, as with requests

    def close(self) -> None:
        self.raw.close()
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Session:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {"Accept": "*/*"}
        self.verify: bool | str = True
        self._conns: dict[tuple, http.client.HTTPConnection] = {}

    def get(self, url: str, **kwargs) -> Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

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
            url += ("&" if urlsplit(url).query else "?") + urlencode(list(_items(params)))
        h = {**self.headers, **(headers or {})}
        if auth is not None:
            h["Authorization"] = _basic(*auth)
        if isinstance(data, Mapping):
            data = urlencode(list(data.items())).encode()
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif data is not None and not isinstance(data, bytes | bytearray) and hasattr(data, "read"):
            h["Content-Length"] = str(len(data))  # else http.client would send it chunked
        verify = self.verify if verify is None else verify
        for _ in range(MAX_REDIRECTS + 1):
            r = self._send(method, url, data, h, timeout, stream, verify)
            if not (allow_redirects and r.status_code in REDIRECTS and method in ("GET", "HEAD")):
                return r
            target = urljoin(url, r.headers.get("Location") or url)
            r.close()
            if urlsplit(target).netloc != urlsplit(url).netloc:
                h = {k: v for k, v in h.items() if k.lower() != "authorization"}
            url = target
        raise ConnectionError(f"more than {MAX_REDIRECTS} redirects from {_where(url)}")

    # --- one exchange ---------------------------------------------------------------------

    def _send(self, method, url, data, headers, timeout, stream, verify) -> Response:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ConnectionError(f"unsupported URL {_where(url)}")
        port = parts.port or (443 if scheme == "https" else 80)
        proxy = _proxy_for(scheme, parts.hostname, port)
        key = (scheme, parts.hostname, port, proxy, verify)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = dict(headers)
        if proxy and scheme == "http":
            target = f"http://{parts.netloc.rpartition('@')[2]}{target}"  # absolute form
            auth = _proxy_auth(proxy)
            if auth:
                headers["Proxy-Authorization"] = auth
        connect_t, read_t = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        conn = self._conns.pop(key, None)
        if conn is not None and _dropped(conn):
            conn.close()
            conn = None
        try:
            if conn is None:
                conn = _connect(scheme, parts.hostname, port, proxy, verify, connect_t)
            conn.sock.settimeout(read_t)
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            if stream:  # the connection goes with the answer, not back to the pool
                return Response(url, resp, None, conn)
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            if conn is not None:
                conn.close()
            raise _wrap(e, url) from None
        if resp.will_close:
            conn.close()
        else:
            self._conns[key] = conn
        return Response(url, resp, body)


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
    ctx = _contexts.get(verify)
    if ctx is None:
        if verify is False:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            cafile = verify if isinstance(verify, str) else _certifi()
            ctx = ssl.create_default_context(cafile=cafile)
        _contexts[verify] = ctx
    return ctx


def _certifi() -> str | None:
    try:
        import certifi

        return certifi.where()
    except ImportError:
        return None  # the system's default CA store


def _connect(scheme, host, port, proxy, verify, timeout) -> http.client.HTTPConnection:
    if proxy:
        p = urlsplit(proxy)
        if p.scheme.lower() != "http" or not p.hostname:
            raise ConnectionError(
                f"proxy {_where(proxy)} is not supported for registry calls: use an http:// proxy"
            )
        phost, pport = p.hostname, p.port or 80
    if scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            phost if proxy else host,
            pport if proxy else port,
            timeout=timeout,
            context=_context(verify),
            blocksize=BLOCKSIZE,
        )
        if proxy:
            auth = _proxy_auth(proxy)
            conn.set_tunnel(host, port, headers={"Proxy-Authorization": auth} if auth else None)
    else:
        conn = http.client.HTTPConnection(
            phost if proxy else host, pport if proxy else port, timeout=timeout, blocksize=BLOCKSIZE
        )
    conn.connect()
    return conn


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection the server closed (readable = EOF or stray bytes)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


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


def _proxy_auth(proxy: str) -> str | None:
    p = urlsplit(proxy)
    if p.username is None:
        return None
    return _basic(unquote(p.username), unquote(p.password or ""))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _items(params) -> Iterable[tuple[str, str]]:
    return params.items() if isinstance(params, Mapping) else params


def _where(url: str) -> str:
    """scheme://host[:port] without user info (never a secret in a message)."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc.rpartition('@')[2]}"


def _wrap(e: BaseException, url: str = "") -> RequestException:
    """requests' vocabulary: SSLError, Timeout, or ConnectionError; the text says what."""
    where = f" ({_where(url)})" if url else ""
    text = f"{type(e).__name__}: {e}{where}"
    if isinstance(e, ssl.SSLError | ssl.CertificateError):
        return SSLError(text)
    if isinstance(e, socket.timeout | TimeoutError):
        return Timeout(f"timed out{where}")
    if isinstance(e, RequestException):
        return e
    return ConnectionError(text)
