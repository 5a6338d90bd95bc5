"""Packs: one relocatable archive per env and arch, `packs/<full_id16>/<arch>.tar.zst`, for
one-shot hydration (one download, one stream to unpack, no package cache).

    key = pack_env(env, store)                  # imgbuild pack ENV
    unpack(store, env, staging, final_prefix)   # imgbuild create --from-pack / bootstrap

The env is installed per package at a placeholder prefix. Files that need the real prefix are
listed in the pack's manifest: text files as installed (they hold the placeholder), binary
files in their ORIGINAL package form (they hold the package's own long placeholder, so the new
prefix only has to be shorter than that one, as with conda), plus every other file the scan
finds the placeholder in (entry points, wheel scripts). Unpacking rewrites only those files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import BadInput, IntegrityError
from imagebuilder.ids import short
from imagebuilder.install.relocate import Replacement
from imagebuilder.records import check_schema, schema_id
from imagebuilder.store.base import Store
from imagebuilder.testhooks import kill_point

# Short enough for any binary placeholder rattler must write at install time (the classic
# conda one has 31 characters); unique enough that a scan never finds it by accident.
PLACEHOLDER = "/tmp/_imgbuild_pack_prefix_v1"


def pack_key(env: ResolvedEnv) -> str:
    return f"packs/{short(env.full_id)}/{env.arch}.tar.zst"


def pack_env(
    env: ResolvedEnv, store: Store, *, info: Callable[[str], None] | None = None
) -> tuple[str, dict]:
    """Write the env's pack into the store (write-once); returns (key, stats)."""
    from imagebuilder.install import InstallPlan, run_install
    from imagebuilder.install import files as files_mod
    from imagebuilder.install.plan import default_cache_dir

    say = info or (lambda _m: None)
    key = pack_key(env)
    if store.exists(key):
        return key, {"existing": True}
    if not env.package("python") or env.package("python").kind != "conda":
        raise BadInput(
            f"{env.short_id} has no conda python: nothing to pack",
            "venv environments are created from their wheels (`imgbuild create`) in about the "
            "same time a pack would take",
        )
    t0 = time.monotonic()
    py = ".".join(env.package("python").version.split(".")[:2])
    conda, wheels = files_mod.gather(env, store, py)
    from imagebuilder.store.localcache import cache_root

    work = cache_root() / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pack-", dir=work) as tmp:
        staging = Path(tmp) / "prefix"
        plan = InstallPlan(
            staging=str(staging),
            prefix=PLACEHOLDER,
            arch=env.arch,
            conda=tuple(conda),
            wheels=tuple(wheels),
            cache_dir=default_cache_dir(),
            portable_meta=False,  # pack needs extracted_package_dir; normalized below
        )
        say(f"installing {len(env.packages)} packages at the pack placeholder")
        run_install(plan)
        kill_point("pack.installed")  # testhooks: staged at the placeholder, nothing packed
        reps = _replacements(staging, plan)
        manifest = {
            "schema": schema_id("pack"),
            "req_id": env.req_id,
            "full_id": env.full_id,
            "arch": env.arch,
            "placeholder": PLACEHOLDER,
            "replacements": [r.to_json() for r in reps],
            "python": "bin/python",
        }
        out = Path(tmp) / "pack.tar.zst"
        from imagebuilder.install import packtar

        raw = packtar.write(staging, manifest, out)
        kill_point("pack.written")  # testhooks: the pack is complete locally, not stored
        size = out.stat().st_size
        store.put_file(key, out)
    stats = {
        "existing": False,
        "files_to_relocate": len(reps),
        "unpacked_bytes": raw,
        "bytes": size,
        "seconds": round(time.monotonic() - t0, 3),
    }
    say(f"packed {env.short_id}: {size / 1e6:.1f} MB ({raw / 1e6:.1f} MB unpacked) into {key}")
    return key, stats


def _replacements(staging: Path, plan) -> list[Replacement]:
    """Files to rewrite at unpack; binary ones restored to their package form first."""
    from imagebuilder.install import relocate
    from imagebuilder.install.conda import normalize_meta

    reps: list[Replacement] = []
    for meta in sorted((staging / "conda-meta").glob("*.json")):
        d = json.loads(meta.read_text())
        extracted = d.get("extracted_package_dir")
        for entry in d.get("paths_data", {}).get("paths", []):
            placeholder = entry.get("prefix_placeholder")
            if not placeholder:
                continue
            path = entry["_path"]
            if entry.get("file_mode") == "binary":
                if not extracted:
                    raise IntegrityError(f"rattler did not say where {d.get('fn')} was unpacked")
                dest = staging / path
                tmp = dest.with_name(dest.name + ".imgbuild-tmp")
                shutil.copyfile(Path(extracted) / path, tmp)
                os.chmod(tmp, os.stat(dest).st_mode & 0o7777)
                os.replace(tmp, dest)  # never write through the hardlink into the cache
                reps.append(Replacement(path, placeholder, "binary"))
            else:
                reps.append(Replacement(path, PLACEHOLDER, "text"))
    normalize_meta(staging, replace(plan, portable_meta=True))
    listed = {r.path for r in reps}
    reps += relocate.scan(str(staging), PLACEHOLDER, listed)
    return sorted(reps, key=lambda r: r.path)


def unpack(
    store: Store,
    env: ResolvedEnv,
    staging: Path,
    prefix: str,
    *,
    info: Callable[[str], None] | None = None,
) -> dict:
    """Unpack the env's pack into staging, rewritten for prefix; returns the manifest."""
    from imagebuilder.install import packtar, relocate
    from imagebuilder.store.localcache import fetch_to_local

    key = pack_key(env)
    if info:
        info(f"fetching {key} from {store.url}")
    path = fetch_to_local(store, key)
    manifest = packtar.read(path, staging)
    check_schema(manifest, "pack", key)
    if manifest.get("full_id") != env.full_id or manifest.get("arch") != env.arch:
        raise IntegrityError(
            f"{key} holds {short(manifest.get('full_id', ''))}/{manifest.get('arch')}, "
            f"not {short(env.full_id)}/{env.arch}",
            "remove it from the store and run `imgbuild pack` again",
        )
    reps = [Replacement.from_json(r) for r in manifest["replacements"]]
    try:
        relocate.apply(str(staging), reps, prefix)
    except IntegrityError as e:
        raise IntegrityError(f"refusing pack {key}: {e.message}", e.hint) from None
    return manifest
