"""A local PyPI index folder: distributions in ``files/`` plus ``index.json`` (upload times).

Layout of an index root::

    ROOT/files/<distribution files>          wheels, sdists
    ROOT/files/<wheel>.metadata              the wheel's METADATA (PEP 658 / PEP 714)
    ROOT/index.json                          {"format": "imgb-pypi-index/v1",
                                              "files": {filename: {"project", "version",
                                              "sha256", "size", "upload-time",
                                              "requires-python", "core-metadata-sha256"}}}

``serve.py`` turns it into a PEP 503 / PEP 691 / PEP 700 simple index. Library functions for
tests that want their own packages (import by path like ``ci/channel/builder.py``):

- ``make_wheel(root, name, version, modules, requires=..., entry_points=..., upload_time=...)``
  builds a pure, byte-deterministic ``py3-none-any`` wheel and registers it;
- ``make_sdist(root, name, version, modules, ...)`` a setuptools sdist (pyproject.toml, PEP 625
  file name), deterministic bytes;
- ``add_file(root, path, upload_time, project=..., version=...)`` registers any file (copies
  it into ``files/``).

``index.json`` is rewritten atomically; the server reloads it when it changes, so a test can
add a newer release to a running index.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

FORMAT = "imgb-pypi-index/v1"


def normalize(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def upload_time(value: str) -> str:
    """'2024-01-01' or an ISO datetime -> '2024-01-01T00:00:00.000000Z' (UTC)."""
    d = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load(root: str | os.PathLike) -> dict:
    path = Path(root) / "index.json"
    if not path.exists():
        return {"format": FORMAT, "files": {}}
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown format {data.get('format')!r}")
    return data


def save(root: str | os.PathLike, data: dict) -> None:
    path = Path(root) / "index.json"
    tmp = path.with_name(f".index.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def parse_filename(filename: str) -> tuple[str, str]:
    """(project, version) of a wheel or sdist file name."""
    if filename.endswith(".whl"):
        name, version = filename[:-4].split("-")[:2]
        return normalize(name), version
    for ext in (".tar.gz", ".zip", ".tar.bz2"):
        if filename.endswith(ext):
            name, version = filename[: -len(ext)].rsplit("-", 1)
            return normalize(name), version
    raise ValueError(f"not a distribution file name: {filename}")


def wheel_metadata(path: Path) -> bytes | None:
    if not path.name.endswith(".whl"):
        return None
    with zipfile.ZipFile(path) as zf:
        for n in zf.namelist():
            parts = n.split("/")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                return zf.read(n)
    return None


def add_file(
    root: str | os.PathLike,
    src: str | os.PathLike,
    upload: str,
    requires_python: str | None = None,
    sha256: str | None = None,
) -> dict:
    """Copy ``src`` into ``root/files`` (if it is not there) and register it in index.json."""
    root = Path(root)
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    src = Path(src)
    dst = files / src.name
    if src.resolve() != dst.resolve():
        tmp = files / f".{src.name}.{os.getpid()}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    data = dst.read_bytes()
    digest = sha256_bytes(data)
    if sha256 and sha256 != digest:
        raise ValueError(f"{src.name}: sha256 {digest} != expected {sha256}")
    project, version = parse_filename(dst.name)
    entry = {
        "project": project,
        "version": version,
        "sha256": digest,
        "size": len(data),
        "upload-time": upload_time(upload),
        "requires-python": requires_python,
    }
    meta = wheel_metadata(dst)
    if meta is not None:
        tmp = files / f".{dst.name}.metadata.{os.getpid()}.tmp"
        tmp.write_bytes(meta)  # never write through a hardlink shared with another index copy
        os.replace(tmp, files / f"{dst.name}.metadata")
        entry["core-metadata-sha256"] = sha256_bytes(meta)
        if requires_python is None:
            m = re.search(rb"^Requires-Python: *(.+?)\r?$", meta, re.MULTILINE)
            entry["requires-python"] = m.group(1).decode() if m else None
    index = load(root)
    index["files"][dst.name] = entry
    save(root, index)
    return entry


# --------------------------------------------------------------------------- building


def _zip_date(upload: str) -> tuple[int, ...]:
    d = datetime.fromisoformat(upload_time(upload).replace("Z", "+00:00"))
    return (max(d.year, 1980), d.month, d.day, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata(
    name: str, version: str, requires: Iterable[str], requires_python: str | None, summary: str
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n\n"


def make_wheel(
    root: str | os.PathLike,
    name: str,
    version: str,
    modules: Mapping[str, str | bytes],
    requires: Iterable[str] = (),
    entry_points: Mapping[str, str] | None = None,
    upload: str = "2024-01-01",
    requires_python: str | None = ">=3.8",
    summary: str | None = None,
) -> Path:
    """Build and register a pure ``py3-none-any`` wheel; the same inputs give the same bytes.

    ``modules`` maps paths inside the wheel (``"pkg/__init__.py"``) to content;
    ``entry_points`` maps console-script names to ``"module:function"``.
    """
    root = Path(root)
    dist = re.sub(r"[-_.]+", "_", name).lower()
    di = f"{dist}-{version}.dist-info"
    members: dict[str, bytes] = {
        k: (v.encode() if isinstance(v, str) else v) for k, v in sorted(modules.items())
    }
    members[f"{di}/METADATA"] = _metadata(
        name, version, requires, requires_python, summary or f"{name} (imgbuild test index)"
    ).encode()
    members[f"{di}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: imgbuild-ci\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if entry_points:
        ep = "[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in sorted(entry_points.items())
        )
        members[f"{di}/entry_points.txt"] = ep.encode()
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in members.items())
    members[f"{di}/RECORD"] = (record + f"{di}/RECORD,,\n").encode()
    out = root / "files" / f"{dist}-{version}-py3-none-any.whl"
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    date = _zip_date(upload)
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in members.items():
            zi = zipfile.ZipInfo(path, date_time=date)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data, compresslevel=9)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out)
    add_file(root, out, upload, requires_python)
    return out


def make_sdist(
    root: str | os.PathLike,
    name: str,
    version: str,
    modules: Mapping[str, str | bytes],
    requires: Iterable[str] = (),
    upload: str = "2024-01-01",
    requires_python: str | None = ">=3.8",
    build_requires: Iterable[str] = ("setuptools>=61",),
    summary: str | None = None,
) -> Path:
    """Build and register a setuptools sdist (src layout, pyproject.toml); deterministic bytes.

    ``modules`` maps paths under ``src/`` (``"pkg/__init__.py"``) to content.
    """
    root = Path(root)
    dist = re.sub(r"[-_.]+", "_", name).lower()
    base = f"{dist}-{version}"
    summary = summary or f"{name} (imgbuild test index, sdist only)"
    deps = "".join(f'    "{r}",\n' for r in requires)
    breq = ", ".join(f'"{r}"' for r in build_requires)
    pyproject = (
        f'[build-system]\nrequires = [{breq}]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\ndescription = "{summary}"\n'
        + (f'requires-python = "{requires_python}"\n' if requires_python else "")
        + f"dependencies = [\n{deps}]\n\n"
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
    )
    members: dict[str, bytes] = {
        f"{base}/PKG-INFO": _metadata(name, version, requires, requires_python, summary).encode(),
        f"{base}/pyproject.toml": pyproject.encode(),
        f"{base}/setup.cfg": b"[egg_info]\ntag_build = \ntag_date = 0\n\n",
    }
    for k, v in modules.items():
        members[f"{base}/src/{k}"] = v.encode() if isinstance(v, str) else v
    mtime = int(datetime.fromisoformat(upload_time(upload).replace("Z", "+00:00")).timestamp())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({p.rsplit("/", i)[0] for p in members for i in range(1, p.count("/") + 1)})
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(ti)
        for path, data in sorted(members.items()):
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, mtime
            tar.addfile(ti, io.BytesIO(data))
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=9) as f:
        f.write(raw.getvalue())
    out = root / "files" / f"{base}.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(gz.getvalue())
    os.replace(tmp, out)
    add_file(root, out, upload, requires_python)
    return out


def copy_index(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy an index root (files hardlinked where possible) for a test that wants to add to it."""
    src, dst = Path(src), Path(dst)

    def _copy(s, d):
        if not s.endswith("index.json"):
            try:
                os.link(s, d)
                return d
            except OSError:
                pass
        return shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=_copy, dirs_exist_ok=True)
    return dst
