"""`imgbuild resolve` end to end: specs -> (reuse | solve, per arch in parallel) -> cache ->
env record -> aliases.

A request whose req_id already has an env in the store reuses the newest one (no solve), as
Conda v2 does; `force` solves again (a channel that gained a newer package then gives a new
full_id under the same req_id). `dry_run` always solves and touches no store. `no_cache`
reads the store (for reuse) but writes nothing to it: an env record is only ever written
after its packages (CONTRACT.md), so a resolve that caches no packages records no env.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import UsageError
from imagebuilder.ids import short
from imagebuilder.resolve.base import Context


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    no_cache: bool = False
    force: bool = False
    resolver: str = "rattler"
    fmt: str | None = None  # --format, passed to caching
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    env: ResolvedEnv
    reused: bool = False


def run(collected, opts: Options, ui, progress=None) -> list[Outcome]:
    from imagebuilder.ids import parse_alias
    from imagebuilder.resolve import conda_backend

    refs = [parse_alias(a) for a in opts.aliases]  # bad names fail before any work
    check_options(opts)
    specs = list(collected.specs)
    if opts.resolver == "uv" and any(s.conda for s in specs):
        raise UsageError(
            "--resolver uv resolves PyPI requirements only, and this request has conda specs",
            "drop --resolver uv (python still comes from conda through rattler)",
        )
    conda = conda_backend(opts.resolver)
    store = None
    if not opts.dry_run:
        from imagebuilder.store import open_store

        config = ui.config()
        store = open_store(config.store, config)
    ctx = Context(secrets=collected.secrets, progress=progress)

    outcomes: list[Outcome | None] = [None] * len(specs)
    todo = []
    for i, spec in enumerate(specs):
        reused = None if (store is None or opts.force) else _existing(store, spec.req_id)
        if reused is not None:
            ui.info(
                f"{spec.arch}: request {short(spec.req_id)} already resolved as "
                f"{short(reused.full_id)} ({reused.resolved_at}); reusing it "
                "(imgbuild resolve --force solves again)"
            )
            outcomes[i] = Outcome(reused, reused=True)
        else:
            todo.append(i)
    solved = _solve_all([specs[i] for i in todo], conda, ctx)
    for i, env in zip(todo, solved, strict=True):
        outcomes[i] = Outcome(env)

    if store is not None and not opts.no_cache:
        from imagebuilder.cache import cache_env, record_env
        from imagebuilder.store.aliases import check_alias

        for ref in refs:  # an immutable alias taken by another env fails before any write
            for out in outcomes:
                check_alias(store, ref, out.env)
        for i, out in enumerate(outcomes):
            env = cache_env(out.env, store, ui=ui, fmt=opts.fmt)
            record_env(env, store, ui=ui, fmt=opts.fmt)  # the record, after its packages
            outcomes[i] = Outcome(env, out.reused)
        if refs:
            from imagebuilder.store.aliases import set_alias

            for ref in refs:
                for out in outcomes:
                    set_alias(store, ref, out.env)
    return [o for o in outcomes if o is not None]


def check_options(opts: Options) -> None:
    if opts.no_cache and opts.aliases:
        raise UsageError(
            "--alias needs the environment recorded in the store, and --no-cache records nothing",
            "drop --no-cache (packages already in the store are not downloaded again)",
        )


def _existing(store, req_id: str) -> ResolvedEnv | None:
    """The newest env of exactly this request (keys hold 16 hex digits: check all 64)."""
    from imagebuilder.store.envs import env_keys, read_env

    envs = [e for e in (read_env(store, k) for k in env_keys(store, req_id)) if e.req_id == req_id]
    return max(envs, key=lambda e: e.resolved_at) if envs else None


def _solve_all(specs, conda, ctx: Context) -> list[ResolvedEnv]:
    from imagebuilder.resolve import resolve

    if len(specs) <= 1:
        return [resolve(s, conda=conda, ctx=ctx) for s in specs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(specs), thread_name_prefix="resolve") as pool:
        futures = [pool.submit(resolve, s, conda, None, ctx) for s in specs]
        return [f.result() for f in futures]  # the first failure, in arch order, is raised
