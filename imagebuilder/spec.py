"""EnvSpec: the normalized request, and req_id (CONTRACT.md: Identity).

Parsing of requirements.txt / environment.yml / pyproject.toml lives in `imagebuilder.inputs`;
this module holds only the value and its canonical form, so computing a req_id is cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from imagebuilder.errors import BadInput
from imagebuilder.ids import sha256_json
from imagebuilder.platforms import get_arch
from imagebuilder.urls import normalize_channel, strip_credentials

SCHEMA = "imgbuild/spec/v1"
_CONDA_OPS = re.compile(r"\s*(==|>=|<=|!=|~=|>|<|=)\s*")


@dataclass(frozen=True)
class EnvSpec:
    arch: str
    conda: tuple[str, ...] = ()
    pypi: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    indexes: tuple[str, ...] = ()  # primary index first, then extra indexes, in order
    find_links: tuple[str, ...] = ()
    pre: bool = False
    python: str | None = None
    sys_packages: tuple[tuple[str, str], ...] = ()
    exclude_newer: str | None = None  # ISO 8601, UTC, seconds
    implicit_conda: tuple[str, ...] = ()
    implicit_pypi: tuple[str, ...] = ()
    python_from_base: bool = False
    lock: str | None = None  # sha256 of an imported lock file's content
    # Where each requirement came from ("requirements.txt:3", "@conda on step start"): for
    # messages only, never part of the identity.
    origins: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    # --- identity --------------------------------------------------------------------------
    def canonical(self) -> dict:
        return {
            "arch": self.arch,
            "conda": sorted(set(self.conda)),
            "pypi": sorted(set(self.pypi)),
            "channels": list(self.channels),
            "indexes": list(self.indexes),
            "find_links": list(self.find_links),
            "pre": self.pre,
            "python": self.python,
            "sys": dict(sorted(self.sys_packages)),
            "exclude_newer": self.exclude_newer,
            "implicit": {
                "conda": sorted(set(self.implicit_conda)),
                "pypi": sorted(set(self.implicit_pypi)),
            },
            "python_from_base": self.python_from_base,
            "lock": self.lock,
        }

    @property
    def req_id(self) -> str:
        return sha256_json(self.canonical())

    # --- views -----------------------------------------------------------------------------
    @property
    def all_conda(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.conda) | set(self.implicit_conda)))

    @property
    def all_pypi(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.pypi) | set(self.implicit_pypi)))

    @property
    def sys(self) -> dict[str, str]:
        return dict(self.sys_packages)

    @property
    def is_empty(self) -> bool:
        return not (self.all_conda or self.all_pypi or self.python or self.lock)

    def origin(self, requirement: str) -> str | None:
        return dict(self.origins).get(requirement)

    def for_arch(self, arch: str) -> EnvSpec:
        get_arch(arch)
        return replace(self, arch=arch)

    # --- (de)serialization ---------------------------------------------------------------------
    def to_json(self) -> dict:
        out = {"schema": SCHEMA, **self.canonical()}
        if self.origins:
            out["origins"] = dict(self.origins)
        return out

    @classmethod
    def from_json(cls, d: dict) -> EnvSpec:
        from imagebuilder.records import check_schema

        check_schema(d, "spec")
        return cls(
            arch=d["arch"],
            conda=tuple(d.get("conda", ())),
            pypi=tuple(d.get("pypi", ())),
            channels=tuple(d.get("channels", ())),
            indexes=tuple(d.get("indexes", ())),
            find_links=tuple(d.get("find_links", ())),
            pre=bool(d.get("pre", False)),
            python=d.get("python"),
            sys_packages=tuple(sorted(d.get("sys", {}).items())),
            exclude_newer=d.get("exclude_newer"),
            implicit_conda=tuple(d.get("implicit", {}).get("conda", ())),
            implicit_pypi=tuple(d.get("implicit", {}).get("pypi", ())),
            python_from_base=bool(d.get("python_from_base", False)),
            lock=d.get("lock"),
            origins=tuple(sorted(d.get("origins", {}).items())),
        )


def make_spec(
    *,
    arch: str,
    conda: list[str] | tuple[str, ...] = (),
    pypi: list[str] | tuple[str, ...] = (),
    channels: list[str] | tuple[str, ...] = (),
    indexes: list[str] | tuple[str, ...] = (),
    find_links: list[str] | tuple[str, ...] = (),
    pre: bool = False,
    python: str | None = None,
    sys_packages: dict[str, str] | None = None,
    exclude_newer: str | datetime | None = None,
    implicit_conda: list[str] | tuple[str, ...] = (),
    implicit_pypi: list[str] | tuple[str, ...] = (),
    python_from_base: bool = False,
    lock: str | None = None,
    origins: dict[str, str] | None = None,
) -> EnvSpec:
    """Build an EnvSpec, normalizing every field (the only constructor callers should use)."""
    get_arch(arch)
    return EnvSpec(
        arch=arch,
        conda=tuple(dict.fromkeys(normalize_conda_spec(s) for s in conda)),
        pypi=tuple(dict.fromkeys(normalize_pypi_req(s) for s in pypi)),
        channels=_dedupe(normalize_channel(c) for c in channels),
        indexes=_dedupe(strip_credentials(u.strip()).rstrip("/") for u in indexes),
        find_links=_dedupe(strip_credentials(u.strip()) for u in find_links),
        pre=pre,
        python=normalize_python(python) if python else None,
        sys_packages=tuple(sorted(normalize_sys_packages(sys_packages or {}).items())),
        exclude_newer=normalize_date(exclude_newer) if exclude_newer else None,
        implicit_conda=tuple(dict.fromkeys(normalize_conda_spec(s) for s in implicit_conda)),
        implicit_pypi=tuple(dict.fromkeys(normalize_pypi_req(s) for s in implicit_pypi)),
        python_from_base=python_from_base,
        lock=lock,
        origins=tuple(sorted((origins or {}).items())),
    )


def _dedupe(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


# --- normalization -------------------------------------------------------------------------------


def normalize_conda_spec(spec: str) -> str:
    """'NumPy >= 2' -> 'numpy>=2'; 'numpy 1.2.* py_0' stays space-separated; channel::name kept."""
    s = " ".join(spec.split())
    if not s:
        raise BadInput("empty conda spec")
    if "[" in s:  # bracket syntax: leave as given, apart from whitespace
        return s
    channel, sep, rest = s.rpartition("::")
    name, _, tail = rest.partition(" ")
    m = re.match(r"^([A-Za-z0-9_.\-]+)(.*)$", name)
    if not m:
        raise BadInput(
            f"bad conda spec {spec!r}",
            "use NAME[ VERSION[ BUILD]] e.g. 'numpy>=2' or 'numpy 1.26.*'",
        )
    base, ops = m.group(1).lower(), m.group(2)
    version = (
        _CONDA_OPS.sub(r"\1", (ops + (" " + tail if tail else "")).strip()) if (ops or tail) else ""
    )
    # Rejoin: an operator glued to the name; a bare version or build separated by a space.
    if version and version[0] in "<>=!~":
        head, _, build = version.partition(" ")
        out = base + head + (" " + build if build else "")
    elif version:
        out = f"{base} {version}"
    else:
        out = base
    return f"{channel}{sep}{out}" if sep else out


# The common shapes (`name`, `name[extra]`, `name>=1.2,<2`) are normalized without importing
# packaging.requirements (~40 ms of regex compiling on every resolve); the output is exactly
# what the packaging path below gives (tests/resolve/test_pieces.py checks it).
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_SPEC = r"(==|!=|<=|>=|<|>|~=)\s*([0-9]+(?:\.[0-9]+)*)"
_SIMPLE_REQ = re.compile(
    rf"^({_NAME})\s*(?:\[\s*({_NAME}(?:\s*,\s*{_NAME})*)\s*\])?\s*"
    rf"((?:{_SPEC})(?:\s*,\s*{_SPEC})*)?$"
)


def _simple_pypi_req(s: str) -> str | None:
    m = _SIMPLE_REQ.match(s)
    if not m:
        return None
    specs = re.findall(_SPEC, m.group(3) or "")
    if any(op == "~=" and "." not in version for op, version in specs):
        return None  # invalid: let packaging say why
    canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731 (packaging's rule)
    out = canon(m.group(1))
    if m.group(2):
        out += "[" + ",".join(sorted(canon(e.strip()) for e in m.group(2).split(","))) + "]"
    return out + ",".join(sorted(op + version for op, version in specs))


def normalize_pypi_req(req: str) -> str:
    """PEP 508 requirement with canonical name, sorted extras; URLs/paths kept as given."""
    s = req.strip()
    if not s:
        raise BadInput("empty PyPI requirement")
    fast = _simple_pypi_req(s)
    if fast is not None:
        return fast
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        r = Requirement(s)
    except InvalidRequirement as e:
        if _looks_like_source(s):
            return strip_credentials(s) if "://" in s else s
        raise BadInput(
            f"bad PyPI requirement {req!r}: {e}", "use PEP 508, e.g. 'requests>=2.31'"
        ) from None
    out = canonicalize_name(r.name)
    if r.extras:
        out += "[" + ",".join(sorted(canonicalize_name(e) for e in r.extras)) + "]"
    if r.url:
        out += f" @ {strip_credentials(r.url) if '://' in r.url else r.url}"
    elif r.specifier:
        out += ",".join(sorted(str(sp) for sp in r.specifier))
    if r.marker:
        out += f"; {r.marker}"
    return out


def _looks_like_source(s: str) -> bool:
    return s.startswith(("git+", "./", "../", "/", "file:", "http://", "https://")) or s.endswith(
        (".whl", ".tar.gz", ".zip")
    )


def normalize_python(spec: str) -> str:
    """'3.11' -> '3.11.*' (conda meaning: any 3.11.x); '>=3.10' kept."""
    s = "".join(spec.split())
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return s + ".*"
    if re.fullmatch(r"\d+\.\d+\.\d+", s):
        return s
    if not re.fullmatch(r"[0-9.*,<>=!~]+", s):
        raise BadInput(
            f"bad python version {spec!r}", "e.g. --python 3.11 or --python '>=3.10,<3.13'"
        )
    return s


def normalize_sys_packages(d: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, version in d.items():
        n = name.strip().lower()
        if not n.startswith("__"):
            raise BadInput(
                f"bad system package {name!r}",
                "system packages are virtual: __glibc, __cuda, __osx, ...",
            )
        out[n] = str(version).strip().lstrip("=")
    return out


def parse_sys_pkg(text: str) -> tuple[str, str]:
    """'__glibc==2.28' or '__glibc=2.28' or '__cuda 12.1' -> ('__glibc', '2.28')."""
    m = re.fullmatch(r"\s*(__[a-z0-9_]+)\s*(?:==|=|\s)\s*([0-9][0-9a-zA-Z.]*)\s*", text)
    if not m:
        raise BadInput(f"bad --sys-pkg {text!r}", "use NAME==VERSION, e.g. --sys-pkg __glibc==2.28")
    return m.group(1), m.group(2)


def normalize_date(value: str | datetime) -> str:
    """Dates and datetimes to 'YYYY-MM-DDTHH:MM:SSZ' (UTC). A bare date means its midnight UTC."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = value.strip().replace("Z", "+00:00")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise BadInput(
                f"bad date {value!r}",
                "use YYYY-MM-DD or an ISO 8601 time, e.g. 2024-03-01T12:00:00Z",
            ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
