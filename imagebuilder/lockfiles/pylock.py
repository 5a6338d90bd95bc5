"""pylock.toml (PEP 751), also the bridge for uv.lock (`uv export --format pylock.toml`).

Reading for one arch: packages whose `marker` is false there are dropped; of a package's
`wheels` the best one for the target (arch + python) is taken, else its `sdist` (built later).
`vcs` and `directory` sources cannot be pinned by content here and are refused.

Writing: one wheel per package (the env's), and the env's conda packages under
`[tool.imgbuild]` (PEP 751 tools ignore tables of other tools), so the round trip is whole.
"""

from __future__ import annotations

from pathlib import Path

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import BadInput
from imagebuilder.lockfiles.base import Locked, ReadContext
from imagebuilder.lockfiles.packages import (
    conda_package_from_record,
    filename_of,
    pypi_package,
)
from imagebuilder.lockfiles.target import Target
from imagebuilder.lockfiles.toml_out import dumps


def sniff(text: str) -> bool:
    return "lock-version" in text[:4000]


def _load(text: str, ctx: ReadContext) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{ctx.where}invalid TOML: {e}", "fix the lock file's syntax") from None


def read(text: str, ctx: ReadContext) -> Locked:
    doc = _load(text, ctx)
    version = str(doc.get("lock-version", ""))
    if not version.startswith("1."):
        raise BadInput(
            f"{ctx.where}pylock lock-version {version or '(missing)'} is not supported",
            "imgbuild reads PEP 751 lock-version 1.x",
        )
    tool = (doc.get("tool") or {}).get("imgbuild") or {}
    if tool.get("arch") and tool["arch"] != ctx.arch:
        raise BadInput(
            f"{ctx.where}was exported for {tool['arch']}, not {ctx.arch}",
            f"pass --arch {tool['arch']}",
        )
    conda = [
        conda_package_from_record(r, f"{ctx.where}tool.imgbuild.conda: ")
        for r in tool.get("conda") or ()
    ]
    python = next((p.version for p in conda if p.name == "python"), None) or ctx.python
    target = Target.make(ctx.arch, python)
    groups = frozenset(doc.get("default-groups") or ()) | {"dev"}
    base = ctx.path.parent
    pypi = []
    for i, pkg in enumerate(doc.get("packages") or ()):
        where = f"{ctx.where}packages[{i}] {pkg.get('name', '?')}: "
        if not target.marker_true(pkg.get("marker"), groups):
            continue
        pypi.append(_pick(pkg, target, base, where))
    indexes = tuple(dict.fromkeys(p["index"] for p in doc.get("packages") or () if p.get("index")))
    if not conda and not pypi:
        raise BadInput(f"{ctx.where}lists no packages for {ctx.arch} / python {target.python}")
    return Locked(
        tuple(conda + pypi),
        channels=tuple(tool.get("channels") or ()),
        indexes=tuple(i for i in indexes if not i.startswith("file:")),
        python=target.python if pypi and not conda else None,
    )


def _file_url(entry: dict, base: Path) -> str:
    if entry.get("url"):
        return entry["url"]
    if entry.get("path"):
        return (base / entry["path"]).resolve().as_uri()
    raise BadInput("a file entry has neither url nor path")


def _pick(pkg: dict, target: Target, base: Path, where: str):
    name, version = pkg.get("name"), pkg.get("version")
    if not name:
        raise BadInput(f"{where}missing `name`")
    wheels = {}
    for w in pkg.get("wheels") or ():
        fn = w.get("name") or filename_of(_file_url(w, base))
        wheels[fn] = w
    best = target.best_wheel(list(wheels))
    if best is not None:
        w = wheels[best]
        sha = (w.get("hashes") or {}).get("sha256")
        if not sha:
            raise BadInput(f"{where}wheel {best} has no sha256 hash", "PEP 751 locks carry hashes")
        return pypi_package(_file_url(w, base), sha256=sha, arch=target.arch, size=w.get("size"),
                            where=where)  # fmt: skip
    sdist = pkg.get("sdist")
    if sdist:
        sha = (sdist.get("hashes") or {}).get("sha256") or ""
        return pypi_package(_file_url(sdist, base), sha256=sha, arch=target.arch, name=name,
                            version=str(version or ""), size=sdist.get("size"), where=where)  # fmt: skip
    if pkg.get("vcs") or pkg.get("directory") or pkg.get("archive"):
        raise BadInput(
            f"{where}a vcs/directory/archive source cannot be imported as a lock",
            "publish it as a wheel to an index, or resolve the project with `imgbuild resolve -p`",
        )
    have = ", ".join(sorted(wheels)) or "none"
    raise BadInput(
        f"{where}no wheel fits {target.arch} / python {target.python} (wheels: {have})",
        "pass --arch/--python for the platform the lock was made for",
    )


def write(envs: list[ResolvedEnv]) -> str:
    (env,) = envs
    target = Target.make(env.arch, env.python_version or env.spec.python)
    env_marker = " and ".join(
        f'{k} == "{target.marker_env[k]}"' for k in ("sys_platform", "platform_machine")
    )
    doc: dict = {
        "lock-version": "1.0",
        "environments": [env_marker],
        "created-by": "imgbuild",
    }
    if env.python_version:
        doc["requires-python"] = f"=={env.python_version}"
    indexes = list(env.spec.indexes)
    packages = []
    for p in env.pypi_packages():
        entry: dict = {"name": p.name, "version": p.version}
        if indexes:
            entry["index"] = indexes[0]
        file = {"name": p.filename, "url": p.url, "size": p.size, "hashes": {"sha256": p.sha256}}
        if p.is_source:
            entry["sdist"] = file
        else:
            entry["wheels"] = [file]
        packages.append(entry)
    doc["packages"] = packages
    conda = [p.record or _min_record(p) for p in env.conda_packages()]
    doc["tool"] = {
        "imgbuild": {
            "arch": env.arch,
            "env": env.name,
            "channels": list(env.spec.channels),
            "conda": [{k: v for k, v in r.items() if v is not None} for r in conda],
        }
    }
    header = (
        f"# Written by `imgbuild export --format pylock` from {env.name} ({env.arch}).\n"
        "# The env's conda packages are under [tool.imgbuild]; PEP 751 installers skip them.\n"
    )
    return header + dumps(doc)


def _min_record(p) -> dict:
    return {
        "name": p.name,
        "version": p.version,
        "build": p.build,
        "subdir": p.subdir,
        "fn": p.filename,
        "url": p.url,
        "sha256": p.sha256,
        "md5": p.md5,
        "size": p.size,
        "depends": list(p.depends),
    }
