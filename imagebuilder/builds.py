"""Wheels built from sources (sdist, git commit, local path), once per platform and python.

A source package's identity (and full_id) is its source hash; the wheel built from it is
stored under `pkgs/build/<wheel sha256>/<wheel>` and recorded in `builds/<source sha256>.json`:

    {"schema": "imgbuild/build/v1", "source": {...},
     "builds": {"linux-64-py3.11": {"filename", "sha256", "size", "key", "built_at", ...}}}

The record changes as platforms are added, so it is written compare-and-swap. Builds run on
this machine only for its own arch (nothing from another arch can run here); a cross-arch
source without a build is a clear BadInput naming the package. Hydrate and bake find the
wheel with `find_build(store, pkg, arch, python)`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from imagebuilder.env import Package, ResolvedEnv, now_iso
from imagebuilder.errors import BadInput, Conflict, IntegrityError
from imagebuilder.records import check_schema, schema_id
from imagebuilder.store.base import RaceLost, Store
from imagebuilder.urls import redact, strip_credentials


@dataclass(frozen=True)
class Build:
    filename: str
    sha256: str
    size: int
    python: str
    arch: str
    built_at: str = ""

    @property
    def key(self) -> str:
        return f"pkgs/build/{self.sha256}/{self.filename}"

    def to_json(self) -> dict:
        return {
            "filename": self.filename,
            "sha256": self.sha256,
            "size": self.size,
            "python": self.python,
            "arch": self.arch,
            "built_at": self.built_at,
            "key": self.key,
        }

    @classmethod
    def from_json(cls, d: dict) -> Build:
        return cls(
            d["filename"], d["sha256"], d["size"], d["python"], d["arch"], d.get("built_at", "")
        )


def record_key(source_sha256: str) -> str:
    return f"builds/{source_sha256}.json"


def platform_key(arch: str, python: str) -> str:
    return f"{arch}-py{'.'.join(python.split('.')[:2])}"


def env_python(env: ResolvedEnv) -> str:
    import sys

    return env.python_version or f"{sys.version_info.major}.{sys.version_info.minor}"


def find_build(store: Store, pkg: Package, arch: str, python: str) -> Build | None:
    got = store.get_record(record_key(pkg.sha256))
    if got is None:
        return None
    rec = _decode(got[0], store, pkg)
    entry = rec.get("builds", {}).get(platform_key(arch, python))
    return Build.from_json(entry) if entry else None


def _decode(data: bytes, store: Store, pkg: Package) -> dict:
    where = f"{store.url}/{record_key(pkg.sha256)}"
    try:
        rec = json.loads(data)
    except ValueError:
        raise IntegrityError(f"build record {where} is not valid JSON") from None
    check_schema(rec, "build", where)
    return rec


def ensure_built(pkg: Package, env: ResolvedEnv, store: Store, tmp: Path, ui=None) -> bool:
    """Make sure a wheel built from pkg exists for env's arch/python. True if built now."""
    from imagebuilder.platforms import host_arch

    python = env_python(env)
    found = find_build(store, pkg, env.arch, python)
    if found is not None and store.exists(found.key):
        return False
    if env.arch != host_arch():
        raise BadInput(
            f"{pkg.name} {pkg.version} is a {pkg.source} source without a wheel for {env.arch}; "
            f"imgbuild builds sources only for this machine's arch ({host_arch()})",
            f"resolve it on a {env.arch} machine once (the built wheel is then reused), "
            "or require a version that publishes a wheel",
        )
    if ui is not None:
        ui.info(f"building {pkg.name} {pkg.version} from {pkg.source} for {env.arch} py{python}")
    wheel = _build(pkg, env, store, tmp, python)
    from imagebuilder.archive_check import check_wheel
    from imagebuilder.fetch import sha256_file

    check_wheel(wheel)
    sha = sha256_file(wheel)
    build = Build(wheel.name, sha, wheel.stat().st_size, python, env.arch, now_iso())
    store.put_file(build.key, wheel, sha256=sha)
    _record(store, pkg, build)
    return True


