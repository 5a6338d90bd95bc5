"""Download pinned distributions from PyPI into a shared cache (used by ci/pypi and ci/channel).

``fetch(project, filename)`` returns the cached file and its metadata (sha256, upload time,
url, requires-python) taken from PyPI's simple JSON API (PEP 691 / PEP 700:
``https://pypi.org/simple/<project>/`` with ``Accept: application/vnd.pypi.simple.v1+json``).
The per-version JSON API (``/pypi/<name>/<version>/json``) is not reachable from every machine
we run on, the simple API is. Every download is checked against PyPI's sha256; a warm cache
needs no network at all (metadata is kept next to the file as ``<filename>.json``).

Cache: ``ci/cache/wheels/`` (override with ``IMGB_WHEEL_CACHE``). Safe for concurrent use:
files are written to a temp name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("IMGB_WHEEL_CACHE", ROOT / "ci" / "cache" / "wheels"))
PYPI_SIMPLE = os.environ.get("IMGB_PYPI_SIMPLE", "https://pypi.org/simple")
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"

_project_pages: dict[str, dict] = {}


def _ssl_context() -> ssl.SSLContext:
    for var in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(var)
        if path and os.path.isfile(path):
            return ssl.create_default_context(cafile=path)
    return ssl.create_default_context()


def _get(url: str, accept: str | None = None, attempts: int = 4) -> bytes:
    headers = {"User-Agent": "imgbuild-ci-rig/1"}
    if accept:
        headers["Accept"] = accept
    last: Exception | None = None
    for i in range(attempts):
        try:
            req = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(req, timeout=120, context=_ssl_context()) as r:
                return r.read()
        except Exception as e:  # network hiccups: retry with backoff
            last = e
            time.sleep(0.5 * (2**i))
    raise RuntimeError(f"cannot download {url}: {last}")


def normalize(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def project_files(project: str) -> dict[str, dict]:
    """{filename: file entry} from PyPI's simple JSON page of ``project``."""
    key = normalize(project)
    if key not in _project_pages:
        page = json.loads(_get(f"{PYPI_SIMPLE}/{key}/", accept=JSON_ACCEPT))
        _project_pages[key] = {f["filename"]: f for f in page["files"]}
    return _project_pages[key]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(project: str, filename: str, cache: Path | None = None) -> tuple[Path, dict]:
    """Return (path, meta) for ``filename`` of ``project``; meta has sha256, upload-time, url,
    size, requires-python. Downloads once, verifies the sha256."""
    cache = Path(cache or CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / filename
    meta_path = cache / (filename + ".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if path.stat().st_size == meta["size"]:
            return path, meta
    entry = project_files(project).get(filename)
    if entry is None:
        raise RuntimeError(f"{filename} is not listed on {PYPI_SIMPLE}/{normalize(project)}/")
    meta = {
        "project": normalize(project),
        "filename": filename,
        "sha256": entry["hashes"]["sha256"],
        "upload-time": entry.get("upload-time"),
        "url": entry["url"],
        "size": entry.get("size"),
        "requires-python": entry.get("requires-python"),
    }
    data = _get(entry["url"])
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise RuntimeError(
            f"sha256 mismatch for {filename}: got {digest}, PyPI says {meta['sha256']}"
        )
    meta["size"] = len(data)
    tmp = cache / f".{filename}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    tmp_meta = cache / f".{filename}.json.{os.getpid()}.tmp"
    tmp_meta.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp_meta, meta_path)
    return path, meta


def fetch_many(
    items: list[tuple[str, str]], cache: Path | None = None, workers: int = 8
) -> list[tuple[Path, dict]]:
    """Fetch several (project, filename) pairs in parallel threads, keeping order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(lambda it: fetch(it[0], it[1], cache), items))
