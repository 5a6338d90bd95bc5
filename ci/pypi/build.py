#!/usr/bin/env python3
"""Build (or reuse) the local PyPI index folder of the test rig.

    python ci/pypi/build.py [--out DIR] [--rebuild]

DIR gets ``files/`` (real wheels from PyPI, pinned; locally built test projects) and
``index.json`` (sha256, size, requires-python and upload time of every file; real PyPI upload
times for downloaded files). Serve it with ``ci/pypi/serve.py --root DIR``. Downloads are cached
in ``ci/cache/wheels/``; without ``--out`` the index is ``ci/cache/pypi-<key>/`` (treat it as
read-only). An up-to-date DIR is left as is. The index path is the last line on stdout.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import fetch  # noqa: E402
import index  # noqa: E402

MARKER = ".imgb-pypi-index"

# Real distributions from PyPI (project, filename). Old, pinned releases: a stable set.
REAL = [
    ("requests", "requests-2.31.0-py3-none-any.whl"),
    ("urllib3", "urllib3-2.0.7-py3-none-any.whl"),
    ("idna", "idna-3.6-py3-none-any.whl"),
    ("certifi", "certifi-2023.11.17-py3-none-any.whl"),
    ("charset-normalizer", "charset_normalizer-3.3.2-py3-none-any.whl"),
    (
        "charset-normalizer",
        "charset_normalizer-3.3.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    ),
    (
        "charset-normalizer",
        "charset_normalizer-3.3.2-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    ),
    ("charset-normalizer", "charset_normalizer-3.3.2-cp311-cp311-macosx_11_0_arm64.whl"),
    ("six", "six-1.16.0-py2.py3-none-any.whl"),
    ("six", "six-1.16.0.tar.gz"),
    ("attrs", "attrs-23.1.0-py3-none-any.whl"),
    ("packaging", "packaging-23.2-py3-none-any.whl"),
    ("setuptools", "setuptools-69.0.3-py3-none-any.whl"),
    ("wheel", "wheel-0.42.0-py3-none-any.whl"),
]

HELLO_DATES = {"1.0": "2024-01-01", "1.1": "2024-06-01", "2.0": "2025-01-01"}
LOCAL_DATE = "2024-02-01"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def hello_modules(version: str) -> dict[str, str]:
    return {
        "imgb_hello/__init__.py": (
            f'"""imgb-hello {version}: a tiny project of the imgbuild test index."""\n\n'
            f'__version__ = "{version}"\n\n\n'
            "def main():\n"
            '    print(f"imgb-hello {__version__}")\n'
        ),
        "imgb_hello/__main__.py": "from imgb_hello import main\n\nmain()\n",
    }


def build_local(root: Path) -> None:
    for version, date in HELLO_DATES.items():
        index.make_wheel(root, "imgb-hello", version, hello_modules(version),
                         entry_points={"imgb-hello": "imgb_hello:main"}, upload=date)  # fmt: skip
    index.make_wheel(
        root, "imgb-uses-six", "1.0",
        {"imgb_uses_six/__init__.py": '__version__ = "1.0"\n\nimport six\n\nSIX = six.__version__\n'},
        requires=["six"], upload=LOCAL_DATE,
    )  # fmt: skip
    index.make_wheel(
        root, "imgb-conflict", "1.0",
        {"imgb_conflict/__init__.py": '__version__ = "1.0"\n'},
        requires=["six<1.0"], upload=LOCAL_DATE,
    )  # fmt: skip
    index.make_sdist(
        root, "imgb-sdist", "0.1",
        {"imgb_sdist/__init__.py": '__version__ = "0.1"\n\n\ndef hello():\n    return "imgb-sdist 0.1"\n'},
        upload=LOCAL_DATE,
    )  # fmt: skip


def build_into(root: Path) -> None:
    got = fetch.fetch_many(REAL)
    for (_project, _fn), (path, meta) in zip(REAL, got, strict=True):
        index.add_file(
            root, path, meta["upload-time"], meta["requires-python"], sha256=meta["sha256"]
        )
    build_local(root)
    n = len(index.load(root)["files"])
    log(f"pypi index: {n} distributions")


def source_key() -> str:
    h = hashlib.sha256(index.FORMAT.encode())
    for p in sorted(HERE.glob("*.py")):
        if p.name != "serve.py":
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="index root to create (default: ci/cache/pypi-<key>)")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    key = source_key()
    out = (args.out or ROOT / "ci" / "cache" / f"pypi-{key}").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = out / MARKER
        if not args.rebuild and marker.is_file() and marker.read_text().strip() == key:
            log(f"pypi index: {out} is up to date")
        else:
            tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                build_into(tmp)
                (tmp / MARKER).write_text(key + "\n")
                if out.exists():
                    trash = out.with_name(f".trash-{out.name}-{os.getpid()}")
                    os.rename(out, trash)
                    os.rename(tmp, out)
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    os.rename(tmp, out)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            log(f"pypi index: built {out} in {time.monotonic() - t0:.1f}s")
    print(out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
