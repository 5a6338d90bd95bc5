"""ECR control plane against a real moto server: registry password from GetAuthorizationToken,
repository created when missing (the data plane is the ordinary registry protocol)."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request

import pytest

from ci.services.registry_token import free_port
from imagebuilder.registry.credentials import find_credential
from imagebuilder.registry.ecr import ecr_credential, ensure_repository

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    exe = shutil.which("moto_server")
    if not exe:
        pytest.fail("moto_server is required (pip install 'moto[server]')")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture
def aws(moto, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", moto)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return moto


def test_token_and_repository_creation(aws):
    cred = ecr_credential("us-east-1", "123456789012")
    assert cred.username == "AWS" and cred.password and "ECR" in cred.source
    assert "password" not in repr(cred).lower() or cred.password not in repr(cred)
    assert ensure_repository("us-east-1", "team/envs") is True
    assert ensure_repository("us-east-1", "team/envs") is False
    import boto3

    names = [
        r["repositoryName"] for r in boto3.client("ecr").describe_repositories()["repositories"]
    ]
    assert "team/envs" in names


def test_ecr_host_uses_boto3_when_no_docker_config(aws):
    found = find_credential(HOST)
    assert found.credential is not None and found.credential.username == "AWS"
    assert found.tried[-1] == "Amazon ECR (boto3)"


def test_sink_creates_missing_repository(aws):
    import boto3

    from imagebuilder.oci.registry import _ensure_ecr_repository
    from imagebuilder.registry.reference import parse_reference

    _ensure_ecr_repository(parse_reference(f"{HOST}/created/by-push"))
    repos = boto3.client("ecr").describe_repositories(repositoryNames=["created/by-push"])
    assert repos["repositories"][0]["repositoryName"] == "created/by-push"


def test_no_aws_credentials_is_clear(aws, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(Exception) as e:
        ecr_credential("us-east-1")
    assert e.value.exit_code == 1 and "no AWS credentials" in e.value.message
