"""Golden tests use the resolve tests' fixtures (rig channel/index, isolated CLI)."""

import importlib.util
import sys
from pathlib import Path


def _load():
    name = "imgb_resolve_fixtures"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "resolve" / "fixtures.py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


rig_services, cli = _load().rig_services, _load().cli
