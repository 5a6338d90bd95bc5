"""`imgbuild_internal`: the step decorator the environment attaches to every step (its
decospecs). It carries the task lifecycle; the user-facing decorators only hold requests.

- step_init: checks the step's decorators (a bad combination stops everything up front);
- runtime_init / runtime_step_cli (local runtime): a local step runs with its env's python,
  the code package extracted for it (as OSS @conda does: the env has no Metaflow); every
  launched process gets the step's plan, so `kubernetes step` / `batch step` launched from a
  local run know which image or bootstrap to use;
- task_pre_step (in the task): the env's bin first on PATH, and task metadata
  imgbuild_req_id / imgbuild_full_id / imgbuild_image.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from metaflow.decorators import StepDecorator

from imagebuilder.metaflow import bootstrap as boot

PLAN_VAR = "IMGBUILD_MF_STEP_ENV"


class ImgbuildInternalDecorator(StepDecorator):
    name = "imgbuild_internal"
    defaults = {}

    _code_dir = None  # one extracted code package per run, shared by the steps
    _code_env: dict | None = None

    def step_init(self, flow, graph, step, decos, environment, flow_datastore, logger):
        self.step = step
        self.environment = environment
        self.local_python = None
        if hasattr(environment, "request_for"):
            environment.request_for(step)  # raises a clear error for bad decorators

    def _step_env(self):
        getter = getattr(self.environment, "step_env", None)
        return getter(self.step) if getter else None

    def runtime_init(self, flow, graph, package, run_id):
        se = self._step_env()
        if se is None or se.remote or ImgbuildInternalDecorator._code_dir is not None:
            return
        from metaflow.packaging_sys import ContentType

        cls = ImgbuildInternalDecorator
        cls._code_dir = tempfile.TemporaryDirectory(prefix="imgbuild-mf-")
        package.extract_into(cls._code_dir.name, ContentType.ALL_CONTENT)
        cls._code_env = package.get_post_extract_env_vars(
            package.package_metadata, cls._code_dir.name
        )

    def runtime_step_cli(self, cli_args, retry_count, max_user_code_retries, ubf_context):
        se = self._step_env()
        if se is None:
            return
        cli_args.env[PLAN_VAR] = json.dumps(se.to_json())
        if se.remote:
            return  # `kubernetes step` / `batch step` runs here; the task runs remotely
        for key, value in (
            (boot.ENV_REQ_ID, se.req_id),
            (boot.ENV_FULL_ID, se.full_id),
            (boot.ENV_PREFIX, se.prefix),
        ):
            if value:
                cli_args.env[key] = value
        code_dir = ImgbuildInternalDecorator._code_dir
        for key, value in (ImgbuildInternalDecorator._code_env or {}).items():
            if key.endswith(":"):
                cli_args.env[key[:-1]] = value
            elif key == "PYTHONPATH":
                cli_args.env[key] = os.pathsep.join([value, code_dir.name])
            else:
                cli_args.env[key] = value
        cli_args.env["PYTHONNOUSERSITE"] = "1"
        if se.python:
            cli_args.entrypoint[0] = se.python

    def task_pre_step(
        self,
        step_name,
        task_datastore,
        meta,
        run_id,
        task_id,
        flow,
        graph,
        retry_count,
        max_retries,
        ubf_context,
        inputs,
    ):
        req_id, full_id = os.environ.get(boot.ENV_REQ_ID), os.environ.get(boot.ENV_FULL_ID)
        prefix = os.environ.get(boot.ENV_PREFIX)
        if not (req_id and full_id) and prefix:  # fetch_at_exec: the prefix knows
            from imagebuilder.install.prefix import read_marker

            marker = read_marker(prefix)
            if marker is not None:
                req_id, full_id = marker.req_id, marker.full_id
        if not (req_id and full_id):
            return  # a step without an imgbuild environment
        # Tools of the env (CLIs next to its python) come first, as in an activated env.
        bindir = os.path.dirname(sys.executable)
        os.environ["PATH"] = os.pathsep.join(filter(None, (bindir, os.environ.get("PATH"))))
        from metaflow.metadata_provider import MetaDatum

        tags = [f"attempt_id:{retry_count}"]
        values = [("imgbuild_req_id", req_id), ("imgbuild_full_id", full_id)]
        image = os.environ.get(boot.ENV_IMAGE)
        if image:
            values.append(("imgbuild_image", image))
        meta.register_metadata(
            run_id,
            step_name,
            task_id,
            [MetaDatum(field=f, value=v, type=f, tags=tags) for f, v in values],
        )

    def runtime_finished(self, exception):
        cls = ImgbuildInternalDecorator
        if cls._code_dir is not None:
            cls._code_dir.cleanup()
            cls._code_dir = None
            cls._code_env = None
