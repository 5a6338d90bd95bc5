"""Reference parsing and credential lookup (files and helper scripts; no network)."""

from __future__ import annotations

import json

import pytest
from regkit import auth_entry, docker_config, write_helper

from imagebuilder.errors import BadInput
from imagebuilder.registry.credentials import find_credential
from imagebuilder.registry.reference import parse_reference, parse_repository

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "text, registry, repo, tag, digest",
    [
        ("127.0.0.1:5000/team/envs:abc", "127.0.0.1:5000", "team/envs", "abc", None),
        ("docker://localhost/x", "localhost", "x", None, None),
        ("ghcr.io/org/img@" + D, "ghcr.io", "org/img", None, D),
        ("ghcr.io/org/img:t@" + D, "ghcr.io", "org/img", "t", D),
        ("python:3.11-slim", "docker.io", "library/python", "3.11-slim", None),
        ("team/tool", "docker.io", "team/tool", None, None),
        ("[::1]:5000/a/b:c", "[::1]:5000", "a/b", "c", None),
    ],
)
def test_parse(text, registry, repo, tag, digest):
    r = parse_reference(text)
    assert (r.registry, r.repository, r.tag, r.digest) == (registry, repo, tag, digest)


@pytest.mark.parametrize("bad", ["", "http://x/y", "host:5000/UPPER", "a/b:bad tag", "x@sha256:12"])
def test_bad_references(bad):
    with pytest.raises(BadInput):
        parse_reference(bad)


def test_registry_value_has_no_tag():
    assert parse_repository("127.0.0.1:5000/envs").repository == "envs"
    with pytest.raises(BadInput):
        parse_repository("127.0.0.1:5000/envs:tag")


def test_auth_file_precedence_and_forms(isolated, tmp_path, monkeypatch, helper_path):
    host = "reg.example:5000"
    docker_config(isolated, {"auths": {f"https://{host}/v1/": auth_entry("dock", "pw1")}})
    got = find_credential(host).credential
    assert (got.username, got.password) == ("dock", "pw1") and "pw1" not in repr(got)
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {host: {"username": "pod", "password": "pw2"}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    assert find_credential(host).credential.username == "pod"
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    write_helper(helper_path, "h", {host: ("helper", "pw3")})
    docker_config(
        isolated, {"auths": {host: auth_entry("dock", "pw1")}, "credHelpers": {host: "h"}}
    )
    assert find_credential(host).credential.username == "helper"


def test_nothing_found_lists_sources(isolated):
    found = find_credential("nowhere.example")
    assert found.credential is None and any("config.json" in t for t in found.tried)


def test_broken_files_and_helpers(isolated, helper_path):
    host = "reg.example"
    docker_config(isolated, {"credHelpers": {host: "absent"}})
    with pytest.raises(BadInput) as e:
        find_credential(host)
    assert "docker-credential-absent" in e.value.message
    docker_config(isolated, {"auths": {host: {"auth": "!!notbase64"}}})
    with pytest.raises(BadInput):
        find_credential(host)
    (isolated / ".docker" / "config.json").write_text("{not json")
    with pytest.raises(BadInput) as e:
        find_credential(host)
    assert "config.json" in e.value.message
    # A helper that has nothing for the host answers per protocol: no credential, no error.
    write_helper(helper_path, "empty", {})
    docker_config(isolated, {"credsStore": "empty"})
    assert find_credential(host).credential is None
