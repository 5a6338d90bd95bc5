"""Copy envs between stores (`imgbuild get`): packages first, then env records, then aliases,
so the destination never holds an env whose packages are missing (with --with-packages)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from imagebuilder.errors import IntegrityError
from imagebuilder.ids import AliasRef, parse_env_ref
from imagebuilder.store.base import RaceLost, Store


def copy_object(src: Store, dst: Store, key: str, sha256: str) -> bool:
    """Copy one content-addressed object, verified. True if it was copied."""
    if dst.exists(key):
        return False
    from imagebuilder.fetch import sha256_file
    from imagebuilder.store.localcache import fetch_to_local

    path = fetch_to_local(src, key, sha256)
    if src.local_path(key) is not None and sha256_file(path) != sha256:
        raise IntegrityError(
            f"{key} in {src.url} is damaged (sha256 differs from its key)",
            f"run `imgbuild verify --store {src.url}`",
        )
    return dst.put_file(key, path, sha256=sha256)


def copy_build_record(src: Store, dst: Store, key: str) -> None:
    got = src.get_record(key)
    if got is None:
        return
    new = json.loads(got[0])
    for _ in range(8):
        have = dst.get_record(key)
        if have is None:
            data = got[0]
        else:
            merged = json.loads(have[0])
            merged.setdefault("builds", {}).update(
                {k: v for k, v in new.get("builds", {}).items() if k not in merged["builds"]}
            )
            data = json.dumps(merged, indent=1, sort_keys=True).encode() + b"\n"
            if data == have[0]:
                return
        try:
            dst.put_record(key, data, have[1] if have else None)
            return
        except RaceLost:
            continue


def copy_envs(
    src: Store, dst: Store, ref_text: str, *, with_packages: bool, arches=(), ui=None
) -> dict:
    from imagebuilder.catalog import find_envs
    from imagebuilder.store.aliases import read_alias, set_alias
    from imagebuilder.store.envs import put_env
    from imagebuilder.store.verify import build_keys, package_keys

    ref = parse_env_ref(ref_text)
    envs = find_envs(src, ref)
    if arches:
        envs = [e for e in envs if e.arch in arches]
    copied_objects = 0
    if with_packages:
        objects: dict[str, str] = {}
        records: list[str] = []
        for env in envs:
            objects.update(package_keys(env))
            built, recs = build_keys(src, env)
            objects.update(built)
            records += recs
        with ThreadPoolExecutor(max_workers=8) as pool:
            copied_objects = sum(
                pool.map(lambda kv: copy_object(src, dst, kv[0], kv[1]), sorted(objects.items()))
            )
        for key in records:
            copy_build_record(src, dst, key)
    out = []
    for env in envs:
        copied = put_env(dst, env)
        out.append({"env_name": env.name, "arch": env.arch, "copied": copied})
    alias = None
    if isinstance(ref, AliasRef) and read_alias(src, ref) is not None:
        for env in envs:
            rec = set_alias(dst, ref, env)
        alias = rec.to_json() if envs else None
    if ui is not None:
        ui.info(
            f"copied {sum(e['copied'] for e in out)} env record(s) and {copied_objects} "
            f"object(s) from {src.url} to {dst.url}"
        )
    return {"envs": out, "alias": alias, "objects_copied": copied_objects}
