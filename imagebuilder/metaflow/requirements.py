"""What one step asks for: its decorators and the flow's, merged the way Conda v2 merges them.

Pure data, no Metaflow import (unit-testable, and the task process pays nothing for it):

- each decorator contributes a `Part` (decorators.py builds them from attributes);
- the flow's parts merge strictly: two base decorators that disagree are an error;
- the step's parts merge strictly among themselves, then override the flow's;
- a named environment (`@named_env`, `name=`/`pathspec=`) is used as it is: it cannot be
  combined with packages, channels, indexes or python at the same level, and packages on a step
  cannot extend a flow-wide named environment.

`to_spec` turns a merged request into an EnvSpec for one arch (defaults written in, so the
req_id names what was used).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from imagebuilder.errors import BadInput

_OPS = ("<", ">", "=", "!", "~", "@")


@dataclass(frozen=True)
class Part:
    """One decorator's contribution. `where` names it in messages: "@conda on step start"."""

    where: str
    conda: tuple[tuple[str, str], ...] = ()  # (name, version constraint) in the user's order
    pypi: tuple[tuple[str, str], ...] = ()
    channels: tuple[str, ...] = ()
    indexes: tuple[str, ...] = ()  # extra PyPI indexes
    python: str | None = None
    sys: tuple[tuple[str, str], ...] = ()
    named: str | None = None  # an ENV reference: alias NAME[:TAG] or mf:Flow/Run/Step
    fetch_at_exec: bool | None = None
    disabled: bool | None = None


@dataclass(frozen=True)
class Request:
    """The merged request of a step. Every value keeps the decorator it came from."""

    conda: tuple[tuple[str, str, str], ...] = ()  # (name, version, where)
    pypi: tuple[tuple[str, str, str], ...] = ()
    channels: tuple[tuple[str, str], ...] = ()  # (url, where)
    indexes: tuple[tuple[str, str], ...] = ()
    python: tuple[str, str] | None = None  # (version, where)
    sys: tuple[tuple[str, str, str], ...] = ()
    named: tuple[str, str] | None = None  # (ENV reference, where)
    fetch_at_exec: bool = False
    disabled: tuple[bool, str] | None = None
    parts: tuple[str, ...] = field(default=(), compare=False)  # decorators that contributed

    @property
    def is_disabled(self) -> bool:
        return bool(self.disabled and self.disabled[0])

    @property
    def has_packages(self) -> bool:
        return bool(self.conda or self.pypi or self.channels or self.indexes or self.python)

    @property
    def is_empty(self) -> bool:
        return not (self.has_packages or self.named or self.sys)

    def describe(self) -> str:
        return ", ".join(self.parts) or "no decorator"


class RequestError(BadInput):
    """Bad decorator input; the message names the step and the decorator."""


def from_part(p: Part) -> Request:
    """A Part as a Request (checks the part on its own first)."""
    if p.named is not None and (p.conda or p.pypi or p.channels or p.indexes or p.python):
        what = _what(p)
        raise RequestError(
            f"{p.where}: a named environment ({p.named}) cannot be combined with {what}",
            "a named environment is used as it is: drop the packages, or resolve a new "
            "environment with them and name that one",
        )
    if p.fetch_at_exec and p.named is None:
        raise RequestError(
            f"{p.where}: fetch_at_exec needs name= or pathspec=",
            "fetch_at_exec picks the environment a name points to when the task starts",
        )
    return Request(
        conda=tuple((n, v, p.where) for n, v in p.conda),
        pypi=tuple((n, v, p.where) for n, v in p.pypi),
        channels=tuple((c, p.where) for c in p.channels),
        indexes=tuple((i, p.where) for i in p.indexes),
        python=(p.python, p.where) if p.python else None,
        sys=tuple((n, v, p.where) for n, v in p.sys),
        named=(p.named, p.where) if p.named else None,
        fetch_at_exec=bool(p.fetch_at_exec),
        disabled=(bool(p.disabled), p.where) if p.disabled is not None else None,
        parts=(p.where,),
    )


def _what(p: Part) -> str:
    kinds = [
        ("conda packages", p.conda),
        ("PyPI packages", p.pypi),
        ("channels", p.channels),
        ("extra indices", p.indexes),
        ("python", p.python),
    ]
    return ", ".join(k for k, v in kinds if v)


