"""`imgbuild alias ENV NAME[:TAG] [--force] [--arch ARCH]`: name an environment."""

from __future__ import annotations

import click

from imagebuilder.cli.output import Ui, common_options, emit


@click.command("alias")
@click.argument("env_ref", metavar="ENV")
@click.argument("name", metavar="NAME[:TAG]")
@click.option("--force", is_flag=True, help="Move an immutable tag (not latest/candidate/stable).")
@click.option("--arch", "arches", multiple=True, metavar="ARCH", help="Only the env for ARCH.")
@common_options
def alias(env_ref: str, name: str, force: bool, arches: tuple[str, ...], ui: Ui) -> None:
    """Point NAME[:TAG] at ENV (one entry per arch; TAG defaults to latest).

    \b
    Examples:
      imgbuild alias 3f2a9c0d1e2b4a5c team/nlp:stable
      imgbuild alias team/nlp:candidate team/nlp:stable
      imgbuild alias 9e8d7c6b5a4f3e2d team/nlp --arch osx-arm64
    """
    from imagebuilder.catalog import find_envs
    from imagebuilder.errors import NotFound
    from imagebuilder.ids import parse_alias
    from imagebuilder.platforms import get_arch
    from imagebuilder.store import open_store
    from imagebuilder.store.aliases import set_alias

    ref = parse_alias(name)
    for a in arches:
        get_arch(a)
    cfg = ui.config()
    store = open_store(cfg.store, cfg)
    envs = find_envs(store, env_ref)
    if arches:
        envs = [e for e in envs if e.arch in arches]
        if not envs:
            raise NotFound(f"{env_ref} has no environment for {', '.join(arches)}")
    rec = None
    for env in envs:
        rec = set_alias(store, ref, env, force=force)
        ui.info(f"{ref} ({env.arch}) -> {env.short_id}")
    emit(
        ui,
        rec.to_json(),
        lambda d: "\n".join(
            f"{ref}\t{arch}\t{t['req_id'][:16]}:{t['full_id'][:16]}"
            for arch, t in d["platforms"].items()
        ),
    )
