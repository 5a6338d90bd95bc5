"""A channel that gains a newer package: same req_id, new full_id (with --force); and
--exclude-newer brings the old full_id back. Also: two solves in a row against the same HTTP
channel (the py-rattler 304 / sharded-repodata trap, LOCAL-SERVICES.md)."""

from __future__ import annotations

import json
import os
import time

import pytest

from .conftest import load_fixtures

load_builder, reindex = load_fixtures().load_builder, load_fixtures().reindex

pytestmark = pytest.mark.rig


def _tinyfoo(doc) -> str:
    return next(p["version"] for p in doc["packages"] if p["name"] == "tinyfoo")


def test_newer_package_changes_full_id_not_req_id(cli, channel_copy):
    server, folder = channel_copy
    args = ("resolve", "--conda", "tinyfoo>=1", "-c", server.url, "--arch", "linux-64",
            "--json")  # fmt: skip
    first = cli(*args).json()
    assert _tinyfoo(first) == "2.0"

    builder = load_builder()
    builder.make_package(
        folder, "noarch", "tinyfoo", "3.0", "pyh_imgb_0",
        {"site-packages/tinyfoo/__init__.py": "__version__ = '3.0'\n"},
        depends=["python >=3.8"], noarch="python", timestamp="2025-06-01",
    )  # fmt: skip
    reindex(folder)

    reused = cli(*args)  # the store already has this request: no solve
    assert reused.json()["full_id"] == first["full_id"] and "reusing" in reused.stderr
    newer = cli(*args, "--force").json()
    assert newer["req_id"] == first["req_id"]
    assert newer["full_id"] != first["full_id"] and _tinyfoo(newer) == "3.0"
    envs = cli("ls", "--json").json()["envs"]
    assert {e["full_id"] for e in envs} == {first["full_id"], newer["full_id"]}
    assert len({e["req_id"] for e in envs}) == 1
    # The default of the request is now its newest resolution.
    again = cli(*args).json()
    assert again["full_id"] == newer["full_id"]

    # Time travel: ignore what was published after 2025-03-01 -> the first resolution.
    past = cli(*args, "--exclude-newer", "2025-03-01", "--dry-run").json()
    assert past["full_id"] == first["full_id"] and past["req_id"] != first["req_id"]
    older = cli(*args, "--exclude-newer", "2024-07-01T00:00:00Z", "--dry-run").json()
    assert _tinyfoo(older) == "1.1"


def test_two_solves_in_a_row_against_plain_http_server(cli, plain_channel_copy):
    """python's http.server answers a revalidation with a bare 304 (no ETag/Last-Modified):
    py-rattler 0.28 then fails on the sharded index of the *second* solve. Files touched just
    now are never fresh, so every solve revalidates."""
    server, folder = plain_channel_copy
    for index in folder.glob("*/repodata_shards.msgpack.zst"):
        os.utime(index)
    args = ("resolve", "--conda", "tinybar", "-c", server.url, "--arch", "linux-64",
            "--json", "--dry-run")  # fmt: skip
    first = cli(*args).json()
    for _ in range(2):
        time.sleep(1.1)  # past the server's one-second Last-Modified resolution
        assert cli(*args).json()["full_id"] == first["full_id"]
    remembered = json.loads((cli.cache / "repodata" / "no-shards.json").read_text())
    assert remembered == [server.url + "/"]


def test_two_solves_in_a_row_against_the_rig_channel(cli, rig_services):
    args = ("resolve", "--conda", "tinybar", "-c", rig_services.channel_url,
            "--arch", "linux-64", "--json", "--dry-run")  # fmt: skip
    first = cli(*args).json()
    assert cli(*args).json()["full_id"] == first["full_id"]


def test_two_solves_in_a_row_against_etag_server(cli, channel_copy):
    """A server that does 304s right (ETag repeated) keeps sharded repodata on."""
    server, _ = channel_copy
    args = ("resolve", "--conda", "tinybar", "-c", server.url, "--arch", "linux-64",
            "--json", "--dry-run")  # fmt: skip
    first = cli(*args).json()
    assert cli(*args).json()["full_id"] == first["full_id"]
    assert any("repodata_shards" in p for p in server.gets)
    assert not (cli.cache / "repodata" / "no-shards.json").exists()
