"""`imgbuild VERB`: a click group whose commands are imported only when invoked.

Lazy loading keeps `imgbuild resolve --dry-run` fast: no verb pays for another verb's imports
(boto3, docker, jsonschema, rattler). Each verb lives in its own module here; COMMANDS maps
the verb to "module:function".
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from imagebuilder import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    # verb: (module, short help shown by `imgbuild --help` without importing the module)
    "resolve": (
        "imagebuilder.cli.resolve:resolve",
        "Resolve a request into a pinned environment (and cache it).",
    ),
    "show": ("imagebuilder.cli.show:show", "Show one environment."),
    "ls": ("imagebuilder.cli.show:ls", "List environments and aliases in the store."),
    "alias": ("imagebuilder.cli.alias:alias", "Name an environment NAME[:TAG]."),
    "get": ("imagebuilder.cli.get:get", "Copy an environment from another store into this one."),
    "export": ("imagebuilder.cli.export:export", "Write an environment as a lock file."),
    "create": ("imagebuilder.cli.create:create", "Create an environment prefix from the store."),
    "pack": ("imagebuilder.cli.create:pack", "Pack an environment into one relocatable archive."),
    "push": (
        "imagebuilder.cli.push:push",
        "Bake an environment into an OCI image and write it to a sink.",
    ),
    "image": (
        "imagebuilder.cli.push:image",
        "Print the reference and digest a push would produce.",
    ),
    "run": ("imagebuilder.cli.run:run", "Run a command in an environment's image (Docker/Podman)."),
    "dockerfile": (
        "imagebuilder.cli.run:dockerfile",
        "Print a Dockerfile that builds the environment.",
    ),
    "sbom": ("imagebuilder.cli.sbom:sbom", "Print the CycloneDX SBOM of an environment."),
    "verify": (
        "imagebuilder.cli.verify:verify",
        "Re-hash what environments reference in the store.",
    ),
    "gc": ("imagebuilder.cli.verify:gc", "Remove unreferenced packages and layers from the store."),
    "config": ("imagebuilder.cli.config:config", "Show configuration values and their sources."),
    "diff": ("imagebuilder.cli.diff:diff", "Compare two environments."),
    "why": ("imagebuilder.cli.diff:why", "Explain which request brought a package in."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            if os.environ.get("IMGBUILD_DEBUG"):
                raise
            return _unavailable(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args: tuple[str, ...]) -> None:
        from imagebuilder.errors import UsageError

        raise UsageError(
            f"`imgbuild {name}` is not available in this build", "see `imgbuild --help`"
        )

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imgbuild")
def cli() -> None:
    """Resolve, cache, hydrate and bake reproducible environments.

    \b
    Examples:
      imgbuild resolve --conda 'numpy>=2' --pypi requests --alias team/ds
      imgbuild push team/ds --to oci:./images
      imgbuild create team/ds --prefix ./env
    """


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and leave through os._exit.

    py-rattler can crash during interpreter finalization after its work is done
    (LOCAL-SERVICES.md); leaving with os._exit after flushing skips finalization entirely.
    """
    from imagebuilder.cli.output import run_cli
    from imagebuilder.exitmode import allow_inprocess
    from imagebuilder.sources.tls import setup_process_env

    allow_inprocess()  # every command (create, push, image, run) may run py-rattler here
    setup_process_env()  # one CA bundle for rattler, uv, requests, boto3 (sources/tls.py)
    code = run_cli(cli, sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
