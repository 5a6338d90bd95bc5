"""Which wheel of a release fits the target: packaging.tags for another machine.

uv resolves for `--python-platform`/`--python-version` and lists every wheel of the chosen
version that could fit; we pick the one the target's installer would prefer (the first match
in the target's tag priority order), computed for the target, never for this host.
"""

from __future__ import annotations

import functools

from imagebuilder.platforms import get_arch, virtual_packages


@functools.cache
def _priority(subdir: str, python: str, sys_items: tuple[tuple[str, str], ...]) -> dict:
    from packaging import tags

    major, minor = (int(x) for x in python.split(".")[:2])
    arch = get_arch(subdir)
    vp = virtual_packages(subdir, dict(sys_items))
    if arch.is_linux:
        glibc_minor = int(vp["__glibc"].split(".")[1])
        plats = []
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        for m in range(glibc_minor, 4, -1):
            plats.append(f"manylinux_2_{m}_{arch.machine}")
            if m in legacy and (arch.machine == "x86_64" or m >= 17):
                plats.append(f"{legacy[m]}_{arch.machine}")
    else:
        osx = tuple(int(x) for x in (vp["__osx"].split(".") + ["0"])[:2])
        plats = list(tags.mac_platforms(osx, "arm64" if arch.machine == "arm64" else "x86_64"))
    interp = f"cp{major}{minor}"
    order = list(tags.cpython_tags((major, minor), [interp], plats))
    order += list(tags.compatible_tags((major, minor), interp, plats))
    return {t: i for i, t in enumerate(dict.fromkeys(order))}


def rank(filename: str, subdir: str, python: str, sys_packages: dict[str, str]) -> int | None:
    """Lower is better; None when the wheel cannot run on the target."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, wheel_tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    prio = _priority(subdir, python, tuple(sorted(sys_packages.items())))
    ranks = [prio[t] for t in wheel_tags if t in prio]
    return min(ranks) if ranks else None


def wheel_build(filename: str) -> str:
    """The tag part of a wheel filename ('py3-none-any'), used as the Package's build."""
    return "-".join(filename[: -len(".whl")].split("-")[-3:])


def is_pure(filename: str) -> bool:
    from packaging.utils import parse_wheel_filename

    return all(t.platform == "any" for t in parse_wheel_filename(filename)[3])
