"""Remote steps, deployed to Argo Workflows and Step Functions with an S3 datastore on the rig:
with a registry each step runs on its own baked image (digest-pinned in the template), without
one the task creates its env at start. One scenario per session (conftest.Shared):

1. `imgbuild resolve --alias` the end step's env into the plugin's default store
   (<datastore sysroot>/imgbuild), then `argo-workflows create --only-json` with a registry;
2. `step-functions create --only-json` against a moto server (Batch + SFN endpoints);
3. `argo-workflows create --only-json` without a registry, the task image a generic
   python-base (only Python and pip);
4. the channel and index stopped; the start step's Argo command run in its baked image with
   podman, and (hydrate at start) in the generic image.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from local_sources import free_port, runtime_wheels, wait_http
from mfhelp import FlowRunner, s3_datastore, serve_sources

pytestmark = pytest.mark.slow
ALIAS = "mf-test/remote:v1"
STEPS = ("start", "mid", "end")
ROLE = "arn:aws:iam::123456789012:role/mf-batch"


def _templates(doc: dict) -> dict:
    return {t["name"]: t for t in doc["spec"]["templates"] if "container" in t}


def _moto(flows: FlowRunner) -> tuple[subprocess.Popen, str]:
    """A moto server with a Batch job queue (Fargate compute environment) Metaflow accepts."""
    import boto3

    port = free_port()
    proc = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/")
    kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="k")
    kw["aws_secret_access_key"] = "s"
    ec2, iam, batch = (boto3.client(s, **kw) for s in ("ec2", "iam", "batch"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="mf", Description="mf", VpcId=vpc)["GroupId"]
    iam.create_role(RoleName="mf-batch", AssumeRolePolicyDocument="{}")
    batch.create_compute_environment(
        computeEnvironmentName="mf-ce",
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "FARGATE",
            "maxvCpus": 4,
            "subnets": [subnet],
            "securityGroupIds": [sg],
        },
        serviceRole=ROLE,
    )
    batch.create_job_queue(
        jobQueueName="mf-queue",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "mf-ce"}],
    )
    return proc, url


def _job_images(url: str, state_machine: dict) -> dict:
    import boto3

    batch = boto3.client(
        "batch", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k",
        aws_secret_access_key="s",
    )  # fmt: skip
    out = {}
    for step, state in state_machine["States"].items():
        arn = state.get("Parameters", {}).get("JobDefinition")
        if arn:
            jd = batch.describe_job_definitions(jobDefinitions=[arn])["jobDefinitions"][0]
            out[step] = jd["containerProperties"]["image"]
    return out


def _podman(rig, template: dict, name: str, extra_env: dict, out_dir, mounts=()) -> dict:
    """Run one Argo container template the way a pod would: its env, its command, Argo's
    placeholders filled in, /mnt/out for its output parameter, the host network (S3)."""

    def fill(s: str) -> str:
        return s.replace("{{workflow.name}}", name).replace(
            "{{workflow.creationTimestamp}}", "2024-01-01T00:00:00Z"
        )

    c = template["container"]
    env = {e["name"]: fill(e["value"]) for e in c["env"] if e.get("value") is not None}
    env.update(
        METAFLOW_KUBERNETES_POD_NAME="pod-1",
        METAFLOW_KUBERNETES_POD_ID="pod-1-uid",
        METAFLOW_KUBERNETES_POD_NAMESPACE="default",
        METAFLOW_KUBERNETES_NODE_IP="127.0.0.1",
        METAFLOW_KUBERNETES_SERVICE_ACCOUNT_NAME="default",
        **extra_env,
    )
    cmd = ["podman", "run", "--rm", "--network", "host", "-v", f"{out_dir}:/mnt/out"]
    for m in mounts:
        cmd += ["-v", m]
    for k, v in env.items():
        cmd += ["-e", f"{k}={v}"]
    cmd += [c["image"], *(fill(x) for x in c["command"])]
    p = subprocess.run(
        cmd,
        env={**os.environ, **rig.podman_env()},
        capture_output=True,
        text=True,
        timeout=900,
    )
    return {"returncode": p.returncode, "stdout": p.stdout, "stderr": p.stderr}


@pytest.fixture(scope="module")
def remote(rig, shared) -> dict:
    rig.need("registry", "s3_endpoint", "base_image", "pybase_image", "podman_socket")
    flows = FlowRunner(shared.dir("remote"))

    def compute():
        tag = uuid.uuid4().hex[:8]
        prefix = f"t/mf-remote-{tag}"
        repo = f"{rig.registry}/mf-remote-{tag}"
        sources = serve_sources(rig, flows.tmp / "sources")
        moto, moto_url = _moto(flows)
        work = flows.workdir("work", flow="three_step.py")
        base = {
            **s3_datastore(rig, prefix),
            "METAFLOW_IMGBUILD_CHANNELS": sources.channel_url,
            "METAFLOW_IMGBUILD_INDEX_URL": sources.index_url,
            "METAFLOW_IMGBUILD_BASE_IMAGE": rig.base_image,
            "IMGBUILD_INSECURE_REGISTRIES": rig.registry,
            "IMGB_MF_ALIAS": ALIAS,
        }
        baked_env = {**base, "METAFLOW_IMGBUILD_REGISTRY": repo}
        out: dict = {"repo": repo, "prefix": prefix, "bucket": rig.s3_bucket}
        try:
            # the plugin's default store for this datastore, with the bootstrap runtime (for
            # tasks without an image), from local wheels
            store = f"s3://{rig.s3_bucket}/{prefix}/imgbuild"
            runtime = {
                "IMGBUILD_RUNTIME_CACHE": "1",
                "IMGBUILD_RUNTIME_PYTHONS": "3.11",
                "IMGBUILD_RUNTIME_FIND_LINKS": str(runtime_wheels()),
                "IMGBUILD_RUNTIME_INDEX_URL": sources.index_url,
            }
            out["made"] = flows.imgbuild(
                "resolve", "--conda", "packaging", "--pypi", "requests", "--pypi", "boto3",
                "--alias", ALIAS, "--store", store, "--json", env={**base, **runtime},
            ).json()  # fmt: skip
            argo = flows.flow(
                work, "three_step.py", "argo-workflows", "create", "--only-json", env=baked_env
            )
            out["argo"], out["argo_stderr"] = argo.json(), argo.stderr
            # Everything is resolved and baked now: the other deploys only reuse it, together.
            sfn_env = {
                **baked_env,
                "AWS_ENDPOINT_URL_BATCH": moto_url,
                "AWS_ENDPOINT_URL_SFN": moto_url,
                "METAFLOW_BATCH_JOB_QUEUE": "mf-queue",
                "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": ROLE,
                "METAFLOW_ECS_FARGATE_EXECUTION_ROLE": ROLE,
                "METAFLOW_SFN_IAM_ROLE": ROLE,
            }
            generic = {**base, "METAFLOW_KUBERNETES_CONTAINER_IMAGE": rig.pybase_image, **runtime}
            flows.workdir("work", flow="fetch_at_exec.py")
            jobs = {
                "steps": ("three_step.py", "--with", "kubernetes", "environment", "show",
                          "--json", baked_env),
                "sfn": ("three_step.py", "step-functions", "create", "--only-json", sfn_env),
                "argo_plain": ("three_step.py", "argo-workflows", "create", "--only-json",
                               generic),
                "argo_fetch": ("fetch_at_exec.py", "argo-workflows", "create", "--only-json",
                               baked_env),
            }  # fmt: skip
            with ThreadPoolExecutor(len(jobs)) as pool:
                done = {
                    k: pool.submit(flows.flow, work, *a[:-1], env=a[-1]) for k, a in jobs.items()
                }
                for key, future in done.items():
                    r = future.result()
                    out[key], out[f"{key}_stderr"] = r.json(), r.stderr
            out["steps"] = out["steps"]["steps"]
            out["job_images"] = _job_images(moto_url, out["sfn"])
        finally:
            moto.terminate()
            moto.wait(10)
            sources.stop()
        assert not sources.up
        aws = {k: base[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        aws["AWS_DEFAULT_REGION"] = "us-east-1"
        # Hydrate at task start in a generic image (only Python and pip): Metaflow pip-installs
        # boto3 there (from a folder of wheels: the index is down, and Debian's python needs
        # PIP_BREAK_SYSTEM_PACKAGES), the bootstrap creates the env from the store.
        pip = {"PIP_BREAK_SYSTEM_PACKAGES": "1", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheels"}
        pods = {
            # the baked start step, with no channel and no index anywhere
            "pod_baked": (_templates(out["argo"])["start"], "baked", aws, ()),
            "pod_plain": (
                _templates(out["argo_plain"])["start"],
                "plain",
                {**aws, **pip},
                [f"{sources.wheels}:/wheels:ro"],
            ),
        }
        with ThreadPoolExecutor(len(pods)) as pool:
            done = {}
            for key, (template, name, env, mounts) in pods.items():
                out_dir = flows.tmp / f"mnt-out-{name}"
                out_dir.mkdir()
                done[key] = pool.submit(_podman, rig, template, name, env, out_dir, mounts)
            for key, future in done.items():
                out[key] = future.result()
        return out

    return shared.once("remote", compute)


def _skopeo(rig, image: str) -> dict:
    p = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{image}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **rig.podman_env()},
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_argo_steps_run_on_their_baked_images(remote, rig):
    templates = _templates(remote["argo"])
    images = {}
    for step in STEPS:
        c = templates[step]["container"]
        image = c["image"]
        assert re.fullmatch(re.escape(remote["repo"]) + r"@sha256:[0-9a-f]{64}", image), image
        full_id = remote["steps"][step]["full_id"]
        info = _skopeo(rig, image)
        assert info["Digest"] == image.split("@", 1)[1]
        assert info["Labels"]["dev.imgbuild.full_id"] == full_id, (step, info["Labels"])
        command = c["command"][-1]
        assert f"IMGBUILD_MF_FULL_ID={full_id}" in command
        assert "/opt/imgbuild/env/bin/python three_step.py" in command
        assert "imagebuilder.bootstrap" not in command
        images[step] = image
    assert len(set(images.values())) == 3  # three envs, three images
    assert remote["steps"]["end"]["full_id"] == remote["made"]["full_id"]  # the alias's env


def test_step_functions_jobs_carry_the_same_images(remote):
    argo = {s: _templates(remote["argo"])[s]["container"]["image"] for s in STEPS}
    assert remote["job_images"] == argo
    for step in STEPS:
        command = remote["sfn"]["States"][step]["Parameters"]["ContainerOverrides"]["Command"]
        full_id = remote["steps"][step]["full_id"]
        assert f"IMGBUILD_MF_FULL_ID={full_id}" in command[-1]
        assert "/opt/imgbuild/env/bin/python three_step.py" in command[-1]


def test_argo_without_registry_hydrates_at_task_start(remote, rig):
    templates = _templates(remote["argo_plain"])
    store = f"s3://{remote['bucket']}/{remote['prefix']}/imgbuild"
    for step in STEPS:
        c = templates[step]["container"]
        assert c["image"] == rig.pybase_image  # Metaflow's image, untouched
        command = c["command"][-1]
        s = remote["steps"][step]
        assert (
            f"python -m imagebuilder.bootstrap {s['req_id']}:{s['full_id']} "
            f"/tmp/imgbuild/envs/{s['env_name']} --store {store} --arch linux-64" in command
        ), command
        assert "$IMGBUILD_PYTHON three_step.py" in command
    assert "Baking" not in remote["argo_plain_stderr"]
    # each env is packed at deploy time, so a task downloads one archive, not every package
    assert "Packing" in remote["argo_plain_stderr"], remote["argo_plain_stderr"][-3000:]
    s3 = rig.s3_client()
    for step in STEPS:
        full16 = remote["steps"][step]["full_id"][:16]
        key = f"{remote['prefix']}/imgbuild/packs/{full16}/linux-64.tar.zst"
        assert s3.head_object(Bucket=remote["bucket"], Key=key)["ContentLength"] > 0, key


def test_fetch_at_exec_looks_the_alias_up_at_task_start(remote, rig):
    templates = _templates(remote["argo_fetch"])
    start, end = templates["start"]["container"], templates["end"]["container"]
    assert "@sha256:" not in start["image"]  # nothing baked for it, even with a registry
    assert (
        f"python -m imagebuilder.bootstrap {ALIAS} /tmp/imgbuild/envs/fetched-mf-test_remote_v1 "
        in start["command"][-1]
    ), start["command"][-1]
    assert "$IMGBUILD_PYTHON fetch_at_exec.py" in start["command"][-1]
    # a step without imgbuild decorators is left as Metaflow makes it
    assert "imagebuilder" not in end["command"][-1] and "IMGBUILD" not in end["command"][-1]
    assert "python fetch_at_exec.py" in end["command"][-1]
    assert "Resolving" not in remote["argo_fetch_stderr"]


def test_code_package_carries_the_bootstrap(remote, rig):
    env = {
        e["name"]: e["value"] for e in _templates(remote["argo_plain"])["start"]["container"]["env"]
    }
    bucket, key = env["METAFLOW_CODE_URL"].removeprefix("s3://").split("/", 1)
    blob = rig.s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        names = set(tar.getnames())
    for member in (
        ".mf_code/imagebuilder/bootstrap/__main__.py",
        ".mf_code/imagebuilder/schemas/env.v1.json",
        ".mf_code/metaflow_extensions/imgbuild/plugins/mfextinit_imgbuild.py",
        "three_step.py",
    ):
        assert member in names, sorted(n for n in names if "imagebuilder" in n)[:20]


def test_baked_step_runs_in_podman_without_channel_or_index(remote, rig):
    pod = remote["pod_baked"]
    out = pod["stdout"] + pod["stderr"]
    assert pod["returncode"] == 0, out[-6000:]
    assert "start ok /opt/imgbuild/env/bin/python" in out, out[-3000:]
    assert "Creating the imgbuild environment" not in out
    keys = _task_keys(rig, remote, "baked", "start")
    assert any(k.endswith("0.data.json") for k in keys), keys


def test_generic_image_hydrates_at_start_from_the_store(remote, rig):
    pod = remote["pod_plain"]
    out = pod["stdout"] + pod["stderr"]
    assert pod["returncode"] == 0, out[-6000:]
    env_name = remote["steps"]["start"]["env_name"]
    assert f"start ok /tmp/imgbuild/envs/{env_name}/bin/python" in out, out[-3000:]
    assert "fetching runtime wheel" in out  # the bootstrap's runtime came from the store
    assert f"{env_name} at /tmp/imgbuild/envs/{env_name} (pack," in out, out[-3000:]
    keys = _task_keys(rig, remote, "plain", "start")
    assert any(k.endswith("0.data.json") for k in keys), keys


def _task_keys(rig, remote, run: str, step: str) -> list[str]:
    prefix = f"{remote['prefix']}/ThreeStepFlow/argo-{run}/{step}/"
    pages = rig.s3_client().get_paginator("list_objects_v2")
    return [
        o["Key"]
        for page in pages.paginate(Bucket=remote["bucket"], Prefix=prefix)
        for o in page.get("Contents", [])
    ]
