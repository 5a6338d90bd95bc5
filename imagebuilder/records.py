"""Record headers: every stored record carries "schema": "imgbuild/<kind>/v<major>"."""

from __future__ import annotations

import re

from imagebuilder.errors import BadInput

SUPPORTED = {
    "spec": 1,
    "env": 1,
    "alias": 1,
    "layer": 1,
    "build": 1,
    "pack": 1,
    "prefix": 1,
    "runtime": 1,
}
_SCHEMA_RE = re.compile(r"^imgbuild/([a-z]+)/v(\d+)$")


def schema_id(kind: str) -> str:
    return f"imgbuild/{kind}/v{SUPPORTED[kind]}"


def check_schema(record: dict, kind: str, where: str = "") -> None:
    """Refuse records of another kind or an unknown major version, with a clear message."""
    at = f" in {where}" if where else ""
    got = record.get("schema") if isinstance(record, dict) else None
    m = _SCHEMA_RE.match(got or "")
    if not m:
        raise BadInput(f"not an imgbuild {kind} record{at} (schema={got!r})")
    if m.group(1) != kind:
        raise BadInput(f"expected an imgbuild {kind} record{at}, found {m.group(1)!r}")
    if int(m.group(2)) != SUPPORTED[kind]:
        raise BadInput(
            f"{kind} record{at} has schema v{m.group(2)}; this imgbuild reads v{SUPPORTED[kind]}",
            "upgrade imgbuild (pip install -U imgbuild)",
        )
