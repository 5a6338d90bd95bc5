"""Solver and network messages -> one clear line (messages as rattler 0.28 and uv 0.13 print
them, captured from real runs against the rig)."""

from __future__ import annotations

from imagebuilder.errors import Conflict, NotFound, Unavailable
from imagebuilder.resolve.explain import channel_failure, conda_failure, uv_failure
from imagebuilder.resolve.gateway import shard_trap_channel
from imagebuilder.spec import make_spec

SPEC = make_spec(
    arch="linux-64",
    conda=["conflict-a", "conflict-b", "deep", "needs-newglibc", "tinyfoo<1", "six"],
    pypi=["imgb-conflict", "six==1.15"],
    channels=["http://127.0.0.1:8767"],
    indexes=["http://127.0.0.1:8766/simple"],
    origins={
        "conflict-a": "req.txt:2",
        "conflict-b": "--conda",
        "deep": "env.yml:3",
        "imgb-conflict": "req.txt:5",
        "six==1.15": "--pypi",
    },  # fmt: skip
)

CONFLICT = """Cannot solve the request because of: The following packages are incompatible
├─ conflict-b * can be installed with any of the following options:
│  └─ conflict-b 1.0 would require
│     └─ shared >=2, which can be installed with any of the following options:
│        └─ shared 2.0
└─ deep * cannot be installed because there are no viable options:
   └─ deep 1.0 would require
      └─ conflict-a *, which cannot be installed because there are no viable options:
         └─ conflict-a 1.0 would require
            └─ shared <2, which cannot be installed because there are no viable options:
               └─ shared 1.0, which conflicts with the versions reported above.
"""
GLIBC = """Cannot solve the request because of: needs-newglibc * cannot be installed because there are no viable options:
└─ needs-newglibc 1.0 would require
   └─ __glibc >=2.99, for which no candidates were found.
"""


def test_conda_conflict_names_the_chain_and_origins():
    e = conda_failure(CONFLICT, SPEC, {})
    assert isinstance(e, Conflict) and e.exit_code == 4
    assert e.message == (
        "conda packages conflict for linux-64: conflict-b (--conda) needs shared >=2 but "
        "deep (env.yml:3) needs conflict-a *, which needs shared <2"
    )
    assert "\n" not in e.message


def test_conda_missing_package_and_version():
    e = conda_failure(
        "Cannot solve the request because of: No candidates were found for nosuch *.\n", SPEC, {}
    )
    assert isinstance(e, NotFound) and "no package named nosuch" in e.message
    assert "http://127.0.0.1:8767" in e.message
    e = conda_failure(
        "Cannot solve the request because of: No candidates were found for tinyfoo <1.\n",
        SPEC,
        {"tinyfoo": ["1.0", "1.1", "2.0"]},
    )
    assert isinstance(e, NotFound)
    assert (
        e.message
        == "no version of tinyfoo matches <1 for linux-64 (the channels have 1.0, 1.1, 2.0)"
    )


def test_conda_virtual_package_of_the_target():
    e = conda_failure(GLIBC, SPEC, {})
    assert isinstance(e, Conflict)
    assert "needs-newglibc needs __glibc >=2.99" in e.message and "__glibc 2.28" in e.message
    assert "--sys-pkg __glibc==2.99" in e.hint


def test_channel_failures_hide_credentials():
    refused = (
        "error sending request for url (http://al:pw@127.0.0.1:1/noarch/repodata.json)\n"
        "Caused by: client error (Connect)\nCaused by: Connection refused (os error 111)"
    )
    e = channel_failure(refused, SPEC)
    assert isinstance(e, Unavailable) and e.exit_code == 5
    assert e.message == "cannot reach conda channel http://127.0.0.1:1: connection refused"
    missing = (
        "could not find subdir 'noarch' in channel 'http://127.0.0.1:8765/nochan/'\n"
        "Caused by: HTTP status client error (404 File not found) for url "
        "(http://127.0.0.1:8765/nochan/noarch/repodata.json)"
    )
    e = channel_failure(missing, SPEC)
    assert e.message == "conda channel http://127.0.0.1:8765/nochan was not found (HTTP 404)"


def test_status_codes_are_not_read_from_ports():
    # A CI run drew port 40345 for the TLS channel: its unknown-CA failure read as HTTP 403.
    tls = (
        "error sending request for url (https://alice:pw@127.0.0.1:40345/linux-64/repodata.json)"
        "\nCaused by: client error (Connect)\nCaused by: invalid peer certificate: UnknownIssuer"
    )
    e = channel_failure(tls, SPEC)
    assert "TLS certificate is not trusted" in e.message and "pw" not in e.message
    assert "127.0.0.1:40345" in e.message
    port_only = tls.replace("(https://alice:pw@127.0.0.1:40345/linux-64/repodata.json)", "")
    port_only += " (tcp connect 127.0.0.1:50401)"
    assert "TLS certificate" in channel_failure(port_only, SPEC).message
    denied = (
        "failed to fetch repodata from https://127.0.0.1:40345/linux-64/repodata.json\n"
        "Caused by: HTTP status client error (403 Forbidden) for url "
        "(https://127.0.0.1:40345/linux-64/repodata.json)"
    )
    e = channel_failure(denied, SPEC)
    assert e.message.startswith("conda channel https://127.0.0.1:40345 refused access (403")


def test_uv_mixed_conflict_names_both_sides():
    stderr = (
        "error: No solution found when resolving dependencies:\n"
        "  cause: Because all versions of imgb-conflict depend on six<1.0 and six==1.16.0, we can "
        "conclude that all versions of imgb-conflict cannot be used.\n"
        "         And because you require imgb-conflict, we can conclude that your requirements "
        "are unsatisfiable.\n"
    )
    e = uv_failure(stderr, SPEC, {"six": "1.16.0"})
    assert isinstance(e, Conflict)
    assert e.message == (
        "conda provides six 1.16.0; every version of imgb-conflict (PyPI, req.txt:5) needs six<1.0"
    )


def test_uv_not_found_and_unreachable():
    e = uv_failure(
        "error: No solution found when resolving dependencies:\n  cause: Because nosuch-dist was "
        "not found in the package registry and you require nosuch-dist, we can conclude that your "
        "requirements are unsatisfiable.\n",
        SPEC,
        {},
    )
    assert isinstance(e, NotFound) and "no package named nosuch-dist" in e.message
    e = uv_failure(
        "error: Failed to fetch: `http://x:secret@127.0.0.1:9/simple/requests/`\n"
        "  Caused by: Request failed after 3 retries\n  Caused by: error sending request\n"
        "  Caused by: tcp connect error: Connection refused (os error 111)\n",
        SPEC,
        {},
    )
    assert isinstance(e, Unavailable) and "secret" not in e.message
    assert "127.0.0.1:9" in e.message and "connection refused" in e.message


def test_shard_trap_is_recognized():
    msg = (
        "received unexpected status code (304 Not Modified) when fetching "
        "http://u:p@127.0.0.1:8767/linux-64/repodata_shards.msgpack.zst.\n\nBody:\n"
    )
    assert shard_trap_channel(msg) == "http://127.0.0.1:8767/"
    assert (
        shard_trap_channel("error sending request for url (http://x/noarch/repodata.json)") is None
    )
