"""The environment's pieces without a flow run: base image selection, digest pinning, the
commands a remote task runs (valid inside Metaflow's `bash -c "..."`), the plan's JSON."""

from __future__ import annotations

import json
import shlex
import subprocess

import metaflow  # noqa: F401 - first: Metaflow imports our plugin modules while it loads
import pytest

from imagebuilder.metaflow.bootstrap import remote_commands, remote_executable
from imagebuilder.metaflow.environment import CondaEnvironment
from imagebuilder.metaflow.plan import StepEnv, pinned
from imagebuilder.metaflow.settings import Settings

REQ, FULL = "a" * 64, "b" * 64


def settings(**kw) -> Settings:
    base = dict(
        store="s3://bucket/prefix/imgbuild",
        store_source="test",
        registry="127.0.0.1:5000/envs",
        base_image=None,
        s3_endpoint_url=None,
        skip_metaflow_deps=False,
        datastore_type="s3",
    )
    return Settings(**{**base, **kw})


def environment(**kw) -> CondaEnvironment:
    env = CondaEnvironment(flow=None)
    env._settings = settings(**kw)
    return env


def kubernetes(**attributes):
    from metaflow.plugins.kubernetes.kubernetes_decorator import KubernetesDecorator

    deco = KubernetesDecorator(attributes=attributes or None)
    deco.external_init()
    return deco


def test_a_users_image_is_the_base_then_config_then_metaflows_default():
    assert environment(base_image="cfg/base:1")._base_image(kubernetes(image="mine:2")) == "mine:2"
    assert environment(base_image="cfg/base:1")._base_image(kubernetes()) == "cfg/base:1"
    default = kubernetes()
    assert environment()._base_image(default) == default.attributes["image"]  # python:X.Y
    # decided once: pointing the decorator at the baked image later does not change the base
    default.attributes["image"] = "127.0.0.1:5000/envs@sha256:" + "c" * 64
    assert environment()._base_image(default).startswith("python:")


def test_images_are_pinned_by_digest_only():
    digest = "sha256:" + "d" * 64
    pushed = {"digest": digest, "refs": ["127.0.0.1:5000/envs:bbbbbbbbbbbbbbbb"]}
    assert pinned(pushed, "127.0.0.1:5000/envs") == f"127.0.0.1:5000/envs@{digest}"
    assert pinned({"digest": digest, "refs": []}, "reg.io/a/b") == f"reg.io/a/b@{digest}"


def _bash_c(cmds: list[str]) -> list[str]:
    """What Metaflow does with them: join, then shlex.split('bash -c "%s"')."""
    joined = " && ".join(cmds)
    return shlex.split(f'bash -c "{joined}"')


def test_baked_task_commands():
    se = StepEnv("start", "linux-64", True, f"{REQ}:{FULL}", "s3://b/p", REQ, FULL, "r/e@sha256:x")
    cmds = remote_commands(se)
    assert not any('"' in c for c in cmds)
    assert f"IMGBUILD_MF_FULL_ID={FULL}" in cmds[0] and "IMGBUILD_MF_IMAGE=r/e@sha256:x" in cmds[0]
    assert remote_executable(se) == "/opt/imgbuild/env/bin/python"
    assert not any("imagebuilder.bootstrap" in c for c in cmds)
    assert _bash_c([*cmds, "true"])[:2] == ["bash", "-c"]


def test_hydrate_at_start_commands_keep_the_interpreter_line(tmp_path):
    se = StepEnv("start", "linux-64", True, f"{REQ}:{FULL}", "s3://b/p", REQ, FULL)
    cmds = remote_commands(se)
    assert not any('"' in c for c in cmds)
    boot = next(c for c in cmds if "imagebuilder.bootstrap" in c)
    assert f"python -m imagebuilder.bootstrap {REQ}:{FULL} /tmp/imgbuild/envs/metaflow_" in boot
    assert "--store s3://b/p --arch linux-64" in boot
    assert remote_executable(se) == "$IMGBUILD_PYTHON"
    # the same commands through bash, with a fake bootstrap printing noise then the python
    fake = tmp_path / "imagebuilder"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "bootstrap.py").write_text("print('noise'); print('/env/bin/python')\n")
    script = " && ".join(
        c for c in cmds if not c.startswith(("mflog", "flush_mflogs", "export PATH"))
    )
    p = subprocess.run(
        ["bash", "-c", f"cd {tmp_path} && {script} && echo PY=$IMGBUILD_PYTHON"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "PY=/env/bin/python" in p.stdout


def test_install_deps_are_skipped_when_the_env_has_them():
    cmd = environment()._get_install_dependencies_cmd("s3")
    assert cmd.startswith("{ python -c 'import boto3, requests' 2>/dev/null || if ")
    assert cmd.endswith("; }")
    p = subprocess.run(["bash", "-c", cmd.replace("pip install", "false")], capture_output=True)
    assert p.returncode == 0  # this python has boto3 and requests: nothing to install


def test_code_package_is_unpacked_with_python():
    meta = json.dumps({"version": 0, "archive_format": "tgz", "mfcontent_version": 1})
    cmds = environment().get_package_commands("s3://b/k", "s3", meta)
    assert "python -m tarfile -e job.tar ." in cmds
    assert not any("tar -xzf" in c for c in cmds)


def test_step_env_json_round_trip():
    se = StepEnv("s", "linux-64", False, f"{REQ}:{FULL}", "/store", REQ, FULL, python="/p/bin/py")
    assert StepEnv.from_json(json.loads(json.dumps(se.to_json()))) == se
    assert se.env_name == f"metaflow_{REQ[:16]}_{FULL[:16]}"


@pytest.mark.parametrize("value", ["x'y", 'x"y'])
def test_values_that_cannot_be_quoted_are_refused(value):
    se = StepEnv("s", "linux-64", True, value, "s3://b/p")
    with pytest.raises(ValueError):
        remote_commands(se)


def test_the_local_default_store_is_next_to_the_local_datastore(tmp_path, monkeypatch):
    from imagebuilder.metaflow.settings import default_store

    (tmp_path / ".metaflow").mkdir()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # found upwards, as Metaflow finds .metaflow
    assert default_store("local") == str(tmp_path / ".metaflow" / "imgbuild")
