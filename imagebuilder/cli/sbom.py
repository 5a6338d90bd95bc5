"""`imgbuild sbom ENV`: the environment's CycloneDX SBOM (the one attached to its images)."""

from __future__ import annotations

import click

from imagebuilder.cli.output import Ui, common_options


@click.command("sbom")
@click.argument("env_ref", metavar="ENV")
@click.option("--arch", default=None, metavar="ARCH", help="Which env of a multi-arch alias.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write here (default stdout)."
)
@click.option(
    "--validate",
    is_flag=True,
    help="Also check the bytes against the CycloneDX 1.6 JSON schema (adds ~0.3 s).",
)
@common_options
def sbom(env_ref: str, arch: str | None, output: str | None, validate: bool, ui: Ui) -> None:
    """Print ENV's SBOM: CycloneDX 1.6 JSON listing every conda and PyPI package with its
    version, purl, sha256 and license where known. The bytes are the same every time for the
    same env, so the SBOM pushed next to an image can be checked against this one.

    \b
    Examples:
      imgbuild sbom team/nlp:stable > sbom.json
      imgbuild sbom 3f2a9c0d1e2b4a5c --arch linux-aarch64 -o sbom.json
    """
    from pathlib import Path

    from imagebuilder.catalog import find_env
    from imagebuilder.sbom import build_sbom, validate_sbom
    from imagebuilder.store import open_store

    cfg = ui.config()
    store = open_store(cfg.store, cfg)
    env = find_env(store, env_ref, arch)
    data = build_sbom(env, store)
    # Not by default: the writer is deterministic and its output is schema-checked by the
    # tests; loading jsonschema and the CycloneDX schemas tripled the command's time.
    if validate:
        validate_sbom(data)
    if output:
        Path(output).write_bytes(data)
        ui.info(f"wrote {output} ({len(env.packages)} packages, {env.short_id})")
    else:
        click.echo(data.decode(), nl=False)
