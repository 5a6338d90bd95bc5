"""Bake: env(s) + base + store -> an immutable Image (or an ImageIndex for several arches).

    plan (pure, from the env record) -> layer index lookups -> stage only what is missing
    -> write missing layers in parallel (blob to the store, then its record) -> metadata layer
    -> config/manifest (image.append) -> index over arches

Nothing here writes to a sink; push/image (cli/push.py) hand the value to one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import BadInput
from imagebuilder.ids import AliasRef, canonical_json, short
from imagebuilder.oci import layerindex
from imagebuilder.oci.base import Base, open_base
from imagebuilder.oci.image import Artifact, Descriptor, Layer, Platform, append, make_index
from imagebuilder.oci.layer import Compression, Entry, entry_for, member_content, write_layer
from imagebuilder.oci.plan import LayerGroup, PlanItem, Rules, check_collisions, plan_layers
from imagebuilder.stage import PREFIX, StagedPackage, ident, stage_files
from imagebuilder.testhooks import kill_point

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LABEL = "dev.imgbuild"


@dataclass(frozen=True)
class BakeOptions:
    base: str = "scratch"
    compression: str = "zstd"
    level: int | None = None
    epoch: int = 0
    user: str | None = None
    default_base: str = "scratch"  # config `base_image`: no tag suffix when used
    default_compression: str = "zstd"  # config `compression`
    rules: Rules = Rules()
    jobs: int = 2

    @property
    def comp(self) -> Compression:
        return Compression.of(self.compression, self.level)

    @property
    def is_default_variant(self) -> bool:
        return self.base == self.default_base and self.compression == self.default_compression


@dataclass(frozen=True)
class Baked:
    artifact: Artifact
    tags: tuple[str, ...]
    layers_reused: int = 0
    layers_built: int = 0
    warnings: tuple[str, ...] = field(default=())
    timings: dict = field(default_factory=dict, compare=False)  # seconds: stage, layers

    @property
    def digest(self) -> str:
        return self.artifact.digest


def source_date_epoch(environ=os.environ) -> int:
    raw = environ.get("SOURCE_DATE_EPOCH")
    if raw in (None, ""):
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"SOURCE_DATE_EPOCH={raw!r} is not an integer") from None
    if value < 0:
        raise BadInput(f"SOURCE_DATE_EPOCH={raw!r} is negative")
    return value


def variant_tag(full_id: str, base: Base, compression: str, default: bool) -> str:
    """CONTRACT.md tags: `<full16>`, or `<full16>-<8 hex of sha256(base digest, compression)>`."""
    if default:
        return short(full_id)
    import hashlib

    h = hashlib.sha256(canonical_json([base.variant_key, compression]).encode()).hexdigest()
    return f"{short(full_id)}-{h[:8]}"


def bake(
    envs: Sequence[ResolvedEnv],
    store,
    opts: BakeOptions = BakeOptions(),
    config=None,
    alias: AliasRef | None = None,
    say: Callable[[str], None] = lambda m: None,
) -> Baked:
    """Bake one env into an Image, or several (one per arch) into an ImageIndex."""
    if not envs:
        raise BadInput("nothing to bake")
    arches = [e.arch for e in envs]
    if len(set(arches)) != len(arches):
        raise BadInput(f"several environments for one arch: {', '.join(sorted(arches))}")
    images, tags, warnings = [], [], []
    timings: dict[str, float] = {}
    reused = built = 0
    for env in sorted(envs, key=lambda e: e.arch):
        from imagebuilder.platforms import oci_platform

        os_, arch = oci_platform(env.arch)
        base = open_base(opts.base, Platform(os_, arch), config)
        img, r, b, w, t = bake_one(env, base, store, opts, say)
        for k, v in t.items():
            timings[k] = timings.get(k, 0.0) + v
        images.append(img)
        reused, built = reused + r, built + b
        warnings += w
        tags.append(variant_tag(env.full_id, base, opts.compression, opts.is_default_variant))
    if alias is not None:
        tags.append(alias.image_tag)
    if len(images) == 1:
        artifact: Artifact = images[0]
    else:
        first = json.loads(images[0].manifest).get("annotations", {})
        artifact = make_index(
            images,
            {k: v for k, v in first.items() if k in ("org.opencontainers.image.created",)},
        )
    return Baked(artifact, tuple(dict.fromkeys(tags)), reused, built, tuple(warnings), timings)


def plan_items(env: ResolvedEnv, store) -> list[PlanItem]:
    items = []
    for p in env.packages:
        size = p.size
        if size is None:
            info = store.stat(p.store_key)
            size = info.size if info else 0
        deps = tuple(re.split(r"[\s=<>!~;\[(]", d.strip(), maxsplit=1)[0] for d in p.depends)
        items.append(PlanItem(p.kind, p.name, p.sha256, size, deps))
    return items


def bake_one(env: ResolvedEnv, base: Base, store, opts: BakeOptions, say):
    from imagebuilder.platforms import host_arch

    pyver = env.python_xy
    pyc = env.arch == host_arch() and env.package("python") is not None
    comp = opts.comp
    venv: list[Entry] = []
    base_python = ""
    if env.is_venv:
        from imagebuilder.oci.basepython import find_python, venv_entries
        from imagebuilder.oci.baseroot import can_run

        if pyver is None:
            raise BadInput(
                f"{env.short_id} is a venv on the base's python but names no python version",
                "resolve again with --python X.Y",
            )
        base_python = find_python(base, pyver)
        venv = venv_entries(PREFIX, base_python, pyver)
        # .pyc by the base's own interpreter, when it runs here (same rule as conda envs: the
        # env's arch is this machine's)
        pyc = env.arch == host_arch() and can_run(base, base_python, pyver)
    groups = plan_layers(plan_items(env, store), len(base.layers), opts.rules)
    keys = {
        g.name: layerindex.layer_key(g.member_sha256s, pyver, PREFIX, comp, opts.epoch, pyc)
        for g in groups
    }
    found = layerindex.get_many(store, [keys[g.name] for g in groups])
    records = {g.name: rec for g, rec in zip(groups, found, strict=True)}
    # Biggest first, so parallel writers finish together.
    missing = sorted((g for g in groups if records[g.name] is None), key=lambda g: -g.size)
    by_ident = {ident(p): p for p in env.packages}
    staged: dict[str, StagedPackage] = {}
    timings = {"stage": 0.0, "layers": 0.0}
    # Every layer known (a re-push): no staging folder, no tar, no compression.
    workdir = tempfile.TemporaryDirectory(prefix="imgbuild-stage-") if missing else None
    with workdir or contextlib.nullcontext() as tmp:
        if missing:
            from concurrent.futures import ThreadPoolExecutor

            pkgs = [by_ident[m.ident] for g in missing for m in g.members]
            t0 = time.perf_counter()
            staging = stage_files(
                env, pkgs, store, Path(tmp), pyc, say, _base_python(base, base_python, pyver, pyc)
            )
            staged = dict(staging.ready)
            timings["stage"] = time.perf_counter() - t0
            kill_point("bake.staged")  # testhooks: packages staged, no layer written
            say(f"writing {len(missing)} layer(s)")

            jobs = max(1, min(opts.jobs, len(missing)))
            # Cores shared out between the layers written at once: two zstd streams with two
            # workers each on 2 cores cost ~12% more CPU than with one each (oversubscribed
            # workers), and the bench's cold build ~7% more time.
            threads = max(1, (os.cpu_count() or 1) // jobs)

            def build(g: LayerGroup):
                return _build_layer(g, keys[g.name], staged, store, comp, opts.epoch, threads)

            # Layers of packages that get no .pyc are written while the others compile theirs
            # (a python process per package); then those layers follow.
            now = [g for g in missing if all(m.ident in staged for m in g.members)]
            later = [g for g in missing if g not in now]
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = {g.name: pool.submit(build, g) for g in now}
                staged.update(staging.compile())
                futures.update({g.name: pool.submit(build, g) for g in later})
                for g in missing:
                    records[g.name] = futures[g.name].result()
            timings["layers"] = time.perf_counter() - t0 - timings["stage"]
        _check_files(groups, records, staged, store)
        layers = [
            Layer(
                Descriptor(r.blob.media_type, r.blob.digest, r.blob.size),
                r.blob.diff_id,
                layerindex.StoreBlob(store, r.blob.digest),
                g.name,
            )
            for g in groups
            for r in [records[g.name]]
        ]
        activation = _activation_env(records.values())
        env_vars = _config_env(env, base, activation, venv=bool(venv))
        meta = _meta_layer(env, env_vars, store, comp, opts.epoch, venv)
    if missing:  # a cold bake may have unpacked copies: old unused ones go (at most daily)
        from imagebuilder.cacheprune import maybe_prune

        maybe_prune()
    warnings = _link_script_warning(records.values())
    labels = _labels(env, base, opts.epoch)
    image = append(
        base.config,
        base.layers,
        [*layers, meta],
        platform=base.platform or Platform("linux", "amd64"),
        env=env_vars,
        labels=labels,
        annotations=labels,
        epoch=opts.epoch,
        user=opts.user,
    )
    return image, len(groups) - len(missing), len(missing), warnings, timings


def _base_python(base: Base, python: str, pyver: str | None, pyc: bool) -> tuple[str, ...]:
    """How to start a venv env's base python here, when its layers get .pyc."""
    if not (python and pyc and pyver):
        return ()
    from imagebuilder.errors import Unavailable
    from imagebuilder.oci.baseroot import python_command

    cmd = python_command(base, python, pyver)
    if cmd is None:  # the layer keys already say ".pyc": never write layers without them
        raise Unavailable(
            f"the base's {python} ran on this machine before, but does not start now",
            "remove ~/.imgbuild/cache/base-root (or $IMGBUILD_CACHE_DIR/base-root) and rerun",
        )
    return cmd


