#!/usr/bin/env python3
"""Write docs/cli.md, the CLI reference, from the click commands themselves.

    python docs/gen_cli.py            # rewrite docs/cli.md
    python docs/gen_cli.py --check    # exit 1 if docs/cli.md is not what the code says

Every verb of imagebuilder.cli.COMMANDS is imported (a verb that fails to import is an error
here, not a silent "not available"), and its --help is rendered at a fixed width, so the file
is the same on every machine. tests/interop/test_docs.py runs --check.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"
WIDTH = 100

HEADER = """# CLI reference

Generated from the code by `python docs/gen_cli.py`; do not edit by hand. Every command also
takes `--json` (one JSON document on stdout), `--debug`, `-q/--quiet` and the configuration
flags `--store`, `--oci-dir`, `--registry`, `--s3-endpoint-url` (docs/config.md). Exit codes:
0 ok, 1 bad input, 2 usage, 3 not found, 4 conflict, 5 remote unavailable, 6 integrity.
"""


def _help(cmd, name: str, parent=None) -> str:
    import click

    ctx = click.Context(cmd, info_name=name, parent=parent, terminal_width=WIDTH,
                        max_content_width=WIDTH, **cmd.context_settings)  # fmt: skip
    return cmd.get_help(ctx)


def render() -> str:
    os.environ["IMGBUILD_DEBUG"] = "1"  # LazyGroup raises instead of hiding a broken verb
    sys.path.insert(0, str(ROOT))
    import click

    from imagebuilder.cli import COMMANDS, cli

    root = click.Context(cli, info_name="imgbuild", terminal_width=WIDTH, max_content_width=WIDTH,
                         **cli.context_settings)  # fmt: skip
    parts = [HEADER, "## imgbuild\n", "```text", cli.get_help(root), "```\n"]
    for verb in sorted(COMMANDS):
        cmd = cli.get_command(root, verb)
        parts += [f"## imgbuild {verb}\n", "```text", _help(cmd, verb, root), "```\n"]
        if isinstance(cmd, click.Group):
            sub_ctx = click.Context(cmd, info_name=verb, parent=root)
            for sub in sorted(cmd.list_commands(sub_ctx)):
                parts += [
                    f"### imgbuild {verb} {sub}\n",
                    "```text",
                    _help(cmd.get_command(sub_ctx, sub), sub, sub_ctx),
                    "```\n",
                ]
    text = "\n".join(parts)
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if docs/cli.md is out of date")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/cli.md is out of date: run `python docs/gen_cli.py`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # importing every verb may load py-rattler (exit-time crash, LOCAL-SERVICES.md)
