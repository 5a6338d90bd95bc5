"""Files + command-line flags -> one EnvSpec per target arch.

Order: the files named by -f/-r/-p (or, with none of them and no --conda/--pypi, the first
of ./imgbuild.toml [environment], environment.yml, requirements.txt, pyproject.toml), then the
flags. Lists add up; a scalar set differently by two files is an error; a flag overrides files.
Defaults (channels, index) are written into the spec so that req_id names what was used.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from imagebuilder.errors import BadInput
from imagebuilder.inputs.request import Item, Request, merge
from imagebuilder.spec import EnvSpec

DEFAULT_CHANNEL = "conda-forge"
DEFAULT_INDEX = "https://pypi.org/simple"
# Bare `imgbuild resolve`: the first of these found in the current folder is read.
DISCOVERY = ("imgbuild.toml", "environment.yml", "requirements.txt", "pyproject.toml")


@dataclass(frozen=True)
class Flags:
    """The request part of `imgbuild resolve`'s command line."""

    requirements: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()
    pyproject: tuple[str, ...] = ()
    conda: tuple[str, ...] = ()
    pypi: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    pre: bool = False
    python: str | None = None
    arch: tuple[str, ...] = ()
    sys_pkgs: tuple[str, ...] = ()
    exclude_newer: str | None = None
    python_from_base: bool = False

    @property
    def names_inputs(self) -> bool:
        return bool(
            self.requirements or self.environment or self.pyproject or self.conda or self.pypi
        )


@dataclass(frozen=True)
class Collected:
    specs: tuple[EnvSpec, ...]
    sources: tuple[str, ...]  # files read, for messages
    # URL as recorded (no credentials) -> URL as given. Used only to talk to the server;
    # never printed or stored.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)


def collect(flags: Flags, config=None, cwd: str | os.PathLike | None = None) -> Collected:
    here = Path(cwd or os.getcwd())
    files = _file_requests(flags, here)
    merged = merge(files, _flag_request(flags))
    return Collected(
        specs=build_specs(merged, flags.python_from_base, config),
        sources=tuple(r.source for r in files),
        secrets=_secrets(merged),
    )


def _file_requests(flags: Flags, here: Path) -> list[Request]:
    out: list[Request] = []
    if flags.environment:
        from imagebuilder.inputs.envyml import parse_environment_yml

        out += [parse_environment_yml(p) for p in flags.environment]
    if flags.requirements:
        from imagebuilder.inputs.requirements import parse_requirements

        out += [parse_requirements(p) for p in flags.requirements]
    if flags.pyproject:
        from imagebuilder.inputs.tomlfiles import parse_pyproject

        out += [parse_pyproject(p) for p in flags.pyproject]
    if not flags.names_inputs:
        found = discover(here)
        if found is not None:
            out.append(found)
    return out


def discover(here: Path) -> Request | None:
    """The request of a bare `imgbuild resolve`: the first input file found in `here`."""
    from imagebuilder.inputs.tomlfiles import has_environment_table

    for name in DISCOVERY:
        path = here / name
        if not path.is_file():
            continue
        shown = os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
        if name == "imgbuild.toml":
            if has_environment_table(path):
                from imagebuilder.inputs.tomlfiles import parse_imgbuild_toml

                return parse_imgbuild_toml(shown)
        elif name == "environment.yml":
            from imagebuilder.inputs.envyml import parse_environment_yml

            return parse_environment_yml(shown)
        elif name == "requirements.txt":
            from imagebuilder.inputs.requirements import parse_requirements

            return parse_requirements(shown)
        else:
            from imagebuilder.inputs.tomlfiles import parse_pyproject

            return parse_pyproject(shown)
    return None


