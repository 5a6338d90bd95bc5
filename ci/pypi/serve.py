#!/usr/bin/env python3
"""Serve a local PyPI index folder (see build.py / index.py) as a simple repository.

    python ci/pypi/serve.py --root DIR [--host 127.0.0.1] [--port 0] [--auth USER:PASS]
                            [--certfile CERT --keyfile KEY] [--quiet]

Prints the index URL (``http://127.0.0.1:PORT/simple``; ``https://`` with TLS) as the first line
on stdout, flushes, then serves until SIGTERM/SIGINT. Access log on stderr (``--quiet`` mutes).

- ``/simple/`` and ``/simple/<project>/``: PEP 503 HTML or PEP 691 JSON by content negotiation on
  ``Accept`` (``application/vnd.pypi.simple.v1+json``, ``application/vnd.pypi.simple.v1+html``,
  ``text/html``; q-values honoured; HTML by default; ``?format=`` also accepted). JSON carries
  PEP 700 ``upload-time``, ``size`` and ``versions`` (api-version 1.1); both carry sha256
  hashes, ``requires-python`` and PEP 658/714 core metadata. Names that are not normalized
  redirect (301) to the normalized URL.
- ``/files/<filename>`` (and ``<filename>.metadata``): the files, with ETag/Last-Modified and
  304 on revalidation. Pages send ``Cache-Control: no-cache`` with an ETag, so clients always
  revalidate and a release added to index.json (reloaded when it changes) shows up at once.
- ``--auth USER:PASS``: HTTP basic auth on every path (401 otherwise).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import os
import re
import signal
import ssl
import sys
import threading
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
API_VERSION = "1.1"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Index:
    """index.json of ROOT, reloaded whenever its mtime changes."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self.projects: dict[str, list[tuple[str, dict]]] = {}

    def refresh(self) -> None:
        path = self.root / "index.json"
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp == self._stamp:
                return
            data = json.loads(path.read_text())
            projects: dict[str, list[tuple[str, dict]]] = {}
            for fn, entry in sorted(data["files"].items()):
                projects.setdefault(normalize(entry["project"]), []).append((fn, entry))
            self.projects, self._stamp = projects, stamp


def negotiate(accept: str | None, query: dict) -> str | None:
    """Pick the response type for a simple-API page; None when nothing acceptable."""
    fmt = query.get("format", [None])[0]
    if fmt:
        fmt = fmt.replace(" ", "+")  # an unescaped "+" in the query string decodes as a space
    if fmt:
        accept = fmt
    if not accept:
        return HTML_TYPE
    offers = {JSON_TYPE: 3, HTML_TYPE: 2, "text/html": 1}
    best, best_key = None, (0.0, 0)
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        mtype, q = fields[0].lower(), 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        # A bare wildcard gets the legacy HTML page (what old clients and curl expect).
        candidates = ["text/html"] if mtype in ("*/*", "text/*") else [mtype]
        if mtype == "application/*":
            candidates = [JSON_TYPE, HTML_TYPE]
        for c in candidates:
            if c in offers and q > 0 and (q, offers[c]) > best_key:
                best, best_key = c, (q, offers[c])
    return best


