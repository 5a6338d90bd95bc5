"""The ENV grammar of CONTRACT.md, tried in its order."""

import pytest

from imagebuilder.errors import BadInput
from imagebuilder.ids import AliasRef, FullIdRef, PairRef, PathspecRef, env_name, parse_env_ref

F16 = "0123456789abcdef"
R16 = "fedcba9876543210"


@pytest.mark.parametrize(
    "text,expected",
    [
        (F16, FullIdRef(F16)),
        ("a" * 64, FullIdRef("a" * 64)),
        (F16.upper(), FullIdRef(F16)),
        (f"{R16}:{F16}", PairRef(R16, F16)),
        (f"metaflow_{R16}_{F16}", PairRef(R16, F16)),
        ("mf:HelloFlow/12/start", PathspecRef("HelloFlow/12/start")),
        ("mf:HelloFlow/12/start/345", PathspecRef("HelloFlow/12/start/345")),
        ("HelloFlow/12/start", PathspecRef("HelloFlow/12/start")),
        ("team/nlp:stable", AliasRef("team/nlp", "stable")),
        ("ds", AliasRef("ds", "latest")),
        ("my-env.v2:Release_1.0", AliasRef("my-env.v2", "Release_1.0")),
    ],
)
def test_forms(text, expected):
    assert parse_env_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Team/nlp",
        "team//nlp",
        "team/nlp:-x",
        "abc",
        "deadbeef",
        "a" * 20 + "g/-x",
        "mf:Flow/1",
        "x:" + "t" * 129,
    ],
)
def test_rejects(text):
    with pytest.raises(BadInput):
        parse_env_ref(text)


def test_env_name_and_alias_tag():
    assert env_name("f" * 64, "0" * 64) == f"metaflow_{'f' * 16}_{'0' * 16}"
    assert AliasRef("team/nlp", "stable").image_tag == "team__nlp--stable"
    assert AliasRef("team/nlp", "stable").mutable
    assert not AliasRef("team/nlp", "v1").mutable
