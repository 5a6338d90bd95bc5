"""The test channel's inventory: what ``build.py`` puts into the channel.

Names, versions, builds and subdirs are an interface other tests use; keep them stable.
See ``ci/channel/README.md`` for the table.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import builder as b

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Dates (UTC) written to index.json "timestamp" (and, after reindex, "indexed_timestamp").
BASE_DATE = "2023-12-01"  # python, python_abi, libs, tzdata, ca-certificates, imgb-*
TINYFOO_DATES = {"1.0": "2024-01-01", "1.1": "2024-06-01", "2.0": "2025-01-01"}
TEST_PKG_DATE = "2024-02-01"  # tinybar, conflict-a/b, needs-newglibc

PY_VERSION = "3.11.7"
PY_BUILD = "h_imgb_0"
ABI_BUILD = "0_cp311"
LIB_BUILD = "h_imgb_0"
ARCH_SUBDIRS = ("linux-64", "linux-aarch64", "osx-arm64")
GLIBC_DEP = "__glibc >=2.17,<3.0.a0"
OSX_DEP = "__osx >=11.0"

# A conda-build style long placeholder (255 chars) for the prefix compiled into libimgb, so
# binary replacement works for any install prefix up to 255 characters (binary replacement
# cannot grow a string). Text files use the classic short placeholder b.PLACEHOLDER.
LONG_PLACEHOLDER = (
    "/home/conda/feedstock_root/build_artifacts/libimgb_1701388800000/_h_env_placehold"
    + "_placehold" * 30
)[:255]

# (name, version, fmt, Debian sonames, extra depends) -- built from this machine's libraries.
LIBS = [
    ("openssl", "3.0.19", ".conda", ["libssl.so.3", "libcrypto.so.3"], ["ca-certificates"]),
    ("libffi", "3.4.4", ".conda", ["libffi.so.8"], []),
    ("libsqlite", "3.40.1", ".conda", ["libsqlite3.so.0"], []),
    ("xz", "5.4.1", ".conda", ["liblzma.so.5"], []),
    ("bzip2", "1.0.8", ".tar.bz2", ["libbz2.so.1.0"], []),
    ("zlib", "1.2.13", ".tar.bz2", ["libz.so.1"], []),
    (
        "ncurses",
        "6.4",
        ".conda",
        ["libncursesw.so.6", "libtinfo.so.6", "libpanelw.so.6", "libformw.so.6", "libmenuw.so.6"],
        [],
    ),
    (
        "readline",
        "8.2",
        ".tar.bz2",
        ["libreadline.so.8", "libhistory.so.8"],
        ["ncurses >=6.4,<7.0a0"],
    ),
    ("libuuid", "2.38.1", ".conda", ["libuuid.so.1"], []),
    ("libxcrypt", "4.4.33", ".conda", ["libcrypt.so.1"], []),
]
PY_LIB_DEPENDS = [
    "bzip2 >=1.0.8,<2.0a0",
    "libffi >=3.4,<4.0a0",
    "libsqlite >=3.40",
    "libuuid >=2.38",
    "libxcrypt >=4.4",
    "ncurses >=6.4,<7.0a0",
    "openssl >=3.0,<4.0a0",
    "python_abi 3.11.* *_cp311",
    "readline >=8.2,<9.0a0",
    "tzdata",
    "xz >=5.4,<6.0a0",
    "zlib >=1.2.13,<2.0a0",
]

# Real PyPI wheels converted to noarch python conda packages: (project, filename, fmt, depends)
NOARCH_WHEELS = [
    ("six", "six-1.16.0-py2.py3-none-any.whl", ".tar.bz2", ["python"]),
    ("idna", "idna-3.6-py3-none-any.whl", ".conda", ["python >=3.5"]),
    ("packaging", "packaging-23.2-py3-none-any.whl", ".conda", ["python >=3.7"]),
    ("pip", "pip-24.0-py3-none-any.whl", ".conda", ["python >=3.7"]),
]

DROP_STDLIB_DIRS = {
    "test",
    "tests",
    "idle_test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "__pycache__",
}
DROP_DYNLOAD_PREFIXES = (
    "_tkinter",
    "nis.",
    "_test",
    "xxlimited",
    "_xxtestfuzz",
    "_ctypes_test",
    "xxsubtype",
)
PY_BIN = ["python3.11", "python3.11-config", "pydoc3.11"]
PY_BIN_LINKS = {
    "python": "python3.11",
    "python3": "python3.11",
    "python-config": "python3.11-config",
    "python3-config": "python3.11-config",
    "pydoc": "pydoc3.11",
    "pydoc3": "pydoc3.11",
}

LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"]

Log = Callable[[str], None]


def _load_fetch():
    spec = importlib.util.spec_from_file_location(
        "imgb_ci_fetch", ROOT / "ci" / "pypi" / "fetch.py"
    )
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def source_python_prefix() -> Path:
    """The machine's CPython 3.11.7 installation (IMGB_PYTHON_PREFIX overrides)."""
    env = os.environ.get("IMGB_PYTHON_PREFIX")
    if env:
        return Path(env)
    if sys.version_info[:3] == (3, 11, 7):
        return Path(sys.base_prefix)
    return Path("/root/.pyenv/versions/3.11.7")


