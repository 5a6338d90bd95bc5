"""`imgbuild gc`: remove objects that no env record, alias or live writer references.

Safe while other writers run, by three rules (docs/store.md):
1. Only objects older than the grace period (default 24h) can go: a writer stores packages
   before its env record, and that takes far less than the grace period.
2. A writer first records a lease (`leases/<id>.json`, the keys it is about to rely on,
   including packages it found already present and so did not upload); gc keeps every key
   of a lease younger than the grace period, and reads leases *after* env records, and again
   right before each delete. The writer re-checks its packages after writing its record
   (cache.record_env) and stores again any that went in the last, few-requests-wide window.
3. Env records and alias records are never removed (an env is the thing users name).
Kept: packages/alt files/build records/built wheels of every env, packs of existing full_ids,
layer records whose member packages all belong to kept envs, blobs such records name.
Removed past grace: everything else under pkgs/, builds/, layers/, packs/, blobs/, old
leases, and the local store's stale temp files (.tmp/).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field

from imagebuilder.env import ResolvedEnv, now_iso
from imagebuilder.errors import BadInput, ImgbuildError
from imagebuilder.ids import short
from imagebuilder.store.base import ObjectInfo, Store

GC_PREFIXES = ("pkgs/", "builds/", "layers/", "packs/", "blobs/")
LEASES = "leases/"
_HEX64 = re.compile(r"\b[0-9a-f]{64}\b")


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise BadInput(f"bad duration {text!r}", "use e.g. 90s, 30m, 24h or 7d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def write_lease(store: Store, keys: list[str]) -> str:
    """Record that this process relies on keys (gc keeps them for the grace period)."""
    key = f"{LEASES}{uuid.uuid4().hex}.json"
    doc = {"schema": "imgbuild/lease/v1", "at": now_iso(), "pid": os.getpid(), "keys": keys}
    store.put_bytes(key, json.dumps(doc, sort_keys=True).encode())
    return key


@dataclass
class GcReport:
    dry_run: bool
    grace_s: float
    removed: list[ObjectInfo] = field(default_factory=list)
    kept: int = 0
    young: int = 0
    envs: int = 0

    def to_json(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "grace_seconds": self.grace_s,
            "envs": self.envs,
            "kept": self.kept,
            "young": self.young,
            "removed": [{"key": o.key, "size": o.size} for o in self.removed],
            "removed_bytes": sum(o.size for o in self.removed),
        }


def referenced_by_env(store: Store, env: ResolvedEnv) -> set[str]:
    from imagebuilder.store.verify import build_keys, package_keys

    keys = set(package_keys(env))
    built, records = build_keys(store, env)
    return keys | set(built) | set(records)


def gc(store: Store, grace_s: float = 86400, dry_run: bool = False) -> GcReport:
    from imagebuilder.store import envs as envs_mod

    report = GcReport(dry_run, grace_s)
    now = time.time()
    cutoff = now - grace_s
    # 1. objects first: anything written after this listing is not a candidate at all.
    objects = [o for p in GC_PREFIXES for o in store.list_info(p)]
    # 2. then what env records reference (records written meanwhile are read too).
    keep: set[str] = set()
    full_ids: set[str] = set()
    shas: set[str] = set()
    for key in envs_mod.env_keys(store):
        try:
            env = envs_mod.read_env(store, key)
        except ImgbuildError:
            continue  # a damaged record keeps nothing alive; `verify` reports it
        report.envs += 1
        keep |= referenced_by_env(store, env)
        full_ids.add(short(env.full_id))
        shas |= {p.sha256 for p in env.packages}
    # 3. leases last: a writer that started before step 2 has its lease by now.
    leases = list(store.list_info(LEASES))
    seen = {lease.key for lease in leases}
    for lease in leases:
        if lease.mtime >= cutoff:
            keep |= _lease_keys(store, lease.key)
    keep |= _layer_refs(store, objects, shas)
    candidates = [o for o in objects if o.key not in keep and not _pack_kept(o.key, full_ids)]
    report.kept = len(objects) - len(candidates)
    candidates += [o for o in leases if o.mtime < cutoff]
    for o in candidates:
        if o.mtime >= cutoff:
            report.young += 1
            continue
        if not dry_run and not o.key.startswith(LEASES):
            # 4. leases again, right before each delete: a writer that arrived since step 3
            # may rely on this very object (found present, so not uploaded again). What is left
            # is the time between this listing and the delete; the writer's re-check after its
            # record (cache.record_env) restores a package lost in it.
            keep |= _new_lease_keys(store, seen, cutoff)
            if o.key in keep:
                report.kept += 1
                continue
        report.removed.append(o)
        if not dry_run:
            store.delete(o.key)
    report.removed.extend(_stale_temp(store, cutoff, dry_run))
    return report


def _new_lease_keys(store: Store, seen: set[str], cutoff: float) -> set[str]:
    """Keys of leases not seen before (they are marked seen)."""
    out: set[str] = set()
    for lease in store.list_info(LEASES):
        if lease.key not in seen:
            seen.add(lease.key)
            if lease.mtime >= cutoff:
                out |= _lease_keys(store, lease.key)
    return out


def _lease_keys(store: Store, key: str) -> set[str]:
    try:
        return set(json.loads(store.get_bytes(key)).get("keys", ()))
    except (ImgbuildError, ValueError, AttributeError):
        return set()


def _pack_kept(key: str, full_ids: set[str]) -> bool:
    parts = key.split("/")
    return parts[0] == "packs" and len(parts) >= 3 and parts[1] in full_ids


def _layer_refs(store: Store, objects: list[ObjectInfo], shas: set[str]) -> set[str]:
    """Layer records whose member packages all belong to kept envs, and blobs they name.
    A record without recognizable members is kept (we do not know what it needs)."""
    keep: set[str] = set()
    digests: set[str] = set()
    for o in objects:
        if not o.key.startswith("layers/"):
            continue
        try:
            text = store.get_bytes(o.key).decode()
            doc = json.loads(text)
        except (ImgbuildError, ValueError, UnicodeDecodeError):
            continue
        members = doc.get("packages") or doc.get("members") if isinstance(doc, dict) else None
        member_shas = set(_HEX64.findall(json.dumps(members))) if members else set()
        if not member_shas or member_shas <= shas:
            keep.add(o.key)
            digests |= set(_HEX64.findall(text))
    for o in objects:
        if o.key.startswith("blobs/") and any(d in o.key for d in digests):
            keep.add(o.key)
    return keep


def _stale_temp(store: Store, cutoff: float, dry_run: bool) -> list[ObjectInfo]:
    """Temp files a killed writer left in a local store's .tmp/ (never visible as objects)."""
    root = getattr(store, "root", None)
    out: list[ObjectInfo] = []
    if root is None:
        return out
    tmp = os.path.join(root, ".tmp")
    for dirpath, _dirs, filenames in os.walk(tmp, topdown=False):
        for name in filenames:
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if st.st_mtime < cutoff:
                out.append(ObjectInfo(f".tmp/{os.path.relpath(p, tmp)}", st.st_size, st.st_mtime))
                if not dry_run:
                    os.unlink(p)
        if dirpath != tmp and not dry_run:
            try:
                if os.stat(dirpath).st_mtime < cutoff:
                    os.rmdir(dirpath)
            except OSError:
                pass
    return out