def _flag_request(flags: Flags) -> Request:
    from imagebuilder.inputs.request import checked
    from imagebuilder.spec import normalize_conda_spec, normalize_pypi_req, parse_sys_pkg

    def items(values, origin, normalize=None):
        return tuple(
            Item(checked(normalize, v, origin) if normalize else v, origin) for v in values
        )

    def one(value, origin):
        return Item(value, origin) if value else None

    sys_pkgs = tuple((*checked(parse_sys_pkg, s, "--sys-pkg"), "--sys-pkg") for s in flags.sys_pkgs)
    return Request(
        source="command line",
        conda=items(flags.conda, "--conda", normalize_conda_spec),
        pypi=items(flags.pypi, "--pypi", normalize_pypi_req),
        channels=items(flags.channels, "--channel"),
        index_url=one(flags.index_url, "--index-url"),
        extra_index_urls=items(flags.extra_index_urls, "--extra-index-url"),
        find_links=items(flags.find_links, "--find-links"),
        pre=flags.pre,
        python=one(flags.python, "--python"),
        sys=sys_pkgs,
        arch=items(flags.arch, "--arch"),
        exclude_newer=one(flags.exclude_newer, "--exclude-newer"),
    )


def build_specs(req: Request, python_from_base: bool = False, config=None) -> tuple[EnvSpec, ...]:
    """Validate the merged request and make one EnvSpec per arch (defaults filled in)."""
    from imagebuilder.inputs.request import checked
    from imagebuilder.platforms import get_arch, host_arch
    from imagebuilder.spec import make_spec, normalize_date, normalize_python

    if not (req.conda or req.pypi):
        raise BadInput(
            "empty request: no conda or PyPI package to resolve",
            "pass --conda SPEC / --pypi REQ, or -r requirements.txt / -f environment.yml / "
            "-p pyproject.toml (or run in a folder that has one)",
        )
    python = checked(normalize_python, req.python.value, req.python.origin) if req.python else None
    if python_from_base:
        if req.conda:
            raise BadInput(
                f"--python-from-base is for pure PyPI requests, but {req.conda[0].value!r} "
                f"({req.conda[0].origin}) is a conda package",
                "drop --python-from-base to get python from conda",
            )
        if python is None:
            python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    conda_solve = bool(req.conda) or not python_from_base
    channels = [i.value for i in req.channels]
    if conda_solve and not channels:
        channels = list(config.channels) if config is not None and config.channels else []
        channels = channels or [DEFAULT_CHANNEL]
    indexes: list[str] = []
    if req.pypi:
        primary = req.index_url.value if req.index_url else None
        if primary is None and config is not None:
            primary = config.get("index_url")
        indexes = [primary or DEFAULT_INDEX, *(i.value for i in req.extra_index_urls)]
    exclude = (
        checked(normalize_date, req.exclude_newer.value, req.exclude_newer.origin)
        if req.exclude_newer
        else None
    )
    arches = list(dict.fromkeys(i.value for i in req.arch)) or [host_arch()]
    for item in req.arch:
        checked(get_arch, item.value, item.origin)
    origins = {i.value: i.origin for i in (*req.conda, *req.pypi)}
    if req.python:
        origins["python"] = req.python.origin
    return tuple(
        make_spec(
            arch=arch,
            conda=[i.value for i in req.conda],
            pypi=[i.value for i in req.pypi],
            channels=channels if conda_solve else [],
            indexes=indexes,
            find_links=[i.value for i in req.find_links] if req.pypi else [],
            pre=req.pre and bool(req.pypi),
            python=python,
            sys_packages={n: v for n, v, _ in req.sys},
            exclude_newer=exclude,
            implicit_conda=["python"] if req.pypi and not python_from_base else [],
            python_from_base=python_from_base,
            origins=origins,
        )
        for arch in arches
    )


def _secrets(req: Request) -> dict[str, str]:
    """Map each URL as the spec records it (make_spec's normalization) to the URL as given."""
    from imagebuilder.urls import normalize_channel, strip_credentials

    out = {}
    indexes = [req.index_url] if req.index_url else []
    for items, norm in (
        (req.channels, normalize_channel),
        ((*indexes, *req.extra_index_urls), lambda u: strip_credentials(u.strip()).rstrip("/")),
        (req.find_links, lambda u: strip_credentials(u.strip())),
    ):
        for item in items:
            given = item.value.strip()
            if norm(given) != given.rstrip("/") and norm(given) != given:
                out[norm(given)] = given
    return out
