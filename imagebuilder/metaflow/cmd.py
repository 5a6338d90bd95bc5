"""`metaflow environment resolve|show|get|create|alias ...`: Conda v2's command, mapped onto
the imgbuild CLI of the same verbs (arguments passed through unchanged; `imgbuild VERB
--help` documents them). The imgbuild CLI runs as a child: it leaves through os._exit
(py-rattler), which must not end this process before Metaflow prints its own output.

    metaflow environment resolve -r requirements.txt --alias team/nlp
    metaflow environment show mf:MyFlow/12/train
    metaflow environment create --pathspec MyFlow/12/train --into-dir ./debug
"""

from __future__ import annotations

import subprocess
import sys

from metaflow._vendor import click

VERBS = {
    "resolve": "Resolve a request into a pinned environment and cache it (imgbuild resolve).",
    "show": "Show an environment: ids, request, packages (imgbuild show).",
    "get": "Copy an environment from another store into this one (imgbuild get).",
    "create": "Create an environment locally, or a past step's with its code (imgbuild create).",
    "alias": "Name an environment NAME[:TAG] (imgbuild alias).",
}
PASS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.group()
def cli():
    pass


@cli.group(help="imgbuild environments (Conda v2's `metaflow environment`).")
def environment():
    pass


def _verb(name: str, help_text: str):
    @environment.command(name=name, help=help_text, context_settings=PASS)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args):
        code = subprocess.call([sys.executable, "-m", "imagebuilder", name, *args])
        sys.exit(code)

    return command


for _name, _help in VERBS.items():
    _verb(_name, _help)
