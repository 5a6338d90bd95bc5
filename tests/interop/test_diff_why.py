"""`imgbuild diff ENV ENV` and `imgbuild why PKG ENV` on envs resolved from the rig."""

from __future__ import annotations

import pytest
from interop_support import env_ref


@pytest.fixture(scope="module")
def older(shared, rig, mixed):
    """The mixed request with tinyfoo held below 2 and without requests."""
    return shared(
        "resolve", "--conda", "tinybar", "--conda", "tinyfoo<2", "--conda", "python=3.11",
        "--pypi", "imgb-uses-six", "--index-url", rig.index_url, "-c", rig.channel_url,
        "--arch", "linux-64", "--json", "-q",
    ).json()  # fmt: skip


def test_diff_lists_added_removed_changed_and_shared_layers(shared, mixed, older):
    d = shared("diff", env_ref(older), env_ref(mixed), "--json").json()
    changed = {c["name"]: (c["old"], c["new"]) for c in d["changed"]}
    assert changed["tinyfoo"][0].startswith("1.") and changed["tinyfoo"][1].startswith("2.0")
    added = {c["name"] for c in d["added"]}
    assert {"requests", "urllib3", "certifi"} <= added
    assert d["removed"] == []
    assert d["unchanged"] >= 10  # python and its libraries
    assert 0 < d["layers"]["shared"] < d["layers"]["b"]
    human = shared("diff", env_ref(older), env_ref(mixed)).stdout
    assert "~ conda tinyfoo" in human and "+ pypi  requests" in human and "layers:" in human


def test_diff_of_an_env_with_itself_is_empty(shared, mixed):
    d = shared("diff", env_ref(mixed), env_ref(mixed), "--json").json()
    assert (d["added"], d["removed"], d["changed"]) == ([], [], [])
    assert d["layers"]["shared"] == d["layers"]["a"] == d["layers"]["b"]


def test_why_walks_from_the_request_to_the_package(shared, mixed):
    d = shared("why", "six", env_ref(mixed), "--json").json()
    chains = {c["request"]: c["chain"] for c in d["requested_by"]}
    assert chains["imgb-uses-six"] == ["pypi:imgb-uses-six", "pypi:six"]
    d = shared("why", "tinyfoo", env_ref(mixed), "--json").json()
    assert [c["chain"] for c in d["requested_by"]] == [["conda:tinybar", "conda:tinyfoo"]]
    human = shared("why", "urllib3", env_ref(mixed)).stdout
    assert "requests -> urllib3" in human


def test_why_for_missing_package_and_for_imported_lock(shared, mixed, tmp_path):
    r = shared("why", "numpy", env_ref(mixed), "--json", expect=3)
    assert r.json()["error"]["kind"] == "not_found"
    lock = tmp_path / "explicit.txt"
    conda_only = [p for p in mixed["packages"] if p["kind"] == "conda"]
    lock.write_text("@EXPLICIT\n" + "".join(f"{p['url']}#{p['sha256']}\n" for p in conda_only))
    env = shared("resolve", "--lockfile", lock, "--arch", "linux-64", "--json", "-q").json()
    out = shared("why", "tinyfoo", env_ref(env)).stdout
    assert "pinned by the imported lock file" in out
