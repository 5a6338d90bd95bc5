"""The local conda channel of the test rig (ci/channel): real archives, real solves and installs.

All rattler work runs in a child process that leaves with ``os._exit`` (py-rattler 0.28 may
crash at interpreter exit after ``install``), so this module is immune to that crash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHANNEL_DIR = ROOT / "ci" / "channel"

pytestmark = pytest.mark.rig


def _load_builder():
    if "imgb_channel_builder" in sys.modules:
        return sys.modules["imgb_channel_builder"]
    spec = importlib.util.spec_from_file_location(
        "imgb_channel_builder", CHANNEL_DIR / "builder.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["imgb_channel_builder"] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


builder = _load_builder()

LINUX64_NAMES = {
    "python", "python_abi", "openssl", "libffi", "libsqlite", "xz", "bzip2", "zlib", "ncurses",
    "readline", "libuuid", "libxcrypt", "libimgb", "imgb-cli", "needs-newglibc",
}  # fmt: skip
CROSS_NAMES = LINUX64_NAMES - {"needs-newglibc"}
NOARCH_NAMES = {
    "tinyfoo", "tinybar", "conflict-a", "conflict-b", "six", "idna", "packaging", "pip",
    "tzdata", "ca-certificates",
}  # fmt: skip
SYSTEM_LIBS = (
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "ld-linux",
)


# --------------------------------------------------------------------------- helpers

RATTLER_CHILD = textwrap.dedent(
    """
    import asyncio, datetime, json, os, sys
    import rattler
    from rattler import Channel, Gateway, GenericVirtualPackage, PackageName, SourceConfig, Version
    from rattler.package.build_string import BuildString

    args = json.loads(sys.argv[1])

    async def main():
        vps = [GenericVirtualPackage(PackageName(n), Version(v), BuildString("0"))
               for n, v in args["virtual_packages"].items()]
        cfg = SourceConfig(sharded_enabled=args.get("sharded", True))
        gw = Gateway(cache_dir=args["cache_dir"], default_config=cfg)
        cutoff = args.get("exclude_newer")
        cutoff = datetime.datetime.fromisoformat(cutoff) if cutoff else None
        recs = await rattler.solve([Channel(c) for c in args["channels"]], args["specs"], gateway=gw,
                                   platforms=[args["platform"], "noarch"], virtual_packages=vps,
                                   exclude_newer=cutoff)
        if args.get("prefix"):
            await rattler.install(recs, args["prefix"], cache_dir=args["cache_dir"] + "/pkgs",
                                  show_progress=False, alternative_target_prefix=args.get("target_prefix"))
        return [{"name": r.name.normalized, "version": str(r.version), "build": str(r.build),
                 "subdir": str(r.subdir), "fn": r.file_name, "url": str(r.url), "sha256": r.sha256.hex(),
                 "timestamp": r.timestamp.isoformat() if r.timestamp else None} for r in recs]

    try:
        out = json.dumps({"ok": True, "records": asyncio.run(main())})
    except Exception as e:
        out = json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"})
    sys.stdout.write(out + "\\n")
    sys.stdout.flush()
    os._exit(0)
    """
)

DEFAULT_VPS = {
    "linux-64": {"__glibc": "2.36", "__unix": "0", "__linux": "6.1"},
    "linux-aarch64": {"__glibc": "2.28", "__unix": "0", "__linux": "6.1"},
    "osx-arm64": {"__osx": "13.0", "__unix": "0"},
}


def rattler_solve(channels, specs, cache_dir, platform="linux-64", **kw) -> dict:
    args = {
        "channels": [str(c) for c in channels],
        "specs": specs,
        "cache_dir": str(cache_dir),
        "platform": platform,
        "virtual_packages": kw.pop("virtual_packages", DEFAULT_VPS[platform]),
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()},
    }
    p = subprocess.run(
        [sys.executable, "-c", RATTLER_CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, f"rattler child died ({p.returncode}): {p.stderr[-2000:]}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def by_name(res: dict) -> dict[str, dict]:
    assert res["ok"], res.get("error")
    return {r["name"]: r for r in res["records"]}


class HttpServer:
    """``python -m http.server`` on a free port of 127.0.0.1, serving ``root``."""

    def __init__(self, root: Path):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
                str(root),
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (http://...) ..."
        port = int(line.split(" port ")[1].split()[0])
        self.url = f"http://127.0.0.1:{port}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def build_channel(out: Path) -> Path:
    p = subprocess.run(
        [sys.executable, str(CHANNEL_DIR / "build.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return Path(p.stdout.strip().splitlines()[-1])


def repodata(channel: Path, subdir: str) -> dict:
    return json.loads((channel / subdir / "repodata.json").read_text())


def records(channel: Path, subdir: str) -> dict[str, dict]:
    rd = repodata(channel, subdir)
    return {**rd.get("packages", {}), **rd.get("packages.conda", {})}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def channel(tmp_path_factory) -> Path:
    """A private copy of the built channel (build.py --out)."""
    t0 = time.monotonic()
    path = build_channel(tmp_path_factory.mktemp("rig") / "channel")
    print(f"channel ready in {time.monotonic() - t0:.1f}s: {path}", file=sys.stderr)
    return path


@pytest.fixture(scope="session")
def channel_http(channel):
    srv = HttpServer(channel)
    yield srv.url
    srv.stop()


# --------------------------------------------------------------------------- inventory and archives


def test_build_is_cached_and_idempotent(channel, tmp_path):
    t0 = time.monotonic()
    again = build_channel(channel)
    assert again == channel
    p = subprocess.run(
        [sys.executable, str(CHANNEL_DIR / "build.py")], capture_output=True, text=True, timeout=120
    )
    cached = Path(p.stdout.strip().splitlines()[-1])
    assert cached.parent == ROOT / "ci" / "cache" and cached.name.startswith("channel-")
    assert time.monotonic() - t0 < 20, "a warm build must not rebuild"


def test_concurrent_builds_agree(channel, tmp_path):
    outs = [tmp_path / f"c{i}" for i in range(3)] + [tmp_path / "c0"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(CHANNEL_DIR / "build.py"), "--out", str(o)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for o in outs
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for o in outs[:3]:
        assert (o / "noarch" / "repodata.json").is_file()
        assert sorted(records(o, "linux-64")) == sorted(records(channel, "linux-64"))
    assert not list(tmp_path.glob(".tmp-*"))


def test_inventory(channel):
    for subdir, names in [("linux-64", LINUX64_NAMES), ("linux-aarch64", CROSS_NAMES), ("osx-arm64", CROSS_NAMES),
                          ("noarch", NOARCH_NAMES)]:  # fmt: skip
        rd = repodata(channel, subdir)
        assert rd["packages"] and rd["packages.conda"], f"{subdir} must mix .tar.bz2 and .conda"
        recs = records(channel, subdir)
        assert {r["name"] for r in recs.values()} == names
        for fn, r in recs.items():
            assert r["subdir"] == subdir
            assert fn == f"{r['name']}-{r['version']}-{r['build']}" + (
                ".conda" if fn.endswith(".conda") else ".tar.bz2"
            )
            assert r["indexed_timestamp"] == r["timestamp"], fn
        assert (channel / subdir / "repodata_shards.msgpack.zst").is_file()
    noarch = records(channel, "noarch")
    foo = sorted((r["timestamp"], r["version"]) for r in noarch.values() if r["name"] == "tinyfoo")
    assert [v for _, v in foo] == ["1.0", "1.1", "2.0"]
    assert [dt.datetime.fromtimestamp(t / 1000, dt.timezone.utc).date().isoformat() for t, _ in foo] == [
        "2024-01-01", "2024-06-01", "2025-01-01",
    ]  # fmt: skip
    linux = records(channel, "linux-64")
    py = linux["python-3.11.7-h_imgb_0.conda"]
    assert "python_abi 3.11.* *_cp311" in py["depends"] and any(
        d.startswith("__glibc >=2.17") for d in py["depends"]
    )
    assert records(channel, "linux-64")["python_abi-3.11-0_cp311.tar.bz2"]["build"].endswith(
        "_cp311"
    )
    osx_py = records(channel, "osx-arm64")["python-3.11.7-h_imgb_0.conda"]
    assert "__osx >=11.0" in osx_py["depends"] and not any(
        d.startswith("__glibc") for d in osx_py["depends"]
    )
    assert noarch["tinybar-1.0-pyh_imgb_0.tar.bz2"]["depends"] == ["python >=3.8", "tinyfoo >=1"]
    assert linux["needs-newglibc-1.0-h_imgb_0.conda"]["depends"] == ["__glibc >=2.99"]
    assert py["size"] < 60e6


def _extract(pkg: Path, dest: Path) -> None:
    from conda_package_handling import api

    api.extract(str(pkg), str(dest))


@pytest.mark.parametrize("subdir", ["linux-64", "linux-aarch64", "osx-arm64", "noarch"])
def test_archives_are_real_and_consistent(channel, tmp_path, subdir):
    """Every archive opens with conda-package-handling and matches its own info/ metadata."""
    for fn, rec in sorted(records(channel, subdir).items()):
        pkg = channel / subdir / fn
        assert hashlib.sha256(pkg.read_bytes()).hexdigest() == rec["sha256"]
        dest = tmp_path / fn
        _extract(pkg, dest)
        index = json.loads((dest / "info/index.json").read_text())
        assert {k: index[k] for k in ("name", "version", "build", "subdir")} == {
            k: rec[k] for k in ("name", "version", "build", "subdir")
        }
        paths = json.loads((dest / "info/paths.json").read_text())["paths"]
        listed = (dest / "info/files").read_text().splitlines()
        assert listed == [p["_path"] for p in paths]
        on_disk = sorted(
            p.relative_to(dest).as_posix()
            for p in dest.rglob("*")
            if (p.is_file() or p.is_symlink())
            and not p.relative_to(dest).as_posix().startswith("info/")
        )
        assert on_disk == sorted(listed), fn
        for p in paths:
            f = dest / p["_path"]
            if p["path_type"] == "softlink":
                assert f.is_symlink()
                continue
            data = f.read_bytes()
            assert hashlib.sha256(data).hexdigest() == p["sha256"], (fn, p["_path"])
            if "prefix_placeholder" in p:
                assert p["prefix_placeholder"].encode() in data
                assert p["file_mode"] == ("binary" if b"\0" in data else "text")
            else:
                assert builder.PLACEHOLDER_B not in data, (fn, p["_path"])
        if index.get("noarch") == "python":
            link = json.loads((dest / "info/link.json").read_text())
            assert link["noarch"]["type"] == "python"
            assert all(p["_path"].startswith(("site-packages/", "python-scripts/")) for p in paths)
        shutil.rmtree(dest)


def test_prefix_placeholders(channel, tmp_path):
    """python has text placeholders (sysconfig, Makefile, *.pc, python-config); libimgb a binary one."""
    _extract(channel / "linux-64/python-3.11.7-h_imgb_0.conda", tmp_path / "py")
    paths = {
        p["_path"]: p for p in json.loads((tmp_path / "py/info/paths.json").read_text())["paths"]
    }
    text = {k for k, p in paths.items() if p.get("file_mode") == "text"}
    for want in ("lib/python3.11/_sysconfigdata__linux_x86_64-linux-gnu.py", "bin/python3.11-config",
                 "lib/pkgconfig/python-3.11.pc", "lib/python3.11/config-3.11-x86_64-linux-gnu/Makefile"):  # fmt: skip
        assert want in text
    assert not any(
        k.startswith("lib/python3.11/site-packages/") and not k.endswith("README.txt")
        for k in paths
    )
    for gone in ("lib/python3.11/test/", "lib/python3.11/idlelib/", "lib/python3.11/tkinter/", "lib/python3.11/ensurepip/",
                 "lib/python3.11/lib2to3/", "__pycache__"):  # fmt: skip
        assert not any(gone in k for k in paths), gone
    assert not any(k.endswith(".a") for k in paths)
    _extract(channel / "linux-64/libimgb-1.0-h_imgb_0.tar.bz2", tmp_path / "lib")
    lp = json.loads((tmp_path / "lib/info/paths.json").read_text())["paths"]
    so = next(p for p in lp if p["_path"] == "lib/libimgb.so.1")
    assert so["file_mode"] == "binary" and len(so["prefix_placeholder"]) == 255
    _extract(channel / "linux-64/imgb-cli-1.0-h_imgb_0.conda", tmp_path / "cli")
    cp = {
        p["_path"]: p for p in json.loads((tmp_path / "cli/info/paths.json").read_text())["paths"]
    }
    assert cp["etc/imgb.conf"]["file_mode"] == "text"
    assert cp["etc/imgb.conf"]["prefix_placeholder"] == builder.PLACEHOLDER


def test_small_packages_are_byte_deterministic(channel, tmp_path):
    """Rebuilding (other process, other hash seed) gives the same bytes as the channel."""
    code = textwrap.dedent(
        f"""
        import sys, pathlib
        sys.path.insert(0, {str(CHANNEL_DIR)!r})
        import recipes
        out = pathlib.Path({str(tmp_path / "re")!r})
        recipes.build_noarch_test_packages(out)
        recipes.build_noarch_wheels(out, lambda m: None)
        recipes.build_python_abi(out)
        for s in ("linux-aarch64", "osx-arm64"):
            recipes.build_fakes(out, s)
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    rebuilt = sorted(
        p for p in (tmp_path / "re").rglob("*") if p.name.endswith((".conda", ".tar.bz2"))
    )
    assert len(rebuilt) >= 40
    for p in rebuilt:
        rel = p.relative_to(tmp_path / "re")
        assert p.read_bytes() == (channel / rel).read_bytes(), rel


