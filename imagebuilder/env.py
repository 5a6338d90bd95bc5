"""ResolvedEnv: the pinned result of a resolve, and full_id (CONTRACT.md: Identity).

A Package is one archive (conda package, wheel) or one source to build (sdist, git, local
path). full_id hashes [kind, subdir, name, version, build, sha256] of every package; wheels
built from sources are recorded separately (store `builds/`) and never change full_id.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from imagebuilder.errors import IntegrityError
from imagebuilder.ids import env_name, sha256_json, short
from imagebuilder.records import check_schema, schema_id
from imagebuilder.spec import EnvSpec

CONDA = "conda"
PYPI = "pypi"
SOURCE_KINDS = ("sdist", "git", "path")


@dataclass(frozen=True)
class AltFile:
    """Another file with the same package content (e.g. a .tar.bz2 transmuted to .conda)."""

    filename: str
    sha256: str
    size: int | None = None

    def to_json(self) -> dict:
        return {"filename": self.filename, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, d: dict) -> AltFile:
        return cls(d["filename"], d["sha256"], d.get("size"))


@dataclass(frozen=True)
class Package:
    kind: str  # "conda" | "pypi"
    subdir: str  # conda subdir; PyPI: "noarch" (pure wheel), the arch (binary wheel), "source"
    name: str
    version: str
    build: str  # conda build string; PyPI: the wheel tag (py3-none-any), "" for sources
    sha256: str  # of the published archive, or the source hash (see source)
    filename: str
    url: str  # where it was resolved from, without credentials
    size: int | None = None
    md5: str | None = None
    depends: tuple[str, ...] = ()
    source: str | None = None  # None for archives; "sdist" | "git" | "path" for sources to build
    channel: str | None = None  # conda channel (no credentials)
    alt: tuple[AltFile, ...] = ()
    # conda: the repodata record as rattler writes it, so install needs no channel.
    record: dict | None = field(default=None, compare=False, hash=False)
    # PyPI: hashes from the index other than sha256, metadata like requires-python.
    extra: dict | None = field(default=None, compare=False, hash=False)

    @property
    def identity(self) -> list[str]:
        return [self.kind, self.subdir, self.name, self.version, self.build, self.sha256]

    @property
    def store_kind(self) -> str:
        return self.kind

    @property
    def store_key(self) -> str:
        """Where the archive (or sdist) lives in the store (CONTRACT.md: store layout)."""
        return f"pkgs/{self.kind}/{self.sha256}/{self.filename}"

    @property
    def is_source(self) -> bool:
        return self.source is not None

    @property
    def label(self) -> str:
        return (
            f"{self.name}=={self.version}"
            if self.kind == PYPI
            else f"{self.name}-{self.version}-{self.build}"
        )

    def to_json(self) -> dict:
        d: dict = {
            "kind": self.kind,
            "subdir": self.subdir,
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "sha256": self.sha256,
            "filename": self.filename,
            "url": self.url,
            "size": self.size,
            "depends": list(self.depends),
        }
        for key in ("md5", "source", "channel", "record", "extra"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        if self.alt:
            d["alt"] = [a.to_json() for a in self.alt]
        return d

    @classmethod
    def from_json(cls, d: dict) -> Package:
        return cls(
            kind=d["kind"],
            subdir=d["subdir"],
            name=d["name"],
            version=d["version"],
            build=d["build"],
            sha256=d["sha256"],
            filename=d["filename"],
            url=d["url"],
            size=d.get("size"),
            md5=d.get("md5"),
            depends=tuple(d.get("depends", ())),
            source=d.get("source"),
            channel=d.get("channel"),
            alt=tuple(AltFile.from_json(a) for a in d.get("alt", ())),
            record=d.get("record"),
            extra=d.get("extra"),
        )


def compute_full_id(packages: tuple[Package, ...] | list[Package]) -> str:
    return sha256_json(sorted(p.identity for p in packages))


def _sorted(packages) -> tuple[Package, ...]:
    return tuple(sorted(packages, key=lambda p: (p.kind, p.name, p.subdir, p.version, p.build)))


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ResolvedEnv:
    spec: EnvSpec
    packages: tuple[Package, ...]
    resolver: tuple[tuple[str, str], ...] = ()  # backend -> version, e.g. (("rattler", "0.28.0"),)
    resolved_at: str = field(default_factory=now_iso)

    def __post_init__(self) -> None:
        object.__setattr__(self, "packages", _sorted(self.packages))

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def req_id(self) -> str:
        return self.spec.req_id

    @property
    def full_id(self) -> str:
        return compute_full_id(self.packages)

    @property
    def name(self) -> str:
        return env_name(self.req_id, self.full_id)

    @property
    def key(self) -> str:
        return env_key(self.req_id, self.full_id)

    @property
    def short_id(self) -> str:
        return f"{short(self.req_id)}:{short(self.full_id)}"

    def conda_packages(self) -> list[Package]:
        return [p for p in self.packages if p.kind == CONDA]

    def pypi_packages(self) -> list[Package]:
        return [p for p in self.packages if p.kind == PYPI]

    def package(self, name: str) -> Package | None:
        return next((p for p in self.packages if p.name == name), None)

    @property
    def python_version(self) -> str | None:
        py = next((p for p in self.conda_packages() if p.name == "python"), None)
        return py.version if py else None

    @property
    def is_venv(self) -> bool:
        """No conda packages (--python-from-base): a venv on a python the env does not bring."""
        return not self.conda_packages()

    @property
    def python_xy(self) -> str | None:
        """X.Y of the env's python: conda's, or for a venv the version it was resolved for."""
        v = self.python_version or (self.spec.python if self.is_venv else None)
        parts = (v or "").removesuffix(".*").split(".")
        return (
            ".".join(parts[:2]) if len(parts) >= 2 and all(x.isdigit() for x in parts[:2]) else None
        )

    def with_packages(self, packages) -> ResolvedEnv:
        return replace(self, packages=tuple(packages))

    def to_json(self) -> dict:
        return {
            "schema": schema_id("env"),
            "req_id": self.req_id,
            "full_id": self.full_id,
            "env_name": self.name,
            "arch": self.arch,
            "spec": self.spec.to_json(),
            "packages": [p.to_json() for p in self.packages],
            "resolver": dict(self.resolver),
            "resolved_at": self.resolved_at,
        }

    @classmethod
    def from_json(cls, d: dict, where: str = "") -> ResolvedEnv:
        check_schema(d, "env", where)
        env = cls(
            spec=EnvSpec.from_json(d["spec"]),
            packages=tuple(Package.from_json(p) for p in d["packages"]),
            resolver=tuple(sorted(d.get("resolver", {}).items())),
            resolved_at=d.get("resolved_at", ""),
        )
        # The ids are recomputed, never trusted: a record edited by hand or corrupted in
        # transit must not pass as the environment it claims to be.
        for key, value in (("req_id", env.req_id), ("full_id", env.full_id)):
            if d.get(key) not in (None, value):
                raise IntegrityError(
                    f"env record{' ' + where if where else ''} says {key} {short(d[key])} but its content hashes to {short(value)}",
                    "the record was modified; resolve again or restore it from the store",
                )
        return env


def env_key(req_id: str, full_id: str) -> str:
    return f"envs/{short(req_id)}/{short(full_id)}.json"
