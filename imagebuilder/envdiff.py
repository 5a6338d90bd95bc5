"""Compare two environments, and explain why a package is in one.

- `diff_envs(a, b)`: packages added / removed / changed (by kind and name), and which image
  layers the two would share: the layer plan is a pure function of the packages
  (oci/plan.py), so equal member sets mean equal layers, given the same base, compression
  and python version.
- `why(env, name)`: the chains from each request of the env (its spec's conda and PyPI
  requirements) down to the package, through the packages' `depends`; PyPI dependencies on
  names a conda package provides follow the conda package, as in a mixed env.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from imagebuilder.env import CONDA, PYPI, Package, ResolvedEnv


def _key(p: Package) -> tuple[str, str]:
    return (p.kind, p.name)


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    old: str | None  # label (version-build or ==version), None when added
    new: str | None

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "old": self.old, "new": self.new}


def _version(p: Package) -> str:
    return p.version if p.kind == PYPI else f"{p.version}-{p.build}"


def diff_envs(a: ResolvedEnv, b: ResolvedEnv, store=None) -> dict:
    pa = {_key(p): p for p in a.packages}
    pb = {_key(p): p for p in b.packages}
    added = [Change(k[0], k[1], None, _version(pb[k])) for k in sorted(pb.keys() - pa.keys())]
    removed = [Change(k[0], k[1], _version(pa[k]), None) for k in sorted(pa.keys() - pb.keys())]
    changed = []
    same = 0
    for k in sorted(pa.keys() & pb.keys()):
        if pa[k].identity == pb[k].identity:
            same += 1
        else:
            old, new = _version(pa[k]), _version(pb[k])
            if old == new:  # same version, other archive (rebuilt, other channel, other wheel)
                old, new = f"{old} ({pa[k].sha256[:12]})", f"{new} ({pb[k].sha256[:12]})"
            changed.append(Change(k[0], k[1], old, new))
    return {
        "a": {"req_id": a.req_id, "full_id": a.full_id, "arch": a.arch},
        "b": {"req_id": b.req_id, "full_id": b.full_id, "arch": b.arch},
        "added": [c.to_json() for c in added],
        "removed": [c.to_json() for c in removed],
        "changed": [c.to_json() for c in changed],
        "unchanged": same,
        "layers": _layers(a, b, store),
    }


def _layers(a: ResolvedEnv, b: ResolvedEnv, store) -> dict:
    from imagebuilder.oci.plan import PlanItem, plan_layers

    def plan(env: ResolvedEnv):
        items = []
        for p in env.packages:
            size = p.size
            if size is None and store is not None:
                info = store.stat(p.store_key)
                size = info.size if info else 0
            deps = tuple(re.split(r"[\s=<>!~;\[(]", d.strip(), maxsplit=1)[0] for d in p.depends)
            items.append(PlanItem(p.kind, p.name, p.sha256, size or 0, deps))
        return {g.member_sha256s: g for g in plan_layers(items)}

    ga, gb = plan(a), plan(b)
    same_python = a.python_version == b.python_version and a.arch == b.arch
    shared = sorted(ga.keys() & gb.keys()) if same_python else []
    return {
        "a": len(ga),
        "b": len(gb),
        "shared": len(shared),
        "shared_bytes": sum(ga[k].size for k in shared),
        "shared_groups": sorted(ga[k].name for k in shared),
    }


# --- why -----------------------------------------------------------------------------------------


def _req_name(spec: str, kind: str) -> str | None:
    s = spec.strip()
    if kind == CONDA:
        s = s.rpartition("::")[2]
        m = re.match(r"^([A-Za-z0-9_.\-]+)", s)
        return m.group(1).lower() if m else None
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        return canonicalize_name(Requirement(s).name)
    except InvalidRequirement:
        return None


def _depends(p: Package, store, marker_env: dict[str, str]) -> tuple[str, ...]:
    """The package's dependencies: from the record, else (wheels) from the cached METADATA."""
    if p.depends or p.kind != PYPI:
        return p.depends
    from imagebuilder.wheelmeta import requires_dist

    return tuple(requires_dist(store, p, marker_env))


def _edges(env: ResolvedEnv, store=None) -> dict[tuple[str, str], list[tuple[str, str]]]:
    from packaging.utils import canonicalize_name

    from imagebuilder.lockfiles.target import Target

    marker_env = Target.make(env.arch, env.python_version or env.spec.python).marker_env
    have = {_key(p) for p in env.packages}
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for p in env.packages:
        deps = []
        for d in _depends(p, store, marker_env):
            name = _req_name(d, p.kind)
            if name is None:
                continue
            if p.kind == PYPI:
                name = canonicalize_name(name)
                # In a mixed env a PyPI dependency may be satisfied by the conda package.
                k = (PYPI, name) if (PYPI, name) in have else (CONDA, name)
            else:
                k = (CONDA, name)
            if k in have and k != _key(p):
                deps.append(k)
        out[_key(p)] = deps
    return out


def requests_of(env: ResolvedEnv) -> list[tuple[str, str, str]]:
    """(kind, name, the requirement as written) of what the spec asked for."""
    spec = env.spec
    out = []
    for kind, reqs in (
        (CONDA, (*spec.conda, *spec.implicit_conda)),
        (PYPI, (*spec.pypi, *spec.implicit_pypi)),
    ):
        for r in reqs:
            name = _req_name(r, kind)
            if name:
                out.append((kind, name, r))
    if spec.python and not any(n == "python" for _, n, _ in out):
        out.append((CONDA, "python", f"python {spec.python}"))
    return out


def why(env: ResolvedEnv, name: str, store=None) -> dict:
    """Every request of env that brings `name` in, with the shortest chain for each."""
    from packaging.utils import canonicalize_name

    targets = [p for p in env.packages if p.name in (name, name.lower(), canonicalize_name(name))]
    if not targets:
        from imagebuilder.errors import NotFound

        raise NotFound(
            f"{name} is not in {env.short_id}",
            "run `imgbuild show ENV` to list its packages",
        )
    edges = _edges(env, store)
    have = {_key(p) for p in env.packages}
    target_keys = {_key(p) for p in targets}
    chains = []
    for kind, rname, text in requests_of(env):
        start = (kind, rname) if (kind, rname) in have else (CONDA, rname)
        if start not in have:
            continue
        path = _shortest(edges, start, target_keys)
        if path is not None:
            chains.append(
                {
                    "request": text,
                    "origin": env.spec.origin(text),
                    "implicit": text in env.spec.implicit_conda or text in env.spec.implicit_pypi,
                    "chain": [f"{k}:{n}" for k, n in path],
                }
            )
    return {
        "package": [p.to_json() | {"record": None} for p in targets],
        "env": {"req_id": env.req_id, "full_id": env.full_id, "arch": env.arch},
        "locked": env.spec.lock is not None,
        "requested_by": chains,
    }


def _shortest(edges, start, targets) -> list[tuple[str, str]] | None:
    seen = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node in targets:
            path = []
            while node is not None:
                path.append(node)
                node = seen[node]
            return path[::-1]
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen[nxt] = node
                queue.append(nxt)
    return None
