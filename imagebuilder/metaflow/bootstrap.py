"""Shell commands a remote task runs before its step (environment.bootstrap_commands).

They run inside Metaflow's `bash -c "..."` (joined with ` && `), after the code package is
downloaded and PYTHONPATH points at it, so `python -m imagebuilder.bootstrap` imports the
`imagebuilder` source shipped in the code package (environment.add_to_package). Rules of
that context: no double quotes (the whole command sits in one), a failing item stops the
chain, the step command follows.

- Baked image: nothing to create; the env's python is `/opt/imgbuild/env/bin/python`.
- No image: the bootstrap creates the env from the store at task start (standard library
  first, its runtime wheels from the store), prints the interpreter last; we keep that line.
"""

from __future__ import annotations

import shlex

from imagebuilder.metaflow.plan import StepEnv
from imagebuilder.metaflow.settings import REMOTE_ENVS_DIR

IMAGE_PYTHON = "/opt/imgbuild/env/bin/python"
PYTHON_VAR = "IMGBUILD_PYTHON"

# What the task reads back (internal.py registers it as task metadata).
ENV_REQ_ID = "IMGBUILD_MF_REQ_ID"
ENV_FULL_ID = "IMGBUILD_MF_FULL_ID"
ENV_IMAGE = "IMGBUILD_MF_IMAGE"
ENV_PREFIX = "IMGBUILD_MF_PREFIX"


def _q(value: str) -> str:
    """Quote for bash inside Metaflow's double-quoted `bash -c "..."`: single quotes only."""
    if "'" in value or '"' in value:
        raise ValueError(f"cannot pass {value!r} to a task command")
    return shlex.quote(value)


def exports(se: StepEnv) -> list[str]:
    pairs = [
        (ENV_REQ_ID, se.req_id),
        (ENV_FULL_ID, se.full_id),
        (ENV_IMAGE, se.image),
        ("PYTHONNOUSERSITE", "1"),
    ]
    return ["export " + " ".join(f"{k}={_q(v)}" for k, v in pairs if v)]


def remote_commands(se: StepEnv, system_python: str = "python") -> list[str]:
    if se.image:
        return [*exports(se), "mflog 'Running on the baked image of the imgbuild environment.'"]
    prefix = f"{REMOTE_ENVS_DIR}/{se.env_name or 'fetched-' + _slug(se.env_ref)}"
    boot = (
        f"_imgb_out=$({system_python} -m imagebuilder.bootstrap {_q(se.env_ref)} {_q(prefix)}"
        f" --store {_q(se.store)} --arch {_q(se.arch)})"
    )
    return [
        *exports(se),
        f"export {ENV_PREFIX}={_q(prefix)}",
        "mflog 'Creating the imgbuild environment at task start...'",
        "flush_mflogs",
        boot,
        # a here-string keeps the newlines (no word splitting) without needing double quotes
        f"export {PYTHON_VAR}=$(tail -n 1 <<< $_imgb_out)",
        f"export PATH=$(dirname ${PYTHON_VAR}):$PATH",
        "mflog 'Environment created.'",
        "flush_mflogs",
    ]


def remote_executable(se: StepEnv) -> str:
    return IMAGE_PYTHON if se.image else f"${PYTHON_VAR}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