def merge_strict(a: Request, b: Request) -> Request:
    """Decorators at one level (the flow's, or one step's): any disagreement is an error."""

    def scalar(name: str, x, y):
        if x is not None and y is not None and x[0] != y[0]:
            raise RequestError(
                f"{name} is set twice: {x[0]!r} ({x[1]}) and {y[0]!r} ({y[1]})",
                "keep one of them",
            )
        return x if x is not None else y

    def packages(kind: str, xs, ys):
        seen = {n.lower(): (v, w) for n, v, w in xs}
        out = list(xs)
        for n, v, w in ys:
            old = seen.get(n.lower())
            if old is None:
                seen[n.lower()] = (v, w)
                out.append((n, v, w))
            elif old[0] != v:
                raise RequestError(
                    f"{kind} package {n} is asked twice: {old[0] or 'any'!r} ({old[1]}) and "
                    f"{v or 'any'!r} ({w})",
                    "keep one version",
                )
        return tuple(out)

    merged = Request(
        conda=packages("conda", a.conda, b.conda),
        pypi=packages("PyPI", a.pypi, b.pypi),
        channels=_union(a.channels, b.channels),
        indexes=_union(a.indexes, b.indexes),
        python=scalar("python", a.python, b.python),
        sys=packages("system", a.sys, b.sys),
        named=scalar("named environment", a.named, b.named),
        fetch_at_exec=a.fetch_at_exec or b.fetch_at_exec,
        disabled=scalar("disabled", a.disabled, b.disabled),
        parts=a.parts + b.parts,
    )
    _check_named(merged)
    return merged


def _check_named(r: Request) -> None:
    if r.named is not None and r.has_packages:
        others = sorted(
            {w for *_, w in r.conda}
            | {w for *_, w in r.pypi}
            | {w for _, w in r.channels}
            | {w for _, w in r.indexes}
            | ({r.python[1]} if r.python else set())
        )
        raise RequestError(
            f"{r.named[1]} names an environment ({r.named[0]}) and {', '.join(others)} asks "
            "for packages: a named environment cannot be extended",
            "drop one of them, or resolve a new environment with the packages and name it",
        )


def override(flow: Request, step: Request) -> Request:
    """The step's request on top of the flow's: the step wins where both set something."""
    if step.named is not None:
        return replace(step, disabled=step.disabled or flow.disabled, parts=step.parts)
    if flow.named is not None and step.has_packages:
        _check_named(
            replace(
                step,
                named=flow.named,
                disabled=None,
            )
        )
    if flow.named is not None:
        return replace(
            flow,
            sys=_override_pkgs(flow.sys, step.sys),
            disabled=step.disabled or flow.disabled,
            parts=flow.parts + step.parts,
        )
    return Request(
        conda=_override_pkgs(flow.conda, step.conda),
        pypi=_override_pkgs(flow.pypi, step.pypi),
        channels=_union(flow.channels, step.channels),
        indexes=_union(flow.indexes, step.indexes),
        python=step.python or flow.python,
        sys=_override_pkgs(flow.sys, step.sys),
        named=None,
        fetch_at_exec=step.fetch_at_exec or flow.fetch_at_exec,
        disabled=step.disabled or flow.disabled,
        parts=flow.parts + step.parts,
    )


def _override_pkgs(base, top):
    names = {n.lower() for n, _, _ in top}
    return tuple(x for x in base if x[0].lower() not in names) + tuple(top)


def _union(a, b):
    seen = {x[0] for x in a}
    return tuple(a) + tuple(x for x in b if x[0] not in seen)


def merge_parts(parts: list[Part]) -> Request:
    """Decorators of one level (the flow's bases, or one step's) merged strictly."""
    out = Request()
    for p in parts:
        out = merge_strict(out, from_part(p))
    return out


def combine(flow_parts: list[Part] | Request, step_parts: list[Part]) -> Request:
    """The request of one step from its flow's (parts, or already merged) and its own."""
    flow = flow_parts if isinstance(flow_parts, Request) else merge_parts(flow_parts)
    return override(flow, merge_parts(step_parts))


# --- to an EnvSpec ------------------------------------------------------------------------------


def conda_spec(name: str, version: str) -> str:
    """Conda v2 / OSS Metaflow meaning of {name: version}: '' any, '1.2' exactly, '>=1' as is."""
    v = str(version or "").strip()
    if not v:
        return name
    if v.startswith(_OPS):
        return f"{name}{v}"
    if "*" in v or " " in v:
        return f"{name} {v}"
    return f"{name}=={v}"


