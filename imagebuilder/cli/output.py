"""What the CLI prints: results on stdout, messages and progress on stderr, errors by kind.

Shared by every verb: `common_options` adds `--json/--debug/--quiet` and the config flags;
`emit` prints a result either as JSON or through a human formatter.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from imagebuilder.errors import BAD_INPUT, USAGE, ImgbuildError


@dataclass
class Ui:
    json: bool = False
    debug: bool = False
    quiet: bool = False
    flags: dict[str, Any] = field(default_factory=dict)  # config keys given as flags

    def info(self, msg: str) -> None:
        if not self.quiet:
            click.echo(msg, err=True)

    def warn(self, msg: str) -> None:
        click.echo(f"warning: {msg}", err=True)

    @property
    def show_progress(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    def config(self):
        """The effective configuration, with this command's flags on top."""
        from imagebuilder.config import load_config

        return load_config(flags=self.flags)

    def progress(self, total: int | None, label: str, unit: str = "bytes") -> Progress:
        """One progress bar on stderr, shared by every phase (download, build, push).

        Use as a context manager: `with ui.progress(total_bytes, "fetch") as bar: bar.advance(n)`.
        bytes/rate/ETA for unit="bytes", N/M for unit="items". Silent (a no-op with the same
        methods) when stderr is not a TTY or under --quiet/--json, so callers never branch.
        Thread safe: worker threads may call advance() concurrently.
        """
        return Progress(total, label, unit, enabled=self.show_progress and not self.json)


class Progress:
    """A rich progress bar, or a no-op with the same methods when progress is not shown."""

    def __init__(self, total: int | None, label: str, unit: str = "bytes", enabled: bool = True):
        self.total, self.label, self.unit, self.enabled = total, label, unit, enabled
        self.done = 0  # counted even when silent, so callers can report totals
        self._bar = None
        self._task = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            amount = (
                [DownloadColumn(), TransferSpeedColumn()]
                if self.unit == "bytes"
                else [MofNCompleteColumn()]
            )
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                *amount,
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def update(self, *, total: int | None = None, label: str | None = None) -> None:
        """Change the total (e.g. once sizes are known) or the label."""
        if total is not None:
            self.total = total
        if label is not None:
            self.label = label
        if self._bar is not None:
            self._bar.update(self._task, total=self.total, description=self.label)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None


# Config keys that every command accepts as flags (CONTRACT.md: flag wins over every other source).
CONFIG_FLAGS = {
    "store": "--store",
    "oci_dir": "--oci-dir",
    "registry": "--registry",
    "s3_endpoint_url": "--s3-endpoint-url",
}


def common_options(fn: Callable) -> Callable:
    """Add --json/--debug/--quiet and config flags; pass a `ui: Ui` to the command."""

    @click.option("--json", "json_out", is_flag=True, help="Print one JSON document on stdout.")
    @click.option("--debug", is_flag=True, help="Show tracebacks.")
    @click.option("-q", "--quiet", is_flag=True, help="No progress or messages on stderr.")
    @click.option(
        "--store",
        "cfg_store",
        default=None,
        metavar="URL",
        help="Store folder or s3://bucket/prefix.",
    )
    @click.option(
        "--oci-dir", "cfg_oci_dir", default=None, metavar="DIR", help="Default OCI layout folder."
    )
    @click.option(
        "--registry", "cfg_registry", default=None, metavar="HOST/REPO", help="Registry repository."
    )
    @click.option(
        "--s3-endpoint-url",
        "cfg_s3_endpoint_url",
        default=None,
        metavar="URL",
        help="S3-compatible endpoint.",
    )
    @functools.wraps(fn)
    def wrapper(*args, json_out: bool, debug: bool, quiet: bool, **kwargs):
        flags = {}
        for key in CONFIG_FLAGS:
            value = kwargs.pop(f"cfg_{key}")
            if value is not None:
                flags[key] = value
        ui = Ui(json=json_out, debug=debug, quiet=quiet, flags=flags)
        _CURRENT.append(ui)
        return fn(*args, ui=ui, **kwargs)

    return wrapper


_CURRENT: list[Ui] = []


def emit(ui: Ui, data: Any, human: Callable[[Any], str] | None = None) -> None:
    """Print a command's result: JSON with --json, else the human rendering."""
    if ui.json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=_jsonable))
    elif human is not None:
        text = human(data)
        if text:
            click.echo(text)
    else:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=_jsonable))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_json"):
        return obj.to_json()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def run_cli(group: click.Group, argv: list[str]) -> int:
    """Invoke the group; map every failure to CONTRACT.md's exit codes. Returns the code."""
    want_json = "--json" in argv
    debug = "--debug" in argv
    try:
        rv = group.main(args=argv, prog_name="imgbuild", standalone_mode=False)
        # Without standalone mode click *returns* the code of a `click.exceptions.Exit`
        # (e.g. `imgbuild run` passing on its command's exit code) instead of raising it.
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except ImgbuildError as e:
        _report(e, want_json, debug)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        if want_json:
            err = {"error": {"kind": "usage", "message": e.format_message(), "hint": "see --help"}}
            click.echo(json.dumps(err))
        else:
            e.show()
        return e.exit_code if e.exit_code in (BAD_INPUT, USAGE) else USAGE
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug: say so plainly, traceback only with --debug
        err = ImgbuildError(
            f"internal error: {type(e).__name__}: {e}",
            "rerun with --debug and report it",
            "internal",
            BAD_INPUT,
        )
        _report(err, want_json, debug)
        return err.exit_code


def _report(e: ImgbuildError, want_json: bool, debug: bool) -> None:
    if debug:
        traceback.print_exc(file=sys.stderr)
    if want_json:
        click.echo(json.dumps(e.to_json()))
    else:
        msg = f"error: {e.message}"
        if e.hint:
            msg += f"\n  hint: {e.hint}"
        click.echo(msg, err=True)
