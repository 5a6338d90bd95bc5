"""imgbuild's Metaflow plugin: @conda / @pypi / @named_env / @sys_packages (and the flow-level
bases), the `conda`/`pypi` environment, and the `environment` commands. Registered by the
`metaflow_extensions/imgbuild` shim; docs/metaflow.md is the guide.

Supported Metaflow: SUPPORTED (tests/metaflow/test_compat.py fails loudly when an internal
this plugin relies on moves; imagebuilder/metaflow/compat.py lists them)."""

SUPPORTED = ">=2.19,<2.20"
TESTED = "2.19.39"
