"""From each step's request to the env it runs in: resolve, then bake (remote steps with a
registry) or hydrate (local steps). Called by the environment's init_environment at `run`,
`argo-workflows create` and `step-functions create` time, before anything is launched.

    targets (step, request, arch, remote?, base image) -> StepEnv per step

Identical requests are resolved once and distinct ones in parallel (one worker child);
each distinct (env, base) is baked once, all in parallel; each distinct local env is
hydrated once. Every failure names the step(s) and the decorator(s) that asked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from imagebuilder.errors import BadInput, ImgbuildError, NotFound
from imagebuilder.metaflow.requirements import Request, to_spec
from imagebuilder.metaflow.settings import Settings


def _jobs() -> int:
    try:
        return max(1, int(os.environ.get("IMGBUILD_MF_JOBS", "4")))
    except ValueError:
        return 4


PARALLEL = _jobs()


@dataclass(frozen=True)
class Target:
    step: str
    request: Request
    arch: str
    remote: bool
    compute: str | None = None  # "kubernetes", "batch", ... for messages
    base: str | None = None  # base image to bake on (remote steps)


@dataclass(frozen=True)
class StepEnv:
    """The env one step runs in. Passed to the processes that launch remote tasks as JSON."""

    step: str
    arch: str
    remote: bool
    env_ref: str  # what create / the bootstrap is given: "req:full", or an alias (fetch_at_exec)
    store: str
    req_id: str | None = None  # None until the task starts (fetch_at_exec)
    full_id: str | None = None
    image: str | None = None  # digest-pinned, when baked
    python: str | None = None  # local steps: the env's interpreter
    prefix: str | None = None  # local steps: where it was created

    @property
    def env_name(self) -> str | None:
        from imagebuilder.ids import env_name

        return env_name(self.req_id, self.full_id) if self.req_id and self.full_id else None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, d: dict) -> StepEnv:
        return cls(**d)

    @classmethod
    def resolved(cls, t: Target, req_id: str, full_id: str, store: str) -> StepEnv:
        """Target t runs the env req_id:full_id of `store`."""
        return cls(t.step, t.arch, t.remote, f"{req_id}:{full_id}", store, req_id, full_id)


class StepError(ImgbuildError):
    pass


def _fail(e: ImgbuildError, steps: list[Target]) -> StepError:
    who = "; ".join(f"step {t.step} ({t.request.describe()})" for t in steps)
    return StepError(f"{who}: {e.message}", e.hint, e.kind, e.exit_code)


def make_plan(
    targets: list[Target],
    settings: Settings,
    *,
    say: Callable[[str], None] = lambda m: None,
    bake: bool = True,
    hydrate: bool = True,
    force: bool = False,
) -> dict[str, StepEnv]:
    plan: dict[str, StepEnv] = {}
    _check_remote_store(targets, settings)
    named = [t for t in targets if t.request.named is not None]
    wanted = [t for t in targets if t.request.named is None]
    plan.update(_named_envs(named, settings))
    plan.update(_resolve(wanted, settings, say, force))
    if bake:
        plan.update(_bake(targets, plan, settings, say))
        _pack(targets, plan, settings, say)
    if hydrate:
        plan.update(_hydrate(targets, plan, settings, say))
    return plan


def _check_remote_store(targets: list[Target], settings: Settings) -> None:
    """Tasks that hydrate at start read the store from their container: it must be S3."""
    for t in targets:
        needs_store = t.remote and (not settings.registry or t.request.fetch_at_exec)
        if needs_store and not settings.store_is_remote:
            raise BadInput(
                f"step {t.step} (@{t.compute}, {t.request.describe()}) runs remotely and creates "
                f"its environment at task start, but the store {settings.store} "
                f"({settings.store_source}) is a local folder its task cannot read",
                "set METAFLOW_IMGBUILD_STORE=s3://bucket/prefix (or use an S3 datastore), or set "
                "METAFLOW_IMGBUILD_REGISTRY so the step runs on a baked image",
            )


def _open_store(settings: Settings):
    from imagebuilder.config import load_config
    from imagebuilder.store import open_store

    flags = {"store": settings.store}
    if settings.s3_endpoint_url:
        flags["s3_endpoint_url"] = settings.s3_endpoint_url
    return open_store(settings.store, load_config(flags=flags))


def _named_envs(targets: list[Target], settings: Settings) -> dict[str, StepEnv]:
    """Steps that name an environment: look it up now (unless fetch_at_exec), check the arch."""
    if not targets:
        return {}
    from imagebuilder.catalog import find_envs
    from imagebuilder.ids import AliasRef, parse_env_ref

    store = _open_store(settings)
    out = {}
    for t in targets:
        ref_text, where = t.request.named
        try:
            ref = parse_env_ref(ref_text)
        except ImgbuildError as e:
            raise _fail(e, [t]) from None
        if t.request.fetch_at_exec:
            out[t.step] = StepEnv(t.step, t.arch, t.remote, str(ref), settings.store)
            continue
        try:
            found = find_envs(store, ref)
        except NotFound as e:
            make = (
                f"make it with `imgbuild resolve ... --alias {ref_text}` (`imgbuild ls` lists "
                f"what the store {settings.store} holds)"
                if isinstance(ref, AliasRef)
                else e.hint
            )
            raise StepError(
                f"step {t.step} ({where}): {e.message}", make, e.kind, e.exit_code
            ) from None
        except ImgbuildError as e:
            raise _fail(e, [t]) from None
        env = next((e for e in found if e.arch == t.arch), None)
        if env is None:
            have = ", ".join(sorted(e.arch for e in found))
            where_runs = f"on @{t.compute}" if t.remote else "on this machine"
            raise StepError(
                f"step {t.step} ({where}) runs {where_runs} ({t.arch}), but {ref_text} was "
                f"resolved for {have}",
                f"resolve it for {t.arch} too (`imgbuild resolve ... --arch {t.arch} --alias "
                f"{ref_text}`)",
                "bad_input",
                1,
            )
        out[t.step] = StepEnv.resolved(t, env.req_id, env.full_id, settings.store)
    return out


def _specs(targets, settings: Settings):
    """Each step's EnvSpec: {req_id: spec}, URL secrets, {req_id: [targets]}."""
    import sys

    from imagebuilder.config import load_config
    from imagebuilder.metaflow.settings import implicit_pypi

    cfg = load_config()
    implicit = implicit_pypi(settings.datastore_type, settings.skip_metaflow_deps)
    default_python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    specs, secrets, by_req = {}, {}, {}
    for t in targets:
        try:
            spec, s = to_spec(
                t.request,
                t.arch,
                default_python=default_python,
                channels=cfg.channels,
                index_url=cfg.get("index_url"),
                implicit_pypi=implicit,
            )
        except ImgbuildError as e:
            raise _fail(e, [t]) from None
        specs.setdefault(spec.req_id, spec)
        secrets.update(s)
        by_req.setdefault(spec.req_id, []).append(t)
    return specs, secrets, by_req


