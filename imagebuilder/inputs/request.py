"""What one input (a file, or the command line) asks for, before it becomes an EnvSpec.

Every parser returns a `Request`; `merge` combines them in order. Each item keeps its origin
("requirements.txt:3", "--conda") so a failure later can name the line that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from imagebuilder.errors import BadInput


@dataclass(frozen=True)
class Item:
    value: str
    origin: str  # "requirements.txt:3", "environment.yml:7", "--conda"


@dataclass(frozen=True)
class Request:
    source: str  # "requirements.txt", "command line", ...
    conda: tuple[Item, ...] = ()
    pypi: tuple[Item, ...] = ()
    channels: tuple[Item, ...] = ()
    index_url: Item | None = None  # the primary index
    extra_index_urls: tuple[Item, ...] = ()
    find_links: tuple[Item, ...] = ()
    pre: bool = False
    python: Item | None = None
    sys: tuple[tuple[str, str, str], ...] = ()  # (name, version, origin)
    arch: tuple[Item, ...] = ()
    exclude_newer: Item | None = None
    extras: dict = field(default_factory=dict, compare=False)

    @property
    def has_requirements(self) -> bool:
        return bool(self.conda or self.pypi or self.python)


# Scalars that two files may not set differently (the command line may override them).
_SCALARS = ("index_url", "python", "exclude_newer")


def merge(requests: list[Request], overrides: Request | None = None) -> Request:
    """Concatenate lists in order; scalars must agree across files; `overrides` (the command
    line) wins over every file for scalars and appends to lists."""
    out = Request(source="+".join(r.source for r in requests) or "command line")
    # Files may disagree on a scalar the command line sets: the command line decides.
    decided = {n for n in _SCALARS if overrides is not None and getattr(overrides, n) is not None}
    for r in requests:
        out = _add(out, r, override=False, decided=decided)
    if overrides is not None:
        out = _add(out, overrides, override=True)
    return out


def _add(a: Request, b: Request, override: bool, decided: set[str] = frozenset()) -> Request:
    values = {}
    for name in _SCALARS:
        old, new = getattr(a, name), getattr(b, name)
        if new is None:
            continue
        if old is not None and old.value != new.value and not override and name not in decided:
            raise BadInput(
                f"{name.replace('_', '-')} is set twice: {old.value!r} ({old.origin}) "
                f"and {new.value!r} ({new.origin})",
                "keep one of them, or set it on the command line to override both",
            )
        values[name] = new
    sys_new = dict((n, (v, o)) for n, v, o in a.sys)
    for n, v, o in b.sys:
        if n in sys_new and sys_new[n][0] != v and not override:
            raise BadInput(
                f"system package {n} is set twice: {sys_new[n][0]} ({sys_new[n][1]}) and {v} ({o})",
                "keep one of them",
            )
        sys_new[n] = (v, o)
    return replace(
        a,
        conda=a.conda + b.conda,
        pypi=a.pypi + b.pypi,
        channels=a.channels + b.channels,
        extra_index_urls=a.extra_index_urls + b.extra_index_urls,
        find_links=a.find_links + b.find_links,
        pre=a.pre or b.pre,
        sys=tuple((n, v, o) for n, (v, o) in sys_new.items()),
        # --arch on the command line replaces the files' arch list; files add up.
        arch=(b.arch or a.arch) if override else a.arch + b.arch,
        **values,
    )


def checked(fn, value, where: str):
    """Call a normalizer; a BadInput it raises gets the origin ("file:line: ...") prepended and
    is cut to its first line (packaging's messages draw a caret diagram on the next lines)."""
    try:
        return fn(value)
    except BadInput as e:
        raise BadInput(f"{where}: {e.message.splitlines()[0]}", e.hint) from None
