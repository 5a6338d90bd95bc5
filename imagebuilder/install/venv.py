"""A virtual environment on a given python, written directly (no `python -m venv` run): a
pyvenv.cfg, bin/python links and an empty site-packages. Writing it ourselves lets it be built
in a staging folder for its final path (activate names the final path) and costs no process.
Standard library only."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from imagebuilder.errors import BadInput


@dataclass(frozen=True)
class BasePython:
    executable: str  # the real interpreter (not a shim, not a venv's link)
    version: tuple[int, int, int]

    @property
    def xy(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


def probe(python: str) -> BasePython:
    """Ask an interpreter what it really is (pyenv shims and venv links resolve here)."""
    code = (
        "import json, sys; print(json.dumps([getattr(sys, '_base_executable', sys.executable),"
        " list(sys.version_info[:3])]))"
    )
    try:
        out = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        exe, ver = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        raise BadInput(
            f"cannot run python {python!r}: {e}", "pass --python with a working interpreter"
        ) from None
    return BasePython(os.path.realpath(exe), tuple(ver))


def pyvenv_cfg(executable: str, version: str) -> str:
    """pyvenv.cfg of a venv on `executable` (also written into venv images: oci/basepython.py)."""
    return (
        f"home = {os.path.dirname(executable)}\n"
        "include-system-site-packages = false\n"
        f"version = {version}\n"
        f"executable = {executable}\n"
        "created-by = imgbuild\n"
    )


def links(executable: str, xy: str) -> tuple[tuple[str, str], ...]:
    """The venv's symlinks, (path in the venv, target)."""
    return (
        ("bin/python", executable),
        ("bin/python3", "python"),
        (f"bin/python{xy}", "python"),
        ("lib64", "lib"),
    )


def create(staging: Path, prefix: str, base: BasePython) -> str:
    """Write the venv into staging for its final path prefix; returns site-packages (relative)."""
    bindir = staging / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    site = f"lib/python{base.xy}/site-packages"
    (staging / site).mkdir(parents=True, exist_ok=True)
    version = ".".join(map(str, base.version))
    (staging / "pyvenv.cfg").write_text(pyvenv_cfg(base.executable, version))
    for rel, target in links(base.executable, base.xy):
        if not os.path.lexists(staging / rel):
            os.symlink(target, staging / rel)
    (bindir / "activate").write_text(_ACTIVATE.replace("@PREFIX@", prefix))
    return site


_ACTIVATE = """\
# Source this file (bash/zsh): puts the environment's bin first on PATH.
deactivate () {
    if [ -n "${_OLD_VIRTUAL_PATH:-}" ]; then PATH="$_OLD_VIRTUAL_PATH"; export PATH; fi
    unset _OLD_VIRTUAL_PATH VIRTUAL_ENV
    unset -f deactivate
    hash -r 2>/dev/null || true
}
VIRTUAL_ENV="@PREFIX@"
export VIRTUAL_ENV
_OLD_VIRTUAL_PATH="$PATH"
PATH="$VIRTUAL_ENV/bin:$PATH"
export PATH
hash -r 2>/dev/null || true
"""
