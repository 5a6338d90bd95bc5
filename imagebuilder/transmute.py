"""Transmute a conda `.tar.bz2` into the `.conda` format (same content, zstd, faster to read).

Deterministic for a given input: members keep their order and metadata, the inner tars are
zstd level 10, zip entries are stored with a fixed date. The result is a different file with
its own sha256; cache.py records it as `Package.alt` beside the original identity.
"""

from __future__ import annotations

import bz2
import json
import tarfile
import zipfile
from pathlib import Path

LEVEL = 10
_DATE = (1980, 1, 1, 0, 0, 0)


def to_conda(src: Path, out_dir: Path, filename: str | None = None) -> Path:
    """Write `<stem>.conda` into out_dir; `filename` is the package's .tar.bz2 name when src
    is stored under another name."""
    import zstandard

    src = Path(src)
    stem = (filename or src.name)[: -len(".tar.bz2")]
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = {k: out_dir / f"{k}-{stem}.tar.zst" for k in ("pkg", "info")}
    # One compressor per stream: a ZstdCompressor cannot interleave two frames.
    cp, ci = zstandard.ZstdCompressor(level=LEVEL), zstandard.ZstdCompressor(level=LEVEL)
    with (
        bz2.open(src, "rb") as raw,
        tarfile.open(fileobj=raw, mode="r|") as tin,
        open(parts["pkg"], "wb") as fp,
        open(parts["info"], "wb") as fi,
        cp.stream_writer(fp, closefd=False) as zp,
        ci.stream_writer(fi, closefd=False) as zi,
        tarfile.open(fileobj=zp, mode="w|", format=tarfile.PAX_FORMAT) as tp,
        tarfile.open(fileobj=zi, mode="w|", format=tarfile.PAX_FORMAT) as ti,
    ):
        for m in tin:
            dst = ti if m.name.lstrip("./").startswith("info/") else tp
            dst.addfile(m, tin.extractfile(m) if m.isfile() else None)
    out = out_dir / f"{stem}.conda"
    tmp = out.with_suffix(".conda.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        meta = zipfile.ZipInfo("metadata.json", _DATE)
        z.writestr(meta, json.dumps({"conda_pkg_format_version": 2}))
        for k in ("pkg", "info"):
            zi_ = zipfile.ZipInfo(parts[k].name, _DATE)
            with open(parts[k], "rb") as f, z.open(zi_, "w") as w:
                for chunk in iter(lambda: f.read(1 << 20), b""):  # noqa: B023
                    w.write(chunk)
            parts[k].unlink()
    tmp.replace(out)
    return out
