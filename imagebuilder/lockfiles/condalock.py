"""conda-lock's unified lock file (conda-lock.yml, format version 1).

    version: 1
    metadata: {content_hash: {ARCH: HASH}, channels: [{url, used_env_vars}], platforms, sources}
    package:
    - {name, version, manager: conda|pip, platform, dependencies: {NAME: SPEC}, url,
       hash: {md5, sha256}, category, optional}

Conda entries need sha256 for identity (conda-lock writes both hashes); pip entries are wheels
or sdists with sha256. Every category is imported, as `conda-lock install` does by default.
"""

from __future__ import annotations

import yaml

from imagebuilder.env import CONDA, ResolvedEnv
from imagebuilder.errors import BadInput
from imagebuilder.lockfiles.base import Locked, ReadContext
from imagebuilder.lockfiles.packages import (
    conda_depends_dict,
    conda_depends_list,
    conda_package,
    conda_package_from_record,
    pip_depends_list,
    pypi_package,
    strip_credentials,
)


def read(text: str, ctx: ReadContext) -> Locked:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # one line (PyYAML's own message spans several, with a caret drawing)
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadInput(
            f"{ctx.where}invalid YAML: {at}{problem}", "fix the lock file's syntax"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("package"), list):
        raise BadInput(f"{ctx.where}not a conda-lock file (no `package:` list)")
    if doc.get("version") != 1:
        raise BadInput(
            f"{ctx.where}conda-lock format version {doc.get('version')!r} is not supported",
            "imgbuild reads conda-lock's unified format version 1 (conda-lock >= 1.0)",
        )
    meta = doc.get("metadata") or {}
    platforms = meta.get("platforms") or sorted(
        {p.get("platform") for p in doc["package"] if isinstance(p, dict)}
    )
    if ctx.arch not in platforms:
        raise BadInput(
            f"{ctx.where}has no packages for {ctx.arch} (it locks: {', '.join(map(str, platforms))})",
            f"pass --arch {platforms[0]}" if platforms else "lock it for your platform",
        )
    entries = [p for p in doc["package"] if isinstance(p, dict) and p.get("platform") == ctx.arch]
    conda, pip = [], []
    for i, e in enumerate(entries):
        where = f"{ctx.where}package {e.get('name', i)!s}: "
        for key in ("name", "version", "manager", "url"):
            if not e.get(key):
                raise BadInput(
                    f"{where}missing `{key}`",
                    "each package needs name, version, manager, url, hash",
                )
        h = e.get("hash") or {}
        if e["manager"] == "conda":
            conda.append(_conda(e, h, where, ctx))
        elif e["manager"] == "pip":
            pip.append(
                pypi_package(
                    e["url"],
                    sha256=h.get("sha256") or "",
                    arch=ctx.arch,
                    name=e["name"],
                    version=str(e["version"]),
                    depends=pip_depends_list(e.get("dependencies")),
                    where=where,
                )
            )
        else:
            raise BadInput(f"{where}unknown manager {e['manager']!r}", "use conda or pip")
    channels = tuple(
        (c.get("url") if isinstance(c, dict) else str(c)) for c in meta.get("channels") or ()
    )
    return Locked(tuple(conda + pip), channels=tuple(c for c in channels if c))


def _conda(e: dict, h: dict, where: str, ctx: ReadContext):
    sha = h.get("sha256")
    if not sha:
        # conda-lock always writes sha256 today; older files may not: the channel knows it.
        rec = _lookup(e["url"], ctx, where)
        return conda_package_from_record(rec, where)
    return conda_package(
        e["url"],
        sha256=sha,
        md5=h.get("md5"),
        depends=conda_depends_list(e.get("dependencies")),
        where=where,
    )


def _lookup(url: str, ctx: ReadContext, where: str) -> dict:
    channel, subdir, fn = strip_credentials(url).rsplit("/", 2)
    rec = ctx.lookup.repodata_record(channel, subdir, fn) if ctx.lookup else None
    if rec is None:
        raise BadInput(
            f"{where}{fn} has no sha256 in the lock and {channel} does not list it",
            "regenerate the lock with a current conda-lock (it writes sha256)",
        )
    return rec


def write(envs: list[ResolvedEnv]) -> str:
    channels: list[str] = []
    for env in envs:
        for c in env.spec.channels or ():
            if c not in channels:
                channels.append(c)
        for p in env.conda_packages():
            if p.channel and p.channel not in channels:
                channels.append(p.channel)
    packages = []
    for env in envs:
        for p in env.packages:
            if p.kind == CONDA:
                h = {"md5": p.md5, "sha256": p.sha256} if p.md5 else {"sha256": p.sha256}
                packages.append(
                    {
                        "name": p.name,
                        "version": p.version,
                        "manager": "conda",
                        "platform": env.arch,
                        "dependencies": conda_depends_dict(p.depends),
                        "url": p.url,
                        "hash": h,
                        "category": "main",
                        "optional": False,
                    }
                )
            else:
                packages.append(
                    {
                        "name": p.name,
                        "version": p.version,
                        "manager": "pip",
                        "platform": env.arch,
                        "dependencies": _pip_deps(p.depends),
                        "url": p.url,
                        "hash": {"sha256": p.sha256},
                        "category": "main",
                        "optional": False,
                    }
                )
    doc = {
        "version": 1,
        "metadata": {
            "content_hash": {env.arch: env.full_id for env in envs},
            "channels": [{"url": c, "used_env_vars": []} for c in channels],
            "platforms": [env.arch for env in envs],
            "sources": [],
            "custom_metadata": {f"imgbuild_env_{env.arch}": env.name for env in envs},
        },
        "package": packages,
    }
    header = (
        "# Written by `imgbuild export --format conda-lock` (conda-lock unified format v1).\n"
        "# Install with `conda-lock install`, or import with `imgbuild resolve --lockfile`.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


def _pip_deps(depends: tuple[str, ...]) -> dict[str, str]:
    """PEP 508 requirements -> {name: specifier} (conda-lock keeps pip dependencies this way)."""
    from packaging.requirements import InvalidRequirement, Requirement

    out: dict[str, str] = {}
    for dep in depends:
        try:
            r = Requirement(dep)
        except InvalidRequirement:
            continue
        out[r.name] = str(r.specifier) or "*"
    return out
