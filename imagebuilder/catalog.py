"""From an ENV argument (CONTRACT.md grammar) to the env record(s) it names in a store."""

from __future__ import annotations

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import Conflict, NotFound
from imagebuilder.ids import AliasRef, EnvRef, FullIdRef, PairRef, PathspecRef, parse_env_ref, short
from imagebuilder.store.base import Store


def find_envs(store: Store, ref: EnvRef | str) -> list[ResolvedEnv]:
    """Every env the reference names (several for a multi-arch alias)."""
    from imagebuilder.store import envs

    if isinstance(ref, str):
        ref = parse_env_ref(ref)
    if isinstance(ref, FullIdRef):
        keys = envs.find_by_full_id(store, ref.full_id)
        if not keys:
            raise NotFound(
                f"no environment with full_id {ref.full_id} in {store.url}", "run `imgbuild ls`"
            )
        found = [envs.read_env(store, k) for k in keys]
        if len({e.req_id for e in found}) > 1:
            raise Conflict(
                f"full_id {ref.full_id} matches {len(found)} requests: "
                + ", ".join(e.short_id for e in found),
                "name one with REQ_ID:FULL_ID",
            )
        return found[:1]
    if isinstance(ref, PairRef):
        keys = [
            k for k in envs.env_keys(store, ref.req_id) if k.endswith(f"/{short(ref.full_id)}.json")
        ]
        if not keys:
            raise NotFound(
                f"no environment {short(ref.req_id)}:{short(ref.full_id)} in {store.url}",
                "run `imgbuild ls`",
            )
        env = envs.read_env(store, keys[0])
        for want, got in ((ref.req_id, env.req_id), (ref.full_id, env.full_id)):
            if not got.startswith(want):
                raise NotFound(f"no environment {ref} in {store.url}")
        return [env]
    if isinstance(ref, AliasRef):
        from imagebuilder.store.aliases import require_alias

        rec = require_alias(store, ref)
        return [envs.get_env(store, t.req_id, t.full_id) for _, t in sorted(rec.platforms.items())]
    if isinstance(ref, PathspecRef):
        from imagebuilder.metaflow.client import env_of_pathspec

        req_id, full_id = env_of_pathspec(ref.pathspec)
        return [envs.get_env(store, req_id, full_id)]
    raise TypeError(ref)


def find_env(store: Store, ref: EnvRef | str, arch: str | None = None) -> ResolvedEnv:
    """One env: for a multi-arch alias, the one for `arch` (default: the host's, else the only one)."""
    from imagebuilder.platforms import host_arch

    found = find_envs(store, ref)
    if len(found) == 1 and (arch is None or found[0].arch == arch):
        return found[0]
    want = arch or host_arch()
    for env in found:
        if env.arch == want:
            return env
    if arch is None and len(found) == 1:
        return found[0]
    have = ", ".join(sorted(e.arch for e in found))
    raise NotFound(
        f"{ref} has no environment for {want} (it has: {have})",
        f"pass --arch {found[0].arch} or resolve for {want}",
    )
