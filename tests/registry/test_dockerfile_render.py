"""`imgbuild dockerfile` text for a conda env and for a venv on the base's python."""

from __future__ import annotations

from imagebuilder.env import CONDA, PYPI, Package, ResolvedEnv
from imagebuilder.registry.dockerfile import render_env
from imagebuilder.spec import make_spec


def _pkg(kind: str, name: str) -> Package:
    return Package(kind=kind, name=name, version="1.0", build="0", subdir="noarch",
                   filename=f"{name}.whl", url="",
                   sha256="ab" * 32)  # fmt: skip


def test_prefix_variable_follows_the_env_kind():
    venv = ResolvedEnv(
        make_spec(arch="linux-64", pypi=["six"], python="3.11", python_from_base=True),
        (_pkg(PYPI, "six"),),
    )
    conda = ResolvedEnv(make_spec(arch="linux-64", conda=["python"]), (_pkg(CONDA, "python"),))
    v, c = render_env(venv, "base:1"), render_env(conda, "base:1")
    assert "CONDA_PREFIX=/opt/imgbuild/env VIRTUAL_ENV=/opt/imgbuild/env \\\n" in v
    assert "CONDA_PREFIX=/opt/imgbuild/env \\\n" in c and "VIRTUAL_ENV" not in c
    assert "@@" not in v + c
