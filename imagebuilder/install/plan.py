"""What to install and where (InstallPlan), what happened (InstallReport), and how to run it:
in this process when it leaves through os._exit, else in a short-lived subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from imagebuilder import exitmode
from imagebuilder.errors import ImgbuildError
from imagebuilder.exitmode import allow_inprocess as allow_inprocess  # callers' name for it


@dataclass(frozen=True)
class CondaItem:
    """One conda package: its repodata record (as `RepoDataRecord.to_json()` gives it) and the
    verified archive on this machine. `record` keeps the channel URL: conda-meta records it."""

    record: dict
    path: str

    @property
    def filename(self) -> str:
        return Path(self.path).name

    @classmethod
    def from_package(cls, pkg, path: str | os.PathLike) -> CondaItem:
        """From an env Package and the local file to install (the package's own archive or one
        of its alternative files, e.g. the .conda a .tar.bz2 was transmuted to)."""
        from imagebuilder.errors import BadInput

        if not pkg.record:
            raise BadInput(
                f"{pkg.label}: the env record keeps no repodata record for it",
                "resolve the environment again with this imgbuild",
            )
        record = dict(pkg.record)
        name = Path(path).name
        if name != pkg.filename:
            alt = next((a for a in pkg.alt if a.filename == name), None)
            if alt is None:
                raise BadInput(f"{pkg.label}: {name} is not a file of this package")
            # The archive differs from the one the channel published: its own hashes apply.
            for k in ("md5", "legacy_bz2_md5", "legacy_bz2_size"):
                record.pop(k, None)
            record.update(fn=alt.filename, sha256=alt.sha256)
            if alt.size is not None:
                record["size"] = alt.size
        record.setdefault("fn", pkg.filename)
        record.setdefault("url", pkg.url)
        record.setdefault("channel", pkg.channel or "")
        return cls(record, str(path))

    def to_json(self) -> dict:
        return {"record": self.record, "path": self.path}

    @classmethod
    def from_json(cls, d: dict) -> CondaItem:
        return cls(d["record"], d["path"])


@dataclass(frozen=True)
class WheelItem:
    name: str  # distribution name, for messages
    path: str  # verified wheel on this machine
    sha256: str | None = None  # of the wheel (keys its unpacked copy; hashed when missing)

    def to_json(self) -> dict:
        return {"name": self.name, "path": self.path, "sha256": self.sha256}

    @classmethod
    def from_json(cls, d: dict) -> WheelItem:
        return cls(d["name"], d["path"], d.get("sha256"))


@dataclass(frozen=True)
class InstallPlan:
    staging: str  # the folder written (must be empty or absent)
    prefix: str  # where the env will live: prefix replacement and shebangs use it
    arch: str  # conda subdir of the target
    conda: tuple[CondaItem, ...] = ()
    wheels: tuple[WheelItem, ...] = ()
    # Interpreter for wheel scripts' shebangs (default <prefix>/bin/python) and the
    # site-packages folder relative to the prefix (default from the conda python record).
    python: str | None = None
    site_packages: str | None = None
    cache_dir: str | None = None  # rattler's package cache (default <cache_root>/rattler)
    # conda-meta without machine-local paths (cache folders, local file URLs): images built on
    # two machines get byte-identical metadata.
    portable_meta: bool = True

    def to_json(self) -> dict:
        return {
            "staging": self.staging,
            "prefix": self.prefix,
            "arch": self.arch,
            "conda": [c.to_json() for c in self.conda],
            "wheels": [w.to_json() for w in self.wheels],
            "python": self.python,
            "site_packages": self.site_packages,
            "cache_dir": self.cache_dir,
            "portable_meta": self.portable_meta,
        }

    @classmethod
    def from_json(cls, d: dict) -> InstallPlan:
        return cls(
            staging=d["staging"],
            prefix=d["prefix"],
            arch=d["arch"],
            conda=tuple(CondaItem.from_json(c) for c in d.get("conda", ())),
            wheels=tuple(WheelItem.from_json(w) for w in d.get("wheels", ())),
            python=d.get("python"),
            site_packages=d.get("site_packages"),
            cache_dir=d.get("cache_dir"),
            portable_meta=d.get("portable_meta", True),
        )


@dataclass(frozen=True)
class InstallReport:
    link_scripts: tuple[str, ...] = ()  # packages whose post-link scripts were NOT run
    conda_seconds: float = 0.0
    wheel_seconds: float = 0.0
    site_packages: str | None = None  # relative to the prefix
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "link_scripts": list(self.link_scripts),
            "conda_seconds": self.conda_seconds,
            "wheel_seconds": self.wheel_seconds,
            "site_packages": self.site_packages,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, d: dict) -> InstallReport:
        return cls(
            tuple(d.get("link_scripts", ())),
            d.get("conda_seconds", 0.0),
            d.get("wheel_seconds", 0.0),
            d.get("site_packages"),
            d.get("extra", {}),
        )


def default_cache_dir() -> str:
    from imagebuilder.store.localcache import cache_root

    return str(cache_root() / "rattler")


def execute(plan: InstallPlan) -> InstallReport:
    """Install in this process (py-rattler is imported here when the plan has conda items)."""
    import time

    from imagebuilder.install import wheels

    if plan.cache_dir is None:
        plan = replace(plan, cache_dir=default_cache_dir())
    Path(plan.staging).mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    link_scripts: tuple[str, ...] = ()
    if plan.conda:
        from imagebuilder.install import conda

        link_scripts = conda.install(plan)
    t1 = time.monotonic()
    site = wheels.site_packages_of(plan)
    if plan.wheels:
        wheels.install(plan, site)
    return InstallReport(link_scripts, t1 - t0, time.monotonic() - t1, site)


def run_install(plan: InstallPlan, *, inprocess: bool | None = None) -> InstallReport:
    """Run the plan in this process if allowed (see allow_inprocess), else in a subprocess.

    Errors come back as the same ImgbuildError (kind, message, hint, exit code)."""
    if inprocess if inprocess is not None else exitmode.INPROCESS:
        return execute(plan)
    return _in_subprocess(plan)


def _in_subprocess(plan: InstallPlan) -> InstallReport:
    with tempfile.TemporaryDirectory(prefix="imgbuild-install-") as d:
        plan_file, result_file = Path(d) / "plan.json", Path(d) / "result.json"
        plan_file.write_text(json.dumps(plan.to_json()))
        env = dict(os.environ)
        # The subprocess imports this very package, wherever it comes from (a source tree
        # mounted into a container is not installed).
        pkg_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
        proc = subprocess.run(
            [sys.executable, "-m", "imagebuilder.install", str(plan_file), str(result_file)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if not result_file.exists():
            tail = (proc.stderr or "").strip().splitlines()[-5:]
            raise ImgbuildError(
                f"the installer process died (exit {proc.returncode})"
                + (": " + " | ".join(tail) if tail else ""),
                "rerun with --debug; if it persists, report it",
                "internal",
            )
        result = json.loads(result_file.read_text())
    if "error" in result:
        raise error_from_json(result["error"])
    return InstallReport.from_json(result["report"])


def error_to_json(e: ImgbuildError) -> dict:
    return {"kind": e.kind, "message": e.message, "hint": e.hint, "exit_code": e.exit_code}


def error_from_json(d: dict) -> ImgbuildError:
    """The same error class the subprocess raised (callers may catch IntegrityError etc.)."""
    from imagebuilder import errors

    classes = {
        "bad_input": errors.BadInput,
        "usage": errors.UsageError,
        "not_found": errors.NotFound,
        "conflict": errors.Conflict,
        "unavailable": errors.Unavailable,
        "integrity": errors.IntegrityError,
    }
    cls = classes.get(d.get("kind", ""))
    if cls is not None:
        return cls(d["message"], d.get("hint", ""))
    return ImgbuildError(d["message"], d.get("hint", ""), d.get("kind", "error"), d["exit_code"])
