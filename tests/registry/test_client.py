"""The registry client against real docker-registry processes: blobs, mounts, manifests,
auth flows, retries and faults (through the counting/fault proxy)."""

from __future__ import annotations

import io
import json
import os

import pytest
from regkit import PASSWORD, USER, auth_entry, blob, docker_config, write_helper

from ci.services.registry_proxy import Rule
from imagebuilder.errors import IntegrityError, NotFound, Unavailable
from imagebuilder.registry.client import RegistryClient
from imagebuilder.registry.upload import mount_blob, upload_blob

MT = "application/vnd.oci.image.manifest.v1+json"


def push_manifest(c: RegistryClient, repo: str, tag: str, layer: bytes) -> str:
    cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    for data in (cfg, layer):
        d, n, op = blob(data)
        upload_blob(c, repo, d, n, op)
    doc = {
        "schemaVersion": 2,
        "mediaType": MT,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blob(cfg)[0],
            "size": len(cfg),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": blob(layer)[0],
                "size": len(layer),
            }
        ],
    }
    raw = json.dumps(doc, indent=3).encode()  # deliberately not canonical: must stay as is
    digest = blob(raw)[0]
    c.put_manifest(repo, digest, raw, MT)
    c.put_manifest(repo, tag, raw, MT)
    got = c.get_manifest(repo, tag)
    assert got.raw == raw and got.digest == digest and got.media_type == MT
    return digest


def test_upload_mount_and_exact_manifest(proxy):
    c = RegistryClient(proxy.host, insecure=True)
    data = os.urandom(5000)
    d, n, op = blob(data)
    assert not c.blob_exists("t/a", d)
    assert upload_blob(c, "t/a", d, n, op) == n
    assert c.blob_exists("t/a", d)
    before = proxy.upload_bytes()
    assert mount_blob(c, "t/b", d, "t/a")
    assert proxy.upload_bytes() == before  # a mount sends no bytes
    assert c.blob_exists("t/b", d)
    digest = push_manifest(c, "t/a", "v1", data)
    assert c.manifest_digest("t/a", "v1") == digest
    assert c.list_tags("t/a") == ["v1"]


def test_chunked_upload(proxy):
    c = RegistryClient(proxy.host, insecure=True)
    data = os.urandom(250_000)
    d, n, op = blob(data)
    assert upload_blob(c, "t/chunk", d, n, op, chunk_threshold=10_000, chunk_size=64_000) == n
    assert proxy.count("PATCH") == 4
    r = c.get_blob("t/chunk", d)
    assert r.content == data


def test_retries_5xx_and_dropped_connection(proxy):
    c = RegistryClient(proxy.host, insecure=True, backoff=0.01)
    data = os.urandom(3000)
    d, n, op = blob(data)
    proxy.rules += [
        Rule("PUT", r"/blobs/uploads/", "503", times=1),
        Rule("POST", r"/blobs/uploads/", "drop", times=1),
    ]
    assert upload_blob(c, "t/retry", d, n, op) == n
    assert all(r.hits == 1 for r in proxy.rules)
    assert c.blob_exists("t/retry", d)


def test_persistent_5xx_gives_clear_message(proxy):
    c = RegistryClient(proxy.host, insecure=True, attempts=3, backoff=0.01)
    d, n, op = blob(b"x" * 100)
    proxy.rules.append(Rule("PUT", r"/blobs/uploads/", "500", times=-1))
    with pytest.raises(Unavailable) as e:
        upload_blob(c, "t/fail", d, n, op)
    assert proxy.host in e.value.message and "3 tries" in e.value.message
    assert e.value.exit_code == 5
    assert not c.blob_exists("t/fail", d)