def pypi_req(name: str, version: str) -> str:
    v = str(version or "").strip()
    if not v:
        return name
    if v.startswith("@"):
        return f"{name} {v}"
    if v.startswith(_OPS) or v.startswith(";"):
        return f"{name}{v}"
    return f"{name}=={v}"


def to_spec(
    req: Request,
    arch: str,
    *,
    default_python: str,
    channels: tuple[str, ...] = (),
    index_url: str | None = None,
    implicit_pypi: tuple[str, ...] = (),
):
    """(EnvSpec, secrets): `secrets` maps each URL as recorded (no credentials) to the URL as
    given, for talking to the server only (never stored or printed)."""
    from imagebuilder.inputs.collect import DEFAULT_CHANNEL, DEFAULT_INDEX
    from imagebuilder.inputs.request import checked
    from imagebuilder.spec import make_spec, normalize_conda_spec, normalize_pypi_req
    from imagebuilder.urls import normalize_channel, strip_credentials

    conda = [checked(normalize_conda_spec, conda_spec(n, v), w) for n, v, w in req.conda]
    pypi = [checked(normalize_pypi_req, pypi_req(n, v), w) for n, v, w in req.pypi]
    origins = {c: w for c, (_, _, w) in zip(conda, req.conda, strict=True)}
    origins.update({p: w for p, (_, _, w) in zip(pypi, req.pypi, strict=True)})
    if req.python:
        origins["python"] = req.python[1]
    given_channels = [c for c, _ in req.channels] or list(channels) or [DEFAULT_CHANNEL]
    given_indexes = []
    if pypi or implicit_pypi:
        given_indexes = [index_url or DEFAULT_INDEX, *(i for i, _ in req.indexes)]
    python = req.python[0] if req.python else default_python
    spec = checked(
        lambda _: make_spec(
            arch=arch,
            conda=conda,
            pypi=pypi,
            channels=given_channels,
            indexes=given_indexes,
            python=python,
            sys_packages={n: v for n, v, _ in req.sys},
            implicit_pypi=list(implicit_pypi),
            origins=origins,
        ),
        None,
        req.describe(),
    )
    secrets = {}
    for url in given_channels:
        if normalize_channel(url) != url.strip().rstrip("/"):
            secrets[normalize_channel(url)] = url.strip()
    for url in given_indexes:
        recorded = strip_credentials(url.strip()).rstrip("/")
        if recorded != url.strip().rstrip("/"):
            secrets[recorded] = url.strip()
    return spec, secrets


def parse_packages(value, where: str, attr: str) -> tuple[tuple[str, str], ...]:
    """A decorator's {name: version} attribute, checked."""
    if value is None:
        return ()
    if isinstance(value, list | tuple):  # ["numpy>=2", "pandas"] is what users often write
        out = []
        for item in value:
            m = re.match(r"^\s*([A-Za-z0-9_.\-:\[\],]+)\s*(.*)$", str(item))
            if not m:
                raise RequestError(f"{where}: bad {attr} entry {item!r}", "use {name: version}")
            out.append((m.group(1), m.group(2).strip()))
        return tuple(out)
    if not isinstance(value, dict):
        raise RequestError(
            f"{where}: {attr} must be a dict of name -> version, not {type(value).__name__}",
            f'e.g. {attr}={{"numpy": "1.26.4", "pandas": ">=2"}}',
        )
    out = []
    for name, version in value.items():
        if not isinstance(name, str) or not name.strip():
            raise RequestError(f"{where}: bad package name {name!r} in {attr}")
        if version is not None and not isinstance(version, str | int | float):
            raise RequestError(
                f"{where}: version of {name} in {attr} must be a string, not "
                f"{type(version).__name__}",
                'e.g. "1.26.4" or ">=2,<3" ("" for any)',
            )
        out.append((name.strip(), "" if version is None else str(version)))
    return tuple(out)


def parse_list(value, where: str, attr: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if not isinstance(value, list | tuple):
        raise RequestError(f"{where}: {attr} must be a list of URLs, not {type(value).__name__}")
    return tuple(str(v).strip() for v in value if str(v).strip())


def parse_bool(value, where: str, attr: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("true", "1", "yes"):
        return True
    if s in ("false", "0", "no", ""):
        return False
    raise RequestError(f"{where}: {attr} must be True or False, not {value!r}")
