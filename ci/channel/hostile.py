#!/usr/bin/env python3
"""A separate conda channel of hostile packages (issue 10), never mixed into the rig channel.

    python ci/channel/hostile.py --out DIR --sentinel SENTINEL_DIR

writes DIR/ (noarch packages, indexed with py-rattler) and prints one JSON document on stdout:
`{"channel": DIR, "cases": [{"id", "package", "filename", "fmt", "expect", "sha256",
"record"}...]}`. Every package is a real `.conda` or `.tar.bz2` whose bad part aims at
SENTINEL_DIR (absolute paths, `../` chains that climb to `/` and come down into it, symlinks to
it, hardlinks to a victim file in it), so a test can snapshot that folder around any command
and prove nothing was written outside the prefix. `expect` is a phrase the refusal must
contain. Run it in a subprocess: indexing imports py-rattler (LOCAL-SERVICES.md: exit crash).

Cases (package `evil-<case>`, version 1.0, noarch generic, no dependencies):
dotdot, dotdot-dir (a `../` entry inside a folder: py-rattler 0.28 creates that folder),
absolute, symlink-out (relative link climbing out, then a file written through it),
symlink-abs (absolute link, then a file through it), symlink-chain (links that escape only
when followed), hardlink-abs (to a victim file in SENTINEL_DIR), hardlink-dotdot,
hardlink-missing (to a member that does not exist), device, fifo, setuid, setgid, each as
.tar.bz2 and .conda; paths-unlisted, paths-ghost, paths-size, paths-sha (a deep check),
bomb (.conda: a 300 MiB member in a few hundred KB), sha-mismatch (the archive served is not
the one repodata hashed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import builder  # noqa: E402
from builder import File, Link, Raw  # noqa: E402

SUBDIR = "noarch"
VERSION = "1.0"
BUILD = "0"
CLIMB = "../" * 40  # from any folder up to "/" (extra ".." at "/" stay at "/")
BOMB_BYTES = 300 << 20  # past archive_check's 256 MiB floor, 1000x the archive


def _climb(sentinel: Path, rest: str) -> str:
    return CLIMB + str(sentinel).lstrip("/") + "/" + rest


def conda_cases(sentinel: Path) -> dict[str, tuple[dict, str]]:
    """case -> (files for builder.make_package, phrase of the refusal)."""
    s = str(sentinel)
    victim = f"{s}/victim.txt"
    ok = {"share/evil/ok.txt": b"fine\n"}
    return {
        "dotdot": ({**ok, _climb(sentinel, "dotdot.txt"): b"pwned\n"}, "unsafe path"),
        "dotdot-dir": (
            {**ok, "share/" + _climb(sentinel, "escaped-dir/file.txt"): b"pwned\n"},
            "unsafe path",
        ),
        "absolute": ({**ok, f"{s}/absolute.txt": b"pwned\n"}, "unsafe path"),
        "symlink-out": (
            {"share/link": Link(_climb(sentinel, "")[:-1]), "share/link/through.txt": b"pwned\n"},
            "through a symlink",
        ),
        "symlink-abs": (
            {"share/link": Link(s), "share/link/through-abs.txt": b"pwned\n"},
            "through a symlink",
        ),
        "symlink-chain": (
            {
                "share/a": Link("b/.."),
                "share/b": Link("c/.."),
                "share/c": Link(".."),
                "share/d": Link("a/../a/.."),
            },
            "leaves the package",
        ),
        "hardlink-abs": (
            {**ok, "share/h": Raw(tarfile.LNKTYPE, linkname=victim)},
            "unsafe path",
        ),
        "hardlink-dotdot": (
            {**ok, "share/h": Raw(tarfile.LNKTYPE, linkname=_climb(sentinel, "victim.txt"))},
            "unsafe path",
        ),
        "hardlink-missing": (
            {**ok, "share/h": Raw(tarfile.LNKTYPE, linkname="share/not-there")},
            "escapes",
        ),
        "device": ({**ok, "share/null": Raw(tarfile.CHRTYPE, devmajor=1, devminor=3)}, "device"),
        "fifo": ({**ok, "share/fifo": Raw(tarfile.FIFOTYPE)}, "device"),
        "setuid": ({"bin/su": File(b"#!/bin/sh\n", mode=0o4755)}, "setuid"),
        "setgid": ({"bin/sg": File(b"#!/bin/sh\n", mode=0o2755)}, "setuid/setgid"),
    }


# paths.json that does not match the archive: (files, paths.json edit, phrase)
def _paths_unlisted(paths: list[dict]) -> list[dict]:
    return [p for p in paths if p["_path"] != "share/evil/extra.txt"]


def _paths_ghost(paths: list[dict]) -> list[dict]:
    return [*paths, {"_path": "share/evil/ghost.txt", "path_type": "hardlink", "sha256": "0" * 64}]


def _paths_size(paths: list[dict]) -> list[dict]:
    return [{**p, "size_in_bytes": p["size_in_bytes"] + 1} for p in paths]


def _paths_sha(paths: list[dict]) -> list[dict]:
    return [{**p, "sha256": hashlib.sha256(b"something else").hexdigest()} for p in paths]


PATHS_CASES = {
    "paths-unlisted": (_paths_unlisted, "does not list"),
    "paths-ghost": (_paths_ghost, "lacks"),
    "paths-size": (_paths_size, "size of"),
    "paths-sha": (_paths_sha, "sha256 of"),
}


def _index(name: str) -> dict:
    return {
        "name": name,
        "version": VERSION,
        "build": BUILD,
        "build_number": 0,
        "depends": [],
        "noarch": "generic",
        "subdir": SUBDIR,
        "timestamp": builder.DEFAULT_TIMESTAMP_MS,
        "license": "MIT",
    }


def _json(obj) -> File:
    return File((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def paths_package(channel: Path, case: str, fmt: str) -> Path:
    """A package whose info/paths.json disagrees with its files (edited by PATHS_CASES)."""
    edit, _ = PATHS_CASES[case]
    files = {"share/evil/ok.txt": b"fine\n", "share/evil/extra.txt": b"extra\n"}
    paths = [
        {
            "_path": p,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(d).hexdigest(),
            "size_in_bytes": len(d),
        }
        for p, d in sorted(files.items())
    ]
    name = f"evil-{case}"
    info = {
        "info/index.json": _json(_index(name)),
        "info/paths.json": _json({"paths": edit(paths), "paths_version": 1}),
        "info/files": File("".join(p + "\n" for p in sorted(files)).encode()),
    }
    out = channel / SUBDIR / f"{name}-{VERSION}-{BUILD}{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    pkg = {p: File(d) for p, d in files.items()}
    builder.write_archive(out, info, pkg, mtime=builder.DEFAULT_TIMESTAMP_MS // 1000)
    return out


def bomb_package(channel: Path) -> Path:
    """A .conda whose one file unpacks to 300 MiB of zeros (streamed: never in memory)."""
    import zstandard

    name = "evil-bomb"
    stem = f"{name}-{VERSION}-{BUILD}"
    zeros = bytes(1 << 20)
    h = hashlib.sha256()
    for _ in range(BOMB_BYTES >> 20):
        h.update(zeros)
    paths = [
        {
            "_path": "share/zeros",
            "path_type": "hardlink",
            "sha256": h.hexdigest(),
            "size_in_bytes": BOMB_BYTES,
        }
    ]
    info = {
        "info/index.json": _json(_index(name)),
        "info/paths.json": _json({"paths": paths, "paths_version": 1}),
        "info/files": File(b"share/zeros\n"),
    }
    out = channel / SUBDIR / f"{stem}.conda"
    cctx = zstandard.ZstdCompressor(level=3)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
        with z.open(f"pkg-{stem}.tar.zst", "w", force_zip64=True) as raw:
            w = cctx.stream_writer(raw, closefd=False)
            with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as t:
                ti = tarfile.TarInfo("share/zeros")
                ti.size, ti.mtime = BOMB_BYTES, builder.DEFAULT_TIMESTAMP_MS // 1000
                t.addfile(ti, _Zeros(BOMB_BYTES))
            w.flush(zstandard.FLUSH_FRAME)
        members = sorted(info.items())
        z.writestr(
            f"info-{stem}.tar.zst",
            zstandard.ZstdCompressor(level=3).compress(builder._tar_bytes(members, 0)),
        )
    return out


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def tamper(path: Path) -> None:
    """Change one byte in the middle of an archive (same size, other sha256)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, path)


