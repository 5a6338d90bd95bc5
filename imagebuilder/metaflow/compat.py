"""Every Metaflow internal this plugin relies on, checkable (tests/metaflow/test_compat.py).

Metaflow's extension API is not versioned: a release may move any of these. Each entry says
what we use and why; `problems()` returns what is missing in the installed Metaflow, so an
upgrade that breaks us fails one test with a list instead of a task somewhere at run time.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass


@dataclass(frozen=True)
class Internal:
    where: str  # module[:attribute.path]
    why: str
    members: tuple[str, ...] = ()  # attributes that must exist on it
    source_has: tuple[str, ...] = ()  # text its source must contain (call sites we rely on)


INTERNALS = (
    Internal(
        "metaflow.metaflow_environment:MetaflowEnvironment",
        "the environment we subclass; its hooks are our entry points",
        (
            "init_environment",
            "validate_environment",
            "decospecs",
            "bootstrap_commands",
            "add_to_package",
            "executable",
            "get_client_info",
            "get_package_commands",
            "_get_install_dependencies_cmd",
            "_python",
            "pylint_config",
        ),
        ("pip install", "boto3"),
    ),
    Internal(
        "metaflow.metaflow_environment:InvalidEnvironmentException",
        "how bad decorator input is reported before anything launches",
    ),
    Internal(
        "metaflow.package:MetaflowPackage",
        "init_environment runs when the code package is made (after argo/sfn attach "
        "@kubernetes/@batch); add_to_package entries; the tarball extract commands we replace",
        ("get_extract_commands", "get_post_extract_env_vars", "extract_into", "package_metadata"),
        ("init_environment(", "add_to_package()", "ContentType.CODE_CONTENT"),
    ),
    Internal(
        "metaflow.packaging_sys.tar_backend:TarPackagingBackend",
        "the single `tar -xzf job.tar -C .` we swap for python's tarfile",
        ("get_extract_commands",),
        ("tar -xzf {archive_name} -C {dest_dir}",),
    ),
    Internal(
        "metaflow.packaging_sys:ContentType",
        "CODE_CONTENT puts imagebuilder/ next to metaflow/ in the code package",
        ("CODE_CONTENT", "ALL_CONTENT"),
    ),
    Internal(
        "metaflow.decorators:Decorator",
        "_user_defined_attributes tells a user's image= from Metaflow's default image",
        ("make_decorator_spec", "external_init"),
        ("_user_defined_attributes", "self.attributes"),
    ),
    Internal(
        "metaflow.decorators:StepDecorator",
        "the internal decorator's lifecycle hooks",
        ("step_init", "runtime_init", "runtime_step_cli", "task_pre_step", "runtime_finished"),
    ),
    Internal(
        "metaflow.decorators:FlowDecorator",
        "the flow-level bases",
        ("flow_init",),
    ),
    Internal(
        "metaflow.flowspec:FlowSpec",
        "flow-level decorators of a flow",
        ("_flow_decorators",),
    ),
    Internal(
        "metaflow.plugins.kubernetes.kubernetes_decorator:KubernetesDecorator",
        "remote step: target_platform and the image attribute we point at the baked image",
        ("target_platform", "supports_conda_environment", "defaults"),
        ('"image"',),
    ),
    Internal(
        "metaflow.plugins.aws.batch.batch_decorator:BatchDecorator",
        "remote step: target_platform and the image attribute",
        ("target_platform", "supports_conda_environment", "defaults"),
        ('"image"',),
    ),
    Internal(
        "metaflow.plugins.kubernetes.kubernetes:Kubernetes._command",
        "a Kubernetes task runs bootstrap_commands then the step with executable()",
        source_has=("bootstrap_commands(", "get_package_commands("),
    ),
    Internal(
        "metaflow.plugins.argo.argo_workflows:ArgoWorkflows",
        "Argo templates take image=, bootstrap_commands() and executable() per step",
        source_has=("bootstrap_commands(", "executable(", 'resources["image"]'),
    ),
    Internal(
        "metaflow.plugins.argo.argo_workflows_cli:make_flow",
        "argo-workflows create attaches @kubernetes, then makes the package (our plan)",
        source_has=("_attach_decorators(", "MetaflowPackage("),
    ),
    Internal(
        "metaflow.plugins.aws.step_functions.step_functions:StepFunctions",
        "Step Functions jobs take the @batch image and executable()",
        source_has=("executable(", 'resources["image"]'),
    ),
    Internal(
        "metaflow.plugins.aws.step_functions.step_functions_cli:make_flow",
        "step-functions create attaches @batch, then makes the package",
        source_has=("_attach_decorators(", "MetaflowPackage("),
    ),
    Internal(
        "metaflow.plugins.aws.batch.batch:Batch",
        "a Batch task runs bootstrap_commands then the step",
        source_has=("bootstrap_commands(",),
    ),
    Internal(
        "metaflow.runtime:CLIArgs",
        "runtime_step_cli edits entrypoint and env of a local task",
        source_has=("self.entrypoint", "self.env"),
    ),
    Internal(
        "metaflow.metaflow_config:get_pinned_conda_libs",
        "Metaflow's own needs (requests, boto3) become implicit PyPI packages",
    ),
    Internal(
        "metaflow.metaflow_config",
        "store default and S3 endpoint",
        ("DATASTORE_SYSROOT_S3", "S3_ENDPOINT_URL"),
    ),
    Internal(
        "metaflow.plugins.datastores.local_storage:LocalStorage",
        "the local store default next to .metaflow",
        ("get_datastore_root_from_config",),
    ),
    Internal(
        "metaflow.metadata_provider:MetaDatum",
        "task metadata imgbuild_req_id / imgbuild_full_id / imgbuild_image",
    ),
    Internal(
        "metaflow.metadata_provider.metadata:MetadataProvider",
        "the task registers our metadata through it",
        ("register_metadata",),
    ),
    Internal(
        "metaflow.client.core:MetaflowCode",
        "--into-dir extracts a past step's code package",
        ("tarball",),
    ),
    Internal(
        "metaflow.exception",
        "not-found and other client errors; the flow CLI's messages",
        ("MetaflowNotFound", "MetaflowException"),
    ),
    Internal(
        "metaflow.graph:FlowGraph",
        "`environment show` lists steps in graph order",
        source_has=("self.sorted_nodes",),
    ),
    Internal(
        "metaflow.metaflow_version:get_version",
        "the supported-range warning at deploy time",
    ),
    Internal(
        "metaflow.metaflow_config_funcs:from_conf",
        "the config shim declares METAFLOW_IMGBUILD_* settings",
    ),
    Internal(
        "metaflow.client.core:Task",
        "mf:Flow/Run/Step references and --into-dir",
        ("metadata_dict", "code", "environment_info"),
        ("get_client_info(",),
    ),
    Internal(
        "metaflow.extension_support.plugins",
        "the extension registry: our names override core's",
        ("process_plugins", "resolve_plugins", "_plugin_categories"),
        ('"step_decorator"', '"flow_decorator"', '"environment"', '"cli"', '"%sS_DESC"'),
    ),
    Internal(
        "metaflow.extension_support.cmd",
        "`metaflow environment ...` comes from the cmd extension point",
        ("process_cmds", "resolve_cmds"),
        ("CMDS_DESC",),
    ),
    Internal("metaflow._vendor.click", "the flow CLI and `metaflow` commands use Metaflow's click"),
)


def _resolve(where: str):
    module, _, path = where.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, path.split(".")):
        obj = getattr(obj, part)
    return obj


def problems() -> list[str]:
    out = []
    for item in INTERNALS:
        try:
            obj = _resolve(item.where)
        except (ImportError, AttributeError) as e:
            out.append(f"{item.where} is gone ({e}); used for: {item.why}")
            continue
        for m in item.members:
            if not hasattr(obj, m):
                out.append(f"{item.where}.{m} is gone; used for: {item.why}")
        if item.source_has:
            try:
                src = inspect.getsource(obj)
            except (OSError, TypeError):
                src = ""
            for text in item.source_has:
                if text not in src:
                    out.append(f"{item.where} no longer contains {text!r}; used for: {item.why}")
    return out


def version_warning() -> str | None:
    """A one-line warning when the installed Metaflow is outside the tested range."""
    from packaging.specifiers import SpecifierSet

    from imagebuilder.metaflow import SUPPORTED

    try:
        from metaflow.metaflow_version import get_version

        version = get_version().split("+")[0]
    except Exception:
        return None
    try:
        ok = SpecifierSet(SUPPORTED).contains(version, prereleases=True)
    except Exception:
        return None
    if ok:
        return None
    return (
        f"imgbuild's Metaflow plugin supports Metaflow {SUPPORTED}; this is {version} "
        "(run tests/metaflow/test_compat.py against it)"
    )
