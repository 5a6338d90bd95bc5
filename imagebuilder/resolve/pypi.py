"""The PyPI side: `uv pip compile --format pylock.toml` for the target platform and python.

Why pylock.toml (PEP 751) and not `--generate-hashes`: it carries, per package, the URL, size,
sha256 and upload time of every wheel that fits the target (and of the sdist), and git /
folder sources with their resolved commit or path, in one run with no index lookups of our
own. We pick the wheel the target would install (wheeltags.rank).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from imagebuilder.env import PYPI, Package
from imagebuilder.errors import BadInput
from imagebuilder.resolve.base import Context, Provided
from imagebuilder.spec import EnvSpec
from imagebuilder.urls import strip_credentials

# uv settings from the environment that would silently change what is resolved.
_UV_KEEP = {
    "UV_CACHE_DIR",
    "UV_NATIVE_TLS",
    "UV_HTTP_TIMEOUT",
    "UV_OFFLINE",
    "UV_CONCURRENT_DOWNLOADS",
}


_uv_bin_lock = threading.Lock()
_uv_bin: list[str] = []


def uv_bin() -> str:
    # Once, under a lock: find_uv_bin reads sysconfig.get_config_vars(), whose first call is not
    # thread safe in Python 3.11 (another thread sees it half-filled, EXE None: a TypeError), and
    # parallel solves (pipeline._solve_all) reach here together.
    with _uv_bin_lock:
        if not _uv_bin:
            from uv import find_uv_bin

            _uv_bin.append(find_uv_bin())
    return _uv_bin[0]


def uv_version() -> str:
    """uv's version from its dist-info folder name (importlib.metadata costs ~20 ms of imports
    on every resolve)."""
    import uv

    site = Path(uv.__file__).parent.parent
    found = sorted(site.glob("uv-*.dist-info"))
    if found:
        return found[-1].name[len("uv-") : -len(".dist-info")]
    from importlib.metadata import version

    return version("uv")


class UvResolver:
    name = "uv"

    def version(self) -> str:
        return uv_version()

    def solve(
        self, spec: EnvSpec, python: str, provided: list[Provided], ctx: Context
    ) -> list[Package]:
        ctx.say(f"solving PyPI packages for {spec.arch} (python {python})")
        with tempfile.TemporaryDirectory(prefix="imgbuild-uv-") as tmp:
            cmd = self.command(spec, python, provided, ctx, Path(tmp))
            proc = subprocess.run(
                cmd, capture_output=True, text=True, cwd=tmp, env=_uv_env(spec), timeout=1800
            )
            if proc.returncode != 0:
                from imagebuilder.errors import NotFound
                from imagebuilder.resolve import explain

                err = explain.uv_failure(proc.stderr, spec, {p.name: p.version for p in provided})
                if isinstance(err, NotFound):
                    # An index URL that is wrong as a whole looks like "no such package" to uv.
                    err = _probe_indexes(spec, ctx) or err
                from imagebuilder.urls import redact

                raise err from RuntimeError(redact(proc.stderr))  # shown with --debug
            lock = _read_lock(Path(tmp) / "pylock.toml")
            skip = {p.name for p in provided}
            return [
                pkg
                for entry in lock.get("packages", [])
                if (pkg := to_package(entry, spec, python, Path(tmp))) and pkg.name not in skip
            ]

    def command(
        self, spec: EnvSpec, python: str, provided: list[Provided], ctx: Context, tmp: Path
    ) -> list[str]:
        from imagebuilder.platforms import uv_python_platform
        from imagebuilder.resolve.auth import pypi_index_url
        from imagebuilder.resolve.mixed import write_stub

        lines = [_absolute(r) for r in spec.all_pypi]
        constraints = []
        if provided:
            stubs = tmp / "provided"
            stubs.mkdir()
            for dist in provided:
                lines.append(f"{dist.name} @ {write_stub(stubs, dist).as_uri()}")
                constraints.append(f"{dist.name}=={dist.version}")
        (tmp / "requirements.in").write_text("\n".join(lines) + "\n")
        cmd = [
            uv_bin(),
            "pip",
            "compile",
            "requirements.in",
            "--format",
            "pylock.toml",
            "-o",
            "pylock.toml",
            "--quiet",
            "--color",
            "never",
            "--no-config",
            "--python",
            sys.executable,
            "--python-platform",
            uv_python_platform(spec.arch, spec.sys),
            "--python-version",
            python,
        ]
        if spec.indexes:
            cmd += ["--index-url", pypi_index_url(spec.indexes[0], ctx.secrets)]
            for url in spec.indexes[1:]:
                cmd += ["--extra-index-url", pypi_index_url(url, ctx.secrets)]
        for link in spec.find_links:
            cmd += ["--find-links", _absolute_link(pypi_index_url(link, ctx.secrets))]
        if spec.exclude_newer:
            cmd += ["--exclude-newer", spec.exclude_newer]
        if spec.pre:
            cmd += ["--prerelease", "allow"]
        if constraints:
            (tmp / "constraints.txt").write_text("\n".join(constraints) + "\n")
            cmd += ["--constraint", "constraints.txt"]
            for dist in provided:
                cmd += ["--no-emit-package", dist.name]
        return cmd


def _probe_indexes(spec: EnvSpec, ctx: Context):
    """Unavailable for the first index whose root does not answer like an index, else None."""
    import urllib.error
    import urllib.request

    from imagebuilder.errors import Unavailable
    from imagebuilder.resolve.auth import pypi_index_url
    from imagebuilder.resolve.fetch import _request

    for url in spec.indexes:
        try:
            with urllib.request.urlopen(
                _request(pypi_index_url(url, ctx.secrets) + "/"), timeout=10
            ):
                continue
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                return Unavailable(
                    f"package index {url} refused access (HTTP {e.code})",
                    "check the credentials for it (user:password@ in the URL)",
                )
            if e.code == 404:
                return Unavailable(
                    f"package index {url} was not found (HTTP 404)",
                    "check the URL: a simple index looks like https://pypi.org/simple",
                )
        except (urllib.error.URLError, OSError) as e:
            return Unavailable(
                f"cannot reach package index {url}: {getattr(e, 'reason', e)}",
                "check the URL, that the server is up, and your network or proxy settings",
            )
    return None


def _uv_env(spec: EnvSpec) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k in _UV_KEEP}
    env.pop("VIRTUAL_ENV", None)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    if spec.arch.startswith("osx"):
        # uv's macOS target version for --python-platform; match the __osx we solve conda for.
        from imagebuilder.platforms import virtual_packages

        env["MACOSX_DEPLOYMENT_TARGET"] = virtual_packages(spec.arch, spec.sys)["__osx"]
    return env


def _absolute(req: str) -> str:
    """Relative folder/file requirements are relative to the current folder (uv would read
    them relative to its input file, which lives in a temp folder)."""
    if req.startswith(("./", "../")) or req in (".", ".."):
        return str(Path(req).absolute())
    return req


def _absolute_link(link: str) -> str:
    return link if "://" in link else str(Path(link).absolute())


def _read_lock(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(path.read_text())


def to_package(entry: dict, spec: EnvSpec, python: str, lock_dir: Path) -> Package | None:
    """One pylock.toml [[packages]] entry as a Package (a wheel, or a source to build)."""
    from imagebuilder.resolve.wheeltags import canonicalize_name

    name = canonicalize_name(entry["name"])
    version = str(entry.get("version") or "")
    extra = {k: str(entry[k]) for k in ("index", "requires-python") if k in entry}
    if "index" in extra:
        extra["index"] = strip_credentials(extra["index"])
    if "vcs" in entry:
        return _git(name, version, entry["vcs"])
    if "directory" in entry:
        return _directory(name, version, entry["directory"], lock_dir)
    if "archive" in entry:
        return _archive(name, version, entry["archive"], spec, python, lock_dir)
    wheel = _pick_wheel(entry.get("wheels", []), spec, python)
    if wheel is not None:
        return _wheel(name, version, wheel, spec, lock_dir, extra)
    if "sdist" in entry:
        return _sdist(name, version, entry["sdist"], lock_dir, extra)
    raise BadInput(
        f"{name} {version}: uv found no wheel for {spec.arch} and no sdist",
        "pin a version that publishes a wheel for this platform",
    )


def _pick_wheel(wheels: list[dict], spec: EnvSpec, python: str) -> dict | None:
    from imagebuilder.resolve.wheeltags import rank

    ranked = []
    for w in wheels:
        filename = _filename(w)
        r = rank(filename, spec.arch, python, spec.sys)
        if r is not None:
            ranked.append((r, filename, w))
    return min(ranked, key=lambda x: (x[0], x[1]))[2] if ranked else None


def _filename(f: dict) -> str:
    return f.get("name") or (f.get("url") or f.get("path", "")).rstrip("/").rsplit("/", 1)[-1]


def _location(f: dict, lock_dir: Path) -> str:
    if f.get("url"):
        return f["url"]
    return (lock_dir / f["path"]).resolve().as_uri()


def _sha256(f: dict, lock_dir: Path) -> str:
    digest = (f.get("hashes") or {}).get("sha256")
    if digest:
        return digest
    from imagebuilder.resolve.fetch import sha256_of_url

    return sha256_of_url(_location(f, lock_dir))


def _wheel(name, version, w, spec, lock_dir, extra) -> Package:
    from imagebuilder.resolve.wheeltags import is_pure, wheel_build

    filename = _filename(w)
    if w.get("upload-time"):
        extra = {**extra, "upload_time": str(w["upload-time"])}
    return Package(
        kind=PYPI,
        subdir="noarch" if is_pure(filename) else spec.arch,
        name=name,
        version=version,
        build=wheel_build(filename),
        sha256=_sha256(w, lock_dir),
        filename=filename,
        url=strip_credentials(_location(w, lock_dir)),
        size=w.get("size"),
        extra=extra or None,
    )


def _sdist(name, version, s, lock_dir, extra) -> Package:
    return Package(
        kind=PYPI,
        subdir="source",
        name=name,
        version=version,
        build="",
        sha256=_sha256(s, lock_dir),
        filename=_filename(s),
        url=strip_credentials(_location(s, lock_dir)),
        size=s.get("size"),
        source="sdist",
        extra=extra or None,
    )


def _archive(name, version, a, spec, python, lock_dir) -> Package:
    filename = _filename(a)
    if filename.endswith(".whl"):
        return _wheel(name, version, a, spec, lock_dir, {})
    return _sdist(name, version, a, lock_dir, {})


def _git(name: str, version: str, vcs: dict) -> Package:
    from imagebuilder.resolve.sources import git_source_sha256

    commit = vcs.get("commit-id", "")
    url = f"git+{strip_credentials(vcs['url'])}@{commit}"
    if vcs.get("subdirectory"):
        url += f"#subdirectory={vcs['subdirectory']}"
    return Package(
        kind=PYPI,
        subdir="source",
        name=name,
        version=version or "0",
        build="",
        sha256=git_source_sha256(commit),
        filename=f"{name}-{commit[:12]}.git.tar",
        url=url,
        source="git",
        extra={"commit": commit},
    )


def _directory(name: str, version: str, d: dict, lock_dir: Path) -> Package:
    from imagebuilder.resolve.sources import static_version, tree_sha256

    path = (lock_dir / d["path"]).resolve()
    if d.get("subdirectory"):
        path = path / d["subdirectory"]
    tree = tree_sha256(path)
    return Package(
        kind=PYPI,
        subdir="source",
        name=name,
        version=version or static_version(path) or "0",
        build="",
        sha256=tree,
        filename=f"{name}-{tree[:12]}.src.tar",
        url=path.as_uri(),
        source="path",
    )
