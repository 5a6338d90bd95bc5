"""The bootstrap's runtime, kept in the store: the wheels a task needs to hydrate an env in an
image that has only Python (py-rattler, zstandard, installer, pinned to this imgbuild's).

The runtime is itself an env, resolved and cached like any other (pure PyPI on the base
image's python), one per arch and python version, named by the alias
`imgbuild-runtime/<arch>-cp<XY>:<imgbuild version>`. `ensure_for_env` runs when an env is
cached (cache.py calls it), so a store that holds an env also holds what tasks need to
create it: tasks never depend on PyPI. The bootstrap reads it with the standard library
(bootstrap/runtime.py).

Settings (environment variables): IMGBUILD_RUNTIME_CACHE=0 turns the hook off;
IMGBUILD_RUNTIME_PYTHONS (default 3.10,3.11,3.12,3.13: the base image's python is unknown
when caching); IMGBUILD_RUNTIME_INDEX_URL and IMGBUILD_RUNTIME_FIND_LINKS (comma-separated)
say where the wheels come from (default: the configured index_url, else PyPI).
"""

from __future__ import annotations

import os
import threading

from imagebuilder import __version__
from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import ImgbuildError
from imagebuilder.ids import AliasRef
from imagebuilder.store.base import Store

DISTS = ("py-rattler", "zstandard", "installer")
DEFAULT_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
NAME = "imgbuild-runtime"
_warned: set[str] = set()
_lock = threading.Lock()


def alias_for(arch: str, python: str, version: str = __version__) -> AliasRef:
    return AliasRef(f"{NAME}/{arch}-cp{python.replace('.', '')}", version)


def pins() -> list[str]:
    from importlib.metadata import version

    return [f"{d}=={version(d)}" for d in DISTS]


def pythons() -> tuple[str, ...]:
    raw = os.environ.get("IMGBUILD_RUNTIME_PYTHONS")
    return tuple(p.strip() for p in raw.split(",") if p.strip()) if raw else DEFAULT_PYTHONS


def is_runtime(env: ResolvedEnv) -> bool:
    names = {r.split("==")[0] for r in env.spec.pypi}
    return env.spec.python_from_base and names == set(DISTS) and not env.spec.conda


def enabled() -> bool:
    return os.environ.get("IMGBUILD_RUNTIME_CACHE", "1").lower() not in ("0", "false", "no", "off")


def runtime_spec(arch: str, python: str, config=None):
    from imagebuilder.spec import make_spec

    index = os.environ.get("IMGBUILD_RUNTIME_INDEX_URL") or (
        config.get("index_url") if config is not None else None
    )
    links = [x for x in os.environ.get("IMGBUILD_RUNTIME_FIND_LINKS", "").split(",") if x]
    return make_spec(
        arch=arch,
        pypi=pins(),
        python=python,
        python_from_base=True,
        indexes=[index] if index else [],
        find_links=links,
    )


def find_runtime(store: Store, arch: str, python: str) -> ResolvedEnv | None:
    from imagebuilder.store.aliases import read_alias
    from imagebuilder.store.envs import get_env

    rec = read_alias(store, alias_for(arch, python))
    target = rec.platforms.get(arch) if rec else None
    return get_env(store, target.req_id, target.full_id) if target else None


def ensure_runtime(store: Store, arch: str, python: str, *, ui=None, config=None) -> ResolvedEnv:
    """The runtime env for arch/python in store: found, or resolved, cached and aliased."""
    from imagebuilder.cache import cache_env
    from imagebuilder.resolve import resolve
    from imagebuilder.store.aliases import set_alias
    from imagebuilder.store.envs import put_env

    found = find_runtime(store, arch, python)
    if found is not None:
        return found
    env = resolve(runtime_spec(arch, python, config))
    env = cache_env(env, store, ui=None)
    put_env(store, env)
    set_alias(store, alias_for(arch, python), env)
    if ui is not None:
        ui.info(f"cached the task bootstrap runtime for {arch} / python {python} in {store.url}")
    return env


def ensure_for_env(env: ResolvedEnv, store: Store, ui=None) -> None:
    """Hook for cache_env: make sure tasks can bootstrap env from this store. Never fails the
    caller: a runtime that cannot be resolved now (offline, no index) is a warning."""
    if not enabled() or is_runtime(env) or not env.arch.startswith("linux-"):
        return
    config = None
    if ui is not None:
        try:
            config = ui.config()
        except ImgbuildError:
            config = None
    from concurrent.futures import ThreadPoolExecutor

    # one runtime per python, each a resolve (a uv process) and a few wheel uploads: at once
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="runtime") as pool:
        list(pool.map(lambda py: _ensure_or_warn(store, env.arch, py, ui, config), pythons()))


def _ensure_or_warn(store: Store, arch: str, python: str, ui, config) -> None:
    try:
        ensure_runtime(store, arch, python, ui=ui, config=config)
    except ImgbuildError as e:
        key = f"{store.url}:{arch}:{python}"
        with _lock:
            if key in _warned:
                return
            _warned.add(key)
        if ui is not None:
            ui.warn(
                f"could not cache the task bootstrap runtime for {arch} / python "
                f"{python}: {e.message} (tasks without an image cannot hydrate from this "
                "store until it is; set IMGBUILD_RUNTIME_INDEX_URL or _FIND_LINKS)"
            )
