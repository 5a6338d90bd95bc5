"""Where the plugin keeps things: the store, the registry, the base image, local envs.

imgbuild's own configuration (flag > IMGBUILD_<KEY> > METAFLOW_IMGBUILD_<KEY> > imgbuild.toml
> ~/.config/imgbuild/config.toml > Metaflow config > default, CONTRACT.md) with the plugin's
defaults where the user set nothing:

- store: `<METAFLOW_DATASTORE_SYSROOT_S3>/imgbuild` for an S3 datastore, else
  `<.metaflow>/imgbuild` next to the local datastore;
- S3 endpoint: imgbuild's `s3_endpoint_url`, else Metaflow's METAFLOW_S3_ENDPOINT_URL;
- base image for baked steps: a user's `image=` on @kubernetes/@batch, else imgbuild's
  `base_image` when set, else the image Metaflow would have used (selection in plan.py).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    store: str
    store_source: str
    registry: str | None
    base_image: str | None  # None: not configured (the plugin picks per step)
    s3_endpoint_url: str | None
    skip_metaflow_deps: bool
    datastore_type: str

    @property
    def store_is_remote(self) -> bool:
        return self.store.startswith("s3://")


def skip_metaflow_deps() -> bool:
    for name in ("IMGBUILD_SKIP_METAFLOW_DEPS", "METAFLOW_IMGBUILD_SKIP_METAFLOW_DEPS"):
        if name in os.environ:
            return os.environ[name].strip().lower() in TRUE
    try:
        from metaflow import metaflow_config

        value = getattr(metaflow_config, "IMGBUILD_SKIP_METAFLOW_DEPS", False)
    except ImportError:
        return False
    return str(value).strip().lower() in TRUE


def load(datastore_type: str, echo=None) -> Settings:
    from imagebuilder.config import load_config

    cfg = load_config()
    store, source = cfg.store, cfg.source("store")
    if source == "default":
        store, source = default_store(datastore_type, echo), "Metaflow datastore"
    endpoint = cfg.get("s3_endpoint_url")
    if not endpoint:
        from metaflow.metaflow_config import S3_ENDPOINT_URL

        endpoint = S3_ENDPOINT_URL or None
    base = cfg.get("base_image")
    if cfg.source("base_image") == "default":
        base = None
    return Settings(
        store=store,
        store_source=source,
        registry=cfg.get("registry") or None,
        base_image=base,
        s3_endpoint_url=endpoint,
        skip_metaflow_deps=skip_metaflow_deps(),
        datastore_type=datastore_type,
    )


def default_store(datastore_type: str, echo=None) -> str:
    if datastore_type == "s3":
        from metaflow.metaflow_config import DATASTORE_SYSROOT_S3

        if DATASTORE_SYSROOT_S3:
            return DATASTORE_SYSROOT_S3.rstrip("/") + "/imgbuild"
    from metaflow.plugins.datastores.local_storage import LocalStorage

    root = LocalStorage.get_datastore_root_from_config(echo or (lambda *a, **k: None))
    return os.path.join(root, "imgbuild")


def implicit_pypi(datastore_type: str, skip: bool) -> tuple[str, ...]:
    """What Metaflow itself needs in a task's env (its get_pinned_conda_libs, as PyPI specs):
    requests always, boto3 for an S3 datastore (the task downloads its code package with it)."""
    if skip:
        return ()
    from metaflow.metaflow_config import get_pinned_conda_libs

    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    try:
        pins = get_pinned_conda_libs(py, datastore_type)
    except Exception:  # an unknown datastore: Metaflow's own message comes later
        pins = {"requests": ">=2.21.0"}
    return tuple(f"{name}{version}" for name, version in sorted(pins.items()))


def envs_dir() -> str:
    """Where local steps' envs are created: `imgbuild create --name`'s folder."""
    env = os.environ.get("IMGBUILD_ENVS_DIR")
    return (
        os.path.expanduser(env)
        if env
        else os.path.join(os.path.expanduser("~"), ".imgbuild", "envs")
    )


# Remote tasks without a baked image hydrate here (inside the container).
REMOTE_ENVS_DIR = "/tmp/imgbuild/envs"