def _build_layer(
    g: LayerGroup, key: str, staged, store, comp: Compression, epoch: int, threads: int
):
    members = [staged[m.ident] for m in g.members]
    entries = [entry_for(s.root_of(f), f, PREFIX) for s in members for f in s.files]
    out, tmp = layerindex.temp_blob(store)
    try:
        with out:
            blob = write_layer(entries, out, comp, epoch, threads)
        kill_point("bake.layer")  # testhooks: a layer blob complete in a temp file
        rec = layerindex.LayerRecord(
            key=key,
            blob=blob,
            members=tuple(
                f"{s.package.kind}/{s.package.name}/{s.package.version}/{s.package.sha256}"
                for s in members
            ),
            paths=tuple(sorted({f for s in members for f in s.files})),
            activation=tuple(a for s in members for a in s.activation),
            link_scripts=tuple(s.package.label for s in members if s.link_scripts),
        )
        return layerindex.put(store, rec, tmp)
    finally:
        tmp.unlink(missing_ok=True)


def _check_files(groups, records, staged, store) -> None:
    """A path installed by two packages is an error unless both files are identical (read
    from staging, or from the stored layer blob when the layer was known)."""
    files: dict[str, list[str]] = {}
    known: dict[str, layerindex.LayerRecord] = {}
    for g in groups:
        rec = records[g.name]
        if all(m.ident in staged for m in g.members):
            for m in g.members:
                files[m.ident] = list(staged[m.ident].files)
        elif len(g.members) == 1:
            files[g.members[0].ident] = list(rec.paths)
            known[g.members[0].ident] = rec
        else:  # a known bucket: its packages' paths were checked against each other when built
            files[g.name] = list(rec.paths)
            known[g.name] = rec

    def content(path: str, who: str) -> tuple | None:
        if who in staged:
            p = staged[who].root_of(path) / path
            return ("link", os.readlink(p)) if p.is_symlink() else ("file", p.read_bytes())
        rec = known[who]
        src = layerindex.StoreBlob(store, rec.blob.digest)
        return member_content(src, rec.blob.media_type, f"{PREFIX.strip('/')}/{path}")

    def same(path: str, a: str, b: str) -> bool:
        try:
            ca = content(path, a)
            return ca is not None and ca == content(path, b)
        except OSError:
            return False

    check_collisions(files, same)


