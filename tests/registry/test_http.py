"""registry/http.py, the requests-like facade over urllib3 the registry code uses: what it must
keep doing that requests did, against real local HTTP(S) servers and proxies (no mocks)."""

from __future__ import annotations

import base64
import json
import select
import socket
import ssl
import subprocess
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from imagebuilder.registry import http

BIG = bytes(range(256)) * 4096  # 1 MiB


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict]

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self.seen.append(
            {
                "line": self.path,
                "headers": dict(self.headers),
                "body": body,
                "conn": id(self.connection),
            }
        )
        path = urlsplit(self.path).path
        port = self.server.server_address[1]
        if path == "/echo":
            self._reply(200, json.dumps({"line": self.path}).encode())
        elif path == "/close-after":  # keep-alive promised, then the server hangs up
            self._reply(200, b"ok")
            self.close_connection = True
        elif path == "/to-other-host":
            self._reply(307, headers={"Location": f"http://localhost:{port}/echo"})
        elif path == "/to-same-host":
            self._reply(307, headers={"Location": "/echo"})
        elif path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True
        elif path == "/big":
            self._reply(200, BIG, {"Content-Type": "application/octet-stream"})
        else:
            self._reply(404)

    do_HEAD = do_PUT = do_POST = do_GET

    def do_CONNECT(self) -> None:  # noqa: N802 - a proxy's tunnel: bytes both ways
        self.seen.append({"line": f"CONNECT {self.path}", "headers": dict(self.headers)})
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=5)
        self.send_response(200)
        self.end_headers()
        ends = [self.connection, upstream]
        while True:
            for end in select.select(ends, [], [], 5)[0]:
                chunk = end.recv(65536)
                if not chunk:
                    upstream.close()
                    self.close_connection = True
                    return
                (upstream if end is self.connection else self.connection).sendall(chunk)


def _serve(tls: ssl.SSLContext | None = None):
    seen: list[dict] = []
    handler = type("H", (_Handler,), {"seen": seen})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    if tls is not None:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.seen = seen
    srv.url = f"{'https' if tls else 'http'}://127.0.0.1:{srv.server_address[1]}"
    return srv


@pytest.fixture
def server():
    srv = _serve()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    """A test CA (ca.pem) and a certificate for 127.0.0.1 signed by it (server.pem/.key)."""
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=imgbuild test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return d


@pytest.fixture
def tls_server(ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ca / "server.pem", ca / "server.key")
    srv = _serve(ctx)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)


def test_keep_alive_reuses_and_replaces_a_connection_the_server_closed(server):
    s = http.Session()
    assert s.get(server.url + "/echo", timeout=5).status_code == 200
    assert s.get(server.url + "/echo", timeout=5).status_code == 200
    assert server.seen[0]["conn"] == server.seen[1]["conn"]  # one connection for both
    assert s.get(server.url + "/close-after", timeout=5).content == b"ok"
    # the server closed the idle connection: noticed before reuse, no error, no retry
    r = s.get(server.url + "/echo", timeout=5)
    assert r.status_code == 200 and len(server.seen) == 4


def test_redirect_keeps_authorization_only_on_the_same_host(server):
    s = http.Session()
    auth = {"Authorization": "Bearer secret-token"}
    r = s.get(server.url + "/to-same-host", headers=auth, timeout=5)
    assert r.status_code == 200 and server.seen[-1]["headers"].get("Authorization")
    r = s.get(server.url + "/to-other-host", headers=auth, timeout=5)
    assert r.status_code == 200 and r.url.startswith("http://localhost:")
    assert "Authorization" not in server.seen[-1]["headers"]
    # other methods are not redirected: the caller sees the 307
    assert s.request("PUT", server.url + "/to-same-host", data=b"x", timeout=5).status_code == 307


def test_streamed_body_is_exact_and_its_connection_is_not_shared(server):
    s = http.Session()
    r = s.get(server.url + "/big", stream=True, timeout=5)
    first = r.raw.read(1000)
    assert s.get(server.url + "/echo", timeout=5).status_code == 200  # while streaming
    rest = r.raw.read()
    r.close()
    assert first + rest == BIG


