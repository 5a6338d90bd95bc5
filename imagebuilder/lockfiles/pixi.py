"""pixi.lock (rattler-lock), read and written by py-rattler's LockFile.

Reading takes the environment `default` (or the only one) for the arch; its conda packages come
out of rattler as full RepoDataRecords, its PyPI packages as locations + hashes. Writing puts
every given env (one per arch) into the `default` environment. py-rattler is imported here
only: this module runs in the CLI process, never in the test process (LOCAL-SERVICES.md).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import BadInput
from imagebuilder.lockfiles.base import Locked, ReadContext
from imagebuilder.lockfiles.packages import (
    conda_package_from_record,
    filename_of,
    pypi_package,
    url_fragment_hash,
)

ENV_NAME = "default"


def sniff(text: str) -> bool:
    import re

    return bool(re.search(r"(?m)^environments:\s*$", text) and re.search(r"(?m)^version:", text))


def read(text: str, ctx: ReadContext) -> Locked:
    from rattler import LockFile

    try:
        lock = LockFile.from_path(ctx.path)
    except Exception as e:  # rattler raises its own exception types
        raise BadInput(f"{ctx.where}not a readable pixi.lock: {e}") from None
    envs = {name: env for name, env in lock.environments()}
    env = envs.get(ENV_NAME) or (next(iter(envs.values())) if len(envs) == 1 else None)
    if env is None:
        raise BadInput(
            f"{ctx.where}has no `{ENV_NAME}` environment (it has: {', '.join(sorted(envs))})",
            "imgbuild imports the default environment of a pixi.lock",
        )
    platform = next((p for p in env.platforms() if p.name == ctx.arch), None)
    if platform is None:
        have = ", ".join(sorted(p.name for p in env.platforms()))
        raise BadInput(
            f"{ctx.where}has no packages for {ctx.arch} (it locks: {have})",
            f"pass --arch {have.split(', ')[0]}" if have else "",
        )
    conda = []
    for rec in env.conda_repodata_records_for_platform(platform) or ():
        d = json.loads(rec.to_json())
        conda.append(conda_package_from_record(d, f"{ctx.where}{d.get('fn', '')}: "))
    pypi = []
    for pp in env.pypi_packages_for_platform(platform) or ():
        location = str(pp.location)
        base, frag_sha = url_fragment_hash(location)
        sha = _sha256(pp) or frag_sha
        if "://" not in base:
            base = (ctx.path.parent / base).resolve().as_uri()
        where = f"{ctx.where}{pp.name}: "
        if not sha:
            raise BadInput(f"{where}no sha256 for {filename_of(base)}", "re-lock with pixi")
        pypi.append(
            pypi_package(
                base,
                sha256=sha,
                arch=ctx.arch,
                name=str(pp.name),
                version=str(pp.version),
                depends=[str(d) for d in pp.requires_dist or ()],
                where=where,
            )
        )
    channels = tuple(str(getattr(c, "url", c)).rstrip("/") for c in env.channels())
    return Locked(tuple(conda + pypi), channels=channels)


def _sha256(pp) -> str | None:
    """The sha256 rattler parsed for a PyPI package (absent when the lock keeps it in the URL)."""
    try:
        value = pp.hashes.sha256 if pp.hashes is not None else None
    except AttributeError:  # py-rattler 0.28: PackageHashes() without hashes raises
        return None
    if value is None:
        return None
    return value.hex() if isinstance(value, bytes) else str(value).lower()


def write(envs: list[ResolvedEnv]) -> str:
    from rattler import LockChannel, LockFile, LockPlatform

    lock = LockFile([LockPlatform(env.arch) for env in envs])
    channels: list[str] = []
    for env in envs:
        for c in [*env.spec.channels, *(p.channel for p in env.conda_packages() if p.channel)]:
            if c not in channels:
                channels.append(c)
    lock.set_channels(ENV_NAME, [LockChannel(c + "/") for c in channels])
    for env in envs:
        platform = LockPlatform(env.arch)
        for p in env.conda_packages():
            lock.add_conda_package(ENV_NAME, platform, _record(p))
        for p in env.pypi_packages():
            lock.add_pypi_package(
                ENV_NAME, platform, p.name, p.version, f"{p.url}#sha256={p.sha256}"
            )
    fd, tmp = tempfile.mkstemp(suffix=".lock")
    os.close(fd)
    try:
        lock.to_path(tmp)
        return Path(tmp).read_text()
    finally:
        os.unlink(tmp)


def _record(p):
    """A rattler RepoDataRecord from the record the env keeps (or the package's own fields)."""
    from rattler import BuildString, PackageRecord, RepoDataRecord

    r = p.record or {}
    pr = PackageRecord(
        name=p.name,
        version=p.version,
        build=BuildString(p.build),
        build_number=int(r.get("build_number", 0)),
        subdir=p.subdir,
        noarch=r.get("noarch"),
        depends=list(p.depends or r.get("depends") or ()),
        constrains=list(r.get("constrains") or ()),
        sha256=bytes.fromhex(p.sha256),
        md5=bytes.fromhex(p.md5) if p.md5 else None,
        size=p.size if p.size is not None else r.get("size"),
        license=r.get("license"),
        license_family=r.get("license_family"),
        features=None,
    )
    if r.get("timestamp"):
        try:
            from datetime import datetime, timezone

            ts = r["timestamp"]
            pr.timestamp = datetime.fromtimestamp(ts / 1000 if ts > 1e11 else ts, timezone.utc)
        except (AttributeError, TypeError, ValueError, OverflowError):
            pass  # optional metadata; identity does not use it
    channel = (p.channel or p.url.rsplit("/", 2)[0]) + "/"
    return RepoDataRecord(pr, p.filename, p.url, channel)
