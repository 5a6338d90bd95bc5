"""Fails loudly when a Metaflow internal the plugin relies on moves (imagebuilder/metaflow/
compat.py lists each one and why), and checks that Metaflow really loads our plugins."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_metaflow_internal_we_rely_on_is_there():
    from imagebuilder.metaflow.compat import problems

    found = problems()
    assert not found, "Metaflow moved internals imgbuild relies on:\n  " + "\n  ".join(found)


def test_installed_metaflow_is_in_the_supported_range():
    from imagebuilder.metaflow import SUPPORTED
    from imagebuilder.metaflow.compat import version_warning

    assert version_warning() is None
    pyproject = (ROOT / "pyproject.toml").read_text()
    extra = re.search(r'^metaflow = \["metaflow([^"]+)"\]', pyproject, re.MULTILINE)
    assert extra and extra.group(1) == SUPPORTED, "pyproject's metaflow extra != SUPPORTED"
    assert SUPPORTED in (ROOT / "docs" / "metaflow.md").read_text()


def test_metaflow_loads_our_plugins_in_place_of_core():
    from metaflow.plugins import ENVIRONMENTS, FLOW_DECORATORS, STEP_DECORATORS

    steps = {d.name: d.__module__ for d in STEP_DECORATORS}
    for name in ("conda", "pypi", "named_env", "sys_packages"):
        assert steps[name] == "imagebuilder.metaflow.decorators", (name, steps[name])
    assert steps["imgbuild_internal"] == "imagebuilder.metaflow.internal"
    flows = {d.name: d.__module__ for d in FLOW_DECORATORS}
    for name in ("conda_base", "pypi_base", "named_env_base"):
        assert flows[name] == "imagebuilder.metaflow.decorators", (name, flows[name])
    envs = {e.TYPE: e.__module__ for e in ENVIRONMENTS}
    assert envs["conda"] == envs["pypi"] == "imagebuilder.metaflow.environment"
    import metaflow

    for name in ("conda", "pypi", "named_env", "sys_packages", "conda_base", "named_env_base"):
        assert hasattr(metaflow, name), name


def test_cli_plugins_are_registered():
    from metaflow.cmd.main_cli import start
    from metaflow.plugins import get_plugin_cli_path

    assert get_plugin_cli_path()["environment"] == "imagebuilder.metaflow.flowcli.cli"
    groups = [src for src in start.sources if "environment" in getattr(src, "commands", {})]
    assert len(groups) == 1
    verbs = set(groups[0].commands["environment"].commands)
    assert verbs == {"resolve", "show", "get", "create", "alias"}


def test_the_shim_is_a_namespace_package_that_only_registers():
    assert not (ROOT / "metaflow_extensions" / "__init__.py").exists()
    assert not (ROOT / "metaflow_extensions" / "imgbuild" / "__init__.py").exists()
    for point in ("plugins", "config", "cmd"):
        mod = importlib.import_module(f"metaflow_extensions.imgbuild.{point}.mfextinit_imgbuild")
        assert Path(mod.__file__).resolve().is_relative_to(ROOT / "metaflow_extensions")
        assert len(Path(mod.__file__).read_text().splitlines()) < 40  # registration only
