"""JSON Schema validation of records, loaded lazily (jsonschema is slow to import).

A record that passed is remembered on this machine by the sha256 of (schema text, canonical
record) under `<cache>/validated/` (store/localcache.py's cache root): validation is a pure
function of those two, so the same record is never validated twice and commands that only
read known records (a no-op `imgbuild push`) never import jsonschema. Any other record, or
the same record against a changed schema, is validated as before.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from pathlib import Path

from imagebuilder.errors import BadInput


@functools.cache
def _schema_text(name: str) -> str:
    return resources.files("imagebuilder.schemas").joinpath(f"{name}.json").read_text()


@functools.cache
def _validator(name: str):
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(_schema_text(name)))


def _passed_marker(record: dict, name: str) -> Path | None:
    try:
        from imagebuilder.store.localcache import cache_root

        h = hashlib.sha256(_schema_text(name).encode())
        h.update(b"\0" + json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
        return cache_root() / "validated" / name / h.hexdigest()
    except (TypeError, ValueError, RuntimeError):  # not JSON-able, or no home folder
        return None


def validate(record: dict, name: str, where: str = "") -> None:
    """Raise BadInput naming the first problem; `name` is e.g. 'env.v1'."""
    marker = _passed_marker(record, name)
    if marker is not None and marker.is_file():
        return
    errors = sorted(_validator(name).iter_errors(record), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = "/".join(str(p) for p in e.path) or "(top)"
        raise BadInput(
            f"invalid {name} record{' ' + where if where else ''}: at {path}: {e.message}"
        )
    if marker is not None:
        try:  # best effort: a read-only cache only means validating again next time
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass
