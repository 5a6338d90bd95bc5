"""Make real conda packages and index a local channel (library used by build.py and tests).

Import it from a test with::

    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("imgb_channel_builder", ROOT / "ci/channel/builder.py")
    builder = importlib.util.module_from_spec(spec)
    sys.modules["imgb_channel_builder"] = builder  # before exec: its dataclasses need it
    spec.loader.exec_module(builder)

or ``sys.path.insert(0, str(ROOT / "ci" / "channel")); import builder``.

Main entry points:

- ``make_package(channel_dir, subdir, name, version, build, files, ...)`` writes one real,
  byte-deterministic ``.conda`` or ``.tar.bz2`` archive into ``channel_dir/subdir``.
- ``reindex(channel_dir)`` runs ``rattler.index.index_fs`` and then pins every record's
  ``indexed_timestamp`` to its build ``timestamp`` (see ``fix_indexed_timestamps``), so
  ``rattler.solve(..., exclude_newer=...)`` time-travels by the timestamps given to
  ``make_package`` and not by the moment the channel was indexed.
- ``copy_channel(src, dst)`` copies a channel for a test that wants to add packages to it:
  archives are hardlinked (they are never modified in place), metadata is copied.

Why not ``conda_package_handling.api.create`` / ``transmute``: both depend on things that change
between runs (``hash()`` of file extensions orders tar members, so PYTHONHASHSEED changes the
bytes; zip entries get the current time; tar members take file mtimes and the umask). The
archives written here have the same layout cph writes (``.tar.bz2``: info/ first; ``.conda``:
a stored zip of ``metadata.json``, ``pkg-<id>.tar.zst``, ``info-<id>.tar.zst``) with fixed
mtimes, owners and member order; tests check that cph and rattler read them.
"""

from __future__ import annotations

import asyncio
import bz2
import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
PLACEHOLDER_B = PLACEHOLDER.encode()
SUBDIRS = ("linux-64", "linux-aarch64", "osx-arm64", "noarch")
DEFAULT_TIMESTAMP_MS = 1704067200000  # 2024-01-01T00:00:00Z


def ts_ms(date: str) -> int:
    """'2024-06-01' or an ISO datetime (UTC when naive) -> milliseconds since the epoch."""
    d = _dt.datetime.fromisoformat(date)
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return int(d.timestamp() * 1000)


# --------------------------------------------------------------------------- file entries


@dataclass(frozen=True)
class File:
    """A regular file of a package.

    ``file_mode`` is the prefix-replacement mode written to paths.json: ``None`` detects it
    (the placeholder present -> "text" when the data is UTF-8 without NUL bytes, else
    "binary"), ``False`` disables replacement even if the placeholder is present.
    """

    data: bytes
    mode: int = 0o644
    file_mode: str | bool | None = None
    placeholder: str = PLACEHOLDER


@dataclass(frozen=True)
class Link:
    """A symbolic link (relative ``target``)."""

    target: str


@dataclass(frozen=True)
class Raw:
    """Any tar member, written as given: hardlinks (``tarfile.LNKTYPE``), device nodes,
    setuid modes, absolute link targets... For hostile-archive tests; paths.json lists it as a
    plain file of ``data``."""

    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0


FileLike = bytes | str | File | Link | Raw


def _as_entry(value: FileLike) -> File | Link | Raw:
    if isinstance(value, (File, Link, Raw)):
        return value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray)):
        return File(bytes(value))
    raise TypeError(f"unsupported file value {type(value)!r}")


def _detect_file_mode(f: File) -> str | None:
    if f.file_mode is False:
        return None
    if isinstance(f.file_mode, str):
        return f.file_mode
    if f.placeholder.encode() not in f.data:
        return None
    if b"\0" in f.data:
        return "binary"
    try:
        f.data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    return "text"


def files_from_dir(root: Path) -> dict[str, File | Link]:
    """Read a staged tree into ``{relative path: File|Link}`` (regular files and symlinks)."""
    root = Path(root)
    out: dict[str, File | Link] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(Path(dirpath, d))]:
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = Link(os.readlink(p))
            elif p.is_file():
                mode = 0o755 if os.access(p, os.X_OK) else 0o644
                out[rel] = File(p.read_bytes(), mode=mode)
    return out