def _record(store: Store, pkg: Package, build: Build) -> None:
    key = record_key(pkg.sha256)
    for _ in range(8):
        got = store.get_record(key)
        rec = (
            _decode(got[0], store, pkg)
            if got
            else {
                "schema": schema_id("build"),
                "source": {
                    "kind": pkg.source,
                    "name": pkg.name,
                    "version": pkg.version,
                    "sha256": pkg.sha256,
                    "url": strip_credentials(pkg.url),
                },
                "builds": {},
            }
        )
        rec["builds"][platform_key(build.arch, build.python)] = build.to_json()
        data = json.dumps(rec, indent=1, sort_keys=True).encode() + b"\n"
        try:
            store.put_record(key, data, got[1] if got else None)
            return
        except RaceLost:
            continue
    raise Conflict(f"gave up recording the build of {pkg.name}: other writers kept changing {key}")


def _build(pkg: Package, env: ResolvedEnv, store: Store, tmp: Path, python: str) -> Path:
    out = tmp / f"build-{pkg.sha256[:16]}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    src = _source_path(pkg, store, tmp)
    cmd = ["uv", "build", "--wheel", "--out-dir", str(out), "--python", python, str(src)]
    from imagebuilder.fetch import authorize

    indexes = list(env.spec.indexes)
    if indexes:
        cmd += ["--index-url", authorize(indexes[0])]
        for extra in indexes[1:]:
            cmd += ["--extra-index-url", authorize(extra)]
    for link in env.spec.find_links:
        cmd += ["--find-links", authorize(link)]
    r = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "UV_NO_PROGRESS": "1"}
    )
    wheels = sorted(out.glob("*.whl"))
    if r.returncode != 0 or len(wheels) != 1:
        tail = redact(
            (r.stderr or r.stdout).strip().splitlines()[-1]
            if (r.stderr or r.stdout).strip()
            else ""
        )
        raise BadInput(
            f"building a wheel for {pkg.name} {pkg.version} from its {pkg.source} failed: {tail}",
            "check that the source builds with `uv build --wheel` on this machine",
        )
    return wheels[0]


def _source_path(pkg: Package, store: Store, tmp: Path) -> Path:
    if pkg.source == "sdist":
        from imagebuilder.store.localcache import fetch_to_local

        return fetch_to_local(store, pkg.store_key)
    if pkg.source == "path":
        path = Path(pkg.url[len("file://") :] if pkg.url.startswith("file://") else pkg.url)
        if not path.exists():
            raise BadInput(f"{pkg.name}: local source {path} does not exist")
        return path
    if pkg.source == "git":
        url, commit = _git_ref(pkg)
        dest = tmp / f"git-{pkg.sha256[:16]}"
        shutil.rmtree(dest, ignore_errors=True)
        from imagebuilder.fetch import authorize

        for cmd in (
            ["git", "clone", "--quiet", authorize(url), str(dest)],
            ["git", "-C", str(dest), "checkout", "--quiet", commit],
        ):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise BadInput(
                    f"{pkg.name}: cannot get {strip_credentials(url)} at {commit}: "
                    + redact(
                        r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "git failed"
                    )
                )
        return dest
    raise BadInput(f"{pkg.name}: unknown source kind {pkg.source!r}")


def _git_ref(pkg: Package) -> tuple[str, str]:
    """`git+https://host/repo@<commit>` (PEP 508 direct reference) -> (url, commit)."""
    url = pkg.url.removeprefix("git+")
    commit = (pkg.extra or {}).get("commit")
    base, at, rev = url.rpartition("@")
    if at and "/" not in rev:
        url, commit = base, commit or rev
    if not commit:
        raise BadInput(f"{pkg.name}: git source {strip_credentials(pkg.url)} names no commit")
    return url, commit
