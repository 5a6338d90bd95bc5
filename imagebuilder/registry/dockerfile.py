"""`imgbuild dockerfile ENV`: the env as a Dockerfile (template dockerfiles/env.Dockerfile).

A build stage installs imgbuild from wheels in the build context and runs
`imgbuild create ENV --prefix /opt/imgbuild/env` against the store copy in the context; the
final stage copies the prefix onto the base. No network is needed during the build, so it
works in locked-down BuildKit/kaniko/podman pipelines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from imagebuilder.errors import BadInput, NotFound, Unavailable

PREFIX = "/opt/imgbuild/env"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TEMPLATE = Path(__file__).resolve().parents[2] / "dockerfiles" / "env.Dockerfile"


def _env(env_ref: str, cfg):
    from imagebuilder.catalog import find_env
    from imagebuilder.store import open_store

    store = open_store(cfg.store, cfg)
    return store, find_env(store, env_ref)


def render(env_ref: str, base: str, cfg, builder: str | None = None) -> str:
    _, env = _env(env_ref, cfg)
    return render_env(env, base, builder)


def render_env(env, base: str, builder: str | None = None) -> str:
    from imagebuilder.ids import short
    from imagebuilder.platforms import oci_platform

    oci_platform(env.arch)  # Linux only: a clear error for osx envs
    if not TEMPLATE.is_file():
        raise NotFound(f"Dockerfile template {TEMPLATE} is missing from this installation")
    values = {
        "ENV_REF": env.name,
        "ENV_NAME": env.name,
        "ENV_ID": f"{short(env.req_id)}:{short(env.full_id)}",
        "REQ_ID": env.req_id,
        "FULL_ID": env.full_id,
        "REQ_ID16": short(env.req_id),
        "FULL_ID16": short(env.full_id),
        "ARCH": env.arch,
        "BASE_IMAGE": base,
        "BUILDER_IMAGE": builder or base,
        "BASE_PATH": DEFAULT_PATH,
        # a venv on the base's python also gets VIRTUAL_ENV (as bake's config Env)
        "VENV_VAR": "VIRTUAL_ENV=/opt/imgbuild/env " if env.is_venv else "",
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text


def write_context(env_ref: str, base: str, dest: Path, cfg, builder: str | None = None) -> Path:
    """Dockerfile + store/ (env record, package files) + wheels/ (imgbuild and its deps)."""
    store, env = _env(env_ref, cfg)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "Dockerfile").write_text(render_env(env, base, builder))
    sub = dest / "store"
    keys = [env.key] + [p.store_key for p in env.packages]
    for key in keys:
        target = sub / key
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not store.exists(key):
            raise NotFound(
                f"{key} is not in the store {store.url}",
                f"cache the env first: imgbuild get {env_ref} or imgbuild resolve",
            )
        store.get_file(key, target)
    _wheels(dest / "wheels")
    return dest


# What `imgbuild create` imports from a local store (the build context holds a store folder):
# the rest of imgbuild's dependencies (uv, boto3, docker, cyclonedx, rich, ...) would triple
# the context and the build time for nothing. Names as in pyproject.toml.
CREATE_DEPS = (
    "py-rattler",
    "click",
    "installer",
    "zstandard",
    "jsonschema",
    "PyYAML",
    "packaging",
    "requests",
)


def _wheels(dest: Path) -> None:
    """imgbuild (from this installation's source, without deps) and what `create` needs, as
    wheels; installed with --no-deps in the build. pip's cache makes this local after once."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise BadInput(
            "this imgbuild is not installed from a source tree; cannot build its wheel",
            "download the wheels yourself: pip download imgbuild -d CONTEXT/wheels",
        )
    dest.mkdir(parents=True, exist_ok=True)
    from imagebuilder.config import read_toml

    wanted = {n.lower() for n in CREATE_DEPS}
    reqs = [
        r
        for r in read_toml(root / "pyproject.toml")["project"]["dependencies"]
        if _req_name(r) in wanted
    ]
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "-w"]
    for args in ([str(dest), "--no-deps", str(root)], [str(dest), *reqs]):
        p = subprocess.run([*pip, *args], capture_output=True, text=True)
        if p.returncode != 0:
            raise Unavailable(
                f"pip wheel failed ({p.returncode}): {p.stderr.strip().splitlines()[-1:]}",
                "check network access to your package index",
            )


def _req_name(req: str) -> str:
    import re

    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower()
