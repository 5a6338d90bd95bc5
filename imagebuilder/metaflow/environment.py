"""`--environment=conda` (and `pypi`): the Metaflow environment that gives every step the
imgbuild env its decorators ask for.

Lifecycle (Metaflow 2.19):
- validate_environment: remembers the datastore type;
- init_environment (called when the code package is made, i.e. by `run`, `resume`,
  `argo-workflows create`, `step-functions create`, after they attached @kubernetes/@batch):
  resolves every step, bakes and pushes images for remote steps when a registry is set and
  points their decorator's `image` at the digest-pinned reference, hydrates local steps;
- executable / bootstrap_commands: what a remote task runs (the baked image's python, or the
  bootstrap that creates the env at task start);
- add_to_package: ships the `imagebuilder` package, which the bootstrap and these plugins
  import in the task;
- get_client_info: what `Task.environment_info` shows.

Processes that launch remote tasks without having made the plan (`kubernetes step` started
by a local run) get it from the launching process (internal.PLAN_VAR).
"""

from __future__ import annotations

import json
import os

from metaflow.metaflow_environment import InvalidEnvironmentException, MetaflowEnvironment

from imagebuilder.metaflow.decorators import FLOW_REQUIREMENT_NAMES, REQUIREMENT_NAMES

COMPUTE = ("kubernetes", "batch", "nvidia", "snowpark", "slurm", "nvct", "skypilot_step")


def _error(e) -> InvalidEnvironmentException:
    msg = e.message + (f"\n    hint: {e.hint}" if getattr(e, "hint", "") else "")
    return InvalidEnvironmentException(msg)


def compute_decorator(decorators):
    """The decorator that runs the step remotely (@kubernetes, @batch, ...), if any."""
    for d in decorators:
        if getattr(d, "supports_conda_environment", False) or d.name in COMPUTE:
            return d
    return None


