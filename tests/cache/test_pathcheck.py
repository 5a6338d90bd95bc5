"""The one symlink walk shared by archive checks and pack extraction (imagebuilder/pathcheck.py)."""

import pytest

from imagebuilder.pathcheck import ABSOLUTE, LEAVES, LOOPS, MAX_HOPS, link_escape


@pytest.mark.parametrize(
    "links, name, kind",
    [
        ({"lib/a.so": "a.so.1"}, "lib/a.so", None),
        ({"bin/py": "../lib/py3"}, "bin/py", None),
        ({"lib/x": "../../etc"}, "lib/x", LEAVES),
        ({"lib/x": "/etc"}, "lib/x", ABSOLUTE),
        ({"lib/x": "a\0b"}, "lib/x", ABSOLUTE),
        # each alone stays inside; followed, they climb out
        ({"a": "b/..", "b": "c/..", "c": ".."}, "a", LEAVES),
        ({"d/l1": "..", "d/l2": "l1/.."}, "d/l2", LEAVES),
        # a link met on the way points to an absolute path
        ({"a": "b/x", "b": "/etc"}, "a", ABSOLUTE),
        # loops: through another link, and through itself (the stricter of the two old walks)
        ({"a": "b", "b": "a"}, "a", LOOPS),
        ({"a": "a/x"}, "a", LOOPS),
    ],
)
def test_link_escape(links, name, kind):
    got = link_escape(name, links[name], links)
    assert (got.kind if got else None) == kind


def test_chain_of_max_hops_is_followed_to_the_end():
    # l1 -> x, l2 -> l1, ...: resolving l(N+1) follows N links; MAX_HOPS are fine, one more loops
    n = MAX_HOPS + 1
    links = {"l1": "x"} | {f"l{i}": f"l{i - 1}" for i in range(2, n + 1)}
    assert link_escape(f"l{n}", links[f"l{n}"], links) is None
    links["top"] = f"l{n}"
    assert link_escape("top", links["top"], links).kind == LOOPS


def test_escape_names_the_link_that_did_it():
    e = link_escape("a", "b/x", {"a": "b/x", "sub/b": "/etc", "b": "sub/b"})
    assert (e.kind, e.link, e.target) == (ABSOLUTE, "sub/b", "/etc")
