"""Look-ups a lock import may need (never a solve): one repodata record, one project's files.

- `repodata_record(channel, subdir, fn)`: for explicit files that carry only md5 (identity
  needs sha256), from `<channel>/<subdir>/repodata.json`.
- `index_files(indexes, find_links, name)`: for requirements files that pin `name==version
  --hash` without a URL: every file of the project on the indexes (PEP 691 JSON, else PEP 503
  HTML) with its sha256, so the reader can match a hash to a file.
Both go through sources.requests_session (credentials, CA bundle, proxies); errors are
redacted; results are cached for the life of the object.
"""

from __future__ import annotations

import html.parser
import json
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from imagebuilder.errors import Unavailable
from imagebuilder.urls import redact, strip_credentials

PYPI = "https://pypi.org/simple"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"


class RemoteLookup:
    def __init__(self) -> None:
        self._session = None
        self._repodata: dict[tuple[str, str], dict] = {}

    @property
    def session(self):
        if self._session is None:
            from imagebuilder.sources import requests_session

            self._session = requests_session()
        return self._session

    def _get(self, url: str, accept: str | None = None):
        import requests

        try:
            r = self.session.get(
                url, timeout=(10, 60), headers={"Accept": accept} if accept else {}
            )
        except requests.RequestException as e:
            raise Unavailable(
                f"cannot reach {strip_credentials(url)}: {redact(str(e))}",
                "check the URL, your network, proxy and CA settings (imgbuild config show)",
            ) from None
        return r

    def repodata_record(self, channel: str, subdir: str, filename: str) -> dict | None:
        key = (channel.rstrip("/"), subdir)
        if key not in self._repodata:
            if channel.startswith("file:") or "://" not in channel:
                path = Path(urlsplit(channel).path if "://" in channel else channel)
                try:
                    self._repodata[key] = json.loads((path / subdir / "repodata.json").read_text())
                except (OSError, ValueError):
                    self._repodata[key] = {}
            else:
                r = self._get(f"{key[0]}/{subdir}/repodata.json")
                if r.status_code == 404:
                    self._repodata[key] = {}
                elif r.status_code != 200:
                    raise Unavailable(
                        f"{strip_credentials(key[0])}/{subdir}/repodata.json: HTTP {r.status_code}",
                        "check the channel URL and its credentials (imgbuild config show)",
                    )
                else:
                    self._repodata[key] = r.json()
        data = self._repodata[key]
        for table in ("packages.conda", "packages"):
            rec = (data.get(table) or {}).get(filename)
            if rec is not None:
                base = key[0]
                return {**rec, "fn": filename, "url": f"{base}/{subdir}/{filename}"}
        return None

    def index_files(
        self, indexes: tuple[str, ...], find_links: tuple[str, ...], name: str
    ) -> list[tuple[str, str, str | None]]:
        from packaging.utils import canonicalize_name

        project = canonicalize_name(name)
        out: list[tuple[str, str, str | None]] = []
        for index in indexes or (PYPI,):
            url = f"{index.rstrip('/')}/{project}/"
            r = self._get(url, JSON_ACCEPT)
            if r.status_code == 404:
                continue
            if r.status_code != 200:
                raise Unavailable(
                    f"{strip_credentials(url)}: HTTP {r.status_code}",
                    "check the index URL and its credentials (imgbuild config show)",
                )
            if "json" in r.headers.get("Content-Type", ""):
                for f in r.json().get("files", ()):
                    out.append(
                        (f["filename"], urljoin(r.url, f["url"]), f.get("hashes", {}).get("sha256"))
                    )
            else:
                out += _html_links(r.text, r.url)
        for fl in find_links:
            out += _find_links(fl, project, self)
        return out


def _find_links(location: str, project: str, lookup: RemoteLookup):
    import hashlib

    from packaging.utils import canonicalize_name

    def wanted(fn: str) -> bool:
        return canonicalize_name(fn.split("-")[0]) == project

    if "://" not in location or location.startswith("file:"):
        folder = Path(urlsplit(location).path if "://" in location else location)
        return [
            (p.name, p.resolve().as_uri(), hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.glob("*"))
            if p.is_file() and wanted(p.name)
        ]
    r = lookup._get(location)
    return [x for x in _html_links(r.text, r.url) if wanted(x[0])] if r.status_code == 200 else []


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def _html_links(text: str, base: str) -> list[tuple[str, str, str | None]]:
    p = _Links()
    p.feed(text)
    out = []
    for href in p.hrefs:
        url = urljoin(base, href)
        clean, _, frag = url.partition("#")
        sha = frag.split("=", 1)[1] if frag.startswith("sha256=") else None
        out.append((clean.rsplit("/", 1)[-1], clean, sha))
    return out
