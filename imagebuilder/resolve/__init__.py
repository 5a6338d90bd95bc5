"""Resolve: an EnvSpec becomes a ResolvedEnv (pinned packages with hashes).

    env = resolve(spec)                       # rattler for conda, uv for PyPI
    env = resolve(spec, conda=ExternalResolver("micromamba"))

The conda part is solved first (python comes from conda unless --python-from-base); the PyPI
part is then resolved for that python and platform, with the conda-provided Python packages
held as installed (mixed.py). Backends: conda.py (rattler), pypi.py (uv), external.py
(micromamba / conda / mamba when on PATH). The CLI pipeline (reuse, cache, store, alias) is in
pipeline.py.
"""

from __future__ import annotations

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import BadInput
from imagebuilder.resolve.base import CondaResolver, Context, Provided, PypiResolver
from imagebuilder.spec import EnvSpec

__all__ = ["Context", "CondaResolver", "Provided", "PypiResolver", "resolve", "conda_backend"]


def resolve(
    spec: EnvSpec,
    conda: CondaResolver | None = None,
    pypi: PypiResolver | None = None,
    ctx: Context | None = None,
) -> ResolvedEnv:
    from imagebuilder.resolve.conda import conda_specs

    ctx = ctx or Context()
    conda = conda or conda_backend("rattler")
    conda_pkgs = []
    specs = conda_specs(spec)
    if specs:
        conda_pkgs = conda.solve(spec, specs, ctx)
    pypi_pkgs = []
    used = {conda.name: conda.version()} if specs else {}
    if spec.all_pypi:
        from imagebuilder.resolve.mixed import provided

        if pypi is None:
            from imagebuilder.resolve.pypi import UvResolver

            pypi = UvResolver()
        python = _python_version(spec, conda_pkgs)
        pypi_pkgs = pypi.solve(spec, python, provided(conda_pkgs), ctx)
        used[pypi.name] = pypi.version()
    return ResolvedEnv(spec, tuple(conda_pkgs + pypi_pkgs), resolver=tuple(sorted(used.items())))


def _python_version(spec: EnvSpec, conda_pkgs) -> str:
    py = next((p for p in conda_pkgs if p.name == "python"), None)
    if py is not None:
        return py.version
    if spec.python_from_base and spec.python:
        v = spec.python.removesuffix(".*")
        if all(part.isdigit() for part in v.split(".")) and v.count(".") in (1, 2):
            return v
    raise BadInput(
        f"no python version to resolve the PyPI packages for (python constraint: {spec.python})",
        "with --python-from-base give an exact version, e.g. --python 3.11",
    )


def conda_backend(name: str) -> CondaResolver:
    """The conda resolver named by --resolver (rattler is embedded; the others need PATH)."""
    if name in ("rattler", "uv"):
        from imagebuilder.resolve.conda import RattlerResolver

        return RattlerResolver()
    from imagebuilder.resolve.external import ExternalResolver

    return ExternalResolver(name)
