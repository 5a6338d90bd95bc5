"""Env records in a store: `envs/<req_id16>/<full_id16>.json` (CONTRACT.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from imagebuilder.env import ResolvedEnv, env_key
from imagebuilder.errors import BadInput, IntegrityError, NotFound
from imagebuilder.ids import short
from imagebuilder.store.base import Store


def put_env(store: Store, env: ResolvedEnv) -> bool:
    """Write the env record (write-once). Callers write it only after its packages are stored."""
    from imagebuilder.schema import validate

    record = env.to_json()
    validate(record, "env.v1")
    return store.put_bytes(env.key, json.dumps(record, indent=1, sort_keys=True).encode() + b"\n")


def read_env(store: Store, key: str) -> ResolvedEnv:
    from imagebuilder.schema import validate

    raw = store.get_bytes(key)
    try:
        record = json.loads(raw)
    except ValueError:
        raise IntegrityError(
            f"env record {key} in {store.url} is not valid JSON",
            "the store was damaged; run `imgbuild verify`",
        ) from None
    where = f"{store.url}/{key}"
    validate(record, "env.v1", where)
    return ResolvedEnv.from_json(record, where)


def get_env(store: Store, req_id: str, full_id: str) -> ResolvedEnv:
    key = env_key(req_id, full_id)
    if not store.exists(key):
        raise NotFound(
            f"no environment {short(req_id)}:{short(full_id)} in store {store.url}",
            "run `imgbuild ls` to see what the store holds",
        )
    return read_env(store, key)


def env_keys(store: Store, req_id: str | None = None) -> Iterator[str]:
    prefix = f"envs/{short(req_id)}/" if req_id else "envs/"
    for key in store.list(prefix):
        if key.endswith(".json"):
            yield key


def find_by_full_id(store: Store, full_id: str) -> list[str]:
    """Keys of env records whose full_id starts with the given 16 or 64 hex digits."""
    want = short(full_id)
    keys = [k for k in env_keys(store) if k.rsplit("/", 1)[-1][: -len(".json")] == want]
    if len(full_id) == 64:
        keys = [k for k in keys if read_env(store, k).full_id == full_id]
    return keys


def newest_for_request(store: Store, req_id: str) -> ResolvedEnv:
    """The default env of a request: the most recently resolved one."""
    envs = [read_env(store, k) for k in env_keys(store, req_id)]
    if not envs:
        raise NotFound(
            f"request {short(req_id)} has no resolved environment in {store.url}",
            "run `imgbuild resolve` first",
        )
    return max(envs, key=lambda e: e.resolved_at)


def parse_env_key(key: str) -> tuple[str, str]:
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "envs" or not parts[2].endswith(".json"):
        raise BadInput(f"not an env record key: {key}")
    return parts[1], parts[2][: -len(".json")]
