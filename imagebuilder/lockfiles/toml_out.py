"""A small TOML writer for the shapes lock files use (tomllib reads, nothing in the stdlib writes).

In each table: scalars first, then arrays of tables (`[[packages]]`), then sub-tables
(`[tool.imgbuild]`); inside an array-of-tables element every dict and list is written inline.
Strings are written as basic strings with JSON escapes (a subset of TOML's), plus DEL.
"""

from __future__ import annotations

import json
import re

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(doc: dict) -> str:
    out: list[str] = []
    _table(out, [], doc)
    return "\n".join(out).lstrip("\n") + "\n"


def _key(k: str) -> str:
    return k if _BARE.match(k) else _str(k)


def _str(s: str) -> str:
    return json.dumps(s, ensure_ascii=True).replace("\x7f", "\\u007f")


def value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return json.dumps(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = [f"{_key(k)} = {value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_aot(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _table(out: list[str], path: list[str], d: dict) -> None:
    """Scalars and inline lists, then [[arrays.of.tables]], then each dict as a [table]."""
    for k, v in d.items():
        if v is not None and not isinstance(v, dict) and not _is_aot(v):
            out.append(f"{_key(k)} = {value(v)}")
    for k, v in d.items():
        if _is_aot(v):
            for item in v:
                out.append("")
                out.append(f"[[{'.'.join(_key(p) for p in [*path, k])}]]")
                out += [f"{_key(ik)} = {value(iv)}" for ik, iv in item.items() if iv is not None]
    for k, v in d.items():
        if isinstance(v, dict):
            if any(not isinstance(x, dict) for x in v.values()):  # else implicit
                out.append("")
                out.append(f"[{'.'.join(_key(p) for p in [*path, k])}]")
            _table(out, [*path, k], v)
