#!/usr/bin/env python3
"""A separate PyPI index of hostile wheels (issue 10), never mixed into the rig index.

    python ci/pypi/hostile.py --out DIR --sentinel SENTINEL_DIR

writes an index root DIR (files/ + index.json, served by ci/pypi/serve.py) and prints one JSON
document: `{"index": DIR, "cases": [{"id", "project", "filename", "expect", "sha256",
"served_sha256", "path"}...]}`. Each project `evil-<case>` 1.0 has one `py3-none-any` wheel:

zipslip (`../` chain into SENTINEL_DIR), absolute (`/SENTINEL_DIR/...`), data-escape
(`<name>.data/data/../../..`), symlink (a zip member with S_IFLNK pointing at SENTINEL_DIR),
setuid (mode bits 04755), record-hash (RECORD's hash of a module lies), record-size,
record-unlisted (a file RECORD does not name), record-ghost (RECORD names a missing file),
bomb (a 300 MiB member deflated to a few hundred KB), sha-mismatch (the served file is not
the one the index hashed). Only the standard library and ci/pypi/index.py are used.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import os
import stat
import sys
import zipfile
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "imgb_pypi_index", Path(__file__).with_name("index.py")
)
index = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("imgb_pypi_index", index)
_spec.loader.exec_module(index)

VERSION = "1.0"
CLIMB = "../" * 40
BOMB_BYTES = 300 << 20
DATE = (2024, 1, 1, 0, 0, 0)


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


class Member:
    def __init__(self, name: str, data: bytes = b"", mode: int = 0o644, listed: bool = True):
        self.name, self.data, self.mode, self.listed = name, data, mode, listed


def write_wheel(
    root: Path, project: str, members: list[Member], record_edit=None, bomb: str | None = None
) -> Path:
    """A wheel with the given members (plus METADATA, WHEEL, RECORD). `record_edit(rows)`
    may change the RECORD rows; `bomb` names a member of BOMB_BYTES zeros (streamed)."""
    dist = project.replace("-", "_")
    di = f"{dist}-{VERSION}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {project}\nVersion: {VERSION}\n\n".encode()
    wheel = b"Wheel-Version: 1.0\nGenerator: imgbuild-hostile\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members = [*members, Member(f"{di}/METADATA", meta), Member(f"{di}/WHEEL", wheel)]
    rows = [[m.name, _hash(m.data), str(len(m.data))] for m in members if m.listed]
    if bomb:
        h = hashlib.sha256()
        zeros = bytes(1 << 20)
        for _ in range(BOMB_BYTES >> 20):
            h.update(zeros)
        b64 = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
        rows.append([bomb, f"sha256={b64}", str(BOMB_BYTES)])
    if record_edit:
        rows = record_edit(rows)
    record = "".join(",".join(r) + "\n" for r in rows) + f"{di}/RECORD,,\n"
    out = root / "build" / f"{dist}-{VERSION}-py3-none-any.whl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as z:
        for m in [*members, Member(f"{di}/RECORD", record.encode())]:
            zi = zipfile.ZipInfo(m.name, date_time=DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3
            zi.external_attr = m.mode << 16
            z.writestr(zi, m.data)
        if bomb:
            zi = zipfile.ZipInfo(bomb, date_time=DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3
            zi.external_attr = 0o644 << 16
            # default level: levels 1-3 (fast deflate) give only 229x on zeros, under the limit
            with z.open(zi, "w", force_zip64=True) as f:
                zeros = bytes(1 << 20)
                for _ in range(BOMB_BYTES >> 20):
                    f.write(zeros)
    return out


def _lie_hash(rows):
    return [[r[0], _hash(b"not this"), r[2]] if r[0].endswith("__init__.py") else r for r in rows]


def _lie_size(rows):
    return [[r[0], r[1], str(int(r[2]) + 1)] if r[0].endswith("__init__.py") else r for r in rows]


def _ghost(rows):
    return [*rows, ["evil_record_ghost/ghost.py", _hash(b""), "0"]]


def cases(sentinel: Path) -> dict[str, tuple[list[Member], dict, str]]:
    """case -> (extra members, write_wheel kwargs, phrase of the refusal)."""
    s = str(sentinel).lstrip("/")
    lnk = stat.S_IFLNK | 0o777
    return {
        "zipslip": ([Member(f"{CLIMB}{s}/zipslip.py", b"pwned = 1\n")], {}, "unsafe path"),
        "absolute": ([Member(f"/{s}/absolute.py", b"pwned = 1\n")], {}, "unsafe path"),
        "data-escape": (
            [Member(f"evil_data_escape-{VERSION}.data/data/{CLIMB}{s}/data.txt", b"pwned\n")],
            {},
            "unsafe path",
        ),
        "symlink": ([Member("evil_symlink/link", f"/{s}".encode(), mode=lnk)], {}, "symlink"),
        "setuid": ([Member("evil_setuid/run", b"#!/bin/sh\n", mode=0o104755)], {}, "setuid"),
        "record-hash": ([], {"record_edit": _lie_hash}, "RECORD hash"),
        "record-size": ([], {"record_edit": _lie_size}, "RECORD size"),
        "record-unlisted": (
            [Member("evil_record_unlisted/hidden.py", b"x = 1\n", listed=False)],
            {},
            "RECORD does not list",
        ),
        "record-ghost": ([], {"record_edit": _ghost}, "lacks"),
        "bomb": ([], {"bomb": "evil_bomb/zeros.bin"}, "decompression bomb"),
        "sha-mismatch": ([], {}, "sha256 mismatch"),
    }


def build(out: Path, sentinel: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for case, (extra, kw, phrase) in cases(sentinel).items():
        project = f"evil-{case}"
        pkg = project.replace("-", "_")
        members = [Member(f"{pkg}/__init__.py", b"evil = True\n"), *extra]
        wheel = write_wheel(out, project, members, **kw)
        entry = index.add_file(out, wheel, "2024-01-01", requires_python=">=3.8")
        served = out / "files" / wheel.name
        if case == "sha-mismatch":  # index.json keeps the hash of the bytes it registered
            data = bytearray(served.read_bytes())
            data[len(data) // 2] ^= 0xFF
            tmp = served.with_name(f".{served.name}.tmp")
            tmp.write_bytes(bytes(data))
            os.replace(tmp, served)
        made.append(
            {
                "id": f"pypi:{case}.whl",
                "kind": "pypi",
                "package": project,
                "filename": wheel.name,
                "fmt": ".whl",
                "expect": phrase,
                "sha256": entry["sha256"],
                "served_sha256": hashlib.sha256(served.read_bytes()).hexdigest(),
                "size": entry["size"],
                "path": str(served),
            }
        )
    return {"index": str(out), "cases": made}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sentinel", required=True, type=Path)
    args = ap.parse_args()
    print(json.dumps(build(args.out.resolve(), args.sentinel.resolve())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
