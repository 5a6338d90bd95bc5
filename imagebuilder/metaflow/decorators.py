"""The decorators users write, with core Metaflow's names so they replace it (and Conda v2's).

Step: `@conda`, `@pypi`, `@named_env`, `@sys_packages`; flow: `@conda_base`, `@pypi_base`,
`@named_env_base`. They only hold what the user asked for (`part()`); the environment
(environment.py) merges them per step (requirements.py) and the internal step decorator
(internal.py) runs the task lifecycle. Attributes are those of OSS Metaflow 2.19 plus Conda
v2's (deprecated spellings included, so existing flows keep working).

Imports stay light: this module is loaded by every Metaflow process, tasks included.
"""

from __future__ import annotations

from metaflow.decorators import FlowDecorator, StepDecorator
from metaflow.metaflow_environment import InvalidEnvironmentException

from imagebuilder.metaflow.requirements import Part, parse_bool, parse_list, parse_packages

ENV_TYPES = ("conda", "pypi")


def _require_env(deco_name: str, environment) -> None:
    if getattr(environment, "TYPE", None) not in ENV_TYPES:
        raise InvalidEnvironmentException(
            f"@{deco_name} needs --environment=conda (or --environment=pypi): "
            f"run `python flow.py --environment=conda run`"
        )


class _Requirement:
    """Mixin: the decorator's attributes as a requirements.Part."""

    name = "noname"
    is_flow_level = False

    def where(self, step: str | None = None) -> str:
        return f"@{self.name}" + (f" on step {step}" if step else "")

    def part(self, step: str | None = None) -> Part:
        raise NotImplementedError

    def is_attribute_user_defined(self, name: str) -> bool:  # OSS @conda/@pypi have it
        return name in getattr(self, "_user_defined_attributes", ())


def _named(attrs: dict) -> str | None:
    name, pathspec = attrs.get("name"), attrs.get("pathspec")
    if name and pathspec:
        return "\0both"
    if pathspec:
        p = str(pathspec).strip()
        return p if p.startswith("mf:") else f"mf:{p}"
    return str(name).strip() if name else None


def _check_named(where: str, named: str | None) -> None:
    from imagebuilder.metaflow.requirements import RequestError

    if named == "\0both":
        raise RequestError(f"{where}: give name= or pathspec=, not both")


class _CondaPart(_Requirement):
    defaults = {
        "libraries": {},
        "packages": {},  # OSS Metaflow's name for libraries
        "channels": [],
        "python": None,
        "disabled": None,
        # Conda v2 spellings, deprecated there in favour of @pypi / @named_env
        "pip_packages": {},
        "pip_sources": [],
        "name": None,
        "pathspec": None,
        "fetch_at_exec": None,
    }

    def part(self, step: str | None = None) -> Part:
        a, w = self.attributes, self.where(step)
        named = _named(a)
        _check_named(w, named)
        conda = parse_packages(a.get("libraries"), w, "libraries")
        conda += parse_packages(a.get("packages"), w, "packages")
        return Part(
            where=w,
            conda=conda,
            pypi=parse_packages(a.get("pip_packages"), w, "pip_packages"),
            channels=parse_list(a.get("channels"), w, "channels"),
            indexes=parse_list(a.get("pip_sources"), w, "pip_sources"),
            python=str(a["python"]).strip() if a.get("python") else None,
            named=named,
            fetch_at_exec=parse_bool(a.get("fetch_at_exec"), w, "fetch_at_exec"),
            disabled=parse_bool(a.get("disabled"), w, "disabled"),
        )


class _PypiPart(_Requirement):
    defaults = {
        "packages": {},
        "extra_indices": [],
        "python": None,
        "disabled": None,
        "sources": [],  # Conda v2, deprecated
        "name": None,
        "pathspec": None,
        "fetch_at_exec": None,
    }

    def part(self, step: str | None = None) -> Part:
        a, w = self.attributes, self.where(step)
        named = _named(a)
        _check_named(w, named)
        return Part(
            where=w,
            pypi=parse_packages(a.get("packages"), w, "packages"),
            indexes=parse_list(a.get("extra_indices"), w, "extra_indices")
            + parse_list(a.get("sources"), w, "sources"),
            python=str(a["python"]).strip() if a.get("python") else None,
            named=named,
            fetch_at_exec=parse_bool(a.get("fetch_at_exec"), w, "fetch_at_exec"),
            disabled=parse_bool(a.get("disabled"), w, "disabled"),
        )


class _NamedPart(_Requirement):
    defaults = {"name": None, "pathspec": None, "fetch_at_exec": None, "disabled": None}

    def part(self, step: str | None = None) -> Part:
        from imagebuilder.metaflow.requirements import RequestError

        a, w = self.attributes, self.where(step)
        named = _named(a)
        _check_named(w, named)
        disabled = parse_bool(a.get("disabled"), w, "disabled")
        if named is None and not disabled:
            raise RequestError(
                f"{w}: name the environment with name='team/env:tag' or pathspec='Flow/Run/Step'"
            )
        return Part(
            where=w,
            named=named,
            fetch_at_exec=parse_bool(a.get("fetch_at_exec"), w, "fetch_at_exec"),
            disabled=disabled,
        )