def _run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, **kw)


def _is_elf(path: Path) -> bool:
    """An ELF executable or shared object (not a relocatable .o)."""
    with open(path, "rb") as f:
        head = f.read(18)
    return head[:4] == b"\x7fELF" and int.from_bytes(head[16:18], "little") in (2, 3)


# --------------------------------------------------------------------------- linux-64 python


def stage_python(src: Path, stage: Path) -> None:
    """Copy the interpreter's prefix into ``stage`` the way a conda python package holds it."""
    (stage / "bin").mkdir(parents=True)
    for name in PY_BIN:
        shutil.copy2(src / "bin" / name, stage / "bin" / name)
    for name, target in PY_BIN_LINKS.items():
        os.symlink(target, stage / "bin" / name)
    shutil.copytree(src / "include", stage / "include", symlinks=True)
    (stage / "lib").mkdir()
    for name in ("libpython3.11.so.1.0", "libpython3.so"):
        shutil.copy2(src / "lib" / name, stage / "lib" / name)
    os.symlink("libpython3.11.so.1.0", stage / "lib" / "libpython3.11.so")
    shutil.copytree(src / "lib" / "pkgconfig", stage / "lib" / "pkgconfig", symlinks=True)

    def ignore(dirpath: str, names: list[str]) -> list[str]:
        rel = Path(dirpath).relative_to(src / "lib" / "python3.11").as_posix()
        out = [n for n in names if n in DROP_STDLIB_DIRS or n.endswith((".a", ".pyc"))]
        if rel == "site-packages":
            out += [n for n in names if n != "README.txt"]
        if rel == "lib-dynload":
            out += [n for n in names if n.startswith(DROP_DYNLOAD_PREFIXES)]
        return out

    shutil.copytree(
        src / "lib" / "python3.11", stage / "lib" / "python3.11", symlinks=True, ignore=ignore
    )


def fix_python_stage(src: Path, stage: Path) -> None:
    """Strip debug info, set relative RUNPATHs, put the placeholder into text files."""
    old = str(src).encode()
    dynload = stage / "lib" / "python3.11" / "lib-dynload"
    elves: dict[str, list[Path]] = {}
    for p in sorted(stage.rglob("*")):
        if p.is_symlink() or not p.is_file():
            continue
        if _is_elf(p):
            if p.parent == dynload:
                rpath = "$ORIGIN/../.."
            elif p.parent == stage / "lib":
                rpath = "$ORIGIN"
            else:
                rpath = "$ORIGIN/../lib"
            elves.setdefault(rpath, []).append(p)
            continue
        data = p.read_bytes()
        if old in data and b"\0" not in data:
            p.write_bytes(data.replace(old, b.PLACEHOLDER_B))
    all_elves = [p for ps in elves.values() for p in ps]
    _run(["strip", "--strip-debug", *map(str, all_elves)])
    for rpath, paths in elves.items():
        for p in paths:
            _run(["patchelf", "--set-rpath", rpath, str(p)])


def build_python_linux64(channel: Path, log: Log) -> None:
    src = source_python_prefix()
    with tempfile.TemporaryDirectory(prefix="imgb-py-") as tmp:
        stage = Path(tmp) / "stage"
        stage_python(src, stage)
        fix_python_stage(src, stage)
        files = b.files_from_dir(stage)
    res = b.make_package(
        channel,
        "linux-64",
        "python",
        PY_VERSION,
        PY_BUILD,
        files,
        depends=[*PY_LIB_DEPENDS, GLIBC_DEP],
        fmt=".conda",
        timestamp=BASE_DATE,
        license="Python-2.0",
        zstd_level=6,
        about={"summary": f"CPython {PY_VERSION} made from {src} (imgbuild test channel)"},
    )
    log(f"python {PY_VERSION}: {res.path.stat().st_size / 1e6:.1f} MB")


