"""uv.lock, read through uv itself: `uv export --frozen --format pylock.toml`.

uv.lock is uv's own format (it changes between uv releases); uv's export to PEP 751 is the
stable door into it. uv needs the project next to the lock (pyproject.toml), reads no network
with --frozen, and includes the default groups, as `uv sync` does. Not written: export to
pylock.toml instead, which uv reads (`uv pip install -r pylock.toml`).
"""

from __future__ import annotations

import subprocess

from imagebuilder.errors import BadInput
from imagebuilder.lockfiles import pylock
from imagebuilder.lockfiles.base import Locked, ReadContext
from imagebuilder.urls import redact


def sniff(text: str) -> bool:
    head = text[:4000]
    return "[[package]]" in text and "lock-version" not in head and "\nversion = " in "\n" + head


def read(text: str, ctx: ReadContext) -> Locked:
    project = ctx.path.parent
    if not (project / "pyproject.toml").is_file():
        raise BadInput(
            f"{ctx.where}uv.lock needs its project: no pyproject.toml in {project}",
            "point --lockfile at the uv.lock inside its project folder",
        )
    from uv import find_uv_bin

    cmd = [
        find_uv_bin(),
        "export",
        "--frozen",
        "--format",
        "pylock.toml",
        "--no-emit-project",
        "--no-header",
        "--quiet",
        "--directory",
        str(project),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BadInput(f"{ctx.where}cannot run uv export: {e}") from None
    if out.returncode != 0:
        msg = redact(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
        raise BadInput(f"{ctx.where}uv export failed: {msg}", "check that `uv lock --check` passes")
    return pylock.read(out.stdout, ctx)
