"""JSON Schema validation of records, loaded lazily (jsonschema is slow to import)."""

from __future__ import annotations

import functools
import json
from importlib import resources

from imagebuilder.errors import BadInput


@functools.cache
def _validator(name: str):
    import jsonschema

    schema = json.loads(
        resources.files("imagebuilder.schemas").joinpath(f"{name}.json").read_text()
    )
    return jsonschema.Draft202012Validator(schema)


def validate(record: dict, name: str, where: str = "") -> None:
    """Raise BadInput naming the first problem; `name` is e.g. 'env.v1'."""
    errors = sorted(_validator(name).iter_errors(record), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = "/".join(str(p) for p in e.path) or "(top)"
        raise BadInput(
            f"invalid {name} record{' ' + where if where else ''}: at {path}: {e.message}"
        )