def _activation_env(records) -> dict[str, str]:
    """What activate.d scripts would export, applied in conda's order (sorted script names)."""
    items = sorted((a for r in records for a in r.activation), key=lambda a: (a[0], a[1]))
    out: dict[str, str] = {}
    for _script, var, value in items:
        out[var] = value
    return out


def _config_env(
    env: ResolvedEnv, base: Base, activation: dict[str, str], venv: bool = False
) -> dict[str, str]:
    base_env = dict(
        e.split("=", 1) for e in (base.config.get("config") or {}).get("Env") or [] if "=" in e
    )
    out = {k: v for k, v in activation.items() if k not in ("PATH", "CONDA_PREFIX")}
    out["PATH"] = f"{PREFIX}/bin:{base_env.get('PATH', DEFAULT_PATH)}"
    out["CONDA_PREFIX"] = PREFIX  # CONTRACT.md's config Env, for venv images too
    if venv:
        out["VIRTUAL_ENV"] = PREFIX
    out["IMGBUILD_ENV_ID"] = env.short_id
    return dict(sorted(out.items()))


def _labels(env: ResolvedEnv, base: Base, epoch: int) -> dict[str, str]:
    from imagebuilder.oci.image import iso_time

    labels = {
        f"{LABEL}.req_id": env.req_id,
        f"{LABEL}.full_id": env.full_id,
        f"{LABEL}.env_name": env.name,
        "org.opencontainers.image.created": iso_time(epoch),
    }
    if not base.is_scratch:
        labels["org.opencontainers.image.base.name"] = base.name
        labels["org.opencontainers.image.base.digest"] = base.digest or ""
    return labels


