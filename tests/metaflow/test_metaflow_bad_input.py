"""Bad input stops a flow before anything launches, with one clear message naming the step and
the decorator: conflicting decorators, an unknown alias, a named env with packages, a remote
step whose env is for another arch, a remote run without a store its tasks can read."""

from __future__ import annotations

import uuid

import pytest
from mfhelp import FlowRunner, s3_datastore

HEAD = """\
from metaflow import FlowSpec, step, conda, pypi, named_env, conda_base, pypi_base, kubernetes
"""


def flow(decorators: str = "", flow_decorators: str = "") -> str:
    """A two-step flow; `decorators` (one per line) go on start, `flow_decorators` on the class."""
    step_decos = "".join(f"    {d}\n" for d in decorators.splitlines())
    return (
        HEAD
        + flow_decorators
        + "\nclass BadFlow(FlowSpec):\n"
        + step_decos
        + "    @step\n    def start(self):\n        self.next(self.end)\n\n"
        + "    @step\n    def end(self):\n        pass\n\n\n"
        + 'if __name__ == "__main__":\n    BadFlow()\n'
    )


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> FlowRunner:
    return FlowRunner(tmp_path_factory.mktemp("bad"))


def fails(runner: FlowRunner, name: str, text: str, *args, env=None, words=()):
    work = runner.workdir(name, text=text)
    store = runner.tmp / f"store-{name}"
    env = {"METAFLOW_IMGBUILD_STORE": str(store), **(env or {})}
    r = runner.flow(work, "flow.py", *(args or ("run",)), env=env, expect=None)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    for w in words:
        assert w in out, f"{w!r} not in:\n{out[-3000:]}"
    assert "Workflow starting" not in out  # nothing launched
    assert not (work / ".metaflow" / "BadFlow").exists() or not any(
        p.name.isdigit() for p in (work / ".metaflow" / "BadFlow").iterdir()
    )
    return r


def test_conflicting_decorators_on_a_step(runner):
    fails(
        runner,
        "conflict-step",
        flow(decorators='@conda(python="3.10")\n@pypi(python="3.11")'),
        words=("step start", "@conda on step start", "@pypi on step start", "python is set twice"),
    )


def test_conflicting_flow_level_values(runner):
    fails(
        runner,
        "conflict-flow",
        flow(flow_decorators='@conda_base(python="3.10")\n@pypi_base(python="3.11")'),
        words=("flow BadFlow", "@conda_base", "@pypi_base", "python is set twice"),
    )


def test_named_env_plus_libraries(runner):
    fails(
        runner,
        "named-plus",
        flow(decorators='@named_env(name="team/x")\n@conda(libraries={"six": ""})'),
        words=("step start", "@named_env on step start", "@conda on step start", "cannot be"),
    )


def test_unknown_alias(runner):
    r = fails(
        runner,
        "unknown-alias",
        flow(decorators='@named_env(name="team/nope:v1")'),
        words=("step start", "@named_env on step start", "team/nope:v1"),
    )
    assert "imgbuild resolve" in r.stdout + r.stderr  # the hint says how to make it


def test_remote_step_without_a_store_it_can_read(runner, rig):
    out = fails(
        runner,
        "no-store",
        flow(decorators='@kubernetes\n@conda(libraries={"six": ""})'),
        "argo-workflows",
        "create",
        "--only-json",
        env=s3_datastore(rig),  # no METAFLOW_IMGBUILD_REGISTRY: tasks would hydrate at start
        words=("step start", "@kubernetes", "@conda on step start", "local folder"),
    )
    assert out.stdout.strip() == ""  # no workflow template printed


def test_remote_step_env_for_another_arch(runner, rig):
    rig.need("channel_url")
    ds = s3_datastore(rig, f"t/mf-arch-{uuid.uuid4().hex[:8]}")
    store = ds["METAFLOW_DATASTORE_SYSROOT_S3"] + "/imgbuild"
    runner.imgbuild(
        "resolve", "--conda", "imgb-cli", "--arch", "osx-arm64", "-c", rig.channel_url,
        "--alias", "team/mac:v1", "--store", store, env=ds,
    )  # fmt: skip
    out = fails(
        runner,
        "arch",
        flow(decorators='@kubernetes\n@named_env(name="team/mac:v1")'),
        "argo-workflows",
        "create",
        "--only-json",
        env={**ds, "METAFLOW_IMGBUILD_STORE": store},
        words=("step start", "@named_env on step start", "linux-64", "osx-arm64", "@kubernetes"),
    )
    assert out.stdout.strip() == ""


def test_decorators_need_the_conda_environment(runner):
    work = runner.workdir("no-env", text=flow(decorators='@conda(libraries={"six": ""})'))
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "flow.py", "--no-pylint", "run"],
        cwd=work,
        env=runner.environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1
    assert "@conda needs --environment=conda" in p.stdout + p.stderr
