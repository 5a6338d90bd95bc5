"""Conda packages read in place: the ones a prefix gets unchanged, from an extracted copy.

A conda package's files land in a prefix as its archive holds them when it is not
`noarch: python` (whose files move to site-packages and get entry points), lists only files
and symlinks in info/paths.json and has no binary prefix placeholder: rattler's installer
would only hard-link its files from its package cache, and write the prefix into those with a
text placeholder (done here once per prefix, beside the copy). Bake reads such a
package from a copy extracted once per archive sha256 (`<cache>/extracted/<sha256>/`) instead
of linking thousands of files into a staging folder and removing them afterwards, which was
most of a cold bake's staging time (creating and freeing inodes; docs/layering.md).

Its conda-meta record is made the way rattler's installer makes it (paths sorted by
component, a link's `sha256_in_prefix` the hash of its target, a rewritten file's hash and
size in the prefix), then made portable as
install/conda.py's normalize_meta does: a layer's bytes do not depend on which way its
packages were staged (tests/oci/test_inplace.py compares them).

Only `.conda` archives qualify (a `.tar.bz2` keeps info/ inside one bz2 stream: telling
would mean decompressing all of it); python itself is always linked: stage.py runs the
staged python to compile .pyc.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from imagebuilder.install.plan import CondaItem

_INFO_MAX = 256 << 20  # an info tar bigger than this is not a real one: link it instead


def extracted_root() -> Path:
    from imagebuilder.store.localcache import cache_root

    return cache_root() / "extracted"


@dataclass(frozen=True)
class InPlace:
    """Where a package read in place is: its extracted archive, the paths it installs, and
    for files with a text prefix placeholder, their copies with the prefix written in (path ->
    their sha256 and size, which the conda-meta record gives as rattler does)."""

    root: Path
    files: tuple[str, ...]  # as info/paths.json lists them
    rewritten_root: Path | None = None
    rewritten: dict[str, tuple[str, int]] = field(default_factory=dict)


def package_dir(item: CondaItem, sha256: str, prefix: str) -> InPlace | None:
    """item's package read in place for `prefix` when it needs no linking step, else None.
    The archive must already be verified and checked (install/files.py fetch_verified).
    A copy that cannot be made (full disk, read-only cache) leaves the package to rattler,
    whose installer reports such failures in one clear line."""
    try:
        return _package_dir(item, sha256, prefix)
    except OSError:
        return None


def _package_dir(item: CondaItem, sha256: str, prefix: str) -> InPlace | None:
    from imagebuilder.cacheprune import touch

    dest = extracted_root() / sha256
    if (dest / "info" / "paths.json").is_file():
        touch(dest)  # used: kept by cacheprune.py
    else:  # only qualifying packages are extracted
        if not item.filename.endswith(".conda") or not hasattr(tarfile, "tar_filter"):
            return None  # (tarfile's filters came with python 3.10.12 / 3.11.4)
        if not _qualifies(item, Path(item.path)):
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{sha256[:16]}-", dir=dest.parent))
        try:
            _extract(Path(item.path), tmp)
            if not _rewrite(tmp, _paths(tmp), prefix, None):
                return None  # a shebang rattler would rewrite: its installer links it
            with contextlib.suppress(OSError):  # another process extracted it first
                os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / "info" / "paths.json").is_file():
            return None
    return _with_prefix(dest, prefix)


def _with_prefix(pkgdir: Path, prefix: str) -> InPlace | None:
    """The package's text placeholders written for prefix, kept beside its extracted copy
    (`<sha256>.prefix-<hash of prefix>/`, made once, by rename)."""
    paths = _paths(pkgdir)
    files = tuple(p["_path"] for p in paths)
    if not any(p.get("prefix_placeholder") for p in paths):
        return InPlace(pkgdir, files)
    tag = hashlib.sha256(prefix.encode()).hexdigest()[:16]
    out = pkgdir.parent / f"{pkgdir.name}.prefix-{tag}"
    if not out.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=f".{pkgdir.name[:16]}-", dir=pkgdir.parent))
        try:
            if not _rewrite(pkgdir, paths, prefix, tmp):
                return None
            with contextlib.suppress(OSError):
                os.rename(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    written = {}
    for p in paths:
        if p.get("prefix_placeholder"):
            data = (out / p["_path"]).read_bytes()
            written[p["_path"]] = (hashlib.sha256(data).hexdigest(), len(data))
    return InPlace(pkgdir, files, out, written)


def _paths(pkgdir: Path) -> list[dict]:
    return json.loads((pkgdir / "info" / "paths.json").read_bytes())["paths"]


def _rewrite(pkgdir: Path, paths: list[dict], prefix: str, out: Path | None) -> bool:
    """Each text-placeholder file with prefix written in, as rattler's installer writes it
    (every occurrence replaced), into out when given; False when one starts with a shebang
    rattler would rewrite instead (longer than 127 bytes or a space in the interpreter)."""
    for p in paths:
        placeholder = p.get("prefix_placeholder")
        if not placeholder:
            continue
        src = pkgdir / p["_path"]
        data = src.read_bytes().replace(placeholder.encode(), prefix.encode())
        if data.startswith(b"#!") and (len(data.split(b"\n", 1)[0]) > 127 or " " in prefix):
            return False
        if out is not None:
            dest = out / p["_path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            os.chmod(dest, src.stat().st_mode & 0o777)
    return True


def _extract(archive: Path, dest: Path) -> None:
    """A .conda's two tars into dest, with py-rattler where it may run in this process (the
    CLI: exitmode.py; ~3.5x faster), else with tarfile. The archive passed the
    hostile-archive check already; tarfile's "tar" filter refuses escaping names and links
    again and drops setuid and group/other write bits: the files' bytes, links and x bits
    (all a layer looks at) are the same either way."""
    from imagebuilder import exitmode

    if exitmode.INPROCESS:
        import rattler.package_streaming as streaming

        streaming.extract(archive, dest)
        return
    import zstandard

    with zipfile.ZipFile(archive) as z:
        for name in sorted(n for n in z.namelist() if n.endswith(".tar.zst")):
            with (
                z.open(name) as raw,
                zstandard.ZstdDecompressor().stream_reader(raw) as stream,
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                tar.extractall(dest, filter="tar")


def _qualifies(item: CondaItem, archive: Path) -> bool:
    rec = item.record
    if rec.get("name") == "python" or rec.get("noarch") == "python":
        return False
    info = _info_files(archive)
    if info is None or "info/paths.json" not in info:
        return False
    # (info/has_prefix is the legacy form of what paths.json says: rattler reads paths.json)
    if any(n in info for n in ("info/link.json", "info/no_link")):
        return False
    try:
        paths = json.loads(info["info/paths.json"])["paths"]
    except (ValueError, KeyError, TypeError):
        return False
    for p in paths:
        if p.get("path_type") not in ("hardlink", "softlink"):
            return False
        if p.get("prefix_placeholder") and (
            p.get("file_mode") != "text" or p.get("path_type") != "hardlink"
        ):
            return False  # binary placeholders (C strings padded with NULs): rattler's job
        if str(p.get("_path", "")).startswith("Menu/"):  # menuinst shortcuts: rattler's job
            return False
    return True


def _info_files(archive: Path) -> dict[str, bytes] | None:
    """The small members of a .conda's info tar, by name (None when it cannot be read: the
    installer then handles the package and reports what is wrong with it)."""
    import zstandard

    try:
        with zipfile.ZipFile(archive) as z:
            name = next((n for n in z.namelist() if n.startswith("info-")), None)
            if name is None or z.getinfo(name).file_size > _INFO_MAX:
                return None
            raw = zstandard.ZstdDecompressor().stream_reader(z.read(name)).read(_INFO_MAX)
        out = {}
        with tarfile.open(fileobj=io.BytesIO(raw)) as t:
            for m in t:
                if m.isfile() and m.size <= _INFO_MAX:
                    f = t.extractfile(m)
                    if f is not None:
                        out[m.name] = f.read()
        return out
    except (OSError, zipfile.BadZipFile, tarfile.TarError, zstandard.ZstdError, ValueError):
        return None


def meta_record(item: CondaItem, where: InPlace, prefix: str) -> tuple[str, bytes]:
    """(file name, bytes) of the package's conda-meta record, as staging through rattler and
    normalize_meta writes it; kept beside the extracted copy, per repodata record (making it
    is ~10 ms of JSON for a package of a thousand files, on every bake)."""
    from imagebuilder.atomic import write_atomic

    pkgdir = where.root
    rec = json.dumps([item.record, prefix], sort_keys=True).encode()
    kept = pkgdir.parent / f"{pkgdir.name}.meta" / f"{hashlib.sha256(rec).hexdigest()}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        d = json.loads(kept.read_bytes())
        return d["name"], d["data"].encode()
    name, data = _make_meta(item, where)
    with contextlib.suppress(OSError):  # a read-only cache only costs the next bake the work
        kept.parent.mkdir(exist_ok=True)
        write_atomic(kept, json.dumps({"name": name, "data": data.decode()}).encode())
    return name, data


def _make_meta(item: CondaItem, where: InPlace) -> tuple[str, bytes]:
    from imagebuilder.install.conda import LOCAL_FIELDS

    pkgdir = where.root
    entries = []
    for p in sorted(_paths(pkgdir), key=lambda p: p["_path"].split("/")):
        e = {k: v for k, v in p.items() if k in ("_path", "path_type", "sha256", "size_in_bytes")}
        if p.get("prefix_placeholder"):
            sha, size = where.rewritten[p["_path"]]
            e.update(
                prefix_placeholder=p["prefix_placeholder"],
                file_mode=p["file_mode"],
                sha256_in_prefix=sha,
                size_in_bytes=size,
            )
        elif p["path_type"] == "softlink":
            target = os.readlink(pkgdir / p["_path"]).encode()
            e["sha256_in_prefix"] = hashlib.sha256(target).hexdigest()
            e.setdefault("size_in_bytes", len(target))
        entries.append(e)
    d = dict(item.record)
    for k in (*LOCAL_FIELDS, "requested_spec", "requested_specs"):
        d.pop(k, None)
    d.update(
        files=[e["_path"] for e in entries],
        paths_data={"paths_version": 1, "paths": entries},
        requested_specs=[],
    )
    # the channel's URL, as normalize_meta puts back (the record has it: no local path here)
    name = f"{d['name']}-{d['version']}-{d['build']}.json"
    return name, (json.dumps(d, sort_keys=True, separators=(",", ":")) + "\n").encode()
