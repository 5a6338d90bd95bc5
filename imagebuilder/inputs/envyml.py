"""environment.yml: `channels`, `dependencies` (conda specs, a nested `pip:` list, a nested
`sys:` list as in Conda v2), top-level `sys` and Conda v2's `pypi-indices`.

Parsed through YAML nodes, not plain objects, so every item keeps its line number.
"""

from __future__ import annotations

from pathlib import Path

from imagebuilder.errors import BadInput
from imagebuilder.inputs.request import Item, Request, checked
from imagebuilder.spec import normalize_conda_spec, normalize_pypi_req, parse_sys_pkg

_IGNORED_KEYS = {"name", "prefix", "variables", "description"}


def parse_environment_yml(path: str | Path, text: str | None = None) -> Request:
    import yaml

    path = Path(path)
    shown = str(path)
    if text is None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise BadInput(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"cannot read {path}: {e}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{shown}:{mark.line + 1}" if mark else shown
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadInput(f"{at}: invalid YAML: {problem}", "fix the file's syntax") from None
    if root is None:
        return Request(source=shown)
    _expect(root, yaml.MappingNode, "a mapping of keys (channels, dependencies, ...)", shown)

    conda: list[Item] = []
    pypi: list[Item] = []
    channels: list[Item] = []
    extra: list[Item] = []
    find: list[Item] = []
    sys_pkgs: list[tuple[str, str, str]] = []
    index: Item | None = None
    pre = False

    def at(node) -> str:
        return f"{shown}:{node.start_mark.line + 1}"

    for key_node, value in root.value:
        key = key_node.value
        if key == "channels":
            for n in _seq(value, key, shown):
                channels.append(Item(_scalar(n, shown), at(n)))
        elif key == "pypi-indices":
            for n in _seq(value, key, shown):
                extra.append(Item(_scalar(n, shown), at(n)))
        elif key == "sys":
            sys_pkgs += _sys_entries(value, shown)
        elif key == "dependencies":
            for n in _seq(value, key, shown):
                if isinstance(n, yaml.MappingNode):
                    for sub_key, sub in n.value:
                        if sub_key.value == "pip":
                            for p in _seq(sub, "pip", shown):
                                line = _scalar(p, shown)
                                if line.startswith("-"):
                                    index, pre = _pip_option(line, at(p), index, extra, find, pre)
                                else:
                                    pypi.append(
                                        Item(checked(normalize_pypi_req, line, at(p)), at(p))
                                    )
                        elif sub_key.value == "sys":
                            sys_pkgs += _sys_entries(sub, shown)
                        else:
                            raise BadInput(
                                f"{at(sub_key)}: unknown dependency section {sub_key.value!r}",
                                "dependencies may hold conda specs, a `pip:` list and a `sys:` list",
                            )
                else:
                    conda.append(
                        Item(checked(normalize_conda_spec, _scalar(n, shown), at(n)), at(n))
                    )
        elif key not in _IGNORED_KEYS:
            raise BadInput(
                f"{at(key_node)}: unknown key {key!r}",
                "environment.yml keys: name, channels, dependencies (with pip: and sys:), sys",
            )
    return Request(
        source=shown,
        conda=tuple(conda),
        pypi=tuple(pypi),
        channels=tuple(channels),
        index_url=index,
        extra_index_urls=tuple(extra),
        find_links=tuple(find),
        pre=pre,
        sys=tuple(sys_pkgs),
    )


def _expect(node, cls, what: str, shown: str) -> None:
    if not isinstance(node, cls):
        raise BadInput(f"{shown}:{node.start_mark.line + 1}: expected {what}")


def _seq(node, key: str, shown: str) -> list:
    import yaml

    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return []
    _expect(node, yaml.SequenceNode, f"a list under {key!r}", shown)
    return node.value


def _scalar(node, shown: str) -> str:
    import yaml

    _expect(node, yaml.ScalarNode, "a plain value", shown)
    return str(node.value).strip()


def _sys_entries(node, shown: str) -> list[tuple[str, str, str]]:
    """`sys:` as a list (`- __glibc=2.28`) or a mapping (`__glibc: "2.28"`)."""
    import yaml

    out = []
    if isinstance(node, yaml.MappingNode):
        items = [(k, f"{k.value}=={v.value}") for k, v in node.value]
    else:
        items = [(n, _scalar(n, shown)) for n in _seq(node, "sys", shown)]
    for n, text in items:
        where = f"{shown}:{n.start_mark.line + 1}"
        try:
            name, version = parse_sys_pkg(text)
        except BadInput as e:
            raise BadInput(f"{where}: {e.message}", e.hint) from None
        out.append((name, version, where))
    return out


def _pip_option(line, where, index, extra, find, pre):
    opt, _, value = line.replace("=", " ", 1).partition(" ")
    value = value.strip()
    if opt == "--pre":
        return index, True
    if not value:
        raise BadInput(f"{where}: {opt} needs a value")
    if opt in ("-i", "--index-url"):
        if index is not None and index.value != value:
            raise BadInput(f"{where}: a second --index-url; the first is at {index.origin}")
        return Item(value, where), pre
    if opt == "--extra-index-url":
        extra.append(Item(value, where))
    elif opt in ("-f", "--find-links"):
        find.append(Item(value, where))
    else:
        raise BadInput(
            f"{where}: unsupported pip option {opt!r}",
            "supported in pip: lists: --index-url --extra-index-url --find-links --pre",
        )
    return index, pre
