"""A flow run on this machine with `--environment=conda run`: every step hydrated in place and
run on its own env's python; what it ran in is recorded and can be rebuilt."""

from __future__ import annotations

import json
import os

import pytest
from mfhelp import run_id, task_info

pytestmark = pytest.mark.slow
ALIAS = "mf-test/tools:v1"


@pytest.fixture(scope="module")
def local(rig, sources, flows):
    """The three-step flow run once, locally, against a local store; the alias made before."""
    work = flows.workdir("local", flow="three_step.py")
    env = {
        "METAFLOW_IMGBUILD_STORE": str(flows.tmp / "store"),
        "METAFLOW_IMGBUILD_CHANNELS": sources.channel_url,
        "METAFLOW_IMGBUILD_INDEX_URL": sources.index_url,
        # local runs keep their code package too, so Task.environment_info can be read
        "METAFLOW_FEAT_ALWAYS_UPLOAD_CODE_PACKAGE": "1",
    }
    made = flows.imgbuild(
        "resolve", "--conda", "packaging", "--pypi", "requests", "--alias", ALIAS, "--json",
        env=env,
    ).json()  # fmt: skip
    r = flows.flow(work, "three_step.py", "run", env=env)
    return work, env, r, made


def test_each_step_runs_in_its_own_env(local):
    _, _, r, _ = local
    out = r.stdout + r.stderr
    for marker in ("start ok", "mid ok", "end ok"):
        assert marker in out, out[-3000:]
    pythons = {
        line.split(" ok ", 1)[1].split()[0]
        for line in out.splitlines()
        if " ok /" in line and line.split(" ok ", 1)[0].split()[-1] in ("start", "mid", "end")
    }
    assert len(pythons) == 3, pythons  # three envs, three interpreters
    assert "Resolving 2 environments for 2 steps" in r.stderr  # end's env is the alias's


def test_metadata_names_the_env_and_imgbuild_rebuilds_it(local, flows, tmp_path):
    work, env, r, made = local
    rid = run_id(r)
    infos = {s: task_info(flows, work, f"ThreeStepFlow/{rid}/{s}", env) for s in ("start", "end")}
    for info in infos.values():
        meta = info["meta"]
        assert len(meta["imgbuild_req_id"]) == len(meta["imgbuild_full_id"]) == 64, meta
        assert "imgbuild_image" not in meta  # hydrated, not baked
        assert info["code"], "the run kept its code package"
        assert info["info"]["full_id"] == meta["imgbuild_full_id"], info
        assert info["info"]["env_name"].startswith("metaflow_"), info
    assert infos["end"]["meta"]["imgbuild_full_id"] == made["full_id"]  # the alias's env

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
    import subprocess

    subprocess.run(
        [created["python"], "-c", "import tinyfoo, imgb_hello; assert tinyfoo.__version__=='1.1'"],
        check=True,
    )


def test_rerun_reuses_resolution_and_envs(local, flows):
    work, env, _, _ = local
    r = flows.flow(work, "three_step.py", "run", env=env)
    assert r.stderr.count("reusing it") == 2, r.stderr[-3000:]
    assert r.stderr.count("already holds") == 3, r.stderr[-3000:]


def test_environment_show_and_resolve_cli(local, flows):
    work, env, r, made = local
    shown = flows.flow(work, "three_step.py", "environment", "show", "--json", env=env).json()
    steps = shown["steps"]
    assert set(steps) == {"start", "mid", "end"}
    assert steps["end"]["full_id"] == made["full_id"]
    assert all(s["state"] == "resolved" and s["arch"] for s in steps.values())
    assert sorted(steps["start"]["decorators"]) == ["@conda on step start", "@pypi on step start"]

    one = flows.flow(work, "three_step.py", "environment", "resolve", "mid", "--json", env=env)
    assert set(one.json()["steps"]) == {"mid"}
    assert one.json()["steps"]["mid"]["full_id"] == steps["mid"]["full_id"]

    # without Metaflow's own needs: another request (req_id), nothing else changes
    bare = flows.flow(
        work, "three_step.py", "environment", "resolve", "mid", "--skip-metaflow-deps", "--json",
        env=env,
    ).json()["steps"]["mid"]  # fmt: skip
    assert bare["req_id"] != steps["mid"]["req_id"]

    human = flows.flow(work, "three_step.py", "environment", "show", env=env).stdout
    assert human.splitlines()[0].split()[0] == "start"  # graph order


def test_metaflow_environment_command_maps_to_imgbuild(local, flows):
    work, env, _, made = local
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-c", "import sys; from metaflow.cmd.main_cli import start; "
         "sys.argv = ['metaflow', 'environment', 'show', sys.argv[1], '--json']; start()",
         f"{made['req_id']}:{made['full_id']}"],
        env=flows.environ(env), cwd=work, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    body = p.stdout[p.stdout.index("{") :]
    assert json.loads(body)["full_id"] == made["full_id"]


def test_env_prefixes_live_under_the_envs_dir(local, flows):
    envs = sorted(os.listdir(flows.tmp / "envs"))
    assert len([e for e in envs if e.startswith("metaflow_")]) == 3, envs
