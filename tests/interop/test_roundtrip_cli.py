"""Export then import through the CLI gives the same full_id, for every format, with envs the
resolver made from the rig's channel and index (issue 9: "Round trip ... tested for every
format")."""

from __future__ import annotations

import pytest
from interop_support import env_ref

FILES = {
    "conda-lock": "conda-lock.yml",
    "pixi": "pixi.lock",
    "explicit": "explicit.txt",
    "requirements": "requirements.txt",
    "pylock": "pylock.toml",
}


@pytest.mark.parametrize("fmt", list(FILES))
def test_mixed_env_round_trips(shared, mixed, tmp_path, fmt):
    path = tmp_path / FILES[fmt]
    shared("export", env_ref(mixed), "--format", fmt, "-o", path, "-q")
    got = shared("resolve", "--lockfile", path, "--arch", "linux-64", "--json", "-q").json()
    assert got["full_id"] == mixed["full_id"]
    assert got["req_id"] != mixed["req_id"]  # its own request: the lock's content
    assert sorted((p["kind"], p["name"], p["sha256"]) for p in got["packages"]) == sorted(
        (p["kind"], p["name"], p["sha256"]) for p in mixed["packages"]
    )
    # Importing the same file again names the same env (req_id from the bytes, no solve).
    again = shared("resolve", "--lockfile", path, "--arch", "linux-64", "--json", "-q").json()
    assert (again["req_id"], again["full_id"]) == (got["req_id"], got["full_id"])


@pytest.mark.parametrize("fmt", ["conda-lock", "pixi"])
def test_multi_arch_alias_round_trips_in_one_file(shared, conda_multi, tmp_path, fmt):
    path = tmp_path / FILES[fmt]
    shared("export", "interop/multi", "--format", fmt, "-o", path, "-q")
    got = shared(
        "resolve", "--lockfile", path, "--arch", "linux-64", "--arch", "linux-aarch64",
        "--alias", f"interop/imported-{fmt}", "--json", "-q",
    ).json()  # fmt: skip
    want = {e["arch"]: e["full_id"] for e in conda_multi}
    assert {e["arch"]: e["full_id"] for e in got["envs"]} == want
    shown = shared("show", f"interop/imported-{fmt}", "--arch", "linux-aarch64", "--json").json()
    assert shown["full_id"] == want["linux-aarch64"]


def test_single_arch_format_needs_arch_for_multi_arch_alias(shared, conda_multi, tmp_path):
    r = shared("export", "interop/multi", "--format", "explicit", expect=1)
    assert "hold one arch" in r.stderr and "--arch" in r.stderr
    out = shared(
        "export", "interop/multi", "--format", "explicit", "--arch", "linux-aarch64"
    ).stdout
    assert "# platform: linux-aarch64" in out and "@EXPLICIT" in out


def test_export_to_stdout_and_json(shared, mixed):
    text = shared("export", env_ref(mixed), "--format", "requirements").stdout
    assert "--hash=sha256:" in text and "imgb-uses-six==1.0" in text
    assert "# conda: " in text  # the conda part kept where pip does not look


def test_dry_run_imports_without_writing(shared, mixed, tmp_path):
    path = tmp_path / "conda-lock.yml"
    shared("export", env_ref(mixed), "--format", "conda-lock", "-o", path, "-q")
    other = tmp_path / "other-store"
    got = shared(
        "resolve", "--lockfile", path, "--arch", "linux-64", "--dry-run", "--json", "-q",
        env={"IMGBUILD_STORE": other},
    ).json()  # fmt: skip
    assert got["full_id"] == mixed["full_id"]
    assert not other.exists()


def test_lockfile_with_other_inputs_is_a_usage_error(shared, tmp_path):
    path = tmp_path / "conda-lock.yml"
    path.write_text("version: 1\nmetadata: {}\npackage: []\n")
    r = shared("resolve", "--lockfile", path, "--conda", "six", "--json", expect=2)
    assert r.json()["error"]["kind"] == "usage"
    r = shared("resolve", "--lockfile", tmp_path / "missing.yml", "--json", expect=3)
    assert "does not exist" in r.json()["error"]["message"]
