"""`imgbuild push ENV` (bake and write to a sink) and `imgbuild image ENV` (what a push would
produce: reference and digest, nothing written to any sink)."""

from __future__ import annotations

import click

from imagebuilder.cli.output import Ui, common_options, emit


def _options(fn):
    fn = click.option(
        "--arch",
        "arches",
        multiple=True,
        metavar="SUBDIR",
        help="Only these arches of a multi-arch environment (linux-64, linux-aarch64).",
    )(fn)
    fn = click.option(
        "--user", default=None, metavar="USER[:GROUP]", help="Image user (default root)."
    )(fn)
    fn = click.option(
        "--compression",
        type=click.Choice(["zstd", "gzip"]),
        default=None,
        help="Layer compression (default: config `compression`).",
    )(fn)
    fn = click.option(
        "--base",
        default=None,
        metavar="REF",
        help="Base image: scratch, oci:DIR:REF or HOST/REPO:TAG (default: config `base_image`).",
    )(fn)
    fn = click.option(
        "--to",
        "sink",
        default=None,
        metavar="SINK",
        help="oci:DIR[:REF], docker-archive:FILE.tar, docker://HOST/REPO (default: `registry`, else oci:<oci_dir>).",
    )(fn)
    return click.argument("env_ref", metavar="ENV", required=False)(fn)


def _bake(ui: Ui, cfg, env_ref, base, compression, user, arches):
    """(store, envs, baked): the envs are read once and handed on (SBOMs), not read again."""
    from imagebuilder.bake import BakeOptions, bake, source_date_epoch
    from imagebuilder.catalog import find_envs
    from imagebuilder.errors import NotFound
    from imagebuilder.ids import AliasRef, parse_env_ref
    from imagebuilder.store import open_store

    store = open_store(cfg.store, cfg)
    if env_ref:
        ref = parse_env_ref(env_ref)
        envs = find_envs(store, ref)
    else:
        ref, envs = None, _this_request(cfg, store)
    if arches:
        envs = [e for e in envs if e.arch in arches]
        if not envs:
            raise NotFound(f"{env_ref} has no environment for {', '.join(arches)}")
    opts = BakeOptions(
        base=base or str(cfg.get("base_image") or "scratch"),
        compression=compression or cfg.compression,
        epoch=source_date_epoch(),
        user=user,
        default_base=str(cfg.get("base_image") or "scratch"),
        default_compression=cfg.compression,
    )
    baked = bake(envs, store, opts, cfg, ref if isinstance(ref, AliasRef) else None, ui.info)
    for w in baked.warnings:
        ui.warn(w)
    return store, envs, baked


def _this_request(cfg, store):
    """A bare `imgbuild push`: the newest env of the request in the current folder (per arch)."""
    from imagebuilder.errors import ImgbuildError, UsageError
    from imagebuilder.inputs.collect import Flags, collect
    from imagebuilder.store.envs import newest_for_request

    try:
        specs = collect(Flags(), cfg).specs
    except ImgbuildError as e:
        raise UsageError(
            "name the environment to push, or run where imgbuild.toml, environment.yml, "
            f"requirements.txt or pyproject.toml is ({e})",
            "e.g. imgbuild push team/ds, or a full_id",
        ) from None
    return [newest_for_request(store, spec.req_id) for spec in specs]


@click.command("push")
@_options
@common_options
def push(ui: Ui, env_ref, sink, base, compression, user, arches) -> None:
    """Bake ENV into a reproducible, layered OCI image and write it to SINK.

    \b
    Examples:
      imgbuild push team/ds --to oci:./images
      imgbuild push 3f2a9c0d1e4b5a67 --base oci:./bases:bookworm --to docker-archive:env.tar
    """
    from imagebuilder.oci.sink import parse_sink

    cfg = ui.config()  # read once: every step below uses the same configuration
    # the sink first: a typo in --to or a registry that does not answer fails before a bake
    # that may take minutes (and before anything is written to the store)
    target = parse_sink(sink, cfg)
    ping = getattr(getattr(target, "client", None), "ping", None)
    if ping is not None:
        ping()
    store, envs, baked = _bake(ui, cfg, env_ref, base, compression, user, arches)
    written = target.write(baked.artifact, baked.tags)
    from imagebuilder.sbom_attach import attach_for_push  # SBOM artifacts (issue 9)

    sboms = attach_for_push(ui, target, baked.artifact, envs, store)
    data = {
        **written.to_json(),
        "tags": list(baked.tags),
        "layers_built": baked.layers_built,
        "layers_reused": baked.layers_reused,
        "sboms": sboms,
    }
    emit(ui, data, lambda d: "\n".join(f"{r}@{d['digest']}" for r in d["refs"]))


@click.command("image")
@_options
@common_options
def image(ui: Ui, env_ref, sink, base, compression, user, arches) -> None:
    """Print the reference and digest `push` would produce, writing nothing to any sink.

    \b
    Example:
      imgbuild image team/ds --to oci:./images
    """
    from imagebuilder.oci.sink import parse_sink

    cfg = ui.config()
    target = parse_sink(sink, cfg)  # a bad --to fails before the bake
    _, _, baked = _bake(ui, cfg, env_ref, base, compression, user, arches)
    refs = [target.ref(t) for t in baked.tags]
    data = {"digest": baked.digest, "refs": refs, "tags": list(baked.tags), "sink": target.name}
    emit(ui, data, lambda d: "\n".join(f"{r}@{d['digest']}" for r in d["refs"]))
