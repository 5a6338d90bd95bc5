"""ENV (CONTRACT.md grammar) -> the env record in a store, with the standard library only.

catalog.py validates records with jsonschema, which a bare task image does not have and which
costs 0.1-0.25 s to import on every `imgbuild create`; the ids are still recomputed from the
content and checked by ResolvedEnv.from_json, so a damaged record cannot pass as the env."""

from __future__ import annotations

import json

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import BadInput, IntegrityError, NotFound
from imagebuilder.ids import AliasRef, FullIdRef, PairRef, PathspecRef, parse_env_ref, short


def find_env(store, text: str, arch: str | None = None) -> ResolvedEnv:
    """The env text names; for a multi-arch alias the one for arch (default: this machine's,
    else the alias's only one, so that the caller can say why it cannot be used here)."""
    from imagebuilder.platforms import host_arch

    ref = parse_env_ref(text)
    if isinstance(ref, AliasRef):
        got = store.get_record(f"aliases/{ref.name}/{ref.tag}.json")
        if got is None:
            raise NotFound(f"no environment named {ref} in {store.url}", "run `imgbuild ls`")
        platforms = json.loads(got[0]).get("platforms", {})
        want = arch or host_arch()
        target = platforms.get(want)
        if target is None and arch is None and len(platforms) == 1:
            target = next(iter(platforms.values()))
        if not target:
            have = ", ".join(sorted(platforms)) or "none"
            raise NotFound(
                f"{ref} has no environment for {want} in {store.url} (it has: {have})",
                f"pass --arch, or resolve it for {want}",
            )
        key = f"envs/{short(target['req_id'])}/{short(target['full_id'])}.json"
    elif isinstance(ref, PairRef):
        key = f"envs/{short(ref.req_id)}/{short(ref.full_id)}.json"
    elif isinstance(ref, FullIdRef):
        keys = [k for k in store.list("envs/") if k.endswith(f"/{short(ref.full_id)}.json")]
        if not keys:
            raise NotFound(f"no environment with full_id {ref.full_id} in {store.url}")
        if len(keys) > 1:
            raise BadInput(
                f"full_id {ref.full_id} matches {len(keys)} requests", "name it REQ_ID:FULL_ID"
            )
        key = keys[0]
    elif isinstance(ref, PathspecRef):
        raise BadInput(
            "the bootstrap takes an env id or alias, not a Metaflow pathspec",
            "pass req_id:full_id (the Metaflow plugin does)",
        )
    else:  # pragma: no cover
        raise BadInput(f"cannot read environment reference {text!r}")
    got = store.get_record(key)
    if got is None:
        raise NotFound(f"no environment {key} in store {store.url}", "run `imgbuild ls`")
    try:
        env = ResolvedEnv.from_json(json.loads(got[0]), f"{store.url}/{key}")
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"env record {key} in {store.url} is malformed: {e}") from None
    for want, have in (
        (getattr(ref, "full_id", None), env.full_id),
        (getattr(ref, "req_id", None), env.req_id),
    ):
        if want and not have.startswith(want):
            raise IntegrityError(f"env record {key} in {store.url} does not hold {ref}")
    return env
