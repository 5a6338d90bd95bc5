"""Inputs of `imgbuild resolve`: requirements.txt, environment.yml, pyproject.toml, the
[environment] table of ./imgbuild.toml, and command-line flags, merged into EnvSpecs.

Parsers: `requirements.py`, `envyml.py`, `tomlfiles.py`; merging: `request.py`; the whole
step: `collect.collect(Flags(...), config)`. Modules are imported lazily by callers.
"""
