"""Named environments: `aliases/<name>/<tag>.json` (CONTRACT.md).

A record maps each arch to {req_id, full_id} and keeps an append-only history. Writes are
compare-and-swap, so two writers racing on one alias never tear the record: for a mutable tag
the loser retries on the new state; for an immutable one it then finds the tag taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from imagebuilder.env import ResolvedEnv, now_iso
from imagebuilder.errors import Conflict, IntegrityError, NotFound
from imagebuilder.ids import AliasRef, short
from imagebuilder.records import check_schema, schema_id
from imagebuilder.store.base import RaceLost, Store

RETRIES = 8


@dataclass(frozen=True)
class Target:
    req_id: str
    full_id: str

    def to_json(self) -> dict:
        return {"req_id": self.req_id, "full_id": self.full_id}


@dataclass(frozen=True)
class AliasRecord:
    name: str
    tag: str
    platforms: dict[str, Target] = field(default_factory=dict)
    history: tuple[dict, ...] = ()

    def to_json(self) -> dict:
        return {
            "schema": schema_id("alias"),
            "name": self.name,
            "tag": self.tag,
            "platforms": {arch: t.to_json() for arch, t in sorted(self.platforms.items())},
            "history": list(self.history),
        }

    @classmethod
    def from_json(cls, d: dict, where: str = "") -> AliasRecord:
        check_schema(d, "alias", where)
        try:
            return cls(
                name=d["name"],
                tag=d["tag"],
                platforms={a: Target(t["req_id"], t["full_id"]) for a, t in d["platforms"].items()},
                history=tuple(d.get("history", ())),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise IntegrityError(f"alias record {where} is malformed: {e}") from None


def alias_key(ref: AliasRef) -> str:
    return f"aliases/{ref.name}/{ref.tag}.json"


def read_alias(store: Store, ref: AliasRef) -> AliasRecord | None:
    got = store.get_record(alias_key(ref))
    if got is None:
        return None
    return _decode(store, ref, got[0])


def _decode(store: Store, ref: AliasRef, data: bytes) -> AliasRecord:
    where = f"{store.url}/{alias_key(ref)}"
    try:
        return AliasRecord.from_json(json.loads(data), where)
    except ValueError:
        raise IntegrityError(f"alias record {where} is not valid JSON") from None


def require_alias(store: Store, ref: AliasRef) -> AliasRecord:
    rec = read_alias(store, ref)
    if rec is None:
        raise NotFound(
            f"no environment named {ref} in {store.url}", "run `imgbuild ls` to list aliases"
        )
    return rec


def _refuse_move(ref: AliasRef, old: Target | None, target: Target, arch: str, force: bool):
    if old is not None and old != target and not ref.mutable and not force:
        raise Conflict(
            f"{ref} is immutable and already names {short(old.req_id)}:{short(old.full_id)} for {arch}",
            "use a mutable tag (latest, candidate, stable), a new tag, or --force",
        )


def check_alias(store: Store, ref: AliasRef, env: ResolvedEnv, force: bool = False) -> None:
    """Raise the Conflict set_alias would raise, writing nothing: callers check before they
    store anything (set_alias checks again when it writes)."""
    rec = read_alias(store, ref)
    old = rec.platforms.get(env.arch) if rec else None
    _refuse_move(ref, old, Target(env.req_id, env.full_id), env.arch, force)


def set_alias(store: Store, ref: AliasRef, env: ResolvedEnv, force: bool = False) -> AliasRecord:
    """Point ref at env for env's arch. Immutable tags refuse to move unless force."""
    target = Target(env.req_id, env.full_id)
    for _ in range(RETRIES):
        got = store.get_record(alias_key(ref))
        current = _decode(store, ref, got[0]) if got else AliasRecord(ref.name, ref.tag)
        etag = got[1] if got else None
        old = current.platforms.get(env.arch)
        if old == target:
            return current
        _refuse_move(ref, old, target, env.arch, force)
        entry = {"at": now_iso(), "arch": env.arch, **target.to_json()}
        if old is not None:
            entry["previous"] = old.to_json()
        new = AliasRecord(
            ref.name, ref.tag, {**current.platforms, env.arch: target}, (*current.history, entry)
        )
        data = json.dumps(new.to_json(), indent=1, sort_keys=True).encode() + b"\n"
        try:
            store.put_record(alias_key(ref), data, etag)
            return new
        except RaceLost:
            continue
    raise Conflict(f"gave up setting {ref}: other writers kept changing it", "retry in a moment")


def list_aliases(store: Store) -> list[tuple[AliasRef, AliasRecord]]:
    out = []
    for key in store.list("aliases/"):
        if not key.endswith(".json"):
            continue
        name, _, tag = key[len("aliases/") : -len(".json")].rpartition("/")
        ref = AliasRef(name, tag)
        rec = read_alias(store, ref)
        if rec is not None:
            out.append((ref, rec))
    return out