def _resolve(targets, settings: Settings, say, force: bool) -> dict[str, StepEnv]:
    """Resolve every distinct request once (in parallel, in one worker child) and cache it."""
    if not targets:
        return {}
    from imagebuilder.metaflow.worker import resolve_specs

    specs, secrets, by_req = _specs(targets, settings)
    n, m = len(targets), len(specs)
    say(f"Resolving {m} environment{'s' * (m != 1)} for {n} step{'s' * (n != 1)}...")
    try:
        done = resolve_specs(
            list(specs.values()), settings.store, settings.s3_endpoint_url, secrets, force
        )
    except ImgbuildError as e:
        # The message names the package; name the steps that asked for it too.
        raise _fail(e, _culprit(e, specs, by_req)) from None
    out = {}
    for r in done:
        for t in by_req[r.req_id]:
            out[t.step] = StepEnv.resolved(t, r.req_id, r.full_id, settings.store)
    return out


def lookup(targets: list[Target], settings: Settings) -> dict[str, StepEnv]:
    """What each step would run in, from the store alone (no solve): the newest env of its
    request, or the env its name points to. Steps with nothing stored are left out."""
    from imagebuilder.store.envs import newest_for_request

    out = {}
    named = [t for t in targets if t.request.named is not None]
    for t in named:
        try:
            out.update(_named_envs([t], settings))
        except StepError:
            continue
    wanted = [t for t in targets if t.request.named is None]
    if not wanted:
        return out
    specs, _, by_req = _specs(wanted, settings)
    store = _open_store(settings)
    for req_id in specs:
        try:
            env = newest_for_request(store, req_id)
        except NotFound:
            continue
        for t in by_req[req_id]:
            out[t.step] = StepEnv.resolved(t, env.req_id, env.full_id, settings.store)
    return out


def _culprit(e: ImgbuildError, specs: dict, by_req: dict) -> list[Target]:
    """The steps whose request the failure is about (all of them if it cannot tell)."""
    hits = []
    for req_id, spec in specs.items():
        names = [
            p.split("=")[0].split(" ")[0].split("<")[0].split(">")[0]
            for p in spec.conda + spec.pypi
        ]
        if any(n and n in e.message for n in names):
            hits += by_req[req_id]
    return hits or [t for ts in by_req.values() for t in ts]