def find_lib(soname: str) -> Path:
    for d in LIB_DIRS:
        p = Path(d) / soname
        if p.exists():
            return p
    raise FileNotFoundError(
        f"{soname} not found in {LIB_DIRS}: install the Debian package that has it"
    )


def build_libs_linux64(channel: Path, log: Log) -> None:
    with tempfile.TemporaryDirectory(prefix="imgb-libs-") as tmp:
        for name, version, fmt, sonames, deps in LIBS:
            stage = Path(tmp) / name
            (stage / "lib").mkdir(parents=True)
            files: dict[str, b.FileLike] = {}
            for soname in sonames:
                src = find_lib(soname)
                real = src.resolve()
                dst = stage / "lib" / real.name
                shutil.copyfile(real, dst)
                _run(["patchelf", "--set-rpath", "$ORIGIN", str(dst)])
                files[f"lib/{real.name}"] = b.File(dst.read_bytes(), 0o755)
                if real.name != soname:
                    files[f"lib/{soname}"] = b.Link(real.name)
                dev = soname.split(".so", 1)[0] + ".so"
                files[f"lib/{dev}"] = b.Link(soname)
            b.make_package(
                channel,
                "linux-64",
                name,
                version,
                LIB_BUILD,
                files,
                depends=[*deps, GLIBC_DEP],
                fmt=fmt,
                timestamp=BASE_DATE,
                about={"summary": f"{name} {version} from Debian's shared libraries"},
            )
    log(f"{len(LIBS)} lib packages")


def build_python_abi(channel: Path) -> None:
    for subdir in ARCH_SUBDIRS:
        b.make_package(
            channel,
            subdir,
            "python_abi",
            "3.11",
            ABI_BUILD,
            {},
            fmt=".tar.bz2",
            timestamp=BASE_DATE,
            license="BSD-3-Clause",
        )


# --------------------------------------------------------------------------- compiled


def build_imgb_linux64(channel: Path, log: Log) -> None:
    cc = os.environ.get("CC", "gcc")
    with tempfile.TemporaryDirectory(prefix="imgb-cc-") as tmp:
        t = Path(tmp)
        (t / "lib").mkdir()
        (t / "bin").mkdir()
        _run(
            [
                cc,
                "-O2",
                "-fPIC",
                "-shared",
                "-Wl,-soname,libimgb.so.1",
                "-Wl,--build-id=none",
                f'-DIMGB_PREFIX="{LONG_PLACEHOLDER}"',
                "-o",
                str(t / "lib/libimgb.so.1"),
                str(HERE / "src" / "libimgb.c"),
            ],
            cwd=t,
        )
        os.symlink("libimgb.so.1", t / "lib/libimgb.so")
        _run(
            [
                cc,
                "-O2",
                "-Wl,--build-id=none",
                "-o",
                str(t / "bin/imgb-cli"),
                str(HERE / "src" / "imgb_cli.c"),
                f"-L{t / 'lib'}",
                "-limgb",
                "-Wl,-rpath,$ORIGIN/../lib",
            ],
            cwd=t,
        )
        lib_data = (t / "lib/libimgb.so.1").read_bytes()
        cli_data = (t / "bin/imgb-cli").read_bytes()
    assert LONG_PLACEHOLDER.encode() in lib_data
    b.make_package(
        channel,
        "linux-64",
        "libimgb",
        "1.0",
        LIB_BUILD,
        {
            "lib/libimgb.so.1": b.File(lib_data, 0o755, "binary", LONG_PLACEHOLDER),
            "lib/libimgb.so": b.Link("libimgb.so.1"),
        },
        depends=[GLIBC_DEP],
        fmt=".tar.bz2",
        timestamp=BASE_DATE,
    )
    b.make_package(
        channel,
        "linux-64",
        "imgb-cli",
        "1.0",
        LIB_BUILD,
        {"bin/imgb-cli": b.File(cli_data, 0o755), "etc/imgb.conf": f"{b.PLACEHOLDER}\n"},
        depends=["libimgb 1.0.*", GLIBC_DEP],
        fmt=".conda",
        timestamp=BASE_DATE,
    )
    log("libimgb, imgb-cli compiled")


