"""Helpers for the Metaflow plugin tests: our own channel and index (stoppable), flows and
the imgbuild CLI run as subprocesses in a clean environment, the rig's S3 as a datastore."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from clirunner import Result, clean_environ, clip, run_checked  # tests/ (on sys.path)
from local_sources import ServedSources, serve_channel_and_index

ROOT = Path(__file__).resolve().parents[2]
FLOWS = Path(__file__).parent / "flows"

# Metaflow's own needs on an S3 datastore (boto3 and what it pulls), with versions that fit
# the rig index's urllib3 2.0.7; downloaded once from PyPI into ci/cache/wheels.
BOTO3 = [
    ("boto3", "boto3-1.34.0-py3-none-any.whl"),
    ("botocore", "botocore-1.34.0-py3-none-any.whl"),
    ("s3transfer", "s3transfer-0.9.0-py3-none-any.whl"),
    ("jmespath", "jmespath-1.0.1-py3-none-any.whl"),
    ("python-dateutil", "python_dateutil-2.8.2-py2.py3-none-any.whl"),
]
# What pip needs to install boto3 + requests in a generic image, from a folder (no index).
PIP_WHEELS = [f for _, f in BOTO3] + [
    "six-1.16.0-py2.py3-none-any.whl",
    "urllib3-2.0.7-py3-none-any.whl",
    "requests-2.31.0-py3-none-any.whl",
    "idna-3.6-py3-none-any.whl",
    "certifi-2023.11.17-py3-none-any.whl",
    "charset_normalizer-3.3.2-py3-none-any.whl",
]

_DROP = (
    "IMGBUILD_", "METAFLOW_", "AWS_", "UV_", "PIP_", "CONDA_", "MAMBA_", "RATTLER_", "XDG_",
    "DOCKER_", "REGISTRY_AUTH_FILE", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "ARGO_",
)  # fmt: skip


@dataclass
class Sources(ServedSources):
    index_dir: Path | None = None
    wheels: Path | None = None  # the wheels pip needs for boto3 + requests, as a folder


def _load(name: str, path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def serve_sources(rig, tmp: Path) -> Sources:
    rig.need("channel_dir", "index_dir")
    sys.path.insert(0, str(ROOT / "ci" / "pypi"))
    fetch = _load("imgb_ci_pypi_fetch", ROOT / "ci" / "pypi" / "fetch.py")
    index = _load("imgb_ci_pypi_index", ROOT / "ci" / "pypi" / "index.py")
    channel = tmp / "channel"
    shutil.copytree(rig.channel_dir, channel, copy_function=os.link)
    ix = index.copy_index(rig.index_dir, tmp / "pypi")
    for project, filename in BOTO3:
        path, meta = fetch.fetch(project, filename)
        index.add_file(ix, path, meta["upload-time"], meta.get("requires-python"), meta["sha256"])
    wheels = tmp / "wheels"
    wheels.mkdir()
    for f in PIP_WHEELS:
        os.link(ix / "files" / f, wheels / f)
    served = serve_channel_and_index(channel, ix)
    return Sources(served.channel_url, served.index_url, served.procs, ix, wheels)


def s3_datastore(rig, prefix: str | None = None) -> dict[str, str]:
    """Env for an S3 datastore on the rig's S3 server, under a fresh prefix."""
    rig.need("s3_endpoint")
    prefix = prefix or f"t/mf-{uuid.uuid4().hex[:8]}"
    return {
        "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{rig.s3_bucket}/{prefix}",
        "METAFLOW_S3_ENDPOINT_URL": rig.s3_endpoint,
        "AWS_ACCESS_KEY_ID": rig.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


class FlowRunner:
    """Flows and the imgbuild CLI as subprocesses, one temp HOME/METAFLOW_HOME and one
    folder of local envs per test module (created envs are reused across its tests)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.home = tmp / "home"
        self.home.mkdir(parents=True, exist_ok=True)

    def environ(self, env: dict | None = None) -> dict[str, str]:
        fixed = {
            "HOME": str(self.home),
            "USERNAME": "tester",
            "METAFLOW_HOME": str(self.tmp / "mfhome"),
            "IMGBUILD_ENVS_DIR": str(self.tmp / "envs"),
            "IMGBUILD_CACHE_DIR": str(self.tmp / "cache"),
            "IMGBUILD_RUNTIME_CACHE": "0",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        return clean_environ(_DROP, fixed, env)

    def _run(self, argv, env, cwd, expect, timeout, what) -> Result:
        return run_checked(
            argv, env=self.environ(env), cwd=cwd, what=what, expect=expect, timeout=timeout
        )

    def workdir(self, name: str, flow: str | None = None, text: str | None = None) -> Path:
        """A folder for one flow run (Metaflow's local datastore goes there)."""
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        if flow is not None:
            shutil.copy(FLOWS / flow, d / flow)
        if text is not None:
            (d / "flow.py").write_text(text)
        return d

    def flow(self, cwd: Path, script: str, *args, env=None, expect=0, timeout=900) -> Result:
        argv = [sys.executable, script, "--no-pylint", "--environment=conda", *map(str, args)]
        return self._run(argv, env, cwd, expect, timeout, f"python {script} {' '.join(args)}")

    def imgbuild(self, *args, env=None, cwd=None, expect=0, timeout=600) -> Result:
        argv = [sys.executable, "-m", "imagebuilder", *map(str, args)]
        return self._run(argv, env, cwd or self.tmp, expect, timeout, f"imgbuild {args}")

    def python(self, code: str, env=None, cwd=None, expect=0, timeout=300) -> Result:
        return self._run([sys.executable, "-c", code], env, cwd or self.tmp, expect, timeout, code)


def task_info(runner: FlowRunner, cwd: Path, pathspec: str, env=None) -> dict:
    """A task's imgbuild metadata and environment_info, read by the Metaflow client."""
    code = (
        "import json; from metaflow import Step, namespace; namespace(None); "
        f"t = Step({pathspec!r}).task; md = t.metadata_dict; "
        "print(json.dumps({'meta': {k: v for k, v in md.items() if k.startswith('imgbuild')}, "
        "'info': t.environment_info, 'code': t.code is not None}))"
    )
    return runner.python(code, env=env, cwd=cwd).json()


def run_id(result: Result) -> str:
    """The run id a `run` printed ("Workflow starting (run-id N)")."""
    import re

    m = re.search(r"run-id (\S+?)\)", result.stdout + result.stderr)
    assert m, f"no run id in:\n{clip(result.stdout + result.stderr)}"
    return m.group(1)