def test_make_package_api(tmp_path):
    files = {
        "bin/tool": builder.File(b"#!/bin/sh\necho " + builder.PLACEHOLDER_B + b"\n", 0o755),
        "lib/blob.bin": b"\0\1" + builder.PLACEHOLDER_B + b"\0",
        "share/plain.txt": "plain\n",
        "share/link.txt": builder.Link("plain.txt"),
    }
    a = builder.make_package(
        tmp_path / "a",
        "linux-64",
        "demo",
        "1.0",
        "h0_0",
        files,
        fmt=".tar.bz2",
        timestamp="2024-05-05",
    )
    b = builder.make_package(
        tmp_path / "b",
        "linux-64",
        "demo",
        "1.0",
        "h0_0",
        files,
        fmt=".tar.bz2",
        timestamp="2024-05-05",
    )
    assert a.sha256 == b.sha256 and a.index["timestamp"] == builder.ts_ms("2024-05-05")
    c = builder.make_package(tmp_path / "a", "linux-64", "demo", "1.0", "h0_0", files, fmt=".conda")
    _extract(c.path, tmp_path / "x")
    paths = {
        p["_path"]: p for p in json.loads((tmp_path / "x/info/paths.json").read_text())["paths"]
    }
    assert paths["bin/tool"]["file_mode"] == "text"
    assert paths["lib/blob.bin"]["file_mode"] == "binary"
    assert "file_mode" not in paths["share/plain.txt"]
    assert paths["share/link.txt"]["path_type"] == "softlink"
    assert os.access(tmp_path / "x/bin/tool", os.X_OK)
    with pytest.raises(ValueError):
        builder.make_package(tmp_path / "a", "linux-64", "evil", "1", "0", {"../x": b""})