# --------------------------------------------------------------------------- cross-arch fakes


def build_fakes(channel: Path, subdir: str) -> None:
    """Small fake archives with the same names/versions/deps as linux-64 for other subdirs."""
    sysdep = OSX_DEP if subdir.startswith("osx") else GLIBC_DEP

    def note(name: str, version: str) -> dict[str, b.FileLike]:
        return {
            f"share/imgb-fake/{name}.txt": f"fake {name} {version} for {subdir} (imgbuild test channel)\n"
        }

    py_files = note("python", PY_VERSION)
    py_files["bin/python3.11"] = b.File(
        (
            f"#!/bin/sh\n# fake CPython {PY_VERSION} for {subdir}, installed in {b.PLACEHOLDER}\n"
            f'echo "fake python {PY_VERSION} for {subdir}"\n'
        ).encode(),
        0o755,
    )
    py_files["bin/python"] = b.Link("python3.11")
    py_files["bin/python3"] = b.Link("python3.11")
    py_files["lib/python3.11/os.py"] = "# fake stdlib landmark\n"
    b.make_package(
        channel,
        subdir,
        "python",
        PY_VERSION,
        PY_BUILD,
        py_files,
        depends=[*PY_LIB_DEPENDS, sysdep],
        fmt=".conda",
        timestamp=BASE_DATE,
        license="Python-2.0",
    )
    for name, version, fmt, sonames, deps in LIBS:
        files = note(name, version)
        ext = ".dylib" if subdir.startswith("osx") else ""
        for soname in sonames:
            files[f"lib/{soname}{ext}"] = b.File(f"FAKE {soname} {subdir}\n".encode(), 0o755)
        b.make_package(
            channel,
            subdir,
            name,
            version,
            LIB_BUILD,
            files,
            depends=[*deps, sysdep],
            fmt=fmt,
            timestamp=BASE_DATE,
        )
    b.make_package(
        channel,
        subdir,
        "libimgb",
        "1.0",
        LIB_BUILD,
        {
            "lib/libimgb.so.1": b.File(
                b"FAKE\0" + LONG_PLACEHOLDER.encode() + b"\0libimgb " + subdir.encode() + b"\0",
                0o755,
                "binary",
                LONG_PLACEHOLDER,
            )
        },
        depends=[sysdep],
        fmt=".tar.bz2",
        timestamp=BASE_DATE,
    )
    b.make_package(
        channel,
        subdir,
        "imgb-cli",
        "1.0",
        LIB_BUILD,
        {
            "bin/imgb-cli": b.File(
                f"#!/bin/sh\necho 'fake imgb-cli for {subdir}'\n".encode(), 0o755
            ),
            "etc/imgb.conf": f"{b.PLACEHOLDER}\n",
        },
        depends=["libimgb 1.0.*", sysdep],
        fmt=".conda",
        timestamp=BASE_DATE,
    )


# --------------------------------------------------------------------------- noarch


def _dist_info(name: str, version: str, requires: list[str] = ()) -> dict[str, b.FileLike]:
    di = f"site-packages/{name.replace('-', '_')}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    return {f"{di}/METADATA": meta, f"{di}/INSTALLER": "conda\n"}


def build_noarch_test_packages(channel: Path) -> None:
    for version, date in TINYFOO_DATES.items():
        files = {
            "site-packages/tinyfoo/__init__.py": (
                f'"""tinyfoo {version}: a tiny package of the imgbuild test channel."""\n\n'
                f'__version__ = "{version}"\n\n\n'
                "def main():\n"
                '    print(f"tinyfoo {__version__}")\n'
            ),
            **_dist_info("tinyfoo", version),
        }
        b.make_package(
            channel,
            "noarch",
            "tinyfoo",
            version,
            "pyh_imgb_0",
            files,
            depends=["python >=3.8"],
            noarch="python",
            entry_points=["tinyfoo = tinyfoo:main"],
            fmt=".tar.bz2" if version == "1.0" else ".conda",
            timestamp=date,
        )

    def simple(name: str, module: str, deps: list[str], fmt: str) -> None:
        files = {
            f"site-packages/{module}/__init__.py": f'__version__ = "1.0"\nNAME = "{name}"\n',
            **_dist_info(name, "1.0", [d for d in deps if not d.startswith("python")]),
        }
        b.make_package(
            channel,
            "noarch",
            name,
            "1.0",
            "pyh_imgb_0",
            files,
            depends=["python >=3.8", *deps],
            noarch="python",
            fmt=fmt,
            timestamp=TEST_PKG_DATE,
        )

    simple("tinybar", "tinybar", ["tinyfoo >=1"], ".tar.bz2")
    simple("conflict-a", "conflict_a", ["tinyfoo <2"], ".conda")
    simple("conflict-b", "conflict_b", ["tinyfoo >=2"], ".tar.bz2")
    b.make_package(
        channel,
        "linux-64",
        "needs-newglibc",
        "1.0",
        "h_imgb_0",
        {"share/needs-newglibc/README": "needs glibc >= 2.99\n"},
        depends=["__glibc >=2.99"],
        fmt=".conda",
        timestamp=TEST_PKG_DATE,
    )


