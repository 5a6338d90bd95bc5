"""Target platforms: conda subdir names (the one `--arch` vocabulary), their defaults, and
how they map onto uv's `--python-platform` and OCI platforms."""

from __future__ import annotations

import platform as _platform
import sys
from dataclasses import dataclass

from imagebuilder.errors import BadInput


@dataclass(frozen=True)
class Arch:
    subdir: str
    os: str
    machine: str  # archspec name
    oci_arch: str
    uv_machine: str

    @property
    def is_linux(self) -> bool:
        return self.os == "linux"


ARCHES: dict[str, Arch] = {
    "linux-64": Arch("linux-64", "linux", "x86_64", "amd64", "x86_64"),
    "linux-aarch64": Arch("linux-aarch64", "linux", "aarch64", "arm64", "aarch64"),
    "osx-64": Arch("osx-64", "osx", "x86_64", "amd64", "x86_64"),
    "osx-arm64": Arch("osx-arm64", "osx", "arm64", "arm64", "aarch64"),
}

# Virtual packages assumed for a target when the request does not set them (--sys-pkg wins).
DEFAULT_GLIBC = "2.28"
DEFAULT_OSX = {"osx-64": "10.15", "osx-arm64": "11.0"}
DEFAULT_LINUX_KERNEL = "5.10"


def get_arch(subdir: str) -> Arch:
    try:
        return ARCHES[subdir]
    except KeyError:
        raise BadInput(f"unknown arch {subdir!r}", f"use one of: {', '.join(ARCHES)}") from None


def host_arch() -> str:
    machine = _platform.machine().lower()
    if sys.platform.startswith("linux"):
        return "linux-aarch64" if machine in ("aarch64", "arm64") else "linux-64"
    if sys.platform == "darwin":
        return "osx-arm64" if machine == "arm64" else "osx-64"
    raise BadInput(f"unsupported host platform {sys.platform}/{machine}")


def virtual_packages(subdir: str, sys_packages: dict[str, str]) -> dict[str, str]:
    """Virtual packages (name -> version) for solving for `subdir`; explicit ones override."""
    arch = get_arch(subdir)
    out: dict[str, str] = {"__unix": "0", "__archspec": "1"}
    if arch.is_linux:
        out["__linux"] = DEFAULT_LINUX_KERNEL
        out["__glibc"] = DEFAULT_GLIBC
    else:
        out["__osx"] = DEFAULT_OSX[subdir]
    out.update(sys_packages)
    return out


def uv_python_platform(subdir: str, sys_packages: dict[str, str]) -> str:
    """uv's --python-platform for a target: manylinux level follows __glibc."""
    arch = get_arch(subdir)
    if arch.is_linux:
        glibc = virtual_packages(subdir, sys_packages)["__glibc"]
        major, _, minor = glibc.partition(".")
        return f"{arch.uv_machine}-manylinux_{major}_{(minor or '0').split('.')[0]}"
    return f"{arch.uv_machine}-apple-darwin"


def oci_platform(subdir: str) -> tuple[str, str]:
    arch = get_arch(subdir)
    if not arch.is_linux:
        raise BadInput(
            f"no container image for {subdir}: images run Linux",
            "resolve the environment with --arch linux-64 or --arch linux-aarch64",
        )
    return "linux", arch.oci_arch
