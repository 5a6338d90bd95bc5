"""A flow run on this machine with `--environment=conda run`: every step hydrated in place and
run on its own env's python; what it ran in is recorded and can be rebuilt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from mfhelp import FlowRunner, Result, run_id, serve_sources, task_info

pytestmark = pytest.mark.slow
ALIAS = "mf-test/tools:v1"


@dataclass(frozen=True)
class Local:
    flows: FlowRunner
    work: Path
    env: dict
    run: Result  # the first run
    made: dict  # `imgbuild resolve --alias` of the end step's env
    bare_mid: dict  # `environment resolve mid --skip-metaflow-deps --json`


@pytest.fixture(scope="module")
def local(rig, shared) -> Local:
    """The three-step flow run once per session, locally, against a local store (the alias
    made beforehand); the channel and index are stopped afterwards."""
    flows = FlowRunner(shared.dir("local"))
    work = flows.tmp / "work"
    store = flows.tmp / "store"

    def compute():
        sources = serve_sources(rig, flows.tmp / "sources")
        try:
            flows.workdir("work", flow="three_step.py")
            env = _env(store, sources)
            made = flows.imgbuild(
                "resolve", "--conda", "packaging", "--pypi", "requests", "--alias", ALIAS,
                "--json", env=env,
            ).json()  # fmt: skip
            r = flows.flow(work, "three_step.py", "run", env=env)
            bare = flows.flow(
                work, "three_step.py", "environment", "resolve", "mid", "--skip-metaflow-deps",
                "--json", env=env,
            ).json()["steps"]["mid"]  # fmt: skip
        finally:
            sources.stop()
        return {"env": env, "run": r.__dict__, "made": made, "bare_mid": bare}

    d = shared.once("local", compute)
    run = Result(**{**d["run"], "args": tuple(d["run"]["args"])})
    return Local(flows, work, d["env"], run, d["made"], d["bare_mid"])


def _env(store, sources) -> dict:
    return {
        "METAFLOW_IMGBUILD_STORE": str(store),
        "METAFLOW_IMGBUILD_CHANNELS": sources.channel_url,
        "METAFLOW_IMGBUILD_INDEX_URL": sources.index_url,
        # local runs keep their code package too, so Task.environment_info can be read
        "METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE": "1",
    }


def test_each_step_runs_in_its_own_env(local):
    out = local.run.stdout + local.run.stderr
    for marker in ("start ok", "mid ok", "end ok"):
        assert marker in out, out[-3000:]
    pythons = {
        line.split(" ok ", 1)[1].split()[0]
        for line in out.splitlines()
        if " ok /" in line and line.split(" ok ", 1)[0].split()[-1] in ("start", "mid", "end")
    }
    assert len(pythons) == 3, pythons  # three envs, three interpreters
    assert "Resolving 2 environments for 2 steps" in local.run.stderr  # end's is the alias's


def test_metadata_names_the_env_and_imgbuild_rebuilds_it(local, tmp_path):
    flows, work, env = local.flows, local.work, local.env
    rid = run_id(local.run)
    infos = {s: task_info(flows, work, f"ThreeStepFlow/{rid}/{s}", env) for s in ("start", "end")}
    for info in infos.values():
        meta = info["meta"]
        assert len(meta["imgbuild_req_id"]) == len(meta["imgbuild_full_id"]) == 64, meta
        assert "imgbuild_image" not in meta  # hydrated, not baked
        assert info["code"], "the run kept its code package"
        assert info["info"]["full_id"] == meta["imgbuild_full_id"], info
        assert info["info"]["env_name"].startswith("metaflow_"), info
    assert infos["end"]["meta"]["imgbuild_full_id"] == local.made["full_id"]  # the alias's

    shown = flows.imgbuild("show", f"mf:ThreeStepFlow/{rid}/start", "--json", env=env, cwd=work)
    assert shown.json()["full_id"] == infos["start"]["meta"]["imgbuild_full_id"]

    debug = tmp_path / "debug"
    created = flows.imgbuild(
        "create", "--pathspec", f"ThreeStepFlow/{rid}/start", "--into-dir", debug, "--json",
        env=env, cwd=work,
    ).json()  # fmt: skip
    assert created["full_id"] == infos["start"]["meta"]["imgbuild_full_id"]
    assert created["prefix"] == str(debug / ".imgbuild-env")
    assert (debug / "three_step.py").is_file()  # the step's code, next to its env
    check = "import tinyfoo, imgb_hello; assert tinyfoo.__version__ == '1.1'"
    subprocess.run([created["python"], "-c", check], check=True)


def test_rerun_reuses_resolution_and_envs(local):
    r = local.flows.flow(local.work, "three_step.py", "run", env=local.env)
    assert r.stderr.count("reusing it") == 2, r.stderr[-3000:]
    assert r.stderr.count("already holds") == 3, r.stderr[-3000:]


def test_environment_show_and_resolve_cli(local):
    flows, work, env = local.flows, local.work, local.env
    shown = flows.flow(work, "three_step.py", "environment", "show", "--json", env=env).json()
    steps = shown["steps"]
    assert set(steps) == {"start", "mid", "end"}
    assert steps["end"]["full_id"] == local.made["full_id"]
    assert all(s["state"] == "resolved" and s["arch"] for s in steps.values())
    assert sorted(steps["start"]["decorators"]) == ["@conda on step start", "@pypi on step start"]

    one = flows.flow(work, "three_step.py", "environment", "resolve", "mid", "--json", env=env)
    assert set(one.json()["steps"]) == {"mid"}
    assert one.json()["steps"]["mid"]["full_id"] == steps["mid"]["full_id"]
    # without Metaflow's own needs (requests): another request, another env
    assert local.bare_mid["req_id"] != steps["mid"]["req_id"]
    assert local.bare_mid["full_id"] != steps["mid"]["full_id"]

    human = flows.flow(work, "three_step.py", "environment", "show", env=env).stdout
    assert human.splitlines()[0].split()[0] == "start"  # graph order


def test_metaflow_environment_command_maps_to_imgbuild(local):
    ref = f"{local.made['req_id']}:{local.made['full_id']}"
    p = subprocess.run(
        [sys.executable, "-c", "import sys; from metaflow.cmd.main_cli import start; "
         "sys.argv = ['metaflow', 'environment', 'show', sys.argv[1], '--json']; start()", ref],
        env=local.flows.environ(local.env), cwd=local.work, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    body = p.stdout[p.stdout.index("{") :]
    assert json.loads(body)["full_id"] == local.made["full_id"]


def test_env_prefixes_live_under_the_envs_dir(local):
    envs = sorted(os.listdir(local.flows.tmp / "envs"))
    assert len([e for e in envs if e.startswith("metaflow_")]) == 3, envs