def test_file_like_body_gets_content_length_and_forms_are_encoded(server):
    class Body:  # like upload.HashingReader: read() and len()
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def __len__(self) -> int:
            return len(self.data)

        def read(self, n: int = -1) -> bytes:
            n = len(self.data) - self.pos if n < 0 else n
            chunk = self.data[self.pos : self.pos + n]
            self.pos += len(chunk)
            return chunk

    s = http.Session()
    s.request("PUT", server.url + "/echo", data=Body(BIG), timeout=5)
    got = server.seen[-1]
    assert got["headers"]["Content-Length"] == str(len(BIG)) and got["body"] == BIG
    assert "Transfer-Encoding" not in got["headers"]
    http.post(server.url + "/echo", data={"scope": "repository:a:pull", "x": "1 2"}, timeout=5)
    assert server.seen[-1]["body"] == b"scope=repository%3Aa%3Apull&x=1+2"
    http.get(server.url + "/echo", params=[("scope", "a"), ("scope", "b")], auth=("u", "p"))
    assert server.seen[-1]["line"] == "/echo?scope=a&scope=b"
    assert (
        server.seen[-1]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    )


def test_truncated_body_and_refused_connection_are_connection_errors(server):
    with pytest.raises(http.ConnectionError):
        http.Session().get(server.url + "/truncated", timeout=5)
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(http.ConnectionError) as e:
        http.Session().get(f"http://127.0.0.1:{port}/echo", timeout=5)
    assert "Connection refused" in str(e.value)


def test_http_proxy_from_the_environment_and_no_proxy(server, monkeypatch):
    proxy = server.url.replace("http://", "http://pxuser:px%40pw@")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    r = http.Session().get("http://registry.invalid:5000/echo", timeout=5)
    # the request reached the proxy in absolute form, with the proxy's credentials
    assert r.json()["line"] == "http://registry.invalid:5000/echo"
    expected = "Basic " + base64.b64encode(b"pxuser:px@pw").decode()
    assert server.seen[-1]["headers"]["Proxy-Authorization"] == expected
    monkeypatch.setenv("NO_PROXY", "registry.invalid")
    with pytest.raises(http.ConnectionError):  # direct now: the name does not resolve
        http.Session().get("http://registry.invalid:5000/echo", timeout=5)
    monkeypatch.setenv("HTTPS_PROXY", "https://127.0.0.1:1")
    monkeypatch.delenv("NO_PROXY")
    with pytest.raises(http.ConnectionError) as e:
        http.Session().get("https://registry.invalid/v2/", timeout=5)
    assert "Unable to connect to proxy" in str(e.value) and "Connection refused" in str(e.value)


def test_https_through_a_connect_tunnel_and_through_an_https_proxy(
    server, tls_server, ca, monkeypatch
):
    s = http.Session()
    s.verify = str(ca / "ca.pem")
    # an https registry behind an http:// proxy: CONNECT (with the proxy's credentials), then
    # TLS end to end, verified against the CA bundle
    monkeypatch.setenv("HTTPS_PROXY", server.url.replace("http://", "http://pxuser:pw@"))
    r = s.get(tls_server.url + "/echo?x=1", headers={"Authorization": "Bearer t"}, timeout=5)
    assert r.status_code == 200 and r.json()["line"] == "/echo?x=1"
    (tunnel,) = server.seen
    assert tunnel["line"] == f"CONNECT 127.0.0.1:{tls_server.server_address[1]}"
    assert (
        tunnel["headers"]["Proxy-Authorization"]
        == "Basic " + base64.b64encode(b"pxuser:pw").decode()
    )
    assert "Authorization" not in tunnel["headers"]  # the registry's token never reaches the proxy
    assert tls_server.seen[-1]["headers"]["Authorization"] == "Bearer t"
    # an https:// proxy URL: TLS to the proxy (checked against the same bundle)
    monkeypatch.setenv("HTTP_PROXY", tls_server.url)
    r = s.get("http://registry.invalid:5000/echo", timeout=5)
    assert r.json()["line"] == "http://registry.invalid:5000/echo"
    with pytest.raises(http.ConnectionError) as e:  # certifi's bundle does not know our CA
        http.Session().get("http://registry.invalid:5000/echo", timeout=5)
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)


def test_tls_is_checked_against_the_bundle_unless_verify_is_false(tls_server, ca):
    with pytest.raises(http.SSLError) as e:  # certifi's bundle (the default) does not know it
        http.Session().get(tls_server.url + "/echo", timeout=5)
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)
    assert (
        http.get(tls_server.url + "/echo", verify=str(ca / "ca.pem"), timeout=5).status_code == 200
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no InsecureRequestWarning on every request
        s = http.Session()
        s.verify = False  # --insecure / insecure_registries
        assert s.get(tls_server.url + "/echo", timeout=5).json() == {"line": "/echo"}