def build_noarch_wheels(channel: Path, log: Log) -> None:
    fetch = _load_fetch()
    got = fetch.fetch_many([(p, f) for p, f, _, _ in NOARCH_WHEELS])
    for (_project, _fn, fmt, deps), (path, meta) in zip(NOARCH_WHEELS, got, strict=True):
        res = b.wheel_to_conda(
            channel,
            path,
            "noarch",
            depends=deps,
            fmt=fmt,
            timestamp=meta["upload-time"].replace("Z", "+00:00"),
        )
        log(f"{res.filename} from {path.name} (uploaded {meta['upload-time']})")


def build_tzdata_and_certs(channel: Path) -> None:
    zdir = Path("/usr/share/zoneinfo")
    files: dict[str, b.FileLike] = {}
    for rel, entry in b.files_from_dir(zdir).items():
        if isinstance(entry, b.Link) and entry.target.startswith("/"):
            target = Path(entry.target)
            if zdir not in target.parents:
                continue
            entry = b.Link(os.path.relpath(target, (zdir / rel).parent))
        files[f"share/zoneinfo/{rel}"] = entry
    b.make_package(
        channel,
        "noarch",
        "tzdata",
        "2025b",
        "h_imgb_0",
        files,
        noarch="generic",
        fmt=".conda",
        timestamp=BASE_DATE,
        license="LicenseRef-Public-Domain",
        about={"summary": "IANA time zone data from Debian's tzdata"},
    )
    mozilla = sorted(Path("/usr/share/ca-certificates/mozilla").glob("*.crt"))
    pem = b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in mozilla)
    b.make_package(
        channel,
        "noarch",
        "ca-certificates",
        "2023.03.11",
        "h_imgb_0",
        {
            "ssl/cacert.pem": pem,
            "ssl/cert.pem": b.Link("cacert.pem"),
            "etc/conda/activate.d/ca-certificates_activate.sh": 'export SSL_CERT_FILE="${CONDA_PREFIX}/ssl/cacert.pem"\n',
            "etc/conda/deactivate.d/ca-certificates_deactivate.sh": "unset SSL_CERT_FILE\n",
        },
        noarch="generic",
        fmt=".tar.bz2",
        timestamp=BASE_DATE,
        license="MPL-2.0",
        about={
            "summary": f"Mozilla CA bundle from Debian's ca-certificates ({len(mozilla)} certificates)"
        },
    )


# --------------------------------------------------------------------------- all


def build_all(channel: Path, log: Log) -> None:
    channel.mkdir(parents=True, exist_ok=True)
    import time

    steps = [
        ("noarch test packages", lambda: build_noarch_test_packages(channel)),
        ("noarch from wheels", lambda: build_noarch_wheels(channel, log)),
        ("tzdata, ca-certificates", lambda: build_tzdata_and_certs(channel)),
        ("python_abi", lambda: build_python_abi(channel)),
        (
            "cross-arch fakes",
            lambda: [build_fakes(channel, s) for s in ARCH_SUBDIRS if s != "linux-64"],
        ),
        ("libimgb, imgb-cli", lambda: build_imgb_linux64(channel, log)),
        ("lib packages", lambda: build_libs_linux64(channel, log)),
        ("python", lambda: build_python_linux64(channel, log)),
        ("index", lambda: b.reindex(channel)),
    ]
    for label, fn in steps:
        t0 = time.monotonic()
        fn()
        log(f"  {label}: {time.monotonic() - t0:.1f}s")
