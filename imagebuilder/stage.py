"""Staging: install packages of an env into a folder laid out for the image prefix
`/opt/imgbuild/env`, so their files can go into layers (bake.py).

- conda: `rattler.install(..., alternative_target_prefix=PREFIX, execute_link_scripts=False)`
  with records rebuilt from `Package.record` and URLs pointing at the local archives, in a
  child process (py-rattler can crash at interpreter exit: LOCAL-SERVICES.md). Nothing from
  the target runs, so cross-arch staging works; packages with link scripts are reported.
- PyPI: wheels installed with `installer`, scripts' shebangs at `PREFIX/bin/python`, each into
  its own folder so its files are exactly that folder's files.
- conda-meta/*.json are rewritten without this machine's cache paths (so the same package
  gives the same bytes everywhere).
- .pyc: made with the env's own python (hash-based, unchecked, source paths as in the image,
  PYTHONHASHSEED=0, one process per package) when that python runs here; else none.

Only the packages whose layers are not in the store's layer index are staged.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imagebuilder.env import CONDA, PYPI, Package, ResolvedEnv
from imagebuilder.errors import BadInput, ImgbuildError, Unavailable

PREFIX = "/opt/imgbuild/env"
_EXPORT = re.compile(r"^\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(.*?)\s*$")
_LINK_SCRIPT = re.compile(r"^bin/\.(.+)-(pre-link|post-link|pre-unlink)\.(sh|bat)$")
# Fields of rattler's conda-meta records that hold this machine's paths.
_MACHINE_FIELDS = ("extracted_package_dir", "package_tarball_full_path")


@dataclass(frozen=True)
class StagedPackage:
    package: Package
    root: Path  # folder standing for the prefix
    files: tuple[str, ...]  # relative to the prefix, sorted
    activation: tuple[tuple[str, str, str], ...] = ()  # (script name, var, value)
    link_scripts: bool = False

    @property
    def ident(self) -> str:
        return f"{self.package.kind}/{self.package.name}"


def ident(p: Package) -> str:
    return f"{p.kind}/{p.name}"


def python_version(env: ResolvedEnv) -> str | None:
    v = env.python_version
    return ".".join(v.split(".")[:2]) if v else None


def stage(
    env: ResolvedEnv,
    packages: Sequence[Package],
    store,
    workdir: Path,
    pyc: bool,
    say: Callable[[str], None] = lambda m: None,
) -> dict[str, StagedPackage]:
    """Stage `packages` (a subset of env's) under `workdir`; return them by ident."""
    conda = [p for p in packages if p.kind == CONDA]
    wheels = [p for p in packages if p.kind == PYPI]
    pyver = python_version(env)
    if wheels and not pyver:
        raise BadInput(
            "this environment has PyPI packages but no conda python",
            "add python to the request (images get python from conda unless --python-from-base)",
        )
    out: dict[str, StagedPackage] = {}
    python_pkg = env.package("python")
    need_python = bool(conda or wheels) and python_pkg is not None and (pyc or _noarch(conda))
    if need_python and python_pkg not in conda:
        conda = [*conda, python_pkg]  # context for noarch installs and the .pyc compiler
    conda_root = workdir / "conda"
    if conda:
        say(f"staging {len(conda)} conda package(s)")
        out.update(_stage_conda(env, conda, store, conda_root))
    for w in wheels:
        out[ident(w)] = _stage_wheel(w, store, workdir / "pypi" / w.name, pyver or "")
    if pyc and python_pkg is not None and (conda_root / "bin" / "python").exists():
        targets = [s for s in out.values() if _wants_pyc(s)]
        out.update(_compile_all(conda_root / "bin" / "python", targets, pyver or ""))
    return {k: v for k, v in out.items() if k in {ident(p) for p in packages}}


def _noarch(conda: Iterable[Package]) -> bool:
    return any((p.record or {}).get("noarch") == "python" for p in conda)


def _wants_pyc(s: StagedPackage) -> bool:
    p = s.package
    return p.kind == PYPI or (p.record or {}).get("noarch") == "python"


def local_archive(store, p: Package) -> Path:
    """The package archive as a local, verified, checked file."""
    try:
        from imagebuilder.store.localcache import fetch_to_local

        path = fetch_to_local(store, p.store_key, p.sha256)
    except ImportError:  # pragma: no cover - the store engineer's module is part of main
        path = store.local_path(p.store_key)
    if path is None:
        raise Unavailable(f"{p.store_key} is not in store {store.url}", "run `imgbuild resolve`")
    from imagebuilder.archive_check import check_archive

    check_archive(path)
    return Path(path)


# --- conda -------------------------------------------------------------------------------------


def _stage_conda(env: ResolvedEnv, pkgs: list[Package], store, root: Path):
    for p in pkgs:
        if not p.record:
            raise BadInput(f"{p.label} has no repodata record in the env", "resolve it again")
    # Fetch and check archives in parallel (decompression and hashing release the GIL).
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        paths = list(pool.map(lambda p: local_archive(store, p), pkgs))
    items = [
        {"record": p.record, "path": str(path), "file": p.filename}
        for p, path in zip(pkgs, paths, strict=True)
    ]
    job = {
        "target": str(root),
        "prefix": PREFIX,
        "platform": env.arch,
        "cache_dir": str(rattler_cache()),
        "packages": items,
    }
    _run_worker("install", job)
    out: dict[str, StagedPackage] = {}
    by_name = {p.name: p for p in pkgs}
    for meta in sorted((root / "conda-meta").glob("*.json")):
        rec = json.loads(meta.read_text())
        p = by_name.get(rec.get("name", ""))
        if p is None:
            continue
        _normalize_meta(meta, rec, p)
        files = sorted(set(rec.get("files") or []) | {f"conda-meta/{meta.name}"})
        out[ident(p)] = StagedPackage(
            p,
            root,
            tuple(files),
            activation=_activation(root, files),
            link_scripts=any(_LINK_SCRIPT.match(f) for f in files),
        )
    missing = [p.label for p in pkgs if ident(p) not in out]
    if missing:
        raise ImgbuildError(f"staging did not install: {', '.join(missing)}", "rerun with --debug")
    return out


def _normalize_meta(path: Path, rec: dict, p: Package) -> None:
    """Drop this machine's paths; restore the env's URL and channel; readable by anyone."""
    for key in _MACHINE_FIELDS:
        rec.pop(key, None)
    if isinstance(rec.get("link"), dict):
        rec["link"].pop("source", None)
    rec["url"] = p.url
    if p.channel:
        rec["channel"] = p.channel
    path.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    os.chmod(path, 0o644)


def _activation(root: Path, files: Iterable[str]) -> tuple[tuple[str, str, str], ...]:
    """`export X=Y` lines of activate.d scripts, read statically (never run)."""
    out = []
    for f in files:
        if not (f.startswith("etc/conda/activate.d/") and f.endswith(".sh")):
            continue
        try:
            text = (root / f).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            m = _EXPORT.match(line)
            if not m:
                continue
            value = _unquote(m.group(2))
            value = value.replace("${CONDA_PREFIX}", PREFIX).replace("$CONDA_PREFIX", PREFIX)
            if value is not None and not re.search(r"[$`]", value):
                out.append((f.rsplit("/", 1)[-1], m.group(1), value))
    return tuple(out)


def _unquote(v: str) -> str:
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    return v


def rattler_cache() -> Path:
    base = os.environ.get("IMGBUILD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "imgbuild"
    )
    return Path(base) / "rattler-pkgs"


def _run_worker(kind: str, job: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "imagebuilder.stage_worker", kind, f.name],
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(f.name)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        if "No space left" in r.stderr:
            raise Unavailable(f"out of disk space while staging: {last}", "free disk space")
        raise ImgbuildError(f"staging failed: {last}", "rerun with --debug")
    return json.loads(r.stdout or "{}")


# --- PyPI ----------------------------------------------------------------------------------------


def _stage_wheel(p: Package, store, root: Path, pyver: str) -> StagedPackage:
    if not p.filename.endswith(".whl"):
        raise BadInput(
            f"{p.label} is a source distribution; images need built wheels",
            "build it first (imgbuild resolve builds sdists into the store)",
        )
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    site = f"lib/python{pyver}/site-packages"
    scheme = {
        "purelib": str(root / site),
        "platlib": str(root / site),
        "headers": str(root / f"include/python{pyver}" / p.name),
        "scripts": str(root / "bin"),
        "data": str(root),
    }
    dest = SchemeDictionaryDestination(
        scheme, interpreter=f"{PREFIX}/bin/python", script_kind="posix"
    )
    try:
        with WheelFile.open(local_archive(store, p)) as source:
            install(source, dest, {"INSTALLER": b"imgbuild\n"})
    except (ValueError, KeyError, OSError) as e:
        raise BadInput(f"cannot install wheel {p.filename}: {e}") from None
    files = sorted(
        str(Path(dp, f).relative_to(root))
        for dp, _, fs in os.walk(root)
        for f in fs
        if not os.path.isdir(os.path.join(dp, f))
    )
    return StagedPackage(p, root, tuple(files), activation=_activation(root, files))


# --- .pyc ----------------------------------------------------------------------------------------


def python_runs(python: Path) -> bool:
    try:
        r = subprocess.run([str(python), "-c", "pass"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _compile_all(python: Path, targets: list[StagedPackage], pyver: str):
    if not targets or not python_runs(python):
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        done = list(pool.map(lambda s: _compile_one(python, s, pyver), targets))
    return {s.ident: s for s in done}


def _compile_one(python: Path, s: StagedPackage, pyver: str) -> StagedPackage:
    py = [f for f in s.files if f.endswith(".py") and f.startswith(f"lib/python{pyver}/")]
    if not py:
        return s
    job = [[str(s.root / f), f"{PREFIX}/{f}"] for f in py]
    env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}
    r = subprocess.run(
        [str(python), "-I", "-S", "-c", _COMPILE],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
    )
    if r.returncode != 0:
        return s  # no .pyc for this package; the image still works (slower first import)
    made = [str(Path(m).relative_to(s.root)) for m in json.loads(r.stdout or "[]")]
    return StagedPackage(
        s.package, s.root, tuple(sorted(set(s.files) | set(made))), s.activation, s.link_scripts
    )


_COMPILE = r"""
import json, sys, py_compile, importlib.util
made = []
for src, dfile in json.load(sys.stdin):
    cfile = importlib.util.cache_from_source(src)
    try:
        py_compile.compile(src, cfile, dfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        made.append(cfile)
    except Exception:
        pass
print(json.dumps(made))
"""
