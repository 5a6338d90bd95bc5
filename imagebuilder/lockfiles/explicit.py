"""conda's explicit files (`conda list --explicit`, `conda-lock render --kind explicit`).

    # platform: linux-64
    @EXPLICIT
    https://host/channel/linux-64/python-3.11.7-h_0.conda#<sha256 or md5>
    # pip six @ https://host/six-1.16.0-py2.py3-none-any.whl#sha256=<hex>

One arch per file. Hashes after `#`: 64 hex digits (or `sha256:`) are sha256 (conda >= 24.9
reads them), 32 are md5; an md5-only line is completed from the channel's repodata, since
identity needs the sha256. `# pip NAME @ URL#sha256=...` lines are conda-lock's way of keeping
the PyPI part: imgbuild reads and writes them, conda ignores them.
"""

from __future__ import annotations

import re

from imagebuilder import __version__
from imagebuilder.env import CONDA, ResolvedEnv
from imagebuilder.errors import BadInput
from imagebuilder.lockfiles.base import Locked, ReadContext
from imagebuilder.lockfiles.packages import (
    HEX32,
    HEX64,
    conda_package,
    conda_package_from_record,
    pypi_package,
    strip_credentials,
    url_fragment_hash,
)

_PIP = re.compile(r"^#\s*pip\s+(\S+)\s*@\s*(\S+)\s*$")
_PLATFORM = re.compile(r"^#\s*platform:\s*(\S+)\s*$")


def sniff(text: str) -> bool:
    return any(line.strip() == "@EXPLICIT" for line in text.splitlines()[:200])


def read(text: str, ctx: ReadContext) -> Locked:
    seen_marker = False
    conda, pip = [], []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{ctx.where}line {lineno}: "
        if not line:
            continue
        m = _PLATFORM.match(line)
        if m and m.group(1) != ctx.arch:
            raise BadInput(
                f"{ctx.where}is an explicit file for {m.group(1)}, not {ctx.arch}",
                f"pass --arch {m.group(1)}",
            )
        m = _PIP.match(line)
        if m:
            url, sha = url_fragment_hash(m.group(2))
            if not sha:
                raise BadInput(f"{where}pip line has no #sha256=", "write URL#sha256=HEX")
            pip.append(pypi_package(url, sha256=sha, arch=ctx.arch, where=where))
            continue
        if line.startswith("#"):
            continue
        if line == "@EXPLICIT":
            seen_marker = True
            continue
        if not seen_marker:
            raise BadInput(
                f"{where}package line before @EXPLICIT",
                "an explicit file lists package URLs after a line `@EXPLICIT`",
            )
        conda.append(_conda_line(line, where, ctx))
    if not seen_marker:
        raise BadInput(f"{ctx.where}no @EXPLICIT line: not a conda explicit file")
    if not conda and not pip:
        raise BadInput(f"{ctx.where}lists no packages")
    return Locked(tuple(conda + pip), channels=_channels(conda))


def _conda_line(line: str, where: str, ctx: ReadContext):
    url, _, frag = line.partition("#")
    frag = frag.strip().lower()
    if "://" not in url:
        raise BadInput(
            f"{where}{url!r} is not a URL",
            "imgbuild imports explicit files whose lines are full package URLs",
        )
    algo, _, value = frag.rpartition(":")
    value = value or frag
    if algo in ("", "sha256") and HEX64.match(value):
        return conda_package(url, sha256=value, where=where)
    if algo in ("", "md5") and (HEX32.match(value) or not frag):
        clean = strip_credentials(url)
        channel, subdir, fn = clean.rsplit("/", 2)
        rec = ctx.lookup.repodata_record(channel, subdir, fn) if ctx.lookup else None
        if rec is None:
            raise BadInput(
                f"{where}{fn} carries no sha256 and {channel}/{subdir} does not list it",
                "write the file with sha256 hashes (conda list --explicit --sha256)",
            )
        if value and rec.get("md5") and rec["md5"] != value:
            from imagebuilder.errors import IntegrityError

            raise IntegrityError(
                f"{where}{fn}: md5 {value} in the file, {rec['md5']} in {channel}/{subdir}",
                "the channel changed the package, or the file was edited: re-export it",
            )
        return conda_package_from_record({**rec, "url": clean}, where)
    raise BadInput(f"{where}unrecognized hash {frag!r}", "use URL#<sha256> or URL#<md5>")


def _channels(conda) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.channel for p in conda if p.channel))


def write(envs: list[ResolvedEnv]) -> str:
    (env,) = envs
    lines = [
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        f"# platform: {env.arch}",
        f"# created-by: imgbuild {__version__} ({env.name})",
        "# sha256 after '#' needs conda >= 24.9; imgbuild and conda-lock read it too",
        "@EXPLICIT",
    ]
    lines += [f"{p.url}#{p.sha256}" for p in _install_order(env) if p.kind == CONDA]
    for p in env.pypi_packages():
        lines.append(f"# pip {p.name} @ {p.url}#sha256={p.sha256}")
    return "\n".join(lines) + "\n"


def _install_order(env: ResolvedEnv):
    """Dependencies before dependents (conda links explicit files in file order)."""
    conda = {p.name: p for p in env.conda_packages()}
    done: dict[str, None] = {}

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done or name in stack or name not in conda:
            return
        for dep in conda[name].depends:
            visit(dep.split()[0], (*stack, name))
        done[name] = None

    for name in sorted(conda):
        visit(name, ())
    return [conda[n] for n in done]
