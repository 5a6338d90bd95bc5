"""Commands (the imgbuild CLI above all) in a subprocess with a clean environment, shared by
tests/conftest.py and the folders' helpers (tests/interop, tests/metaflow, tests/hydrate):

- `Result`: what a run gave (args, returncode, stdout, stderr; `.json()`).
- `clean_environ(drop, fixed, env)`: os.environ minus the developer's settings, plus fixed
  values, plus a test's `env` (a None value removes a variable).
- `run_checked(argv, ...)`: run, fail the test on an unexpected exit status with both streams.
- `ImgbuildRunner`: `python -m imagebuilder` with a per-test HOME and store.

A module of its own under a unique name (pytest's rootdir imports: tests/ is on sys.path once
tests/conftest.py is loaded, and a basename may exist once across the test folders).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

# inherited variables that would make a test depend on the developer's machine
DROP_PREFIXES = (
    "IMGBUILD_", "METAFLOW_", "AWS_", "UV_", "PIP_", "CONDA_", "MAMBA_", "RATTLER_", "XDG_",
    "DOCKER_", "CONTAINERS_", "REGISTRY_AUTH_FILE", "VIRTUAL_ENV",
)  # fmt: skip


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        try:
            return json.loads(self.stdout)
        except ValueError as e:
            raise AssertionError(
                f"stdout of {' '.join(self.args)} is not JSON: {e}\n{self.stdout[-3000:]}\n"
                f"--- stderr\n{self.stderr[-3000:]}"
            ) from None


def clip(text: str, n: int = 8000) -> str:
    return text if len(text) <= n else f"...({len(text) - n} chars cut)...\n" + text[-n:]


def clean_environ(
    drop: tuple[str, ...], fixed: Mapping[str, str], env: Mapping[str, object] | None = None
) -> dict[str, str]:
    """os.environ without variables starting with `drop`, then `fixed`, then `env` (None
    removes a variable, other values are str()-ed)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    e.update(fixed)
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = str(v)
    return e


def run_checked(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd,
    what: str,
    expect: int | None = 0,
    timeout: float = 600,
    input: str | None = None,
    args: Sequence[str] | None = None,
) -> Result:
    """Run argv; fail the test (with both streams, clipped) unless it exits with `expect`
    (None: any status). The Result carries `args` (default: argv)."""
    p = subprocess.run(
        list(argv),
        env=dict(env),
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    r = Result(tuple(argv if args is None else args), p.returncode, p.stdout, p.stderr)
    if expect is not None and p.returncode != expect:
        pytest.fail(
            f"{what}: exit {p.returncode}, expected {expect}\n"
            f"--- stdout\n{clip(p.stdout)}\n--- stderr\n{clip(p.stderr)}",
            pytrace=False,
        )
    return r


class ImgbuildRunner:
    """`imgbuild(*args, env=None, cwd=None, input=None, expect=0, timeout=600) -> Result`.

    HOME (and XDG_*) is a folder under `tmp`, IMGBUILD_STORE `store` (default: a local store
    under `tmp`) unless `env` gives one; `env` values of None remove a variable. `expect=None`
    skips the exit check. `drop`: the inherited variables left out (a subclass may add more)."""

    drop: tuple[str, ...] = DROP_PREFIXES

    def __init__(self, tmp: Path, store: Path | None = None):
        self.tmp = Path(tmp)
        self.home = self.tmp / "home"
        self.store = store or self.tmp / "store"
        self.home.mkdir(parents=True, exist_ok=True)

    def environ(self, env: Mapping[str, object] | None = None) -> dict[str, str]:
        fixed = {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "IMGBUILD_STORE": str(self.store),
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONDONTWRITEBYTECODE": "1",
            # cache_env also caches the task bootstrap runtime (from PyPI): off unless a test
            # asks for it (tests/hydrate does, from local wheels)
            "IMGBUILD_RUNTIME_CACHE": "0",
        }
        return clean_environ(self.drop, fixed, env)

    def __call__(
        self, *args, env=None, cwd=None, input=None, expect: int | None = 0, timeout: float = 600
    ) -> Result:
        argv = tuple(str(a) for a in args)
        return run_checked(
            [sys.executable, "-m", "imagebuilder", *argv],
            env=self.environ(env),
            cwd=cwd or self.tmp,
            what=f"imgbuild {' '.join(argv)}",
            expect=expect,
            timeout=timeout,
            input=input,
            args=argv,
        )
