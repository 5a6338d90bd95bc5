"""`imgbuild verify`: re-hash every object an env references; check records and aliases.

An env references: each package archive (`pkgs/<kind>/<sha256>/<file>`), its alternative
files (`Package.alt`), and for sources the build record and the wheels it lists. Every object
is looked up (missing?) and re-hashed against the sha256 in its key (damaged?), in parallel.
A whole-store verify also checks the layer cache: every layer record must parse and its blob
(`blobs/sha256/<hex>`) must hash to its digest — later bakes reuse those blobs without reading
them, so a damaged one would go into every image that shares the layer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import ImgbuildError, NotFound
from imagebuilder.store.base import Store


@dataclass(frozen=True)
class Problem:
    key: str
    kind: str  # missing | mismatch | record
    message: str

    def to_json(self) -> dict:
        return {"key": self.key, "kind": self.kind, "message": self.message}


@dataclass
class Report:
    envs: int = 0
    aliases: int = 0
    objects: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "envs": self.envs,
            "aliases": self.aliases,
            "objects": self.objects,
            "bytes": self.bytes,
            "problems": [p.to_json() for p in self.problems],
        }


def package_keys(env: ResolvedEnv) -> dict[str, str]:
    """Store keys of the archives env names -> their sha256 (builds not included)."""
    out: dict[str, str] = {}
    for p in env.packages:
        if p.sha256 and (not p.is_source or p.source == "sdist"):
            out[p.store_key] = p.sha256
        for a in p.alt:
            out[f"pkgs/{p.kind}/{a.sha256}/{a.filename}"] = a.sha256
    return out


def build_keys(store: Store, env: ResolvedEnv) -> tuple[dict[str, str], list[str]]:
    """Wheels built from env's sources (all platforms) -> sha256, and the build record keys."""
    import json

    from imagebuilder.builds import record_key

    objects: dict[str, str] = {}
    records: list[str] = []
    for p in env.packages:
        if not p.is_source or not p.sha256:
            continue
        key = record_key(p.sha256)
        got = store.get_record(key)
        if got is None:
            continue
        records.append(key)
        try:
            for b in json.loads(got[0]).get("builds", {}).values():
                objects[f"pkgs/build/{b['sha256']}/{b['filename']}"] = b["sha256"]
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return objects, records


def hash_object(store: Store, key: str) -> tuple[str, int]:
    local = store.local_path(key)
    if local is not None:
        from imagebuilder.fetch import sha256_file

        return sha256_file(local), os.path.getsize(local)
    chunks = getattr(store, "iter_chunks", None)
    if chunks is not None:
        h, n = hashlib.sha256(), 0
        for chunk in chunks(key):
            h.update(chunk)
            n += len(chunk)
        return h.hexdigest(), n
    data = store.get_bytes(key)
    return hashlib.sha256(data).hexdigest(), len(data)


def verify_objects(store: Store, objects: dict[str, str], report: Report, jobs: int = 8) -> None:
    def one(item: tuple[str, str]) -> Problem | int:
        key, want = item
        if store.stat(key) is None:
            return Problem(key, "missing", f"{key} is missing from {store.url}")
        got, size = hash_object(store, key)
        if got != want:
            return Problem(key, "mismatch", f"{key}: sha256 mismatch: expected {want}, got {got}")
        return size

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for res in pool.map(one, sorted(objects.items())):
            report.objects += 1
            if isinstance(res, Problem):
                report.problems.append(res)
            else:
                report.bytes += res


def verify_store(store: Store, envs: Iterable[ResolvedEnv] | None = None) -> Report:
    """Verify the given envs, or every env record and alias in the store."""
    from imagebuilder.store import envs as envs_mod

    report = Report()
    if envs is None:
        found = []
        for key in envs_mod.env_keys(store):
            try:
                found.append(envs_mod.read_env(store, key))
            except ImgbuildError as e:
                report.problems.append(Problem(key, "record", e.message))
        envs = found
        _verify_aliases(store, report)
        objects = _layer_blobs(store, report)
    else:
        objects = {}
    for env in envs:
        report.envs += 1
        objects.update(package_keys(env))
        built, _ = build_keys(store, env)
        objects.update(built)
    verify_objects(store, objects, report)
    return report


def _layer_blobs(store: Store, report: Report) -> dict[str, str]:
    """Blob key -> sha256 of every layer record's blob; damaged records become problems."""
    import json

    from imagebuilder.oci import layerindex

    out: dict[str, str] = {}
    for key in sorted(store.list("layers/")):
        if not key.endswith(".json"):
            continue
        try:
            rec = layerindex.LayerRecord.from_json(json.loads(store.get_bytes(key)), key)
        except ImgbuildError as e:
            if isinstance(e, NotFound):  # removed by gc since it was listed
                continue
            report.problems.append(Problem(key, "record", e.message))
            continue
        except (ValueError, KeyError, TypeError):
            report.problems.append(
                Problem(key, "record", f"layer record {key} is damaged (delete it; bake again)")
            )
            continue
        algo, _, hexd = rec.blob.digest.partition(":")
        if algo == "sha256":
            out[layerindex.blob_key(rec.blob.digest)] = hexd
    return out


def _verify_aliases(store: Store, report: Report) -> None:
    from imagebuilder.env import env_key
    from imagebuilder.store.aliases import list_aliases

    try:
        aliases = list_aliases(store)
    except ImgbuildError as e:
        report.problems.append(Problem("aliases/", "record", e.message))
        return
    for ref, rec in aliases:
        report.aliases += 1
        for arch, t in sorted(rec.platforms.items()):
            key = env_key(t.req_id, t.full_id)
            if not store.exists(key):
                report.problems.append(
                    Problem(key, "missing", f"alias {ref} ({arch}) names {key}, which is missing")
                )
