"""requirements.txt: PEP 508 lines (with markers) plus pip's index options and Conda v2's
extensions `--conda-pkg SPEC`, `--conda-channel URL`, `--sys-pkg NAME==VERSION`.

A `python` requirement (`python>=3.10`) sets the python constraint, as in Conda v2.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from imagebuilder.errors import BadInput
from imagebuilder.inputs.request import Item, Request, checked
from imagebuilder.spec import normalize_conda_spec, normalize_pypi_req, parse_sys_pkg

# pip options that take a value, as "--name" -> our field.
_VALUE_OPTS = {
    "-i": "index_url",
    "--index-url": "index_url",
    "--extra-index-url": "extra_index_url",
    "-f": "find_links",
    "--find-links": "find_links",
    "--conda-pkg": "conda",
    "--conda-channel": "channel",
    "--sys-pkg": "sys",
    "-r": "include",
    "--requirement": "include",
    "-e": "editable",
    "--editable": "editable",
}
_UNSUPPORTED = {
    "-c": "constraints files are not supported; put the pins in the requirements",
    "--constraint": "constraints files are not supported; put the pins in the requirements",
    "--no-index": "--no-index is not supported; use --index-url with your own index",
    "--no-binary": "--no-binary is not supported",
    "--only-binary": "--only-binary is not supported",
}
_HASH_OPT = re.compile(r"\s+--hash[=\s]\S+")
_IGNORED = ("--trusted-host", "--prefer-binary", "--use-feature", "--require-hashes")


def parse_requirements(path: str | Path, text: str | None = None, _seen=None) -> Request:
    """Parse a requirements file into a Request; errors name `file:line`."""
    path = Path(path)
    seen = _seen if _seen is not None else set()
    key = path.resolve()
    if key in seen:
        raise BadInput(f"{path}: includes itself (through -r)", "remove the include loop")
    seen.add(key)
    if text is None:
        text = _read(path)
    shown = str(path)
    acc: dict[str, list] = {k: [] for k in ("conda", "pypi", "channels", "extra", "find", "sys")}
    index: Item | None = None
    python: Item | None = None
    pre = False
    includes: list[Request] = []
    for lineno, line in _logical_lines(text):
        where = f"{shown}:{lineno}"
        words = line.split()
        first = words[0]
        if first.startswith("-"):
            opt, eq, val = first.partition("=")
            rest = [val] if eq else words[1:]
            if opt in _UNSUPPORTED:
                raise BadInput(f"{where}: {line!r}: {_UNSUPPORTED[opt]}")
            if opt in _IGNORED:
                continue
            if opt == "--pre":
                pre = True
                continue
            if opt not in _VALUE_OPTS:
                raise BadInput(
                    f"{where}: unknown option {opt!r}",
                    "supported: --index-url --extra-index-url --find-links --pre "
                    "--conda-pkg --conda-channel --sys-pkg -r -e",
                )
            if not rest:
                raise BadInput(f"{where}: {opt} needs a value")
            value = " ".join(rest)
            kind = _VALUE_OPTS[opt]
            if kind == "index_url":
                if index is not None and index.value != value:
                    raise BadInput(
                        f"{where}: a second --index-url ({value}); the first is at {index.origin}",
                        "keep one --index-url and use --extra-index-url for the others",
                    )
                index = Item(value, where)
            elif kind == "extra_index_url":
                acc["extra"].append(Item(value, where))
            elif kind == "find_links":
                acc["find"].append(Item(value, where))
            elif kind == "channel":
                acc["channels"].append(Item(value, where))
            elif kind == "conda":
                acc["conda"].append(Item(checked(normalize_conda_spec, value, where), where))
            elif kind == "sys":
                acc["sys"].append(_sys(value, where))
            elif kind == "include":
                includes.append(parse_requirements(path.parent / value, None, seen))
            elif kind == "editable":
                # An editable install cannot be pinned: record the path as a source to build.
                acc["pypi"].append(Item(checked(normalize_pypi_req, value, where), where))
            continue
        # A requirement, possibly followed by per-requirement options (--hash=...).
        spec = _HASH_OPT.sub("", line).strip()
        name = spec.split(";")[0].strip()
        if _is_python(name):
            version = name[len("python") :].strip()
            if not version:
                continue  # a bare `python` line asks for nothing beyond the default
            python = Item(version.lstrip("="), where)
            continue
        acc["pypi"].append(Item(checked(normalize_pypi_req, spec, where), where))

    req = Request(
        source=shown,
        conda=tuple(acc["conda"]),
        pypi=tuple(acc["pypi"]),
        channels=tuple(acc["channels"]),
        index_url=index,
        extra_index_urls=tuple(acc["extra"]),
        find_links=tuple(acc["find"]),
        pre=pre,
        python=python,
        sys=tuple(acc["sys"]),
    )
    if includes:
        from imagebuilder.inputs.request import merge

        req = replace(merge([*includes, req]), source=shown)
    return req


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {path}: {e}") from None


def _logical_lines(text: str):
    """(line number, content) with comments stripped and `\\` continuations joined."""
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw
        # `#` starts a comment at the line start or after whitespace (not in URL fragments).
        for i, ch in enumerate(line):
            if ch == "#" and (i == 0 or line[i - 1] in " \t"):
                line = line[:i]
                break
        if not buf:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield start, buf.strip()
        buf = ""
    if buf.strip():
        yield start, buf.strip()


def _is_python(name: str) -> bool:
    head = name.split("[")[0]
    for i, ch in enumerate(head):
        if ch in "<>=!~ ":
            head = head[:i]
            break
    return head.strip().lower() == "python"


def _sys(value: str, where: str) -> tuple[str, str, str]:
    try:
        name, version = parse_sys_pkg(value)
    except BadInput as e:
        raise BadInput(f"{where}: {e.message}", e.hint) from None
    return name, version, where