# --------------------------------------------------------------------------- archives


def _tar_bytes(members: list[tuple[str, File | Link]], mtime: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, entry in members:
            info = tarfile.TarInfo(path)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if isinstance(entry, Link):
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                info.mode = 0o777
                tar.addfile(info)
            elif isinstance(entry, Raw):
                info.type, info.mode, info.linkname = entry.type, entry.mode, entry.linkname
                info.devmajor, info.devminor = entry.devmajor, entry.devminor
                has_data = entry.type in (tarfile.REGTYPE, tarfile.AREGTYPE)
                info.size = len(entry.data) if has_data else 0
                tar.addfile(info, io.BytesIO(entry.data) if has_data else None)
            else:
                info.size = len(entry.data)
                info.mode = entry.mode
                tar.addfile(info, io.BytesIO(entry.data))
    return buf.getvalue()


def _zip_info(name: str, date_time: tuple[int, ...]) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, date_time=date_time)
    zi.compress_type = zipfile.ZIP_STORED
    zi.create_system = 3
    zi.external_attr = 0o644 << 16
    return zi


def write_archive(
    out_path: Path,
    info: dict[str, File | Link],
    pkg: dict[str, File | Link],
    mtime: int,
    zstd_level: int | None = None,
) -> None:
    """Write a deterministic ``.conda`` or ``.tar.bz2`` (chosen by suffix), atomically."""
    out_path = Path(out_path)
    info_members = sorted(info.items())
    pkg_members = sorted(pkg.items())
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    if out_path.name.endswith(".tar.bz2"):
        raw = _tar_bytes(info_members + pkg_members, mtime)
        tmp.write_bytes(bz2.compress(raw, 9))
    elif out_path.name.endswith(".conda"):
        import zstandard

        size = sum(len(e.data) for e in pkg.values() if isinstance(e, File))
        level = zstd_level if zstd_level is not None else (19 if size < 4_000_000 else 6)
        stem = out_path.name[: -len(".conda")]
        date_time = _dt.datetime.fromtimestamp(max(mtime, 315532800), _dt.timezone.utc).timetuple()[
            :6
        ]
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(
                _zip_info("metadata.json", date_time), json.dumps({"conda_pkg_format_version": 2})
            )
            for comp, members in (
                (f"pkg-{stem}.tar.zst", pkg_members),
                (f"info-{stem}.tar.zst", info_members),
            ):
                raw = _tar_bytes(members, mtime)
                cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, threads=0)
                zf.writestr(_zip_info(comp, date_time), cctx.compress(raw))
    else:
        raise ValueError(f"unknown package format: {out_path.name}")
    os.replace(tmp, out_path)


# --------------------------------------------------------------------------- packages


@dataclass
class PackageResult:
    path: Path
    index: dict
    sha256: str = field(default="")

    @property
    def filename(self) -> str:
        return self.path.name


