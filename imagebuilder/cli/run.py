"""`imgbuild run ENV [-- CMD...]` and `imgbuild dockerfile ENV`.

run: bake the env's image (through `imgbuild push`, so it is exactly the image a push makes),
get it into the engine at DOCKER_HOST (Docker or a Podman socket) — pulled from the registry
when the sink is one, else loaded from a docker-archive — and run CMD (default: the env's
python) with the current folder mounted at /workspace as the working directory. Output is
streamed; the exit code is the command's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from imagebuilder.cli.output import Ui, common_options, emit
from imagebuilder.errors import BadInput, ImgbuildError, NotFound, Unavailable

PREFIX = "/opt/imgbuild/env"
WORKDIR = "/workspace"


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("env")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
@click.option("--base", default=None, metavar="REF", help="Base image (default: base_image).")
@click.option("--to", "to", default=None, metavar="SINK", help="Push here first (a registry).")
@click.option("--arch", default=None, help="Image arch (default: this machine's).")
@click.option("--image", default=None, metavar="REF", help="Run this image instead of baking.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to the registry.")
@click.option("--workdir", default=WORKDIR, show_default=True, help="Where . is mounted.")
@common_options
def run(env, cmd, base, to, arch, image, insecure, workdir, ui: Ui):
    """Run CMD in ENV's image through Docker or Podman (DOCKER_HOST).

    \b
    Examples:
      imgbuild run team/ds -- python -c 'import numpy; print(numpy.__version__)'
      DOCKER_HOST=unix:///run/podman.sock imgbuild run 3f2a9c01d4e5b6a7 -- python train.py
    """
    from imagebuilder.registry import engine

    client = engine.connect()
    command = list(cmd) or [f"{PREFIX}/bin/python"]
    if image is None:
        image_id = _bake_into(client, env, base, to, arch, insecure, ui)
    else:
        image_id = engine.pull(client, image, ui)
    code = engine.run(client, image_id, command, Path.cwd(), workdir, ui)
    raise click.exceptions.Exit(code)


def _bake_into(client, env, base, to, arch, insecure, ui: Ui) -> str:
    """Push the env (to the registry sink, or to a temporary docker-archive) and get it into
    the engine; returns an image id or reference the engine knows."""
    from imagebuilder.registry import engine

    cfg = ui.config()
    target = to or cfg.get("registry")
    if target and not target.startswith(("oci:", "docker-archive:")):
        written = _push(env, target, base, arch, insecure, ui)
        from imagebuilder.registry.reference import parse_reference

        name = parse_reference(target).name
        return engine.pull(client, f"{name}@{written['digest']}", ui)
    with tempfile.TemporaryDirectory(prefix="imgbuild-run-") as tmp:
        tar = Path(tmp) / "image.tar"
        _push(env, f"docker-archive:{tar}", base, arch, insecure, ui)
        return engine.load(client, tar, ui)


def _push(env, target, base, arch, insecure, ui: Ui) -> dict:
    """`imgbuild push` in a child process: the one bake path, and py-rattler stays out of this
    process (it can crash at exit). Returns push's JSON result."""
    argv = [sys.executable, "-m", "imagebuilder", "push", env, "--to", target, "--json"]
    if base:
        argv += ["--base", base]
    if arch:
        argv += ["--arch", arch]
    for key, flag in (
        ("store", "--store"),
        ("oci_dir", "--oci-dir"),
        ("s3_endpoint_url", "--s3-endpoint-url"),
    ):
        if ui.flags.get(key):
            argv += [flag, ui.flags[key]]
    child_env = dict(os.environ)
    if insecure:
        host = target.removeprefix("docker://").split("/", 1)[0]
        extra = child_env.get("IMGBUILD_INSECURE_REGISTRIES", "")
        child_env["IMGBUILD_INSECURE_REGISTRIES"] = ",".join(x for x in (extra, host) if x)
    ui.info(f"baking {env} -> {target}")
    p = subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        stderr=None if not ui.quiet else subprocess.DEVNULL,
        text=True,
        env=child_env,
    )
    try:
        out = json.loads(p.stdout or "{}")
    except ValueError:
        out = {}
    if p.returncode != 0:
        err = out.get("error") or {}
        raise ImgbuildError(
            err.get("message") or f"imgbuild push {env} failed (exit {p.returncode})",
            err.get("hint", ""),
            err.get("kind", "error"),
            p.returncode,
        )
    written = out.get("written", out)
    if isinstance(written, list):
        written = written[0] if written else {}
    if not written.get("digest"):
        raise ImgbuildError(f"imgbuild push {env} printed no digest", "rerun with --debug")
    return written


@click.command()
@click.argument("env")
@click.option("--base", default=None, metavar="REF", help="Base image (default: base_image).")
@click.option(
    "--builder",
    default=None,
    metavar="REF",
    help="Image with python3 + pip for the build stage (default: the base).",
)
@click.option(
    "--context",
    "context",
    default=None,
    type=click.Path(file_okay=False),
    help="Also write a build context here: Dockerfile + the env's part of the store.",
)
@common_options
def dockerfile(env, base, builder, context, ui: Ui):
    """Print a Dockerfile that builds ENV at /opt/imgbuild/env from the store.

    \b
    Examples:
      imgbuild dockerfile team/ds > Dockerfile
      imgbuild dockerfile team/ds --context ./ctx && docker build ./ctx
    The build stage needs python3 + pip of this imgbuild's python version.
    """
    from imagebuilder.registry.dockerfile import render, write_context

    cfg = ui.config()
    base_ref = base or cfg.get("base_image") or "scratch"
    if base_ref == "scratch" or base_ref.startswith("oci:"):
        raise BadInput(
            f"a Dockerfile needs a registry base image, not {base_ref!r}",
            "pass --base HOST/REPO:TAG (an image with a shell; the env brings its own python)",
        )
    if context:
        path = write_context(env, base_ref, Path(context), cfg, builder)
        emit(
            ui,
            {"context": str(path), "dockerfile": str(path / "Dockerfile")},
            lambda d: f"build context written to {d['context']}",
        )
        return
    try:
        text = render(env, base_ref, cfg, builder)
    except NotFound:
        raise
    except OSError as e:
        raise Unavailable(f"cannot read the Dockerfile template: {e}") from None
    click.echo(text, nl=False)
