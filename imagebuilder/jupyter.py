"""A Jupyter kernelspec for a created env: `imgbuild_<alias or full_id16>`.

Written into the user's Jupyter data folder (`$JUPYTER_DATA_DIR` or ~/.local/share/jupyter,
`kernels/<name>/kernel.json`), where every Jupyter front end on this machine finds it. The
kernel runs the env's own python with ipykernel, which must be in the env.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import BadInput
from imagebuilder.ids import AliasRef, parse_env_ref, short


def data_dir() -> Path:
    env = os.environ.get("JUPYTER_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "jupyter"


def kernel_name(env: ResolvedEnv, env_ref: str | None) -> str:
    """imgbuild_<alias> for an alias (`/` and `:` become `_`), else imgbuild_<full_id16>."""
    label = short(env.full_id)
    if env_ref:
        try:
            ref = parse_env_ref(env_ref)
        except BadInput:
            ref = None
        if isinstance(ref, AliasRef):
            label = re.sub(r"[^A-Za-z0-9._-]", "_", f"{ref.name}_{ref.tag}")
    return f"imgbuild_{label}"


def register_kernel(
    env: ResolvedEnv,
    prefix: str,
    env_ref: str | None = None,
    *,
    warn: Callable[[str], None] | None = None,
) -> dict:
    python = os.path.join(prefix, "bin", "python")
    if not os.path.exists(python):
        raise BadInput(
            f"{env.name} has no python at {python}: no Jupyter kernel possible",
            "add python (and ipykernel) to the environment",
        )
    if env.package("ipykernel") is None and warn is not None:
        warn(
            f"{env.name} does not contain ipykernel: the kernel will not start until it does "
            "(add ipykernel to the request and resolve again)"
        )
    name = kernel_name(env, env_ref)
    label = name.removeprefix("imgbuild_")
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"imgbuild {label} ({short(env.full_id)})",
        "language": "python",
        "env": {"CONDA_PREFIX": prefix, "IMGBUILD_ENV_ID": env.short_id},
        "metadata": {
            "imgbuild": {"req_id": env.req_id, "full_id": env.full_id, "prefix": prefix},
            "debugger": True,
        },
    }
    folder = data_dir() / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "kernel.json.tmp"
    tmp.write_text(json.dumps(spec, indent=1) + "\n")
    os.replace(tmp, folder / "kernel.json")
    return {"name": name, "path": str(folder / "kernel.json")}
