"""Load the bootstrap's runtime wheels from the store onto sys.path (standard library only).

The runtime env (imagebuilder/runtime.py) is found by its alias
`imgbuild-runtime/<arch>-cp<XY>:<version>`; only the wheels this creation needs are fetched
(zstandard alone to unpack a pack), verified by sha256, and unzipped once per host into
`<cache>/runtime/<full_id16>/<wheel sha256>/`, which is added to sys.path. Modules that
already import here (a developer machine, an image that has them) are used as they are.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from imagebuilder.errors import IntegrityError, NotFound

# import name -> distribution name in the runtime env
MODULES = {"zstandard": "zstandard", "rattler": "py-rattler", "installer": "installer"}


def missing(modules: list[str]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def cache_root() -> Path:
    env = os.environ.get("IMGBUILD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".imgbuild" / "cache"


def runtime_env_record(store, arch: str, python: str, version: str) -> dict:
    tag = f"{arch}-cp{python.replace('.', '')}"
    key = f"aliases/imgbuild-runtime/{tag}/{version}.json"
    got = store.get_record(key)
    target = json.loads(got[0]).get("platforms", {}).get(arch) if got else None
    if not target:
        raise NotFound(
            f"store {store.url} has no bootstrap runtime for {arch} / python {python} "
            f"(imgbuild {version})",
            "cache any env for this arch with this imgbuild version (`imgbuild resolve` does "
            "it), or use an image that has the env baked in",
        )
    env_key = f"envs/{target['req_id'][:16]}/{target['full_id'][:16]}.json"
    return json.loads(store.get_bytes(env_key))


def load(store, arch: str, modules: list[str], version: str, say=lambda m: None) -> None:
    """Make `modules` importable, from the store's runtime when they are not already."""
    need = missing(modules)
    if not need:
        return
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = runtime_env_record(store, arch, python, version)
    dists = {MODULES[m].replace("_", "-").lower() for m in need}
    pkgs = [p for p in env["packages"] if p["name"].replace("_", "-").lower() in dists]
    found = {p["name"].replace("_", "-").lower() for p in pkgs}
    if found != dists:
        raise NotFound(f"the runtime env in {store.url} lacks {sorted(dists - found)}")
    root = cache_root() / "runtime" / env["full_id"][:16]
    for p in pkgs:
        site = root / p["sha256"]
        if not (site / ".complete").exists():
            say(f"fetching runtime wheel {p['filename']}")
            _install_wheel(store, p, site)
        sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    still = missing(need)
    if still:
        raise NotFound(f"runtime wheels from {store.url} did not provide {still}")


def _install_wheel(store, pkg: dict, site: Path) -> None:
    key = f"pkgs/pypi/{pkg['sha256']}/{pkg['filename']}"
    site.parent.mkdir(parents=True, exist_ok=True)
    tmp = site.parent / f".{site.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        wheel = tmp / pkg["filename"]
        store.get_file(key, wheel)
        h = hashlib.sha256()
        with open(wheel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != pkg["sha256"]:
            raise IntegrityError(
                f"runtime wheel {pkg['filename']} is corrupted: expected sha256 {pkg['sha256']}, "
                f"got {h.hexdigest()}",
                "the store object was damaged; run `imgbuild verify`",
            )
        out = tmp / "site"
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                parts = name.split("/")
                if name.startswith("/") or ".." in parts or "\\" in name:
                    raise IntegrityError(f"refusing runtime wheel {pkg['filename']}: {name!r}")
            z.extractall(out)
        (out / ".complete").write_text(pkg["sha256"] + "\n")
        try:
            os.rename(out, site)
        except OSError:
            if not (site / ".complete").exists():  # another process won the race: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
