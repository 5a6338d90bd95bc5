"""`imgbuild get ENV --from STORE_URL [--with-packages]`: copy envs between stores."""

from __future__ import annotations

import click

from imagebuilder.cli.output import Ui, common_options, emit


@click.command("get")
@click.argument("env_ref", metavar="ENV")
@click.option("--from", "source", required=True, metavar="STORE_URL", help="Store to copy from.")
@click.option("--with-packages", is_flag=True, help="Also copy every package the env needs.")
@click.option("--arch", "arches", multiple=True, metavar="ARCH", help="Only the env for ARCH.")
@common_options
def get(env_ref: str, source: str, with_packages: bool, arches: tuple[str, ...], ui: Ui) -> None:
    """Copy ENV's record (and with --with-packages its packages and builds) from another
    store into the configured one. An alias ENV is copied as an alias too.

    \b
    Examples:
      imgbuild get team/nlp:stable --from s3://ml-envs/imgbuild --with-packages
    """
    from imagebuilder.config import expand
    from imagebuilder.store import open_store
    from imagebuilder.store.copy import copy_envs

    cfg = ui.config()
    dst = open_store(cfg.store, cfg)
    src = open_store(expand(source), cfg)
    result = copy_envs(src, dst, env_ref, with_packages=with_packages, arches=arches, ui=ui)
    emit(
        ui,
        result,
        lambda d: "\n".join(
            f"{e['env_name']}\t{e['arch']}\t{'copied' if e['copied'] else 'present'}"
            for e in d["envs"]
        ),
    )
