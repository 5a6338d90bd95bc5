"""Helpers of the bake tests, under a name of their own (`from conftest import` picks whichever
folder's conftest was imported last when several test folders run in one session): envs made
straight from the test channel's repodata (no solver), small deterministic wheels, the CLI in
a subprocess, rig values. Also loaded by path from tests/registry and bench/push.py."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from imagebuilder.env import Package, ResolvedEnv
from imagebuilder.spec import make_spec
from imagebuilder.store.envs import put_env
from imagebuilder.store.local import LocalStore


def _records(channel: Path, subdir: str) -> dict[str, tuple[str, dict]]:
    """name -> (filename, record) of the newest build, over subdir and noarch."""
    out: dict[str, tuple[str, dict]] = {}
    for sd in (subdir, "noarch"):
        rd = json.loads((channel / sd / "repodata.json").read_text())
        for key in ("packages", "packages.conda"):
            for fn, rec in rd.get(key, {}).items():
                have = out.get(rec["name"])
                if have is None or rec.get("timestamp", 0) > have[1].get("timestamp", 0):
                    out[rec["name"]] = (f"{sd}/{fn}", rec)
    return out


def make_wheel(
    out_dir: Path, name: str, version: str, modules: dict[str, str], requires=()
) -> Path:
    """A small pure-Python wheel with a RECORD, byte-deterministic."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = dict(modules)
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files[f"{dist}.dist-info/METADATA"] = meta
    files[f"{dist}.dist-info/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: imgbuild-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{dist}.dist-info/entry_points.txt"] = (
        f"[console_scripts]\n{name}-hello = {next(iter(modules)).split('/')[0].removesuffix('.py')}:main\n"
    )
    record = []
    for path, text in files.items():
        data = text.encode()
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={h},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dist}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(files):
            zi = zipfile.ZipInfo(p, (2024, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            z.writestr(zi, files[p])
    path.write_bytes(buf.getvalue())
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class EnvFactory:
    def __init__(self, channel: Path, tmp: Path) -> None:
        self.channel = channel
        self.tmp = tmp

    def conda_packages(self, names, arch="linux-64", replace=None) -> list[tuple[Package, Path]]:
        recs = _records(self.channel, arch)
        if replace:
            recs.update(replace)
        todo, seen, out = list(names), set(), []
        while todo:
            name = todo.pop()
            if name in seen or name.startswith("__"):
                continue
            seen.add(name)
            rel, rec = recs[name]
            path = self.channel / rel
            fn = rel.split("/", 1)[1]
            url = f"file://{path}"
            full = {**rec, "fn": fn, "url": url, "channel": f"file://{self.channel}"}
            out.append(
                (
                    Package(
                        kind="conda",
                        subdir=rec["subdir"],
                        name=rec["name"],
                        version=rec["version"],
                        build=rec["build"],
                        sha256=rec["sha256"],
                        filename=fn,
                        url=url,
                        size=rec.get("size"),
                        md5=rec.get("md5"),
                        depends=tuple(rec.get("depends", ())),
                        channel=f"file://{self.channel}",
                        record=full,
                    ),
                    path,
                )
            )
            todo.extend(re.split(r"[ =<>!]", d, maxsplit=1)[0] for d in rec.get("depends", ()))
        return out

    def wheel_package(self, path: Path, arch="linux-64") -> tuple[Package, Path]:
        name, version = path.name.split("-")[:2]
        return (
            Package(
                kind="pypi",
                subdir="noarch",
                name=name.replace("_", "-"),
                version=version,
                build="py3-none-any",
                sha256=_sha(path),
                filename=path.name,
                url=f"file://{path}",
                size=path.stat().st_size,
            ),
            path,
        )

    def make(self, store: LocalStore, names, arch="linux-64", wheels=(), replace=None, tag=""):
        pkgs = self.conda_packages(names, arch, replace) + [
            self.wheel_package(w, arch) for w in wheels
        ]
        for p, path in pkgs:
            store.put_file(p.store_key, path)
        spec = make_spec(
            arch=arch,
            conda=list(names),
            pypi=[self.wheel_package(w)[0].name for w in wheels],
            channels=[f"file://{self.channel}"] if not tag else [f"file://{self.channel}", tag],
        )
        env = ResolvedEnv(spec, tuple(p for p, _ in pkgs), resolved_at="2024-01-01T00:00:00Z")
        put_env(store, env)
        return env


def run_cli(args, env, expect=0, cwd=None) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", "imagebuilder", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert r.returncode == expect, f"exit {r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"
    return r


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


HOST_BASE_FILES = (
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/x86_64-linux-gnu/libm.so.6",
    "/bin/dash",
)


def rig_value(key: str) -> str | None:
    """A key of the rig's rig.env (IMGBUILD_RIG_ENV) or the environment."""
    if os.environ.get(key):
        return os.environ[key]
    path = os.environ.get("IMGBUILD_RIG_ENV")
    if path and Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            k, _, v = line.partition("=")
            if k.strip() == key:
                return v.strip().strip("'\"")
    return None