def make_package(
    channel_dir: str | os.PathLike,
    subdir: str,
    name: str,
    version: str,
    build: str = "0",
    files: Mapping[str, FileLike] | None = None,
    depends: Iterable[str] = (),
    fmt: str = ".conda",
    timestamp: int | str | None = None,
    noarch: str | None = None,
    build_number: int | None = None,
    constrains: Iterable[str] = (),
    entry_points: Iterable[str] = (),
    license: str | None = "MIT",
    extra_index: Mapping | None = None,
    about: Mapping | None = None,
    zstd_level: int | None = None,
    allow_unsafe_paths: bool = False,
) -> PackageResult:
    """Write one real conda package into ``channel_dir/subdir`` and return its path/index.

    ``files`` maps paths relative to the prefix to ``bytes``/``str`` (a 0644 file), ``File``
    (mode, prefix-replacement control) or ``Link`` (symlink). Files that contain the
    placeholder ``/opt/anaconda1anaconda2anaconda3`` get ``prefix_placeholder`` and
    ``file_mode`` (text/binary) in info/paths.json. For ``noarch="python"`` give paths as a
    noarch package holds them (``site-packages/...``, ``python-scripts/...``); the
    ``entry_points`` (``"cmd = module:func"``) go to info/link.json.
    ``timestamp`` (ms since epoch, or a date string) is written to index.json and also used
    as the tar/zip member mtime; the same inputs always give the same bytes.
    Hostile archives for security tests: ``Raw`` entries (hardlinks, devices, setuid...) and
    ``allow_unsafe_paths=True`` (absolute paths, ``..``) are written as given.
    """
    if fmt not in (".conda", ".tar.bz2"):
        raise ValueError("fmt must be '.conda' or '.tar.bz2'")
    if noarch and subdir != "noarch":
        raise ValueError("noarch packages go to the 'noarch' subdir")
    if isinstance(timestamp, str):
        timestamp = ts_ms(timestamp)
    timestamp = DEFAULT_TIMESTAMP_MS if timestamp is None else int(timestamp)
    if build_number is None:
        tail = build.rsplit("_", 1)[-1]
        build_number = int(tail) if tail.isdigit() else 0
    entries = {path: _as_entry(v) for path, v in (files or {}).items()}
    for path in entries:
        bad = path.startswith("/") or ".." in path.split("/") or path.startswith("info/")
        if bad and not allow_unsafe_paths:
            raise ValueError(
                f"bad package path {path!r} (allow_unsafe_paths=True to write it anyway)"
            )

    index: dict = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": build_number,
        "depends": list(depends),
        "subdir": subdir,
        "timestamp": timestamp,
    }
    if license:
        index["license"] = license
    if constrains:
        index["constrains"] = list(constrains)
    if noarch:
        index["noarch"] = noarch
    else:
        index["arch"] = {
            "linux-64": "x86_64",
            "linux-aarch64": "aarch64",
            "osx-arm64": "arm64",
        }.get(subdir)
        index["platform"] = subdir.split("-")[0] if subdir != "noarch" else None
        if index["arch"] is None:
            del index["arch"]
        if index["platform"] is None:
            del index["platform"]
    if extra_index:
        index.update(extra_index)

    paths = []
    for path, entry in sorted(entries.items()):
        if isinstance(entry, Link):
            rec = {"_path": path, "path_type": "softlink"}
            target = entries.get(
                os.path.normpath(os.path.join(os.path.dirname(path), entry.target))
            )
            if isinstance(target, File):
                rec["sha256"] = hashlib.sha256(target.data).hexdigest()
                rec["size_in_bytes"] = len(target.data)
        else:
            rec = {
                "_path": path,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(entry.data).hexdigest(),
                "size_in_bytes": len(entry.data),
            }
            fm = _detect_file_mode(entry) if isinstance(entry, File) else None
            if fm:
                rec["file_mode"] = fm
                rec["prefix_placeholder"] = entry.placeholder
        paths.append(rec)

    info: dict[str, File | Link] = {
        "info/index.json": File(_json(index)),
        "info/paths.json": File(_json({"paths": paths, "paths_version": 1})),
        "info/files": File(("".join(p + "\n" for p in sorted(entries))).encode()),
        "info/about.json": File(
            _json(dict(about or {"summary": f"{name} (imgbuild test channel)"}))
        ),
    }
    has_prefix = [
        f"{e.placeholder} {_detect_file_mode(e)} {p}\n"
        for p, e in sorted(entries.items())
        if isinstance(e, File) and _detect_file_mode(e)
    ]
    if has_prefix:
        info["info/has_prefix"] = File("".join(has_prefix).encode())
    if noarch == "python":
        link = {"noarch": {"type": "python"}, "package_metadata_version": 1}
        if entry_points:
            link["noarch"]["entry_points"] = list(entry_points)
        info["info/link.json"] = File(_json(link))

    out_dir = Path(channel_dir) / subdir
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}-{version}-{build}{fmt}"
    write_archive(out, info, entries, mtime=timestamp // 1000, zstd_level=zstd_level)
    return PackageResult(out, index, hashlib.sha256(out.read_bytes()).hexdigest())


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def noarch_python_files(modules: Mapping[str, FileLike]) -> dict[str, FileLike]:
    """Prefix ``site-packages/`` to module paths (``{"tinyfoo/__init__.py": ...}``)."""
    return {f"site-packages/{k}": v for k, v in modules.items()}


# --------------------------------------------------------------------------- index


def reindex(channel_dir: str | os.PathLike, pin_timestamps: bool = True) -> None:
    """Index every subdir with rattler's ``index_fs``; see ``areindex``.

    Runs its own event loop: from async code use ``await areindex(...)`` instead.
    """
    asyncio.run(areindex(channel_dir, pin_timestamps))


async def areindex(channel_dir: str | os.PathLike, pin_timestamps: bool = True) -> None:
    """Index ``channel_dir`` (repodata.json, .zst and sharded repodata for every subdir).

    rattler's ``index_fs`` stamps each record it indexes for the first time with
    ``indexed_timestamp`` = now, keeps that field for records already in repodata.json, and
    ``rattler.solve(exclude_newer=...)`` prefers it over the build ``timestamp``. Real channels
    such as conda-forge carry only ``timestamp``. With ``pin_timestamps`` (default) every
    record's ``indexed_timestamp`` is set to its ``timestamp`` (from index.json, i.e. the
    ``timestamp`` given to ``make_package``) and the channel is indexed once more so the .zst
    and sharded files agree. Time travel then follows the package timestamps, deterministic
    and independent of when the channel was built. ``pin_timestamps=False`` keeps rattler's
    behaviour (new records = now).

    Incremental: records of archives already indexed are kept, new archives are read,
    removed ones dropped. Do not overwrite an archive under the same file name.
    """
    from rattler.index import index_fs

    channel_dir = Path(channel_dir)
    for sub in SUBDIRS:
        (channel_dir / sub).mkdir(parents=True, exist_ok=True)
    await index_fs(channel_dir)
    if pin_timestamps and _pin_indexed_timestamps(channel_dir):
        for sub in SUBDIRS:
            shutil.rmtree(channel_dir / sub / "shards", ignore_errors=True)
        await index_fs(channel_dir)


def _pin_indexed_timestamps(channel_dir: Path) -> bool:
    changed = False
    for sub in SUBDIRS:
        path = channel_dir / sub / "repodata.json"
        if not path.exists():
            continue
        repodata = json.loads(path.read_text())
        dirty = False
        for key in ("packages", "packages.conda"):
            for rec in repodata.get(key, {}).values():
                ts = rec.get("timestamp")
                if ts is not None and rec.get("indexed_timestamp") != ts:
                    rec["indexed_timestamp"] = ts
                    dirty = True
        if dirty:
            tmp = path.with_name(f".repodata.json.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(repodata, sort_keys=True, separators=(",", ":")))
            os.replace(tmp, path)
            changed = True
    return changed


# --------------------------------------------------------------------------- wheels


def _record_hash(data: bytes) -> str:
    import base64

    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_files(
    wheel_path: str | os.PathLike, site_packages: str, scripts_dir: str
) -> tuple[dict[str, File], list[str], dict[str, str]]:
    """Unpack a wheel into conda package paths.

    Returns (files, console_scripts, metadata). Root (purelib/platlib) members go under
    ``site_packages``; ``*.data/scripts`` under ``scripts_dir``; ``*.data/data`` at the prefix
    root. The dist-info keeps the wheel's files, gets ``INSTALLER`` = ``conda`` and a RECORD
    regenerated for the installed layout (as conda-forge packages ship it).
    """
    import email.parser

    files: dict[str, File] = {}
    dist_info = None
    with zipfile.ZipFile(wheel_path) as zf:
        for zi in sorted(zf.infolist(), key=lambda z: z.filename):
            if zi.is_dir():
                continue
            name = zi.filename
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"{wheel_path}: unsafe member {name!r}")
            data = zf.read(zi)
            mode = 0o755 if (zi.external_attr >> 16) & 0o111 else 0o644
            top = name.split("/", 1)[0]
            if top.endswith(".dist-info"):
                dist_info = top
                if name.endswith("/RECORD"):
                    continue
            if top.endswith(".data"):
                kind, rest = name.split("/", 2)[1:]
                if kind in ("purelib", "platlib"):
                    files[f"{site_packages}/{rest}"] = File(data, mode)
                elif kind == "scripts":
                    files[f"{scripts_dir}/{rest}"] = File(data, 0o755)
                elif kind == "data":
                    files[rest] = File(data, mode)
                elif kind == "headers":
                    files[f"include/{rest}"] = File(data, mode)
                continue
            files[f"{site_packages}/{name}"] = File(data, mode)
    if dist_info is None:
        raise ValueError(f"{wheel_path}: no .dist-info")
    files[f"{site_packages}/{dist_info}/INSTALLER"] = File(b"conda\n")
    record_lines = []
    for path, f in sorted(files.items()):
        if path.startswith(site_packages + "/"):
            rel = path[len(site_packages) + 1 :]
        else:
            rel = os.path.relpath(path, site_packages)
        record_lines.append(f"{rel},{_record_hash(f.data)},{len(f.data)}")
    record_lines.append(f"{dist_info}/RECORD,,")
    files[f"{site_packages}/{dist_info}/RECORD"] = File(("\n".join(record_lines) + "\n").encode())

    meta_text = files[f"{site_packages}/{dist_info}/METADATA"].data.decode("utf-8", "replace")
    msg = email.parser.Parser().parsestr(meta_text, headersonly=True)
    scripts: list[str] = []
    ep = files.get(f"{site_packages}/{dist_info}/entry_points.txt")
    if ep is not None:
        import configparser

        cp = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        cp.optionxform = str  # type: ignore[assignment]
        cp.read_string(ep.data.decode())
        if cp.has_section("console_scripts"):
            scripts = [f"{k.strip()} = {v.strip()}" for k, v in cp.items("console_scripts")]
    meta = {
        "name": msg.get("Name", ""),
        "version": msg.get("Version", ""),
        "summary": msg.get("Summary", ""),
    }
    return files, scripts, meta


def entry_point_script(entry: str, python: str = "bin/python") -> File:
    """A console-script launcher for ``"cmd = module:func"`` with a text prefix placeholder."""
    _, target = (s.strip() for s in entry.split("=", 1))
    module, func = target.split(":", 1)
    body = (
        f"#!{PLACEHOLDER}/{python}\n"
        "# -*- coding: utf-8 -*-\n"
        "import re\nimport sys\n"
        f"from {module} import {func.split('.')[0]}\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
        f"    sys.exit({func}())\n"
    )
    return File(body.encode(), 0o755)


def wheel_to_conda(
    channel_dir: str | os.PathLike,
    wheel_path: str | os.PathLike,
    subdir: str = "noarch",
    name: str | None = None,
    version: str | None = None,
    build: str | None = None,
    depends: Iterable[str] = (),
    python_version: str = "3.11",
    **kw,
) -> PackageResult:
    """Convert a wheel into a conda package.

    ``subdir="noarch"``: a noarch python package (``site-packages/``, ``python-scripts/``,
    console scripts as link.json entry points). Any other subdir: an arch package for
    ``python_version`` (``lib/pythonX.Y/site-packages/``, launchers in ``bin/`` with a text
    prefix placeholder in the shebang). ``depends`` is taken as given (add python yourself).
    """
    if subdir == "noarch":
        files, scripts, meta = wheel_files(wheel_path, "site-packages", "python-scripts")
        kw.setdefault("noarch", "python")
        kw.setdefault("entry_points", scripts)
        default_build = "pyh_imgb_0"
    else:
        sp = f"lib/python{python_version}/site-packages"
        files, scripts, meta = wheel_files(wheel_path, sp, "bin")
        for entry in scripts:
            files[f"bin/{entry.split('=', 1)[0].strip()}"] = entry_point_script(
                entry, f"bin/python{python_version}"
            )
        default_build = f"py{python_version.replace('.', '')}_imgb_0"
    pkg_name = name or meta["name"].lower().replace("_", "-")
    return make_package(
        channel_dir,
        subdir,
        pkg_name,
        version or meta["version"],
        build or default_build,
        files,
        depends=depends,
        about={"summary": meta["summary"], "source": os.path.basename(str(wheel_path))},
        **kw,
    )


def copy_channel(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a channel: hardlink package archives (immutable), copy everything else."""
    src, dst = Path(src), Path(dst)

    def _copy(s, d):
        if s.endswith((".conda", ".tar.bz2")):
            try:
                os.link(s, d)
                return d
            except OSError:
                pass
        return shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=_copy, dirs_exist_ok=True)
    return dst


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tempdir(prefix: str = "imgb-channel-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
