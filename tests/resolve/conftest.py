"""Resolve tests: fixtures live in fixtures.py (shared with tests/golden)."""

import importlib.util
import sys
from pathlib import Path


def load_fixtures():
    name = "imgb_resolve_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fixtures.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


_f = load_fixtures()
rig_services, cli, channel_copy, plain_channel_copy = (
    _f.rig_services,
    _f.cli,
    _f.channel_copy,
    _f.plain_channel_copy,
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "internet: needs real PyPI (deselect offline with -m 'not internet')"
    )
