"""Which wheel of a release fits the target: tag priorities for another machine.

uv resolves for `--python-platform`/`--python-version` and lists every wheel of the chosen
version that could fit; we pick the one the target's installer would prefer (the first match
in the target's tag priority order), computed for the target, never for this host.

Linux targets (the common case: images) get their order from the rules of packaging.tags'
`cpython_tags` + `compatible_tags` written out here, which spares every resolve packaging's
import (~25 ms); tests/resolve/test_pieces.py checks the two orders are identical. macOS
targets use packaging.tags itself (its macOS version and universal2 rules are intricate).
"""

from __future__ import annotations

import functools
import itertools
import re

from imagebuilder.platforms import get_arch, virtual_packages

_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def canonicalize_name(name: str) -> str:
    """PEP 503 name normalization (packaging.utils.canonicalize_name's rule)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def platforms(subdir: str, sys_packages: dict[str, str]) -> list[str]:
    """Platform tags the target accepts, best first."""
    arch = get_arch(subdir)
    vp = virtual_packages(subdir, sys_packages)
    if arch.is_linux:
        glibc_minor = int(vp["__glibc"].split(".")[1])
        out = []
        for m in range(glibc_minor, 4, -1):
            out.append(f"manylinux_2_{m}_{arch.machine}")
            if m in _LEGACY_MANYLINUX and (arch.machine == "x86_64" or m >= 17):
                out.append(f"{_LEGACY_MANYLINUX[m]}_{arch.machine}")
        return out
    from packaging import tags

    osx = tuple(int(x) for x in (vp["__osx"].split(".") + ["0"])[:2])
    return list(tags.mac_platforms(osx, "arm64" if arch.machine == "arm64" else "x86_64"))


def cpython_order(major: int, minor: int, plats: list[str]) -> list[tuple[str, str, str]]:
    """(interpreter, abi, platform) in CPython's install preference order."""
    interp = f"cp{major}{minor}"
    order = [(interp, interp, p) for p in plats]
    order += [(interp, "abi3", p) for p in plats]
    order += [(interp, "none", p) for p in plats]
    order += [(f"cp{major}{m}", "abi3", p) for m in range(minor - 1, 1, -1) for p in plats]
    py = [f"py{major}{minor}", f"py{major}", *(f"py{major}{m}" for m in range(minor - 1, -1, -1))]
    order += [(v, "none", p) for v in py for p in plats]
    order.append((interp, "none", "any"))
    order += [(v, "none", "any") for v in py]
    return order


@functools.cache
def _priority(subdir: str, python: str, sys_items: tuple[tuple[str, str], ...]) -> dict:
    major, minor = (int(x) for x in python.split(".")[:2])
    order = cpython_order(major, minor, platforms(subdir, dict(sys_items)))
    return {t: i for i, t in enumerate(dict.fromkeys(order))}


def wheel_tags(filename: str) -> list[tuple[str, str, str]] | None:
    """The (interpreter, abi, platform) tags a wheel file name declares; None if malformed."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6) or not all(parts):
        return None
    py, abi, plat = (p.lower().split(".") for p in parts[-3:])
    return list(itertools.product(py, abi, plat))


def rank(filename: str, subdir: str, python: str, sys_packages: dict[str, str]) -> int | None:
    """Lower is better; None when the wheel cannot run on the target."""
    declared = wheel_tags(filename)
    if declared is None:
        return None
    prio = _priority(subdir, python, tuple(sorted(sys_packages.items())))
    ranks = [prio[t] for t in declared if t in prio]
    return min(ranks) if ranks else None


def wheel_build(filename: str) -> str:
    """The tag part of a wheel filename ('py3-none-any'), used as the Package's build."""
    return "-".join(filename[: -len(".whl")].split("-")[-3:])


def is_pure(filename: str) -> bool:
    return all(plat == "any" for _, _, plat in wheel_tags(filename) or [("", "", "x")])