def _meta_layer(
    env: ResolvedEnv, env_vars: dict, store, comp: Compression, epoch: int, venv: list[Entry]
) -> Layer:
    """The env's own small last layer: imgbuild-env.json (ids and package identities, no
    timestamps), the conda-meta/history marker, an activate script with the config Env, and
    for a venv on the base's python its pyvenv.cfg and bin/python links."""
    desc = {
        "format": 1,
        "req_id": env.req_id,
        "full_id": env.full_id,
        "env_name": env.name,
        "arch": env.arch,
        "prefix": PREFIX,
        "spec": env.spec.canonical(),
        "packages": [p.identity for p in env.packages],
    }
    activate = "".join(f"export {k}='{v}'\n" for k, v in env_vars.items())
    p = PREFIX.strip("/")
    entries = [
        Entry(f"{p}/imgbuild-env.json", "file", data=(canonical_json(desc) + "\n").encode()),
        # conda-meta/history marks a conda env (conda, Metaflow); a venv has pyvenv.cfg instead
        *([] if venv else [Entry(f"{p}/conda-meta/history", "file", data=b"")]),
        Entry(f"{p}/etc/imgbuild/activate.sh", "file", data=activate.encode()),
        *venv,
    ]
    # Known from an earlier bake (layer index): no tar, no compression on a re-push.
    key = layerindex.generated_key(entries, comp, epoch)
    rec = layerindex.get(store, key)
    if rec is None:
        out, tmp = layerindex.temp_blob(store)
        try:
            with out:
                blob = write_layer(entries, out, comp, epoch)
            # members: the env's packages, so gc keeps this record exactly while it keeps them
            members = tuple(
                sorted(f"{x.kind}/{x.name}/{x.version}/{x.sha256}" for x in env.packages)
            )
            rec = layerindex.put(store, layerindex.LayerRecord(key, blob, members), tmp)
        finally:
            tmp.unlink(missing_ok=True)
    blob = rec.blob
    return Layer(
        Descriptor(blob.media_type, blob.digest, blob.size),
        blob.diff_id,
        layerindex.StoreBlob(store, blob.digest),
        "env metadata",
    )


def _link_script_warning(records) -> tuple[str, ...]:
    names = sorted({n for r in records for n in r.link_scripts})
    if not names:
        return ()
    return (
        "link scripts were not run (images are built without running package code): "
        + ", ".join(names),
    )
