"""A counting, fault-injecting HTTP proxy in front of a registry (tests and bench/push.py).

It forwards every request to the upstream registry unchanged (Host header included, so the
registry's Location URLs point back at the proxy) and records method, path, status and request
body bytes, so a test can say "this push uploaded 0 blob bytes". Fault rules answer instead of
the registry for the first N matching requests: an HTTP status (503, or an ECR-like 400 "tag
immutable"), or a dropped connection.
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Rule:
    method: str  # "PUT", "PATCH", ... or "*"
    path: str  # regex searched in the request path
    action: str  # "drop" | "<status>" | "<status>:<json body>"
    times: int = 1  # matches to act on; -1 = always
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times != -1 and self.hits >= self.times:
            return False
        return (self.method in ("*", method)) and re.search(self.path, path) is not None


@dataclass
class Seen:
    method: str
    path: str
    status: int
    body_bytes: int


@dataclass
class Proxy:
    upstream: str  # host:port
    port: int = 0
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.rules.clear()

    def upload_bytes(self) -> int:
        """Blob bytes sent to the registry (PUT/PATCH bodies under /blobs/uploads/)."""
        return sum(
            s.body_bytes
            for s in self.seen
            if s.method in ("PUT", "PATCH") and "/blobs/uploads/" in s.path
        )

    def count(self, method: str, pattern: str = "") -> int:
        return sum(1 for s in self.seen if s.method == method and re.search(pattern, s.path))

    def start(self) -> Proxy:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                owner._handle(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = _read_body(h)
        rule = self._match(h)
        if rule and rule.action == "drop":
            self._record(h, 0, len(body))
            self._close(h)
            return
        if rule:
            self._answer(h, rule.action, len(body))
            return
        status, headers, data = self._forward(h, body)
        self._record(h, status, len(body))
        self._send_head(h, status, headers, len(data))
        if h.command != "HEAD":
            h.wfile.write(data)

    # the steps of _handle, reused by fault_proxy.FaultProxy

    def _match(self, h: BaseHTTPRequestHandler) -> Rule | None:
        """The first rule for this request (its hit counted), or None."""
        with self._lock:
            rule = next((r for r in self.rules if r.matches(h.command, h.path)), None)
            if rule:
                rule.hits += 1
        return rule

    def _answer(self, h: BaseHTTPRequestHandler, action: str, body_bytes: int) -> None:
        """Answer "<status>[:<json body>]" instead of the upstream server."""
        status, _, text = action.partition(":")
        payload = text.encode()
        self._record(h, int(status), body_bytes)
        h.send_response(int(status))
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes):
        """The request sent upstream unchanged: (status, headers, body) of its answer."""
        conn = http.client.HTTPConnection(self.upstream, timeout=120)
        headers = {k: v for k, v in h.headers.items() if k.lower() != "transfer-encoding"}
        headers["Content-Length"] = str(len(body))
        try:
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheaders(), data
        finally:
            conn.close()

    @staticmethod
    def _send_head(
        h: BaseHTTPRequestHandler, status: int, headers, n: int, close: bool = False
    ) -> None:
        """Status line and the upstream headers; Content-Length is n (HEAD: upstream's)."""
        h.send_response(status)
        for k, v in headers:
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                h.send_header(k, v)
        length = dict((k.lower(), v) for k, v in headers).get("content-length")
        h.send_header("Content-Length", (length or "0") if h.command == "HEAD" else str(n))
        if close:
            h.send_header("Connection", "close")
        h.end_headers()

    @staticmethod
    def _close(h: BaseHTTPRequestHandler) -> None:
        """Hang up without answering."""
        h.close_connection = True
        try:
            h.wfile.flush()
            h.connection.shutdown(2)
        except OSError:
            pass

    def _record(self, h: BaseHTTPRequestHandler, status: int, n: int) -> None:
        with self._lock:
            self.seen.append(Seen(h.command, h.path, status, n))


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                h.rfile.readline()
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()
    n = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(n) if n else b""
