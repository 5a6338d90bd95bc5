"""A small HTTPS file server with basic auth, for private-source tests.

    python tls_server.py --root DIR --port 0 --certfile C --keyfile K --auth USER:PASS --ready FILE

Serves DIR read-only; every request needs `Authorization: Basic` for USER:PASS (401 with a
`WWW-Authenticate` challenge otherwise, as real private channels and indexes answer). Writes
the bound port to FILE once listening. Logs each request line (path only, never headers) to
stderr so tests can check that no secret reaches a server log either.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import ssl
import sys
from pathlib import Path


class Handler(http.server.SimpleHTTPRequestHandler):
    expected = ""

    def _authorized(self) -> bool:
        got = self.headers.get("Authorization", "")
        return got == self.expected

    def do_GET(self):  # noqa: N802
        if not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="imgbuild-test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def do_HEAD(self):  # noqa: N802
        if not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="imgbuild-test"')
            self.end_headers()
            return
        super().do_HEAD()

    def log_message(self, fmt, *args):
        sys.stderr.write(
            f"{self.command} {self.path.split('?')[0]} -> {args[1] if len(args) > 1 else ''}\n"
        )
        sys.stderr.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--certfile", required=True)
    ap.add_argument("--keyfile", required=True)
    ap.add_argument("--auth", required=True)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    Handler.expected = "Basic " + base64.b64encode(a.auth.encode()).decode()
    handler = functools.partial(Handler, directory=a.root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.certfile, a.keyfile)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    Path(a.ready).write_text(str(httpd.server_address[1]))
    httpd.serve_forever()


if __name__ == "__main__":
    main()
