"""pyproject.toml (`[project] dependencies`, `requires-python`) and the `[environment]` table of
`./imgbuild.toml`.

`[environment]` keys (docs/resolve.md):
    conda = ["tinyfoo>=1"]           conda specs
    pypi = ["requests>=2"]           PEP 508 requirements
    channels = ["conda-forge"]       conda channels, in priority order
    indexes = ["https://pypi.org/simple"]   PyPI indexes: the first is the primary index
    find_links = ["./wheels"]        flat wheel folders or pages
    pre = false                      allow pre-releases
    python = "3.11"                  python constraint
    sys = { __glibc = "2.28" }       virtual (system) packages
    arch = ["linux-64"]              target arches (a string or a list)
    exclude_newer = "2024-06-01"     ignore packages published after this date
Config keys (store, registry, ...) stay at the top level of imgbuild.toml (imagebuilder/config.py).

tomllib keeps no positions, so origins point at the first line that holds the value's text.
"""

from __future__ import annotations

from pathlib import Path

from imagebuilder.errors import BadInput
from imagebuilder.inputs.request import Item, Request, checked
from imagebuilder.spec import normalize_conda_spec, normalize_pypi_req

ENV_KEYS = (
    "conda",
    "pypi",
    "channels",
    "indexes",
    "find_links",
    "pre",
    "python",
    "sys",
    "arch",
    "exclude_newer",
)


def _load(path: Path) -> tuple[dict, list[str]]:
    from imagebuilder.config import read_toml

    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    data = read_toml(path)
    return data, path.read_text().splitlines()


def _line_of(lines: list[str], text: str, after: int = 0) -> int:
    for i in range(after, len(lines)):
        if text in lines[i]:
            return i + 1
    return after + 1 if after else 1


def _strings(value, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"{where}: {key} must be a list of strings")
    return value


def parse_pyproject(path: str | Path) -> Request:
    path = Path(path)
    data, lines = _load(path)
    shown = str(path)
    project = data.get("project")
    if not isinstance(project, dict):
        raise BadInput(
            f"{shown}: no [project] table", "pyproject.toml needs [project] dependencies"
        )
    start = next((i for i, line in enumerate(lines) if line.strip() == "[project]"), 0)
    deps = _strings(project.get("dependencies", []), "dependencies", f"{shown}:{start + 1}")
    pypi = []
    for dep in deps:
        where = f"{shown}:{_line_of(lines, dep, start)}"
        pypi.append(Item(checked(normalize_pypi_req, dep, where), where))
    python = None
    if project.get("requires-python"):
        rp = str(project["requires-python"])
        python = Item(rp, f"{shown}:{_line_of(lines, 'requires-python', start)}")
    return Request(source=shown, pypi=tuple(pypi), python=python)


def has_environment_table(path: Path) -> bool:
    from imagebuilder.config import read_toml

    return path.is_file() and isinstance(read_toml(path).get("environment"), dict)


def parse_imgbuild_toml(path: str | Path) -> Request:
    path = Path(path)
    data, lines = _load(path)
    shown = str(path)
    env = data.get("environment")
    if not isinstance(env, dict):
        raise BadInput(
            f"{shown}: no [environment] table",
            "add [environment] with conda = [...] and/or pypi = [...] (docs/resolve.md)",
        )
    start = next((i for i, line in enumerate(lines) if line.strip() == "[environment]"), 0)
    for key in env:
        if key not in ENV_KEYS:
            raise BadInput(
                f"{shown}:{_line_of(lines, key, start)}: unknown key {key!r} in [environment]",
                f"keys: {', '.join(ENV_KEYS)}",
            )

    def items(key: str, normalize=None) -> tuple[Item, ...]:
        out = []
        for v in _strings(env.get(key, []), key, f"{shown}:{_line_of(lines, key, start)}"):
            where = f"{shown}:{_line_of(lines, v, start)}"
            out.append(Item(checked(normalize, v, where) if normalize else v, where))
        return tuple(out)

    def scalar(key: str) -> Item | None:
        if env.get(key) is None:
            return None
        return Item(str(env[key]), f"{shown}:{_line_of(lines, key, start)}")

    indexes = items("indexes")
    sys_table = env.get("sys", {})
    if not isinstance(sys_table, dict):
        raise BadInput(
            f"{shown}: [environment] sys must be a table, e.g. sys = {{__glibc = '2.28'}}"
        )
    from imagebuilder.spec import parse_sys_pkg

    sys_pkgs = []
    for name, version in sys_table.items():
        where = f"{shown}:{_line_of(lines, name, start)}"
        n, v = checked(parse_sys_pkg, f"{name}=={version}", where)
        sys_pkgs.append((n, v, where))
    pre = env.get("pre", False)
    if not isinstance(pre, bool):
        raise BadInput(f"{shown}: [environment] pre must be true or false")
    return Request(
        source=shown,
        conda=items("conda", normalize_conda_spec),
        pypi=items("pypi", normalize_pypi_req),
        channels=items("channels"),
        index_url=indexes[0] if indexes else None,
        extra_index_urls=indexes[1:],
        find_links=items("find_links"),
        pre=pre,
        python=scalar("python"),
        sys=tuple(sys_pkgs),
        arch=items("arch"),
        exclude_newer=scalar("exclude_newer"),
    )
