"""`imgbuild resolve`: parse flags, collect specs, run the pipeline, print the result."""

from __future__ import annotations

import click

from imagebuilder.cli.output import common_options

RESOLVERS = ("rattler", "uv", "micromamba", "conda", "mamba")


@click.command("resolve")
@click.option(
    "-r",
    "--requirements",
    "requirements",
    multiple=True,
    metavar="FILE",
    help="requirements.txt (PEP 508, --index-url, --conda-pkg, --sys-pkg ...).",
)
@click.option(
    "-f",
    "--file",
    "environment",
    multiple=True,
    metavar="FILE",
    help="environment.yml (channels, dependencies, pip:, sys:).",
)
@click.option(
    "-p",
    "--pyproject",
    "pyproject",
    multiple=True,
    metavar="FILE",
    help="pyproject.toml ([project] dependencies, requires-python).",
)
@click.option(
    "--lockfile",
    metavar="FILE",
    help="Import a lock file (conda-lock.yml, pixi.lock, uv.lock, pylock.toml, @EXPLICIT, "
    "requirements.txt with --hash): the locked packages, no solve.",
)
@click.option("--conda", multiple=True, metavar="SPEC", help="A conda spec, e.g. 'numpy>=2'.")
@click.option("--pypi", multiple=True, metavar="REQ", help="A PyPI requirement (PEP 508).")
@click.option(
    "-c",
    "--channel",
    "channels",
    multiple=True,
    metavar="URL",
    help="Conda channel, in priority order (default: config `channels`, else conda-forge).",
)
@click.option(
    "--index-url",
    metavar="URL",
    help="Primary PyPI index (default: config `index_url`, else https://pypi.org/simple).",
)
@click.option("--extra-index-url", "extra_index_urls", multiple=True, metavar="URL")
@click.option("--find-links", multiple=True, metavar="URL|DIR")
@click.option("--pre", is_flag=True, help="Allow PyPI pre-releases.")
@click.option("--python", metavar="SPEC", help="Python version, e.g. 3.11 or '>=3.10,<3.13'.")
@click.option(
    "--arch",
    multiple=True,
    metavar="SUBDIR",
    help="Target: linux-64, linux-aarch64, osx-64, osx-arm64 (repeatable; default: this host).",
)
@click.option(
    "--sys-pkg",
    "sys_pkgs",
    multiple=True,
    metavar="NAME==VER",
    help="Virtual package of the target, e.g. __glibc==2.31 or __cuda==12.1.",
)
@click.option("--exclude-newer", metavar="DATE", help="Ignore packages published after DATE.")
@click.option("--alias", "aliases", multiple=True, metavar="NAME[:TAG]", help="Name the result.")
@click.option("--dry-run", is_flag=True, help="Solve and print; write nothing, touch no store.")
@click.option(
    "--no-cache", is_flag=True, help="Resolve without caching: nothing is written to the store."
)
@click.option("--force", is_flag=True, help="Solve again even if this request has an env.")
@click.option(
    "--python-from-base",
    is_flag=True,
    help="Pure PyPI: a venv on the base image's python instead of conda's.",
)
@click.option(
    "--resolver",
    type=click.Choice(RESOLVERS),
    default="rattler",
    show_default=True,
    help="Conda solver (micromamba/conda/mamba must be on PATH).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([".conda", ".tar.bz2"]),
    default=None,
    help="Also store .tar.bz2 packages transmuted to .conda.",
)
@common_options
def resolve(ui, lockfile, aliases, dry_run, no_cache, force, resolver, fmt, **request) -> None:
    """Resolve a request into a pinned environment, cache its packages, record it.

    \b
    With no -r/-f/-p/--conda/--pypi, reads the first of ./imgbuild.toml ([environment]),
    environment.yml, requirements.txt, pyproject.toml.

    \b
    Examples:
      imgbuild resolve --conda 'numpy>=2' --pypi requests --alias team/ds
      imgbuild resolve -f environment.yml --arch linux-64 --arch osx-arm64
      imgbuild resolve -r requirements.txt --exclude-newer 2024-06-01 --dry-run --json
    """
    from imagebuilder.inputs.collect import Flags, collect
    from imagebuilder.resolve.pipeline import Options, run

    flags = Flags(**{k: tuple(v) if isinstance(v, tuple | list) else v for k, v in request.items()})
    if lockfile:  # lock import: the locked packages as they are, no solve (lockfiles/)
        from imagebuilder.lockfiles.importer import import_lock

        opts = Options(dry_run, no_cache, force, resolver, fmt, tuple(aliases))
        outcomes = import_lock(lockfile, flags.arch, opts, ui, python=flags.python, flags=flags)
        _print(ui, outcomes, opts)
        return
    collected = collect(flags, ui.config())
    for source in collected.sources:
        ui.info(f"reading {source}")
    opts = Options(dry_run, no_cache, force, resolver, fmt, tuple(aliases))
    with _status(ui) as say:
        outcomes = run(collected, opts, ui, progress=say)
    _print(ui, outcomes, opts)


class _status:
    """A spinner with the current step on stderr (TTY only, not under --quiet/--json)."""

    def __init__(self, ui) -> None:
        self.enabled = ui.show_progress and not ui.json
        self._status = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console

        self._status = Console(stderr=True).status("resolving")
        self._status.__enter__()
        return lambda msg: self._status.update(msg)

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)


def env_json(env) -> dict:
    """CONTRACT.md: {"req_id","full_id","env_name","arch","packages":[...]} (no bulky record)."""
    packages = []
    for p in env.packages:
        d = p.to_json()
        d.pop("record", None)
        packages.append(d)
    return {
        "req_id": env.req_id,
        "full_id": env.full_id,
        "env_name": env.name,
        "arch": env.arch,
        "packages": packages,
    }


def _print(ui, outcomes, opts) -> None:
    from imagebuilder.cli.output import emit

    docs = [env_json(o.env) for o in outcomes]
    data = docs[0] if len(docs) == 1 else {"envs": docs}

    def human(_) -> str:
        lines = []
        for o in outcomes:
            env = o.env
            conda = len(env.conda_packages())
            pypi = len(env.pypi_packages())
            kinds = ", ".join(f"{n} {k}" for n, k in ((conda, "conda"), (pypi, "PyPI")) if n)
            state = "reused" if o.reused else "dry run, not stored" if opts.dry_run else "stored"
            lines.append(
                f"{env.arch:<14} {env.name}  {len(env.packages)} packages ({kinds})  [{state}]"
            )
        for a in () if opts.dry_run else opts.aliases:
            lines.append(
                f"alias {a if ':' in a else a + ':latest'} -> "
                + ", ".join(f"{o.env.arch} {o.env.short_id}" for o in outcomes)
            )
        return "\n".join(lines)

    emit(ui, data, human)
