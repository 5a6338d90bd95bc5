"""Helpers for tests/interop: an isolated CLI runner usable at session scope, a test PKI made
with openssl, small servers run as subprocesses, and a grep for secrets.

(Named interop_support, not helpers: other test folders put their own `helpers` on sys.path.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from clirunner import DROP_PREFIXES, ImgbuildRunner  # tests/ (on sys.path: tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


class Cli(ImgbuildRunner):
    """`imgbuild` in a subprocess with its own HOME and store (usable from session fixtures);
    also leaves out the developer's netrc, condarc and proxies."""

    drop = DROP_PREFIXES + (
        "NETRC", "CONDARC", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy",
        "no_proxy",
    )  # fmt: skip


def python(code: str, *, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run Python code in a child process (py-rattler never runs in the pytest process)."""
    e = {**os.environ, **(env or {})}
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), e.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code + "\nimport os, sys; sys.stdout.flush(); os._exit(0)"],
        capture_output=True,
        text=True,
        env=e,
        timeout=timeout,
    )


# --- a test PKI --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def make_pki(folder: Path) -> Pki:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    folder.mkdir(parents=True, exist_ok=True)

    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "3", "-subj", "/CN=imgbuild interop test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (folder / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "3", "-extfile", "ext.cnf")  # fmt: skip
    return Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")


# --- servers -----------------------------------------------------------------------------------


class Server:
    """A server subprocess; `url` once it is listening; stop() ends it (by its pid only)."""

    def __init__(
        self, argv: list[str], log: Path, ready: Path | None = None, first_line=False, wait=None
    ):
        self.log = log
        self._out = open(log.with_suffix(".out"), "w")  # noqa: SIM115 - closed in stop()
        self._err = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=self._err, cwd=ROOT)
        self.url = None
        if wait is not None:  # the caller knows how to tell it is up
            try:
                wait()
            except Exception:
                self.stop()
                raise
            self.url = "ready"
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[:3]} exited: {log.read_text()[-2000:]}")
            if ready is not None and ready.exists() and ready.read_text().strip():
                self.url = ready.read_text().strip()
                break
            if first_line:
                text = log.with_suffix(".out").read_text()
                if text.strip():
                    self.url = text.splitlines()[0].strip()
                    break
            time.sleep(0.05)
        if self.url is None:
            self.stop()
            raise RuntimeError(f"{argv[:3]} did not start: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        self._err.close()


def tls_file_server(root: Path, pki: Pki, auth: str, logdir: Path) -> Server:
    """tls_server.py serving `root` over HTTPS with basic auth; url = https://127.0.0.1:PORT."""
    ready = logdir / f"ready-{os.getpid()}-{time.monotonic_ns()}"
    s = Server(
        [sys.executable, str(HERE / "tls_server.py"), "--root", str(root), "--certfile",
         str(pki.cert), "--keyfile", str(pki.key), "--auth", auth, "--ready", str(ready)],
        logdir / f"{ready.name}.log",
        ready=ready,
    )  # fmt: skip
    s.url = f"https://127.0.0.1:{s.url}"
    return s


def secrets_in_tree(root: Path, secrets: list[str]) -> list[str]:
    """Files under root whose bytes contain any of the secrets."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {s}" for s in secrets if s.encode() in data]
    return hits


def env_ref(env: dict) -> str:
    """req_id16:full_id16 (a full_id alone may match several requests once locks import)."""
    return f"{env['req_id'][:16]}:{env['full_id'][:16]}"


# --- a forward proxy that counts what goes through it -------------------------------------------


class CountingProxy:
    """A small HTTP forward proxy on 127.0.0.1 (absolute-URI GET/HEAD and CONNECT tunnels) that
    records each request's target, in a thread of the test process (plain sockets only)."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen: list[str] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self):
                import urllib.error
                import urllib.request

                seen.append(f"{self.command} {self.path}")
                body = None
                if self.headers.get("Content-Length"):
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("proxy-connection", "connection", "host")
                }
                req = urllib.request.Request(
                    self.path, data=body, headers=headers, method=self.command
                )
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    resp = opener.open(req, timeout=30)
                    status, rheaders, data = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as e:
                    status, rheaders, data = e.code, e.headers, e.read()
                self.send_response(status)
                for k, v in rheaders.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = _forward  # noqa: N815

            def do_CONNECT(self):  # noqa: N802
                import select
                import socket

                seen.append(f"CONNECT {self.path}")
                host, _, port = self.path.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=30)
                self.send_response(200, "Connection established")
                self.end_headers()
                conns = [self.connection, upstream]
                while True:
                    r, _, _ = select.select(conns, [], [], 30)
                    if not r:
                        break
                    for s in r:
                        data = s.recv(65536)
                        if not data:
                            upstream.close()
                            return
                        (upstream if s is self.connection else self.connection).sendall(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
