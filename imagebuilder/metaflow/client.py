"""Past steps through the Metaflow client: which env a step ran in, and its code package.

`env_of_pathspec` is what the ENV grammar's `mf:Flow/Run/Step[/Task]` resolves through
(catalog.find_envs): it reads the task metadata the internal decorator recorded
(imgbuild_req_id, imgbuild_full_id). Metaflow is imported only here and only when asked.
"""

from __future__ import annotations

import os

from imagebuilder.errors import NotFound, Unavailable

FIELDS = ("imgbuild_req_id", "imgbuild_full_id", "imgbuild_image")


def _task(pathspec: str):
    try:
        from metaflow import Step, Task, namespace
        from metaflow.exception import MetaflowException, MetaflowNotFound
    except ImportError:
        raise Unavailable(
            f"mf:{pathspec} needs Metaflow to read the step's metadata",
            "pip install 'imgbuild[metaflow]'",
        ) from None
    namespace(None)
    parts = pathspec.strip("/").split("/")
    try:
        if len(parts) == 4:
            return Task(pathspec)
        if len(parts) == 3:
            task = Step(pathspec).task
            if task is None:
                raise NotFound(f"step {pathspec} has no task", "did the step run?")
            return task
    except MetaflowNotFound as e:
        raise NotFound(
            f"no Metaflow step {pathspec}: {e}",
            "check the pathspec (Flow/Run/Step) and the metadata provider "
            "(METAFLOW_DEFAULT_METADATA, or run from the folder that holds .metaflow)",
        ) from None
    except MetaflowException as e:
        raise Unavailable(f"cannot read Metaflow metadata for {pathspec}: {e}") from None
    raise NotFound(f"bad pathspec {pathspec!r}", "use Flow/Run/Step or Flow/Run/Step/Task")


def env_of_pathspec(pathspec: str) -> tuple[str, str]:
    """(req_id, full_id) of the env the step (or task) ran in."""
    meta = _task(pathspec).metadata_dict
    req_id, full_id = meta.get("imgbuild_req_id"), meta.get("imgbuild_full_id")
    if not (req_id and full_id):
        raise NotFound(
            f"step {pathspec} did not run in an imgbuild environment (no imgbuild_full_id in "
            "its task metadata)",
            "it must have run with --environment=conda and @conda/@pypi/@named_env",
        )
    return req_id, full_id


def client_info(metadata: dict) -> dict:
    """What `Task.environment_info` returns for a task that ran in an imgbuild env."""
    from imagebuilder.ids import env_name

    req_id, full_id = metadata.get("imgbuild_req_id"), metadata.get("imgbuild_full_id")
    if not (req_id and full_id):
        return {}
    info = {
        "type": "imgbuild",
        "req_id": req_id,
        "full_id": full_id,
        "env_name": env_name(req_id, full_id),
    }
    if metadata.get("imgbuild_image"):
        info["image"] = metadata["imgbuild_image"]
    return info


def pathspec_ref(text: str) -> str:
    """`Flow/Run/Step[/Task]` or `mf:...` as the ENV grammar's mf: form (checked)."""
    from imagebuilder.errors import UsageError
    from imagebuilder.ids import PathspecRef, parse_env_ref

    ref = text if text.startswith("mf:") else f"mf:{text}"
    if not isinstance(parse_env_ref(ref), PathspecRef):
        raise UsageError(f"{text!r} is not a pathspec", "use Flow/Run/Step or Flow/Run/Step/Task")
    return ref


ENV_IN_DIR = ".imgbuild-env"


def prepare_into_dir(into_dir: str, force: bool) -> str:
    """Check DIR is new or empty (--force: emptied) and return where its env goes."""
    import shutil

    from imagebuilder.errors import BadInput

    path = os.path.abspath(into_dir)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise BadInput(f"--into-dir {into_dir} is not a folder")
        if os.listdir(path):
            if not force:
                raise BadInput(
                    f"--into-dir {into_dir} is not empty",
                    "give a new folder, or --force to empty it",
                )
            shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    return os.path.join(path, ENV_IN_DIR)


def fetch_code_package(pathspec: str, into_dir: str) -> str:
    """Extract the code package of the step's task into into_dir (for debugging it locally)."""
    task = _task(pathspec)
    code = task.code
    if code is None:
        raise NotFound(
            f"step {pathspec} has no code package",
            "code packages are saved for runs on a remote datastore (e.g. S3)",
        )
    os.makedirs(into_dir, exist_ok=True)
    tar = code.tarball
    _safe_extract(tar, into_dir)
    return into_dir


def _safe_extract(tar, dest: str) -> None:
    """Plain files and folders only, never outside dest (the "data" filter where Python has it)."""
    root = os.path.realpath(dest)
    members = []
    for m in tar.getmembers():
        target = os.path.realpath(os.path.join(root, m.name))
        if not (target == root or target.startswith(root + os.sep)):
            raise Unavailable(f"refusing code package member {m.name!r}: outside {dest}")
        if m.isfile() or m.isdir():
            members.append(m)
    try:
        tar.extractall(dest, members=members, filter="data")
    except TypeError:  # Python without extraction filters
        tar.extractall(dest, members=members)
