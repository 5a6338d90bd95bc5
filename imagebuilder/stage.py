"""Staging: install packages of an env into a folder laid out for the image prefix
`/opt/imgbuild/env`, so their files can go into layers (bake.py).

The installing itself is the hydrate installer's (imagebuilder/install), shared:
- conda packages with nothing to rewrite are read from their extracted archive instead of
  being linked (install/inplace.py: same layer bytes, far fewer inodes to create and remove);
- other conda packages: `rattler.install(..., alternative_target_prefix=PREFIX)`, in the CLI's own process (it
  leaves through os._exit), else in a child process (py-rattler can crash at interpreter
  exit); link scripts never run (reported), conda-meta made portable (no cache paths, the
  channel's URL, mode 0644), archives sha256- and hostile-checked first.
  Nothing from the target runs, so cross-arch staging works.
- PyPI: each wheel into its own folder (so its files are exactly that folder's files), with
  `installer`, scripts' shebangs at `PREFIX/bin/python`.
What is bake-specific lives here: attributing files to packages, reading activate.d exports,
and deterministic .pyc made with the env's own python (hash-based, unchecked, source paths as
in the image, PYTHONHASHSEED=0, one process per package) when that python runs here (a venv
env's python is the base image's: oci/baseroot.py says how to start it); bake
writes the layers of the packages that need none meanwhile (`stage_files` / `Staging.compile`).

Only the packages whose layers are not in the store's layer index are staged.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from imagebuilder.env import CONDA, PYPI, Package, ResolvedEnv
from imagebuilder.errors import BadInput, ImgbuildError

PREFIX = "/opt/imgbuild/env"
_EXPORT = re.compile(r"^\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(.*?)\s*$")


@dataclass(frozen=True)
class StagedPackage:
    package: Package
    root: Path  # folder standing for the prefix
    files: tuple[str, ...]  # relative to the prefix, sorted
    activation: tuple[tuple[str, str, str], ...] = ()  # (script name, var, value)
    link_scripts: bool = False
    # A package read in place (install/inplace.py): its files are under root (the extracted
    # archive), its conda-meta record under meta_root (the staging folder), the files whose
    # text placeholder was replaced under rewritten_root.
    meta_root: Path | None = None
    rewritten_root: Path | None = None
    rewritten: frozenset[str] = frozenset()

    @property
    def ident(self) -> str:
        return f"{self.package.kind}/{self.package.name}"

    def root_of(self, f: str) -> Path:
        """The folder standing for the prefix that file f (relative to it) is read from."""
        if self.meta_root is not None and f.startswith("conda-meta/"):
            return self.meta_root
        if self.rewritten_root is not None and f in self.rewritten:
            return self.rewritten_root
        return self.root


def ident(p: Package) -> str:
    return f"{p.kind}/{p.name}"


@dataclass(frozen=True)
class Staging:
    """Staged packages: `ready` ones are final; the rest get their .pyc from `compile()`
    (returns them, final), which bake runs while it writes the layers of the ready ones."""

    ready: dict[str, StagedPackage]
    pending: dict[str, StagedPackage]
    python: tuple[str, ...]  # argv that starts the env's python here (empty: no .pyc)
    pyver: str

    def compile(self) -> dict[str, StagedPackage]:
        if not self.pending:
            return {}
        done = _compile_all(self.python, list(self.pending.values()), self.pyver)
        return {k: done.get(k, s) for k, s in self.pending.items()}


def stage_files(
    env: ResolvedEnv,
    packages: Sequence[Package],
    store,
    workdir: Path,
    pyc: bool,
    say: Callable[[str], None] = lambda m: None,
    base_python: tuple[str, ...] = (),
    in_place: bool = True,
) -> Staging:
    """Install `packages` (a subset of env's) under `workdir`; .pyc are left to the result's
    compile(). base_python: how to start the base image's python here, for a venv env
    (oci/baseroot.py); a conda env's own python is the staged one. in_place: conda packages
    that need no linking step are read from their extracted archive (install/inplace.py)."""
    conda = [p for p in packages if p.kind == CONDA]
    wheels = [p for p in packages if p.kind == PYPI]
    pyver = env.python_xy
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
        out.update(_stage_conda(env, conda, store, conda_root, in_place))
    for w in wheels:
        out[ident(w)] = _stage_wheel(w, store, workdir / "pypi" / w.name, pyver or "")
    wanted = {ident(p) for p in packages}
    out = {k: v for k, v in out.items() if k in wanted}
    staged_python = conda_root / "bin" / "python"
    python: tuple[str, ...] = ()
    if pyc and python_pkg is not None and staged_python.exists():
        python = (str(staged_python),)
    elif pyc and python_pkg is None and base_python:
        python = base_python
    pending = {k: v for k, v in out.items() if _wants_pyc(v)} if python else {}
    ready = {k: v for k, v in out.items() if k not in pending}
    return Staging(ready, pending, python, pyver or "")


def _noarch(conda: Iterable[Package]) -> bool:
    return any((p.record or {}).get("noarch") == "python" for p in conda)


def _wants_pyc(s: StagedPackage) -> bool:
    p = s.package
    return p.kind == PYPI or (p.record or {}).get("noarch") == "python"


def local_archive(store, p: Package) -> Path:
    """The package archive as a local file, sha256- and hostile-archive-checked (the check is
    remembered per file: imagebuilder/install/files.py, shared with hydrate)."""
    from imagebuilder.install.files import fetch_verified

    return Path(fetch_verified(store, p.store_key, p.sha256, p.label))


# --- conda -------------------------------------------------------------------------------------


def _stage_conda(env: ResolvedEnv, pkgs: list[Package], store, root: Path, in_place: bool):
    """Packages that need no linking step are read in place (install/inplace.py); rattler
    links the others through the hydrate installer (imagebuilder/install: portable
    conda-meta); then each package's files come from its conda-meta record."""
    from imagebuilder.install.inplace import InPlace, package_dir
    from imagebuilder.install.plan import CondaItem, InstallPlan, run_install

    def prepare(p: Package) -> tuple[CondaItem, InPlace | None]:
        item = CondaItem.from_package(p, local_archive(store, p))
        sha = item.record.get("sha256")
        return item, package_dir(item, sha, PREFIX) if in_place and sha else None

    # Fetch, check and extract archives in parallel (decompression and hashing release the GIL).
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        prepared = list(pool.map(prepare, pkgs))
    linked = tuple(item for item, where in prepared if where is None)
    with_scripts: set[str] = set()
    if linked:
        plan = InstallPlan(staging=str(root), prefix=PREFIX, arch=env.arch, conda=linked)
        # in this process when it leaves through os._exit (the CLI)
        with_scripts = set(run_install(plan).link_scripts)
    out: dict[str, StagedPackage] = {}
    by_name = {p.name: p for p in pkgs}
    for meta in sorted((root / "conda-meta").glob("*.json")):
        rec = json.loads(meta.read_text())
        p = by_name.get(rec.get("name", ""))
        if p is None:
            continue
        files = sorted(set(rec.get("files") or []) | {f"conda-meta/{meta.name}"})
        out[ident(p)] = StagedPackage(
            p,
            root,
            tuple(files),
            activation=_activation(lambda _f: root, files),
            link_scripts=p.name in with_scripts,
        )
    for p, (item, where) in zip(pkgs, prepared, strict=True):
        if where is not None:
            out[ident(p)] = _in_place(p, item, where, root)
    missing = [p.label for p in pkgs if ident(p) not in out]
    if missing:
        raise ImgbuildError(f"staging did not install: {', '.join(missing)}", "rerun with --debug")
    return out


def _in_place(p: Package, item, where, root: Path) -> StagedPackage:
    from imagebuilder.install.inplace import meta_record

    name, data = meta_record(item, where, PREFIX)
    meta = root / "conda-meta" / name
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_bytes(data)
    os.chmod(meta, 0o644)
    scripts = {f"bin/.{p.name}-{k}.sh" for k in ("pre-link", "post-link", "pre-unlink")}
    staged = StagedPackage(
        p,
        where.root,
        tuple(sorted({*where.files, f"conda-meta/{name}"})),
        link_scripts=bool(scripts.intersection(where.files)),
        meta_root=root,
        rewritten_root=where.rewritten_root,
        rewritten=frozenset(where.rewritten),
    )
    # activate.d scripts are read where the layer reads them (a placeholder in one is replaced)
    return replace(staged, activation=_activation(staged.root_of, where.files))


def _activation(
    root_of: Callable[[str], Path], files: Iterable[str]
) -> tuple[tuple[str, str, str], ...]:
    """`export X=Y` lines of activate.d scripts (each read from root_of(its path)), read
    statically (never run)."""
    out = []
    for f in files:
        if not (f.startswith("etc/conda/activate.d/") and f.endswith(".sh")):
            continue
        try:
            text = (root_of(f) / f).read_text(errors="replace")
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


# --- PyPI ----------------------------------------------------------------------------------------


def _stage_wheel(p: Package, store, root: Path, pyver: str) -> StagedPackage:
    """One wheel into its own folder (its files are that folder's files), through the hydrate
    installer in this process (wheels need no rattler)."""
    if not p.filename.endswith(".whl"):
        raise BadInput(
            f"{p.label} is a source distribution; images need built wheels",
            "build it first (imgbuild resolve builds sdists into the store)",
        )
    from imagebuilder.install.plan import InstallPlan, WheelItem, run_install

    plan = InstallPlan(
        staging=str(root),
        prefix=PREFIX,
        arch="noarch",
        wheels=(WheelItem(p.name, str(local_archive(store, p))),),
        python=f"{PREFIX}/bin/python",
        site_packages=f"lib/python{pyver}/site-packages",
    )
    run_install(plan, inprocess=True)
    files = sorted(
        str(Path(dp, f).relative_to(root))
        for dp, _, fs in os.walk(root)
        for f in fs
        if not os.path.isdir(os.path.join(dp, f))
    )
    return StagedPackage(p, root, tuple(files), activation=_activation(lambda _f: root, files))


# --- .pyc ----------------------------------------------------------------------------------------


def _compile_all(python: tuple[str, ...], targets: list[StagedPackage], pyver: str):
    # No separate "does it start" run first: a python that cannot run fails each compile at
    # once (the package keeps no .pyc), and one start fewer saves ~0.1 s of a cold bake.
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        done = list(pool.map(lambda s: _compile_one(python, s, pyver), targets))
    return {s.ident: s for s in done}


def _compile_one(python: tuple[str, ...], s: StagedPackage, pyver: str) -> StagedPackage:
    py = [f for f in s.files if f.endswith(".py") and f.startswith(f"lib/python{pyver}/")]
    if not py:
        return s
    job = [[str(s.root / f), f"{PREFIX}/{f}"] for f in py]
    env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}
    try:
        r = subprocess.run(
            [*python, "-I", "-S", "-c", _COMPILE],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired):
        return s
    if r.returncode != 0:
        return s  # no .pyc for this package; the image still works (slower first import)
    made = [str(Path(m).relative_to(s.root)) for m in json.loads(r.stdout or "[]")]
    return replace(s, files=tuple(sorted(set(s.files) | set(made))))


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
