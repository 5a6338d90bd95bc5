"""`imgbuild export ENV --format FMT [-o FILE]`: an environment as a lock file other tools read."""

from __future__ import annotations

import click

from imagebuilder.cli.output import Ui, common_options, emit

FORMAT_CHOICES = ("conda-lock", "pixi", "explicit", "requirements", "pylock")


@click.command("export")
@click.argument("env_ref", metavar="ENV")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMAT_CHOICES),
    default="conda-lock",
    show_default=True,
    help="Lock file format.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write here (default stdout)."
)
@click.option(
    "--arch",
    "arches",
    multiple=True,
    metavar="ARCH",
    help="Only the env for ARCH (an alias may name one env per arch).",
)
@common_options
def export(env_ref: str, fmt: str, output: str | None, arches: tuple[str, ...], ui: Ui) -> None:
    """Write ENV as a lock file: conda-lock.yml, pixi.lock, a conda @EXPLICIT file,
    requirements.txt with --hash lines, or pylock.toml (PEP 751).

    conda-lock and pixi hold every arch of a multi-arch alias in one file; the other formats
    hold one arch (pass --arch). requirements.txt and pylock.toml keep the env's conda packages
    where PyPI tools skip them (comments, [tool.imgbuild]), so `imgbuild resolve --lockfile`
    gets the same full_id back from every format.

    \b
    Examples:
      imgbuild export team/nlp:stable --format conda-lock -o conda-lock.yml
      imgbuild export 3f2a9c0d1e2b4a5c --format requirements -o requirements.txt
      imgbuild export team/nlp --format explicit --arch linux-64
    """
    from pathlib import Path

    from imagebuilder.catalog import find_envs
    from imagebuilder.errors import NotFound
    from imagebuilder.lockfiles import export_lock
    from imagebuilder.platforms import get_arch
    from imagebuilder.store import open_store

    for a in arches:
        get_arch(a)
    cfg = ui.config()
    store = open_store(cfg.store, cfg)
    envs = find_envs(store, env_ref)
    if arches:
        envs = [e for e in envs if e.arch in arches]
        if not envs:
            raise NotFound(f"{env_ref} has no environment for {', '.join(arches)}")
    text = export_lock(envs, fmt)
    info = {
        "format": fmt,
        "envs": [{"req_id": e.req_id, "full_id": e.full_id, "arch": e.arch} for e in envs],
    }
    if output:
        path = Path(output)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        ui.info(f"wrote {path} ({fmt}, {', '.join(e.arch for e in envs)})")
        info["path"] = str(path)
    elif ui.json:
        info["content"] = text  # --json: one JSON document, the lock inside it
    else:
        click.echo(text, nl=False)
        return
    emit(ui, info, lambda d: "")
