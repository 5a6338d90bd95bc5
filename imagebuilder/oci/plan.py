"""Layer planning: which packages share a layer, and in what order (docs/layering.md).

A pure function of the packages' identities, archive sizes and dependency names, so the plan
is known before anything is staged (a rebuild whose layers are all in the index stages
nothing). The rule:

- a package whose archive is >= `big_bytes` gets a layer of its own;
- every other package goes into one of `buckets` layers chosen by a hash of its kind and name,
  so adding, removing or changing one small package changes exactly one bucket layer and no
  other layer's membership;
- order: own-layer packages first, foundations before what depends on them (height in the
  dependency graph, then name), then buckets in index order; the env's metadata layer comes
  last (bake.py). Foundations change least and are shared most, so they form the longest
  common chain of layers between images (overlay chain ids depend on order);
- total layers including the base <= `max_layers`: when there are too many big packages, the
  smallest of them fall back into buckets; when even buckets do not fit, BadInput.

File-level checks (`check_collisions`) are separate: they run on the staged file lists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from imagebuilder.errors import BadInput, Conflict

MAX_LAYERS = 100
BIG_BYTES = 1 << 20
BUCKETS = 8


@dataclass(frozen=True)
class PlanItem:
    kind: str  # "conda" | "pypi"
    name: str
    sha256: str
    size: int  # archive size in bytes (0 if unknown: treated as small)
    depends: tuple[str, ...] = ()  # names of other packages of the env this one needs

    @property
    def ident(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class LayerGroup:
    name: str  # "conda/python" for an own layer, "bucket-3" for a bucket
    members: tuple[PlanItem, ...]

    @property
    def size(self) -> int:
        return sum(m.size for m in self.members)

    @property
    def member_sha256s(self) -> tuple[str, ...]:
        return tuple(sorted(m.sha256 for m in self.members))


@dataclass(frozen=True)
class Rules:
    big_bytes: int = BIG_BYTES
    buckets: int = BUCKETS
    max_layers: int = MAX_LAYERS


def bucket_of(item: PlanItem, buckets: int) -> int:
    h = hashlib.sha256(item.ident.encode()).digest()
    return int.from_bytes(h[:4], "big") % buckets


def heights(items: Iterable[PlanItem]) -> dict[str, int]:
    """Longest dependency path from each package down to one with no deps in the env (cycles,
    such as python <-> pip on conda-forge, are cut where they close)."""
    items = list(items)
    by_name: dict[str, list[PlanItem]] = {}
    for it in items:
        by_name.setdefault(it.name, []).append(it)
    out: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(it: PlanItem) -> int:
        if it.ident in out:
            return out[it.ident]
        visiting.add(it.ident)
        h = 0
        for dep in it.depends:
            for d in by_name.get(dep, ()):
                if d.ident not in visiting and d.ident != it.ident:
                    h = max(h, visit(d) + 1)
        visiting.discard(it.ident)
        out[it.ident] = h
        return h

    for it in sorted(items, key=_ident):
        visit(it)
    return out


def _ident(it: PlanItem) -> str:
    return it.ident


def plan_layers(
    items: Iterable[PlanItem], base_layers: int = 0, rules: Rules = Rules()
) -> tuple[LayerGroup, ...]:
    """Ordered package layer groups for an env on a base with `base_layers` layers (one more
    layer, the env metadata, is reserved)."""
    items = sorted(items, key=_ident)
    idents = [i.ident for i in items]
    if len(set(idents)) != len(idents):
        dup = sorted({i for i in idents if idents.count(i) > 1})
        raise BadInput(f"package listed twice in one environment: {', '.join(dup)}")
    budget = rules.max_layers - base_layers - 1
    if budget < 1:
        raise BadInput(
            f"layer budget exceeded: the base has {base_layers} layers, an image may have "
            f"at most {rules.max_layers} and the environment needs at least 2",
            "use a base image with fewer layers (squash it) or --base scratch",
        )
    n_buckets = max(1, min(rules.buckets, budget))
    big = [i for i in items if i.size >= rules.big_bytes]
    small = [i for i in items if i.size < rules.big_bytes]
    # Fit: buckets in use + own layers <= budget; the smallest big packages give way first.
    big.sort(key=lambda i: (-i.size, i.ident))
    while big:
        used = {bucket_of(i, n_buckets) for i in small}
        if len(big) + len(used) <= budget:
            break
        small.append(big.pop())
    h = heights(items)
    own = [
        LayerGroup(i.ident, (i,)) for i in sorted(big, key=lambda i: (h[i.ident], i.name, i.kind))
    ]
    buckets: dict[int, list[PlanItem]] = {}
    for i in small:
        buckets.setdefault(bucket_of(i, n_buckets), []).append(i)
    grouped = [
        LayerGroup(f"bucket-{b}", tuple(sorted(buckets[b], key=_ident))) for b in sorted(buckets)
    ]
    return tuple(own + grouped)


# --- file attribution --------------------------------------------------------------------------


def check_collisions(
    files: Mapping[str, Iterable[str]], same_content: Callable[[str, str, str], bool]
) -> dict[str, str]:
    """Map every path to the one package that provides it.

    `files` maps a package ident to the paths it installs; a path claimed by two packages is
    an error unless `same_content(path, ident_a, ident_b)` says both files are identical
    (then the first package in sorted order keeps it)."""
    owner: dict[str, str] = {}
    clashes: list[str] = []
    for ident in sorted(files):
        for path in files[ident]:
            other = owner.get(path)
            if other is None:
                owner[path] = ident
            elif other != ident and not same_content(path, other, ident):
                clashes.append(f"{path} ({other} and {ident})")
    if clashes:
        shown = "; ".join(clashes[:5]) + (
            f"; and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        )
        raise Conflict(
            f"packages install different files at the same path: {shown}",
            "remove one of the packages from the request (e.g. a conda and a PyPI copy of the same project)",
        )
    return owner
