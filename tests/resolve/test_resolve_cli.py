"""`imgbuild resolve` on the rig: ids, stability, cross-arch, mixed envs, reuse, show/ls."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.rig


def _names(doc, kind=None):
    return sorted(p["name"] for p in doc["packages"] if kind is None or p["kind"] == kind)


def test_tinyfoo_ids_are_stable(cli, rig_services):
    args = ("resolve", "--conda", "tinyfoo>=1", "-c", rig_services.channel_url,
            "--arch", "linux-64", "--json", "--dry-run")  # fmt: skip
    first = cli(*args).json()
    assert set(first) == {"req_id", "full_id", "env_name", "arch", "packages"}
    assert len(first["req_id"]) == 64 and len(first["full_id"]) == 64
    assert first["env_name"] == f"metaflow_{first['req_id'][:16]}_{first['full_id'][:16]}"
    assert first["arch"] == "linux-64"
    tinyfoo = next(p for p in first["packages"] if p["name"] == "tinyfoo")
    assert tinyfoo["version"] == "2.0" and tinyfoo["subdir"] == "noarch"
    assert len(tinyfoo["sha256"]) == 64 and tinyfoo["url"].startswith(rig_services.channel_url)
    assert all("record" not in p for p in first["packages"])
    assert "python" in _names(first)  # tinyfoo needs python >=3.8
    # Same request again (warm repodata cache, same HTTP channel): same ids.
    again = cli(*args).json()
    assert (again["req_id"], again["full_id"]) == (first["req_id"], first["full_id"])
    # A spelling variant of the same request is the same request.
    variant = cli("resolve", "--conda", "TinyFoo >= 1", "-c", rig_services.channel_url + "/",
                  "--arch", "linux-64", "--json", "--dry-run").json()  # fmt: skip
    assert variant["req_id"] == first["req_id"]


@pytest.mark.parametrize("arch", ["osx-arm64", "linux-aarch64"])
def test_cross_arch_from_linux(cli, rig_services, arch):
    doc = cli("resolve", "--conda", "tinyfoo>=1", "-c", rig_services.channel_url,
              "--arch", arch, "--json", "--dry-run").json()  # fmt: skip
    assert doc["arch"] == arch
    subdirs = {p["subdir"] for p in doc["packages"]}
    assert subdirs == {arch, "noarch"}
    python = next(p for p in doc["packages"] if p["name"] == "python")
    assert python["subdir"] == arch and f"/{arch}/" in python["url"]


def test_several_arches_make_a_group(cli, rig_services):
    out = cli("resolve", "--conda", "tinyfoo>=1", "-c", rig_services.channel_url,
              "--arch", "linux-64", "--arch", "osx-arm64", "--json",
              "--alias", "team/foo").json()  # fmt: skip
    assert [e["arch"] for e in out["envs"]] == ["linux-64", "osx-arm64"]
    assert len({e["req_id"] for e in out["envs"]}) == 2  # the arch is part of the request
    alias = json.loads((cli.store / "aliases/team/foo/latest.json").read_text())
    assert set(alias["platforms"]) == {"linux-64", "osx-arm64"}
    shown = cli("show", "team/foo", "--arch", "osx-arm64", "--json").json()
    assert shown["full_id"] == out["envs"][1]["full_id"] and shown["aliases"] == ["team/foo:latest"]


def test_mixed_env_has_no_package_twice(cli, rig_services):
    doc = cli("resolve", "--conda", "python", "--conda", "six", "-c", rig_services.channel_url,
              "--pypi", "imgb-uses-six", "--pypi", "requests", "--index-url",
              rig_services.index_url, "--arch", "linux-64", "--json", "--dry-run").json()  # fmt: skip
    conda, pypi = set(_names(doc, "conda")), set(_names(doc, "pypi"))
    assert {"python", "six"} <= conda
    assert {"imgb-uses-six", "requests", "urllib3", "idna", "certifi"} <= pypi
    assert not conda & pypi, f"on both sides: {conda & pypi}"
    for p in doc["packages"]:
        if p["kind"] == "pypi":
            assert p["filename"].endswith(".whl") and p["url"].startswith(
                rig_services.index_url[:-7]
            )
            assert len(p["sha256"]) == 64 and p["size"] > 0
    cn = next(p for p in doc["packages"] if p["name"] == "charset-normalizer")
    assert cn["subdir"] == "linux-64" and "manylinux" in cn["build"]  # the binary wheel


def test_mixed_osx_picks_the_mac_wheel(cli, rig_services):
    doc = cli("resolve", "--pypi", "requests", "-c", rig_services.channel_url, "--index-url",
              rig_services.index_url, "--arch", "osx-arm64", "--json", "--dry-run").json()  # fmt: skip
    cn = next(p for p in doc["packages"] if p["name"] == "charset-normalizer")
    assert cn["build"] == "cp311-cp311-macosx_11_0_arm64" and cn["subdir"] == "osx-arm64"
    assert next(p for p in doc["packages"] if p["name"] == "python")["subdir"] == "osx-arm64"


def test_sdist_only_package_is_a_source(cli, rig_services):
    doc = cli("resolve", "--pypi", "imgb-sdist", "-c", rig_services.channel_url, "--index-url",
              rig_services.index_url, "--arch", "linux-64", "--json", "--dry-run").json()  # fmt: skip
    sd = next(p for p in doc["packages"] if p["name"] == "imgb-sdist")
    assert sd["source"] == "sdist" and sd["subdir"] == "source" and sd["build"] == ""
    assert sd["filename"].endswith(".tar.gz") and len(sd["sha256"]) == 64


def test_second_resolve_reuses_and_touches_no_channel(cli, channel_copy):
    server, _ = channel_copy
    args = ("resolve", "--conda", "tinyfoo>=1", "-c", server.url, "--arch", "linux-64",
            "--json")  # fmt: skip
    first = cli(*args).json()
    assert f"envs/{first['req_id'][:16]}/{first['full_id'][:16]}.json" in cli.store_files()
    server.gets.clear()
    again = cli(*args)
    assert again.json() == first
    assert "reusing" in again.stderr and "--force" in again.stderr
    assert server.gets == []  # no solve, no repodata, no package
    forced = cli(*args, "--force").json()
    assert (forced["req_id"], forced["full_id"]) == (first["req_id"], first["full_id"])
    assert server.gets  # --force solved again


def test_show_and_ls(cli, rig_services):
    doc = cli("resolve", "--conda", "tinyfoo==1.0", "-c", rig_services.channel_url,
              "--arch", "linux-64", "--json", "--alias", "demo:v1").json()  # fmt: skip
    for ref in (doc["full_id"][:16], doc["full_id"], f"{doc['req_id'][:16]}:{doc['full_id'][:16]}",
                doc["env_name"], "demo:v1"):  # fmt: skip
        shown = cli("show", ref, "--json").json()
        assert (shown["req_id"], shown["full_id"]) == (doc["req_id"], doc["full_id"])
    human = cli("show", "demo:v1").stdout
    assert doc["env_name"] in human and "tinyfoo" in human and "1.0" in human
    listed = cli("ls", "--json").json()
    assert [e["full_id"] for e in listed["envs"]] == [doc["full_id"]]
    assert listed["envs"][0]["aliases"] == ["demo:v1"]
    assert listed["aliases"][0]["name"] == "demo" and listed["aliases"][0]["tag"] == "v1"
    text = cli("ls").stdout
    assert doc["req_id"][:16] in text and "demo:v1" in text
    missing = cli("show", "nothere", expect=3)
    assert "nothere" in missing.stderr


def test_no_cache_records_nothing(cli, rig_services):
    """An env record is only written after its packages (CONTRACT.md): --no-cache writes none."""
    args = (
        "resolve",
        "--conda",
        "tinyfoo==1.0",
        "-c",
        rig_services.channel_url,
        "--arch",
        "linux-64",
    )
    out = cli(*args, "--no-cache", "--json").json()
    assert len(out["full_id"]) == 64 and out["packages"]
    assert cli.store_files() == []
    bad = cli(*args, "--no-cache", "--alias", "demo:v1", expect=2)
    assert "--no-cache" in bad.stderr and "Traceback" not in bad.stderr
    assert cli.store_files() == []
