"""`imgbuild resolve --lockfile FILE`: a lock file becomes stored envs, one per arch, no solve.

Same steps after the envs exist as a resolve (resolve/pipeline.py): cache every package into
the store, write the env record after its packages, set the aliases; `--dry-run` writes
nothing. The same lock file content always gives the same req_id (spec.lock), so importing it
again finds the env already stored.
"""

from __future__ import annotations

from imagebuilder.errors import UsageError


def import_lock(path: str, arches, opts, ui, *, python: str | None = None, flags=None) -> list:
    from imagebuilder.ids import parse_alias
    from imagebuilder.lockfiles import load_lock
    from imagebuilder.platforms import host_arch
    from imagebuilder.resolve.pipeline import Outcome, check_options

    if flags is not None and flags.names_inputs:
        raise UsageError(
            "--lockfile cannot be combined with -r/-f/-p/--conda/--pypi",
            "a lock file already pins every package; resolve it alone",
        )
    refs = [parse_alias(a) for a in opts.aliases]  # bad names fail before any work
    check_options(opts)
    envs = [load_lock(path, arch, python=python) for arch in (arches or (host_arch(),))]
    for env in envs:
        ui.info(f"{env.arch}: {len(env.packages)} packages from {path} (no solve)")
    if opts.dry_run or opts.no_cache:  # no packages cached -> no record (CONTRACT.md)
        return [Outcome(env) for env in envs]
    from imagebuilder.cache import cache_env, record_env
    from imagebuilder.store import open_store

    config = ui.config()
    store = open_store(config.store, config)
    outcomes = []
    for env in envs:
        env = cache_env(env, store, ui=ui, fmt=opts.fmt)
        record_env(env, store, ui=ui, fmt=opts.fmt)
        outcomes.append(Outcome(env))
    if refs:
        from imagebuilder.store.aliases import set_alias

        for ref in refs:
            for out in outcomes:
                set_alias(store, ref, out.env)
    return outcomes