def _bake(targets, plan, settings: Settings, say) -> dict[str, StepEnv]:
    """Remote steps, with a registry: one image per distinct (env, base), pushed in parallel."""
    todo = [
        t
        for t in targets
        if t.remote and settings.registry and not t.request.fetch_at_exec and t.step in plan
    ]
    if not todo:
        return {}
    from imagebuilder.metaflow.worker import push_env

    jobs: dict[tuple, list[Target]] = {}
    for t in todo:
        jobs.setdefault((plan[t.step].env_ref, t.base, t.arch), []).append(t)
    say(f"Baking {len(jobs)} image{'s' * (len(jobs) != 1)} into {settings.registry}...")

    def one(key):
        env_ref, base, arch = key
        try:
            return key, push_env(
                env_ref, settings.store, settings.s3_endpoint_url, settings.registry, base, arch
            )
        except ImgbuildError as e:
            raise _fail(e, jobs[key]) from None

    out = {}
    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(jobs)))) as pool:
        for key, pushed in pool.map(one, jobs):
            image = pinned(pushed, settings.registry)
            for t in jobs[key]:
                out[t.step] = replace(plan[t.step], image=image)
                say(f"    {t.step}: {image}")
    return out


def _pack(targets, plan, settings: Settings, say) -> None:
    """Remote steps without an image hydrate at task start: pack each distinct env now, so
    every task downloads one archive instead of one object per package (docs/hydrate.md has
    the figures). Best effort: without a pack the bootstrap installs per package."""
    todo = [
        t
        for t in targets
        if t.remote and t.step in plan and not plan[t.step].image and not t.request.fetch_at_exec
    ]
    jobs = {(plan[t.step].env_ref, t.arch) for t in todo}
    if not jobs:
        return
    from imagebuilder.metaflow.worker import pack_env

    say(f"Packing {len(jobs)} environment{'s' * (len(jobs) != 1)} for task-start hydration...")

    def one(key):
        env_ref, arch = key
        try:
            pack_env(env_ref, settings.store, settings.s3_endpoint_url, arch)
        except ImgbuildError as e:  # e.g. a venv env (no conda python): nothing to pack
            say(f"    {env_ref}: not packed ({e.message}); tasks install it per package")

    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(jobs)))) as pool:
        list(pool.map(one, sorted(jobs)))


def pinned(pushed: dict, registry: str) -> str:
    """`HOST/REPO@sha256:...` (by digest only: skopeo and containers/image refuse tag+digest)."""
    repo = registry.removeprefix("docker://")
    for ref in pushed.get("refs") or ():
        name = ref.rsplit("@", 1)[0]
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        repo = name
        break
    return f"{repo}@{pushed['digest']}"


def _hydrate(targets, plan, settings: Settings, say) -> dict[str, StepEnv]:
    """Local steps: create each distinct env once, in place, on this machine."""
    from imagebuilder.metaflow.settings import envs_dir
    from imagebuilder.platforms import host_arch

    todo = [t for t in targets if not t.remote and t.step in plan]
    if not todo:
        return {}
    here = host_arch()
    for t in todo:
        if t.arch != here:
            raise BadInput(
                f"step {t.step} ({t.request.describe()}) runs on this machine ({here}) but its "
                f"environment is for {t.arch}"
            )
    jobs: dict[str, list[Target]] = {}
    for t in todo:
        jobs.setdefault(plan[t.step].env_ref, []).append(t)
    say(f"Creating {len(jobs)} local environment{'s' * (len(jobs) != 1)}...")
    from imagebuilder.metaflow.worker import create_env

    def one(env_ref):
        first = plan[jobs[env_ref][0].step]
        name = first.env_name or env_ref.replace("/", "__").replace(":", "--")
        prefix = os.path.join(envs_dir(), name)
        try:
            return env_ref, create_env(env_ref, prefix, settings.store, settings.s3_endpoint_url)
        except ImgbuildError as e:
            raise _fail(e, jobs[env_ref]) from None

    out = {}
    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(jobs)))) as pool:
        for env_ref, made in pool.map(one, jobs):
            for t in jobs[env_ref]:
                out[t.step] = replace(
                    plan[t.step],
                    python=made.get("python"),
                    prefix=made.get("prefix"),
                    req_id=made.get("req_id") or plan[t.step].req_id,
                    full_id=made.get("full_id") or plan[t.step].full_id,
                )
    return out
