"""`imgbuild create ENV (--prefix DIR | --name NAME)` and `imgbuild pack ENV`."""

from __future__ import annotations

import re

import click

from imagebuilder.cli.output import Ui, common_options, emit

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def envs_root():
    """Where --name puts environments: ~/.imgbuild/envs/<NAME> (IMGBUILD_ENVS_DIR overrides)."""
    import os
    from pathlib import Path

    env = os.environ.get("IMGBUILD_ENVS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".imgbuild" / "envs"


def _target(prefix: str | None, name: str | None) -> str:
    from imagebuilder.errors import UsageError

    if (prefix is None) == (name is None):
        raise UsageError("give exactly one of --prefix DIR or --name NAME", "see --help")
    if name is not None:
        if not NAME_RE.match(name):
            raise UsageError(
                f"bad --name {name!r}",
                "a name is letters, digits, . _ - (no /); or use --prefix DIR",
            )
        return str(envs_root() / name)
    return prefix  # type: ignore[return-value]


def _find(store, env_ref: str, arch: str | None):
    """Pathspecs need Metaflow (catalog); ids and aliases are read without jsonschema."""
    from imagebuilder.ids import PathspecRef, parse_env_ref

    if isinstance(parse_env_ref(env_ref), PathspecRef):
        from imagebuilder.catalog import find_env

        return find_env(store, env_ref, arch)
    from imagebuilder.bootstrap.envref import find_env

    return find_env(store, env_ref, arch)


@click.command("create")
@click.argument("env_ref", metavar="ENV")
@click.option("--prefix", metavar="DIR", help="Create the environment in DIR.")
@click.option("--name", metavar="NAME", help="Create it as ~/.imgbuild/envs/NAME.")
@click.option("--force", is_flag=True, help="Replace a prefix that holds another environment.")
@click.option(
    "--from-pack/--no-pack",
    "from_pack",
    default=False,
    help="Unpack the env's pack (`imgbuild pack`) instead of installing package by package.",
)
@click.option("--python", metavar="PATH", help="Interpreter for an env without conda python.")
@click.option("--jupyter", is_flag=True, help="Also register a Jupyter kernel for it.")
@click.option("--arch", metavar="ARCH", help="For a multi-arch alias: the env for ARCH.")
@click.option(
    "--pathspec",
    "is_pathspec",
    is_flag=True,
    help="ENV is Flow/Run/Step: the env that step ran in.",
)
@click.option(
    "--into-dir",
    metavar="DIR",
    help="With a pathspec: also extract the step's code package into DIR (an empty or new "
    "folder); the env goes to DIR/.imgbuild-env unless --prefix/--name say otherwise.",
)
@common_options
def create(
    env_ref: str,
    prefix: str | None,
    name: str | None,
    force: bool,
    from_pack: bool,
    python: str | None,
    jupyter: bool,
    arch: str | None,
    is_pathspec: bool,
    into_dir: str | None,
    ui: Ui,
) -> None:
    """Create a working environment from the store, offline: conda packages linked from
    stored archives, wheels installed from stored wheels (no channel or index is contacted).

    Re-running on a prefix that already holds ENV does nothing; a prefix holding another
    environment needs --force. Prints the prefix on stdout.

    \b
    Examples:
      imgbuild create team/nlp:stable --name nlp
      imgbuild create 3f2a9c0d1e4b5a6f --prefix ./env --jupyter
      imgbuild create --pathspec MyFlow/12/train --into-dir ./debug
    """
    from imagebuilder.hydrate import hydrate
    from imagebuilder.install import allow_inprocess
    from imagebuilder.store import open_store

    if is_pathspec or into_dir:  # a past Metaflow step (imagebuilder/metaflow/client.py)
        from imagebuilder.metaflow.client import pathspec_ref, prepare_into_dir

        env_ref = pathspec_ref(env_ref)
        if into_dir and prefix is None and name is None:
            prefix = prepare_into_dir(into_dir, force)
    target = _target(prefix, name)
    if not force and not jupyter and not into_dir:
        from imagebuilder.hydrate import already_there

        done = already_there(target, env_ref, arch)
        if done is not None:  # named by id and already there: no store access at all
            ui.info(f"{done['prefix']} already holds {done['env_name']}")
            emit(ui, done, lambda d: d["prefix"])
            return
    allow_inprocess()  # the CLI leaves through os._exit: py-rattler may run here
    cfg = ui.config()
    store = open_store(cfg.store, cfg)
    env = _find(store, env_ref, arch)
    result = hydrate(
        env, store, target, force=force, python=python, from_pack=from_pack, info=ui.info
    )
    if result.link_scripts:
        ui.warn(
            "link scripts were not run for: "
            + ", ".join(result.link_scripts)
            + " (imgbuild never runs package scripts)"
        )
    data = {
        **result.to_json(),
        "req_id": env.req_id,
        "full_id": env.full_id,
        "env_name": env.name,
        "arch": env.arch,
    }
    if jupyter:
        from imagebuilder.jupyter import register_kernel

        data["kernel"] = register_kernel(env, result.prefix, env_ref, warn=ui.warn)
        ui.info(f"registered Jupyter kernel {data['kernel']['name']}")
    if into_dir:
        from imagebuilder.metaflow.client import fetch_code_package

        data["into_dir"] = fetch_code_package(env_ref.removeprefix("mf:"), into_dir)
        ui.info(f"code package of {env_ref} in {into_dir}: run it with {data['python']}")
    if result.created:
        ui.info(f"created {env.name} in {result.prefix} ({result.method}, {result.seconds:.1f}s)")
    else:
        ui.info(f"{result.prefix} already holds {env.name}")
    emit(ui, data, lambda d: d["prefix"])


@click.command("pack")
@click.argument("env_ref", metavar="ENV")
@click.option("--arch", metavar="ARCH", help="For a multi-arch alias: the env for ARCH.")
@common_options
def pack(env_ref: str, arch: str | None, ui: Ui) -> None:
    """Pack ENV into one relocatable archive in the store, packs/<full_id16>/<arch>.tar.zst,
    which `imgbuild create --from-pack` and the task bootstrap unpack in one go.

    \b
    Examples:
      imgbuild pack team/nlp:stable
    """
    from imagebuilder.catalog import find_env
    from imagebuilder.install import allow_inprocess
    from imagebuilder.pack import pack_env
    from imagebuilder.store import open_store

    allow_inprocess()
    cfg = ui.config()
    store = open_store(cfg.store, cfg)
    env = find_env(store, env_ref, arch)
    key, stats = pack_env(env, store, info=ui.info)
    if stats.get("existing"):
        ui.info(f"{key} already in {store.url}")
    emit(ui, {"key": key, "store": store.url, "env_name": env.name, **stats}, lambda d: d["key"])
