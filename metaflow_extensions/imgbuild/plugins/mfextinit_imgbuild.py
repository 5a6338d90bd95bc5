"""Registers imgbuild's Metaflow plugins (the code is in imagebuilder/metaflow/).

The names are core Metaflow's, so these replace OSS @conda/@pypi and the conda/pypi
environments together (OSS decorators refuse other environment types)."""

_DECORATORS = "imagebuilder.metaflow.decorators"

STEP_DECORATORS_DESC = [
    ("conda", _DECORATORS + ".CondaStepDecorator"),
    ("pypi", _DECORATORS + ".PypiStepDecorator"),
    ("named_env", _DECORATORS + ".NamedEnvStepDecorator"),
    ("sys_packages", _DECORATORS + ".SysPackagesStepDecorator"),
    ("imgbuild_internal", "imagebuilder.metaflow.internal.ImgbuildInternalDecorator"),
]
FLOW_DECORATORS_DESC = [
    ("conda_base", _DECORATORS + ".CondaFlowDecorator"),
    ("pypi_base", _DECORATORS + ".PypiFlowDecorator"),
    ("named_env_base", _DECORATORS + ".NamedEnvFlowDecorator"),
]
ENVIRONMENTS_DESC = [
    ("conda", "imagebuilder.metaflow.environment.CondaEnvironment"),
    ("pypi", "imagebuilder.metaflow.environment.PypiEnvironment"),
]
CLIS_DESC = [("environment", "imagebuilder.metaflow.flowcli.cli")]