class _SysPart(_Requirement):
    defaults = {"packages": {}, "disabled": None}

    def part(self, step: str | None = None) -> Part:
        from imagebuilder.metaflow.requirements import RequestError
        from imagebuilder.spec import normalize_sys_packages

        a, w = self.attributes, self.where(step)
        pkgs = parse_packages(a.get("packages"), w, "packages")
        try:
            normalize_sys_packages(dict(pkgs))
        except Exception as e:
            raise RequestError(f"{w}: {e}", "e.g. packages={'__glibc': '2.31'}") from None
        return Part(where=w, sys=pkgs, disabled=parse_bool(a.get("disabled"), w, "disabled"))


class _StepRequirementDecorator(_Requirement, StepDecorator):
    def step_init(self, flow, graph, step, decos, environment, flow_datastore, logger):
        _require_env(self.name, environment)


class _FlowRequirementDecorator(_Requirement, FlowDecorator):
    is_flow_level = True

    def flow_init(self, flow, graph, environment, flow_datastore, metadata, logger, echo, options):
        _require_env(self.name, environment)


class CondaStepDecorator(_CondaPart, _StepRequirementDecorator):
    """Conda packages for this step (on top of `@conda_base`).

    Parameters
    ----------
    libraries : Dict[str, str], default {}
        Conda packages: name -> version ("1.2.3" exactly, ">=1,<2", "" for any).
        `packages` is accepted as a synonym (OSS Metaflow's name).
    channels : List[str], default []
        Conda channels, in priority order (default: config `channels`, else conda-forge).
    python : str, optional
        Python version (default: the major.minor of the interpreter that launched the flow).
    disabled : bool, default False
        Run this step without an imgbuild environment.
    """

    name = "conda"
    defaults = dict(_CondaPart.defaults)


class PypiStepDecorator(_PypiPart, _StepRequirementDecorator):
    """PyPI packages for this step (python comes from conda). Combine with `@conda` on the
    same step for a mixed environment.

    Parameters
    ----------
    packages : Dict[str, str], default {}
        PyPI packages: name -> version ("2.31.0" exactly, ">=2", "" for any).
    extra_indices : List[str], default []
        Extra PyPI indexes, after the primary one (config `index_url`, else PyPI).
    python : str, optional
        Python version.
    disabled : bool, default False
        Run this step without an imgbuild environment.
    """

    name = "pypi"
    defaults = dict(_PypiPart.defaults)


class NamedEnvStepDecorator(_NamedPart, _StepRequirementDecorator):
    """Run this step in an existing environment, named by an alias or by a past step.

    Parameters
    ----------
    name : str, optional
        An alias NAME[:TAG] (tag default `latest`), e.g. "team/nlp:stable".
    pathspec : str, optional
        Flow/Run/Step of a past step: the exact environment it ran in.
    fetch_at_exec : bool, default False
        Look the alias up when the task starts instead of at `run` / deploy time.
    disabled : bool, default False
        Run this step without an imgbuild environment.
    """

    name = "named_env"
    defaults = dict(_NamedPart.defaults)


class SysPackagesStepDecorator(_SysPart, _StepRequirementDecorator):
    """Virtual packages of the target, e.g. packages={"__cuda": "12.1", "__glibc": "2.31"}."""

    name = "sys_packages"
    defaults = dict(_SysPart.defaults)


class CondaFlowDecorator(_CondaPart, _FlowRequirementDecorator):
    """Conda packages for every step (`@conda` on a step adds to or overrides them)."""

    name = "conda_base"
    defaults = dict(_CondaPart.defaults)


class PypiFlowDecorator(_PypiPart, _FlowRequirementDecorator):
    """PyPI packages for every step (`@pypi` on a step adds to or overrides them)."""

    name = "pypi_base"
    defaults = dict(_PypiPart.defaults)


class NamedEnvFlowDecorator(_NamedPart, _FlowRequirementDecorator):
    """One named environment for every step (a step's own decorators replace it)."""

    name = "named_env_base"
    defaults = dict(_NamedPart.defaults)


STEP_DECORATORS = (
    CondaStepDecorator,
    PypiStepDecorator,
    NamedEnvStepDecorator,
    SysPackagesStepDecorator,
)
FLOW_DECORATORS = (CondaFlowDecorator, PypiFlowDecorator, NamedEnvFlowDecorator)
REQUIREMENT_NAMES = frozenset(d.name for d in STEP_DECORATORS)
FLOW_REQUIREMENT_NAMES = frozenset(d.name for d in FLOW_DECORATORS)