def test_hostile_archives_can_be_written(tmp_path):
    """For security tests: Raw members and unsafe paths are written exactly as asked."""
    import tarfile

    files = {
        "../escape.txt": b"out\n",
        "/abs.txt": b"abs\n",
        "lib/hard": builder.Raw(tarfile.LNKTYPE, linkname="/etc/passwd"),
        "dev/null0": builder.Raw(tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        "bin/suid": builder.Raw(data=b"#!/bin/sh\n", mode=0o4755),
        "lib/out": builder.Link("/etc"),
    }
    res = builder.make_package(
        tmp_path, "linux-64", "evil", "1", "0", files, fmt=".tar.bz2", allow_unsafe_paths=True
    )
    with tarfile.open(res.path) as tar:
        m = {t.name: t for t in tar.getmembers()}
    assert "../escape.txt" in m and "/abs.txt" in m
    assert m["lib/hard"].islnk() and m["lib/hard"].linkname == "/etc/passwd"
    assert m["dev/null0"].ischr() and m["bin/suid"].mode == 0o4755
    assert m["lib/out"].issym() and m["lib/out"].linkname == "/etc"


# --------------------------------------------------------------------------- solve and install


def _elf_files(prefix: Path):
    for p in prefix.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with open(p, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    yield p


def _check_ldd(prefix: Path):
    """Every ELF of the env resolves its libraries inside the env, except libc & co."""
    for elf in _elf_files(prefix):
        out = subprocess.run(["ldd", str(elf)], capture_output=True, text=True).stdout
        assert "/root/.pyenv" not in out and "not found" not in out, f"{elf}:\n{out}"
        for line in out.splitlines():
            if "=>" not in line:
                continue
            lib, where = (s.strip() for s in line.split("=>", 1))
            where = where.split(" (")[0]
            if lib.startswith(SYSTEM_LIBS):
                continue
            assert Path(where).resolve().is_relative_to(prefix.resolve()), (
                f"{elf}: {lib} -> {where}"
            )


def _check_python_env(prefix: Path, expect_tinyfoo: str = "2.0"):
    code = (
        "import ssl, sqlite3, json, lzma, bz2, zlib, ctypes, readline, tinyfoo, tinybar, _ssl, sys, sysconfig\n"
        "print(json.dumps({'ssl': ssl.__file__, '_ssl': _ssl.__file__, 'prefix': sys.prefix,\n"
        "  'cfg': sysconfig.get_config_var('prefix'), 'openssl': ssl.OPENSSL_VERSION,\n"
        "  'tinyfoo': tinyfoo.__version__, 'version': sys.version.split()[0],\n"
        "  'sqlite': sqlite3.sqlite_version, 'https': ssl.create_default_context().protocol > 0}))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(prefix.parent)}
    out = subprocess.run(
        [str(prefix / "bin/python"), "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    p = str(prefix)
    assert info["prefix"] == p and info["cfg"] == p
    assert info["ssl"].startswith(p + "/lib/python3.11/") and info["_ssl"].startswith(
        p + "/lib/python3.11/lib-dynload/"
    )
    assert info["version"] == "3.11.7" and info["tinyfoo"] == expect_tinyfoo
    assert info["openssl"].startswith("OpenSSL 3.")
    _check_ldd(prefix)
    cli = subprocess.run([str(prefix / "bin/imgb-cli")], capture_output=True, text=True, timeout=30)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.splitlines() == [f"prefix={p}", f"conf={p}", "version=1.0"]
    foo = subprocess.run([str(prefix / "bin/tinyfoo")], capture_output=True, text=True, timeout=30)
    assert foo.stdout.strip() == f"tinyfoo {expect_tinyfoo}", foo.stderr


@pytest.mark.parametrize("where", ["directory", "http"])
def test_solve_and_install_linux64(channel, channel_http, tmp_path, where):
    src = channel if where == "directory" else channel_http
    prefix = tmp_path / "env"
    res = rattler_solve([src], ["python", "imgb-cli", "tinybar"], tmp_path / "cache", prefix=prefix)
    recs = by_name(res)
    assert len(recs) >= 15
    assert recs["python"]["version"] == "3.11.7" and recs["python"]["subdir"] == "linux-64"
    assert recs["tinyfoo"]["version"] == "2.0" and recs["tinybar"]["subdir"] == "noarch"
    assert {
        "openssl",
        "libffi",
        "libsqlite",
        "xz",
        "bzip2",
        "zlib",
        "ncurses",
        "readline",
        "libimgb",
    } <= set(recs)
    if where == "http":
        assert all(r["url"].startswith(channel_http) for r in recs.values())
    _check_python_env(prefix)
    du = sum(p.stat().st_size for p in prefix.rglob("*") if p.is_file() and not p.is_symlink())
    assert du < 80e6


def test_env_with_wheel_packages(channel, tmp_path):
    prefix = tmp_path / "env"
    res = rattler_solve(
        [channel],
        ["python 3.11.*", "six", "idna", "packaging", "pip", "tinybar"],
        tmp_path / "c",
        prefix=prefix,
    )
    assert len(by_name(res)) >= 20
    code = "import six, idna, packaging, pip, importlib.metadata as m; print(six.__version__, idna.__version__, m.version('packaging'), pip.__version__)"
    out = subprocess.run(
        [str(prefix / "bin/python"), "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["1.16.0", "3.6", "23.2", "24.0"], out.stderr
    assert (prefix / "bin/pip").exists()  # entry point from link.json


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bwrap")
def test_python_runs_on_bare_root(channel, tmp_path):
    """Staged for /opt/env, the env runs in a root holding only libc, libm and the loader."""
    root = tmp_path / "root"
    res = rattler_solve(
        [channel],
        ["python", "imgb-cli"],
        tmp_path / "c",
        prefix=root / "opt/env",
        target_prefix="/opt/env",
    )
    by_name(res)
    (root / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "lib64").mkdir()
    for lib in ("libc.so.6", "libm.so.6"):
        shutil.copy(Path("/lib/x86_64-linux-gnu") / lib, root / "lib/x86_64-linux-gnu" / lib)
    shutil.copy("/lib64/ld-linux-x86-64.so.2", root / "lib64")
    bw = ["bwrap", "--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--clearenv",
          "--setenv", "HOME", "/tmp"]  # fmt: skip
    code = "import ssl, sqlite3, json, lzma, bz2, zlib, ctypes, readline, uuid, curses, decimal, hashlib; print(ssl.__file__)"
    out = subprocess.run(
        [*bw, "/opt/env/bin/python", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "/opt/env/lib/python3.11/ssl.py", (
        out.stderr
    )
    cli = subprocess.run([*bw, "/opt/env/bin/imgb-cli"], capture_output=True, text=True, timeout=60)
    assert cli.stdout.splitlines() == ["prefix=/opt/env", "conf=/opt/env", "version=1.0"], (
        cli.stderr
    )


@pytest.mark.parametrize("platform", ["osx-arm64", "linux-aarch64"])
def test_cross_arch_solve(channel, tmp_path, platform):
    recs = by_name(
        rattler_solve(
            [channel], ["python", "imgb-cli", "tinybar"], tmp_path / "c", platform=platform
        )
    )
    assert recs["python"]["subdir"] == platform and recs["imgb-cli"]["subdir"] == platform
    assert all(r["subdir"] in (platform, "noarch") for r in recs.values())
    assert len(recs) >= 15


def test_conflicts_fail(channel, tmp_path):
    res = rattler_solve([channel], ["conflict-a", "conflict-b"], tmp_path / "c")
    assert not res["ok"] and "tinyfoo" in res["error"]
    res = rattler_solve([channel], ["conflict-b", "tinyfoo<2"], tmp_path / "c")
    assert not res["ok"] and "tinyfoo" in res["error"]
    assert (
        by_name(rattler_solve([channel], ["conflict-a"], tmp_path / "c"))["tinyfoo"]["version"]
        == "1.1"
    )
    res = rattler_solve([channel], ["needs-newglibc"], tmp_path / "c")
    assert not res["ok"] and "__glibc" in res["error"]
    vps = {**DEFAULT_VPS["linux-64"], "__glibc": "2.99"}
    assert by_name(
        rattler_solve([channel], ["needs-newglibc"], tmp_path / "c", virtual_packages=vps)
    )


@pytest.mark.parametrize(
    ("cutoff", "version"),
    [
        ("2024-03-01T00:00:00", "1.0"),
        ("2024-12-01T00:00:00", "1.1"),
        ("2025-01-01T00:00:00", "2.0"),
        (None, "2.0"),
    ],
)
def test_time_travel(channel, tmp_path, cutoff, version):
    recs = by_name(
        rattler_solve([channel], ["python", "tinybar"], tmp_path / "c", exclude_newer=cutoff)
    )
    assert recs["tinyfoo"]["version"] == version
    assert recs["python"]["version"] == "3.11.7"  # the base packages predate every cutoff


def test_time_travel_after_adding_a_package(channel, tmp_path):
    """A test may add a newer package to a copy and reindex; exclude_newer brings the old one back."""
    ch = builder.copy_channel(channel, tmp_path / "ch")
    builder.make_package(ch, "noarch", "tinyfoo", "3.0", "pyh_imgb_0",
                         {"site-packages/tinyfoo/__init__.py": '__version__ = "3.0"\n'},
                         depends=["python >=3.8"], noarch="python", timestamp="2025-06-01")  # fmt: skip
    builder.reindex(ch)
    rec = records(ch, "noarch")["tinyfoo-3.0-pyh_imgb_0.conda"]
    assert rec["indexed_timestamp"] == rec["timestamp"] == builder.ts_ms("2025-06-01")
    assert (
        records(channel, "noarch").keys() < records(ch, "noarch").keys()
    )  # the original is untouched
    assert by_name(rattler_solve([ch], ["tinyfoo"], tmp_path / "c"))["tinyfoo"]["version"] == "3.0"
    old = rattler_solve([ch], ["tinyfoo"], tmp_path / "c", exclude_newer="2025-03-01T00:00:00")
    assert by_name(old)["tinyfoo"]["version"] == "2.0"


def test_exclude_newer_prefers_indexed_timestamp(channel, tmp_path):
    """Without pinning, index_fs stamps indexed_timestamp=now and rattler's exclude_newer uses it
    rather than the build timestamp: a package built 'in 2020' but indexed now is excluded."""
    ch = builder.copy_channel(channel, tmp_path / "ch")
    builder.make_package(ch, "noarch", "tinyfoo", "9.0", "pyh_imgb_0", {"site-packages/tinyfoo/__init__.py": ""},
                         depends=["python >=3.8"], noarch="python", timestamp="2020-01-01")  # fmt: skip
    builder.reindex(ch, pin_timestamps=False)
    rec = records(ch, "noarch")["tinyfoo-9.0-pyh_imgb_0.conda"]
    assert rec["timestamp"] == builder.ts_ms("2020-01-01")
    assert rec["indexed_timestamp"] > builder.ts_ms("2025-06-01")
    assert records(ch, "noarch")["tinyfoo-2.0-pyh_imgb_0.conda"][
        "indexed_timestamp"
    ] == builder.ts_ms("2025-01-01")
    got = rattler_solve([ch], ["tinyfoo"], tmp_path / "c", exclude_newer="2025-03-01T00:00:00")
    assert by_name(got)["tinyfoo"]["version"] == "2.0"
    assert by_name(rattler_solve([ch], ["tinyfoo"], tmp_path / "c"))["tinyfoo"]["version"] == "9.0"


def test_http_twice_sharded_304_trap(channel, tmp_path):
    """py-rattler 0.28: once its cached shard index is stale, the revalidation of
    repodata_shards.msgpack.zst gets 304 from http.server and rattler fails ("unexpected status
    code (304 Not Modified)"). Reproduced here with the default config; the workarounds (no
    sharded repodata, or a fresh cache dir per solve) solve twice in a row."""
    ch = builder.copy_channel(channel, tmp_path / "ch")
    old = time.time() - 10  # heuristic freshness ~10% of the age: about 1 s
    for p in ch.rglob("*"):
        os.utime(p, (old, old), follow_symlinks=False)
    srv = HttpServer(ch)
    try:
        cache = tmp_path / "cache-default"
        first = rattler_solve([srv.url], ["tinyfoo"], cache)
        assert first["ok"], first
        time.sleep(3)
        second = rattler_solve([srv.url], ["tinyfoo"], cache)
        assert not second["ok"] and "304" in second["error"], (
            "the sharded-repodata 304 trap no longer reproduces: update LOCAL-SERVICES.md and ci/channel/README.md"
        )
        cache = tmp_path / "cache-unsharded"
        for _ in range(2):
            res = rattler_solve([srv.url], ["tinyfoo"], cache, sharded=False)
            assert by_name(res)["tinyfoo"]["version"] == "2.0"
            time.sleep(2)
        for i in range(2):
            res = rattler_solve([srv.url], ["tinyfoo"], tmp_path / f"fresh-{i}")
            assert by_name(res)["tinyfoo"]["version"] == "2.0"
    finally:
        srv.stop()