def build(out: Path, sentinel: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, Path, str]] = []  # (case id, archive, phrase)
    for case, (files, phrase) in conda_cases(sentinel).items():
        for fmt in (".tar.bz2", ".conda"):
            # the same package name twice would be one record: formats get their own names
            name = f"evil-{case}" + ("-c" if fmt == ".conda" else "")
            r = builder.make_package(
                out, SUBDIR, name, VERSION, BUILD, files, fmt=fmt, noarch="generic",
                allow_unsafe_paths=True,
            )  # fmt: skip
            made.append((f"{case}{fmt}", r.path, phrase))
    for case, (_, phrase) in PATHS_CASES.items():
        made.append((f"{case}.tar.bz2", paths_package(out, case, ".tar.bz2"), phrase))
    made.append(("bomb.conda", bomb_package(out), "decompression bomb"))
    clean = builder.make_package(
        out, SUBDIR, "evil-sha-mismatch", VERSION, BUILD, {"share/evil/ok.txt": b"fine\n"},
        fmt=".conda", noarch="generic",
    )  # fmt: skip
    made.append(("sha-mismatch.conda", clean.path, "sha256 mismatch"))
    builder.reindex(out)
    tamper(clean.path)  # after indexing: repodata keeps the sha256 of the original bytes
    repodata = json.loads((out / SUBDIR / "repodata.json").read_text())
    records = {**repodata.get("packages", {}), **repodata.get("packages.conda", {})}
    cases = []
    for cid, path, phrase in made:
        rec = records.get(path.name)
        if rec is None:
            raise SystemExit(f"rattler did not index {path.name}")
        cases.append(
            {
                "id": f"conda:{cid}",
                "kind": "conda",
                "package": rec["name"],
                "filename": path.name,
                "fmt": ".conda" if path.name.endswith(".conda") else ".tar.bz2",
                "expect": phrase,
                "sha256": rec["sha256"],
                "served_sha256": builder.sha256_file(path),
                "record": rec,
                "path": str(path),
            }
        )
    return {"channel": str(out), "subdir": SUBDIR, "cases": cases}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sentinel", required=True, type=Path)
    args = ap.parse_args()
    doc = build(args.out.resolve(), args.sentinel.resolve())
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()
    os._exit(0)  # py-rattler (reindex) may crash at interpreter exit


if __name__ == "__main__":
    main()