def test_corrupt_source_is_refused(proxy):
    c = RegistryClient(proxy.host, insecure=True)
    d, n, _ = blob(b"good" * 100)
    with pytest.raises(IntegrityError):
        upload_blob(c, "t/corrupt", d, n, lambda: io.BytesIO(b"evil" * 100))
    with pytest.raises(IntegrityError):
        upload_blob(c, "t/corrupt", d, n, lambda: io.BytesIO(b"evil" * 100), chunk_threshold=10)
    assert not c.blob_exists("t/corrupt", d)


def test_registry_down():
    from ci.services.registry_token import free_port

    c = RegistryClient(f"127.0.0.1:{free_port()}", insecure=True)
    with pytest.raises(Unavailable) as e:
        c.blob_exists("t/x", blob(b"a")[0])
    assert "unreachable" in e.value.message and "connection refused" in e.value.message


def test_plain_http_needs_insecure(registry):
    c = RegistryClient(registry.host)
    with pytest.raises(Unavailable) as e:
        c.ping()
    assert "insecure_registries" in e.value.hint


def test_basic_auth_from_docker_config(basic_registry, isolated):
    docker_config(isolated, {"auths": {basic_registry.host: auth_entry()}})
    c = RegistryClient(basic_registry.host, insecure=True)
    push_manifest(c, "t/basic", "v1", b"basic-layer")
    assert c.auth.lookup.credential.source.endswith(".docker/config.json auths")


def test_basic_auth_wrong_and_missing(basic_registry, isolated):
    c = RegistryClient(basic_registry.host, insecure=True)
    with pytest.raises(Exception) as e:
        c.blob_exists("t/basic", blob(b"a")[0])
    assert e.value.exit_code == 5 and "no credentials were found" in e.value.message
    assert ".docker/config.json" in e.value.message
    docker_config(isolated, {"auths": {basic_registry.host: auth_entry(USER, "wrong-Pa55")}})
    c = RegistryClient(basic_registry.host, insecure=True)
    with pytest.raises(Exception) as e:
        c.blob_exists("t/basic", blob(b"a")[0])
    assert e.value.exit_code == 1 and "refused" in e.value.message and USER in e.value.message
    assert "wrong-Pa55" not in e.value.message + e.value.hint


def test_token_auth_with_credential_helper(token_registry, isolated, helper_path):
    write_helper(helper_path, "imgbtest", {token_registry.host: (USER, PASSWORD)})
    docker_config(isolated, {"credHelpers": {token_registry.host: "imgbtest"}})
    c = RegistryClient(token_registry.host, insecure=True)
    push_manifest(c, "t/token", "v1", b"token-layer")
    assert "docker-credential-imgbtest" in c.auth.lookup.credential.source
    server = token_registry.token_server
    assert server.requests and all(r["user"] == USER for r in server.requests)


def test_token_auth_creds_store_and_wrong_password(token_registry, isolated, helper_path):
    write_helper(helper_path, "store", {token_registry.host: (USER, "not-the-password")})
    docker_config(isolated, {"credsStore": "store"})
    c = RegistryClient(token_registry.host, insecure=True)
    with pytest.raises(Exception) as e:
        c.blob_exists("t/token", blob(b"a")[0])
    assert e.value.exit_code == 1 and token_registry.host in e.value.message
    assert "credsStore" in e.value.message and "not-the-password" not in str(e.value.to_json())


def test_token_auth_pull_only_user_cannot_push(token_registry, isolated, tmp_path, monkeypatch):
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {token_registry.host: auth_entry("reader", "reader-pw")}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    c = RegistryClient(token_registry.host, insecure=True)
    d, n, op = blob(b"reader")
    with pytest.raises(Exception) as e:
        upload_blob(c, "t/ro", d, n, op)
    assert e.value.exit_code == 1 and "auth.json" in e.value.message


def test_manifest_not_found(proxy):
    c = RegistryClient(proxy.host, insecure=True)
    assert c.get_manifest("t/none", "nope") is None
    with pytest.raises(NotFound):
        c.get_blob("t/none", blob(b"zz")[0])