class CondaEnvironment(MetaflowEnvironment):
    TYPE = "conda"

    def __init__(self, flow):
        super().__init__(flow)
        self.flow = flow
        self.datastore_type = None
        self._plan = None  # step -> plan.StepEnv
        self._requests = {}

    # --- Metaflow hooks ------------------------------------------------------------------------
    def decospecs(self):
        return ("imgbuild_internal",) + tuple(super().decospecs())

    def validate_environment(self, logger, datastore_type):
        self.datastore_type = datastore_type
        self.logger = logger

    def init_environment(self, echo, only_steps=None):
        if self._plan is None:
            from imagebuilder.metaflow.compat import version_warning

            warning = version_warning()
            if warning and echo:
                echo(f"warning: {warning}")
            self._plan = self.make_plan(echo, only_steps)

    def executable(self, step_name, default=None):
        se = self.step_env(step_name)
        if se is None:
            return super().executable(step_name, default)
        if se.remote:
            from imagebuilder.metaflow.bootstrap import remote_executable

            return remote_executable(se)
        return se.python or super().executable(step_name, default)

    def bootstrap_commands(self, step_name, datastore_type):
        se = self.step_env(step_name)
        if se is None:
            return super().bootstrap_commands(step_name, datastore_type)
        from imagebuilder.metaflow.bootstrap import remote_commands

        return remote_commands(se, self._python())

    def add_to_package(self):
        """The `imagebuilder` source, next to `metaflow` in the code package: the bootstrap
        of tasks without a baked image imports it. (Per file as CODE_CONTENT: MODULE_CONTENT
        packs a regular package's __init__.py alone, as a single-file module, in 2.19.)"""
        from metaflow.packaging_sys import ContentType

        import imagebuilder

        root = os.path.dirname(os.path.abspath(imagebuilder.__file__))
        out = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in sorted(files):
                if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                    continue
                path = os.path.join(folder, name)
                arcname = os.path.join("imagebuilder", os.path.relpath(path, root))
                out.append((path, arcname, ContentType.CODE_CONTENT))
        return out

    def pylint_config(self):
        # the steps' packages are not installed where the flow is launched
        return super().pylint_config() + ["--disable=F0401,E0401"]

    @classmethod
    def get_client_info(cls, flow_name, metadata):
        from imagebuilder.metaflow.client import client_info

        return client_info(metadata)

    def _get_install_dependencies_cmd(self, datastore_type):
        """Metaflow pip-installs boto3/requests before every remote task; an env that has them
        (baked images do: they are implicit packages) must not need pip or PyPI for that."""
        cmd = super()._get_install_dependencies_cmd(datastore_type)
        if datastore_type != "s3":
            return cmd
        return f"{{ {self._python()} -c 'import boto3, requests' 2>/dev/null || {cmd}; }}"

    def get_package_commands(self, code_package_url, datastore_type, code_package_metadata=None):
        """Metaflow's commands, with the code package unpacked by python's tarfile instead of
        `tar -xz`: a baked image needs no gzip binary then (bases may be minimal: bash and
        coreutils), and every task image has a python."""
        from metaflow.package import MetaflowPackage

        cmds = super().get_package_commands(code_package_url, datastore_type, code_package_metadata)
        if code_package_metadata is None:  # Metaflow's own default, as in the call above
            code_package_metadata = json.dumps(
                {"version": 0, "archive_format": "tgz", "mfcontent_version": 1}
            )
        try:
            tar_cmds = MetaflowPackage.get_extract_commands(
                code_package_metadata, "job.tar", dest_dir="."
            )
        except Exception:  # another package format: leave Metaflow's commands alone
            return cmds
        if len(tar_cmds) != 1 or "tar -xzf job.tar -C ." not in tar_cmds[0]:
            return cmds
        mine = f"{self._python()} -m tarfile -e job.tar ."
        return [mine if c == tar_cmds[0] else c for c in cmds]

    # --- the plan ------------------------------------------------------------------------------
    def request_for(self, step_name: str):
        """The merged request of a step (None: not managed by imgbuild). Raises clearly."""
        if step_name in self._requests:
            return self._requests[step_name]
        from imagebuilder.errors import ImgbuildError
        from imagebuilder.metaflow.requirements import combine

        step = next((s for s in self.flow if s.name == step_name), None)
        if step is None:
            return None
        flow_req = self.flow_request()
        try:
            step_parts = [d.part(step_name) for d in step.decorators if d.name in REQUIREMENT_NAMES]
            req = combine(flow_req, step_parts)
        except ImgbuildError as e:
            if f"step {step_name}" not in e.message:
                e.message = f"step {step_name}: {e.message}"
            raise _error(e) from None
        self._requests[step_name] = None if (req.is_disabled or req.is_empty) else req
        return self._requests[step_name]

    def flow_request(self):
        """The flow-level decorators merged (a conflict among them names the flow)."""
        if "\0flow" not in self._requests:
            from imagebuilder.errors import ImgbuildError
            from imagebuilder.metaflow.requirements import merge_parts

            try:
                self._requests["\0flow"] = merge_parts(
                    [
                        d.part()
                        for name, decos in self.flow._flow_decorators.items()
                        if name in FLOW_REQUIREMENT_NAMES
                        for d in decos
                    ]
                )
            except ImgbuildError as e:
                e.message = f"flow {self.flow.name}: {e.message}"
                raise _error(e) from None
        return self._requests["\0flow"]

    def targets(self, only_steps=None):
        from imagebuilder.metaflow.plan import Target
        from imagebuilder.platforms import host_arch

        out = []
        for step in self.flow:
            if only_steps and step.name not in only_steps:
                continue
            req = self.request_for(step.name)
            if req is None:
                continue
            compute = compute_decorator(step.decorators)
            if compute is None:
                out.append(Target(step.name, req, host_arch(), False))
                continue
            out.append(
                Target(
                    step.name,
                    req,
                    getattr(compute, "target_platform", None) or "linux-64",
                    True,
                    compute.name,
                    self._base_image(compute),
                )
            )
        return out

    def _base_image(self, compute) -> str | None:
        """A user's image= is the base; else imgbuild's base_image; else Metaflow's default."""
        if not hasattr(compute, "_imgbuild_base"):
            given = "image" in getattr(compute, "_user_defined_attributes", ())
            image = compute.attributes.get("image")
            configured = self.settings().base_image
            compute._imgbuild_base = image if given or not configured else configured
        return compute._imgbuild_base

    def settings(self):
        if getattr(self, "_settings", None) is None:
            from imagebuilder.metaflow import settings

            self._settings = settings.load(self.datastore_type or "local")
        return self._settings

    def make_plan(self, echo, only_steps=None, *, bake=True, hydrate=True, force=False):
        from imagebuilder.errors import ImgbuildError
        from imagebuilder.metaflow.plan import make_plan

        targets = self.targets(only_steps)
        if not targets:
            return {}
        say = (lambda m: echo(m)) if echo else (lambda m: None)
        try:
            plan = make_plan(
                targets, self.settings(), say=say, bake=bake, hydrate=hydrate, force=force
            )
        except ImgbuildError as e:
            raise _error(e) from None
        for step in self.flow:
            se = plan.get(step.name)
            compute = compute_decorator(step.decorators)
            if se is not None and se.image and compute is not None:
                compute.attributes["image"] = se.image
            if se is not None and not se.remote and bake and hydrate and not se.python:
                raise InvalidEnvironmentException(
                    f"step {step.name}: environment {se.env_name} has no python interpreter"
                )
        return plan

    def step_env(self, step_name: str):
        """This step's plan.StepEnv, or None (unmanaged step, or internal steps)."""
        if self._plan is not None:
            return self._plan.get(step_name)
        raw = os.environ.get("IMGBUILD_MF_STEP_ENV")
        if raw:
            from imagebuilder.metaflow.plan import StepEnv

            se = StepEnv.from_json(json.loads(raw))
            if se.step == step_name:
                return se
        return None


class PypiEnvironment(CondaEnvironment):
    """`--environment=pypi`: the same environment (OSS Metaflow links the two names too)."""

    TYPE = "pypi"