class Handler(BaseHTTPRequestHandler):
    server_version = "imgb-pypi/1"
    protocol_version = "HTTP/1.1"
    index: Index
    auth: str | None = None
    quiet = False

    def log_message(self, fmt, *args):  # noqa: A003
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} - {fmt % args}\n")

    # -- helpers
    def _send(
        self, code: int, body: bytes = b"", ctype: str = "text/plain", headers: dict | None = None
    ):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        if not self.auth:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                if base64.b64decode(header[6:]).decode() == self.auth:
                    return True
            except Exception:
                pass
        self._send(
            401,
            b"authentication required\n",
            headers={"WWW-Authenticate": 'Basic realm="imgb-pypi"'},
        )
        return False

    def _page(self, body: bytes, ctype: str):
        etag = '"' + hashlib.sha256(body + ctype.encode()).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept"}
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(200, body, ctype, headers)

    # -- routes
    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def do_GET(self):  # noqa: N802
        if not self._authorized():
            return
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        path = urllib.parse.unquote(url.path)
        try:
            self.index.refresh()
        except Exception as e:  # index.json missing or being replaced
            self._send(503, f"index not available: {e}\n".encode())
            return
        if path in ("/", "/simple"):
            self._send(301, headers={"Location": "/simple/"})
        elif path == "/simple/":
            self._root_page(query)
        elif path.startswith("/simple/"):
            name = path[len("/simple/") :].strip("/")
            if "/" in name or not name:
                self._send(404, b"not found\n")
            elif name != normalize(name) or not path.endswith("/"):
                self._send(301, headers={"Location": f"/simple/{normalize(name)}/"})
            else:
                self._project_page(name, query)
        elif path.startswith("/files/"):
            self._file(path[len("/files/") :])
        else:
            self._send(404, b"not found\n")

    def _root_page(self, query):
        ctype = negotiate(self.headers.get("Accept"), query)
        names = sorted(self.index.projects)
        if ctype is None:
            self._send(406, b"not acceptable\n")
        elif ctype == JSON_TYPE:
            doc = {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in names]}
            self._page(json.dumps(doc).encode(), JSON_TYPE)
        else:
            links = "".join(f'<a href="/simple/{n}/">{n}</a><br/>\n' for n in names)
            body = (
                "<!DOCTYPE html>\n<html><head>"
                f'<meta name="pypi:repository-version" content="{API_VERSION}">'
                f"<title>Simple index</title></head><body>\n{links}</body></html>\n"
            )
            self._page(body.encode(), ctype)

    def _project_page(self, name, query):
        files = self.index.projects.get(name)
        if not files:
            self._send(404, f"no project {name}\n".encode())
            return
        ctype = negotiate(self.headers.get("Accept"), query)
        if ctype is None:
            self._send(406, b"not acceptable\n")
            return
        if ctype == JSON_TYPE:
            out = []
            for fn, e in files:
                cm = (
                    {"sha256": e["core-metadata-sha256"]}
                    if e.get("core-metadata-sha256")
                    else False
                )
                out.append({
                    "filename": fn,
                    "url": f"/files/{urllib.parse.quote(fn)}",
                    "hashes": {"sha256": e["sha256"]},
                    "requires-python": e.get("requires-python"),
                    "size": e["size"],
                    "upload-time": e["upload-time"],
                    "yanked": e.get("yanked", False),
                    "core-metadata": cm,
                    "dist-info-metadata": cm,
                })  # fmt: skip
            versions = sorted({e["version"] for _, e in files})
            doc = {
                "meta": {"api-version": API_VERSION},
                "name": name,
                "versions": versions,
                "files": out,
            }
            self._page(json.dumps(doc).encode(), JSON_TYPE)
            return
        links = []
        for fn, e in files:
            attrs = f'href="/files/{urllib.parse.quote(fn)}#sha256={e["sha256"]}"'
            if e.get("requires-python"):
                attrs += f' data-requires-python="{html.escape(e["requires-python"])}"'
            if e.get("core-metadata-sha256"):
                cm = f"sha256={e['core-metadata-sha256']}"
                attrs += f' data-core-metadata="{cm}" data-dist-info-metadata="{cm}"'
            links.append(f"<a {attrs}>{html.escape(fn)}</a><br/>\n")
        body = (
            "<!DOCTYPE html>\n<html><head>"
            f'<meta name="pypi:repository-version" content="{API_VERSION}">'
            f"<title>Links for {name}</title></head><body>\n<h1>Links for {name}</h1>\n"
            + "".join(links)
            + "</body></html>\n"
        )
        self._page(body.encode(), ctype)

    def _file(self, fn: str):
        if "/" in fn or fn.startswith("."):
            self._send(404, b"not found\n")
            return
        path = self.index.root / "files" / fn
        if not path.is_file():
            self._send(404, b"not found\n")
            return
        st = path.stat()
        etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        headers = {
            "ETag": etag,
            "Last-Modified": formatdate(st.st_mtime, usegmt=True),
            "Cache-Control": "max-age=31536000, immutable",
        }
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        ctype = "application/octet-stream"
        if fn.endswith(".metadata"):
            ctype = "text/plain; charset=utf-8"
        self._send(200, path.read_bytes(), ctype, headers)


def make_server(root: Path, host: str, port: int, auth: str | None = None, certfile=None, keyfile=None,
                quiet: bool = False) -> tuple[ThreadingHTTPServer, str]:  # fmt: skip
    handler = type("BoundHandler", (Handler,), {"index": Index(root), "auth": auth, "quiet": quiet})
    handler.index.refresh()
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    scheme = "http"
    if certfile:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        scheme = "https"
    bound_host, bound_port = httpd.server_address[:2]
    return httpd, f"{scheme}://{bound_host}:{bound_port}/simple"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="index folder made by build.py")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--auth", help="USER:PASS for HTTP basic auth")
    ap.add_argument("--certfile")
    ap.add_argument("--keyfile")
    ap.add_argument("--quiet", action="store_true", help="no access log")
    args = ap.parse_args(argv)
    if not (args.root / "index.json").is_file():
        print(
            f"error: {args.root}/index.json not found (run ci/pypi/build.py --out {args.root})",
            file=sys.stderr,
        )
        return 1
    httpd, url = make_server(
        args.root.resolve(),
        args.host,
        args.port,
        args.auth,
        args.certfile,
        args.keyfile,
        args.quiet,
    )

    def stop(signum, frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(url, flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
