"""Does a symlink, followed through the other symlinks of the same tree, stay inside it?

One walk for every place that accepts symlinks from an archive: package checks
(archive_check.py) and pack extraction (install/packtar.py). Each link alone may look inside
(`a -> ..` in a subfolder, `b -> a/..`) and still climb out when the links are followed, so the
walk expands every link it meets, including the one being resolved (a link through itself is a
loop), up to MAX_HOPS links, like the kernel's ELOOP limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_HOPS = 40

ABSOLUTE, LEAVES, LOOPS = "absolute", "leaves", "loops"


@dataclass(frozen=True)
class Escape:
    """Why a link is refused: kind (ABSOLUTE, LEAVES, LOOPS), the link whose target did it
    (the resolved one or one met on the way) and that target."""

    kind: str
    link: str
    target: str


def link_escape(name: str, target: str, links: Mapping[str, str]) -> Escape | None:
    """None when symlink `name` -> `target` resolves inside the tree whose symlinks are
    `links` (tree-relative path -> target; names normalized, no `.`/`..`/empty parts)."""
    if target.startswith("/") or "\0" in target:
        return Escape(ABSOLUTE, name, target)
    stack = name.split("/")[:-1]
    todo = target.split("/")
    todo.reverse()  # pop() from the end: the next component is last
    hops = 0
    while todo:
        comp = todo.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if not stack:
                return Escape(LEAVES, name, target)
            stack.pop()
            continue
        stack.append(comp)
        nxt = links.get("/".join(stack))
        if nxt is None:
            continue
        hops += 1
        if hops > MAX_HOPS:
            return Escape(LOOPS, name, target)
        cur = stack.pop()
        if nxt.startswith("/") or "\0" in nxt:
            return Escape(ABSOLUTE, "/".join((*stack, cur)), nxt)
        parts = nxt.split("/")
        parts.reverse()
        todo.extend(parts)
    return None
