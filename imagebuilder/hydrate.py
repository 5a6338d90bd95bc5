"""Hydrate: a ResolvedEnv from the store becomes a working prefix on this machine, offline.

    result = hydrate(env, store, "/path/to/prefix")

Conda packages are linked by py-rattler from verified store files (no channel is contacted),
wheels are installed with `installer`; an env without conda packages becomes a venv on a given
python. Or, with `from_pack`, the env's pack (`packs/<full16>/<arch>.tar.zst`, see pack.py) is
unpacked and its prefix rewritten. Creation is atomic and lock-protected (install/prefix.py):
re-running on an identical prefix is a no-op, two processes creating one prefix do it once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import BadInput
from imagebuilder.install import prefix as pfx
from imagebuilder.store.base import Store
from imagebuilder.testhooks import kill_point

# Kill points (testhooks): `hydrate.fetched` packages are local and verified; `hydrate.installed`
# the staging folder is complete, the marker and the rename are next.


@dataclass(frozen=True)
class Hydrated:
    prefix: str
    python: str | None  # the env's interpreter (None if it has none)
    created: bool  # False: the prefix already held this env
    method: str  # "packages" | "pack" | "venv" | "existing"
    seconds: float
    link_scripts: tuple[str, ...] = ()  # packages whose link scripts were not run

    def to_json(self) -> dict:
        return {
            "prefix": self.prefix,
            "python": self.python,
            "created": self.created,
            "method": self.method,
            "seconds": round(self.seconds, 3),
            "link_scripts": list(self.link_scripts),
        }


def check_platform(env: ResolvedEnv) -> None:
    from imagebuilder.platforms import host_arch

    here = host_arch()
    if env.arch != here:
        raise BadInput(
            f"cannot create a {env.arch} environment on {here} here; build an image with "
            "`imgbuild push` or create it on such a machine",
            f"environments for {env.arch} run only on {env.arch} machines"
            + (" (images are Linux only)" if env.arch.startswith("osx") else ""),
        )


def already_there(prefix: str | os.PathLike, env_ref: str, arch: str | None = None) -> dict | None:
    """If env_ref names an env by id (full_id, req_id:full_id, env name) and prefix already holds
    it, what `create` reports; else None. Reads only the prefix's marker (ids are immutable,
    unlike aliases, so the store need not be asked)."""
    from imagebuilder.errors import ImgbuildError
    from imagebuilder.ids import FullIdRef, PairRef, parse_env_ref

    target = os.path.abspath(os.path.expanduser(str(prefix)))
    marker = pfx.read_marker(target)
    if marker is None or (arch and marker.arch != arch):
        return None
    try:
        ref = parse_env_ref(env_ref)
    except ImgbuildError:
        return None
    if isinstance(ref, FullIdRef):
        ok = marker.full_id.startswith(ref.full_id)
    elif isinstance(ref, PairRef):
        ok = marker.full_id.startswith(ref.full_id) and marker.req_id.startswith(ref.req_id)
    else:
        return None
    if not ok:
        return None
    done = Hydrated(target, marker.python, False, "existing", 0.0).to_json()
    return {
        **done,
        "req_id": marker.req_id,
        "full_id": marker.full_id,
        "env_name": marker.env_name,
        "arch": marker.arch,
    }


def env_python(prefix: str, env: ResolvedEnv) -> str | None:
    if env.conda_packages():
        return os.path.join(prefix, "bin", "python") if env.package("python") else None
    return os.path.join(prefix, "bin", "python")


def hydrate(
    env: ResolvedEnv,
    store: Store,
    prefix: str | os.PathLike,
    *,
    force: bool = False,
    python: str | None = None,
    from_pack: bool | None = False,
    info: Callable[[str], None] | None = None,
    lock_timeout: float | None = None,
) -> Hydrated:
    """Create (or find) env at prefix. from_pack: True = the pack (error if missing), None =
    the pack when the store has one, False = per package."""
    from imagebuilder.locks import LockTimeout, file_lock, lock_path_for

    start = time.monotonic()
    say = info or (lambda _msg: None)
    target = Path(os.path.abspath(os.path.expanduser(str(prefix))))
    check_platform(env)
    if pfx.check_target(target, env, force):  # fast path, no lock: the marker is written last
        return Hydrated(str(target), env_python(str(target), env), False, "existing", 0.0)

    def waiting(holder: str) -> None:
        say(f"waiting for {holder} to finish creating {target}")

    try:
        lock_cm = file_lock(lock_path_for(target), timeout=lock_timeout, on_wait=waiting)
        with lock_cm:
            if pfx.check_target(target, env, force):  # another process created it meanwhile
                return Hydrated(str(target), env_python(str(target), env), False, "existing", 0.0)
            _test_hold()
            pfx.clean_leftovers(target)
            method, links = _create(env, store, target, python, from_pack, say)
    except LockTimeout as e:
        from imagebuilder.errors import Unavailable

        raise Unavailable(str(e), "another process is creating this prefix; retry later") from None
    except OSError as e:
        raise pfx.os_error(e, target) from None
    return Hydrated(
        str(target), env_python(str(target), env), True, method, time.monotonic() - start, links
    )


def _test_hold() -> None:
    """Test hook: IMGBUILD_TEST_HOLD_LOCK=<seconds> holds the prefix lock that long, so a test
    can start a second creator while the first is surely inside."""
    hold = os.environ.get("IMGBUILD_TEST_HOLD_LOCK")
    if hold:
        time.sleep(float(hold))


def _create(env, store, target: Path, python, from_pack, say) -> tuple[str, tuple[str, ...]]:
    from imagebuilder import pack as packmod

    if from_pack is not False:
        key = packmod.pack_key(env)
        if store.exists(key):
            staging, in_place = pfx.new_staging(target)
            try:
                packmod.unpack(store, env, staging, str(target), info=say)
                kill_point("hydrate.installed")
                marker = pfx.PrefixMarker.for_env(env, "pack", env_python(str(target), env))
                pfx.publish(staging, target, marker, in_place)
            except BaseException:
                pfx.discard(staging, in_place)
                raise
            return "pack", ()
        if from_pack:
            from imagebuilder.errors import NotFound

            raise NotFound(
                f"no pack of {env.short_id} for {env.arch} in {store.url}",
                f"run `imgbuild pack {env.short_id}` first, or create it per package (--no-pack)",
            )
    return _create_from_packages(env, store, target, python, say)


def _create_from_packages(env, store, target: Path, python, say) -> tuple[str, tuple[str, ...]]:
    from imagebuilder.install import InstallPlan, run_install, venv
    from imagebuilder.install import files as files_mod

    base = None
    if env.is_venv:
        base = venv.probe(python or _default_python(env))
        _check_base_python(env, base)
        py_version = base.xy
    else:
        if python:
            raise BadInput(
                "--python applies only to environments without conda packages",
                "this environment brings its own python from conda",
            )
        py_version = env.python_xy
    n = len(env.packages)
    say(f"fetching {n} packages from {store.url}")
    conda, wheels = files_mod.gather(env, store, py_version or "")
    kill_point("hydrate.fetched")
    staging, in_place = pfx.new_staging(target)
    try:
        site = None
        if base is not None:
            site = venv.create(staging, str(target), base)
        plan = InstallPlan(
            staging=str(staging),
            prefix=str(target),
            arch=env.arch,
            conda=tuple(conda),
            wheels=tuple(wheels),
            site_packages=site,
            portable_meta=True,
        )
        say(f"installing {len(conda)} conda packages and {len(wheels)} wheels into {target}")
        report = run_install(plan)
        kill_point("hydrate.installed")
        method = "venv" if base is not None else "packages"
        marker = pfx.PrefixMarker.for_env(env, method, env_python(str(target), env))
        pfx.publish(staging, target, marker, in_place)
    except BaseException:
        pfx.discard(staging, in_place)
        raise
    return method, report.link_scripts


def _default_python(env: ResolvedEnv) -> str:
    import shutil
    import sys

    want = env.python_xy
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if want in (None, here):
        return sys.executable
    found = shutil.which(f"python{want}")
    if found is None:
        raise BadInput(
            f"{env.short_id} needs python {want} and none is on PATH",
            f"pass --python /path/to/python{want}",
        )
    return found


def _check_base_python(env: ResolvedEnv, base) -> None:
    want = env.python_xy
    if want is not None and want != base.xy:
        raise BadInput(
            f"{env.short_id} was resolved for python {want}, but {base.executable} is {base.xy}",
            f"pass --python with a python {want} interpreter",
        )
