"""Amazon ECR: a registry password from `GetAuthorizationToken`, repositories created on demand.

ECR needs no docker login: boto3's standard credential chain signs the control-plane calls and
the returned token is a Basic password valid for 12 hours. ECR refuses pushes to a repository
that does not exist, so the push creates it first (as `ko` and `crane` users do by hand).
The endpoint honours boto3's own settings (`AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL`), which
is also how tests point it at a local moto server.
"""

from __future__ import annotations

import base64
import re

from imagebuilder.errors import BadInput, Unavailable
from imagebuilder.registry.credentials import ECR_HOST_RE, Credential

_SOURCE = "Amazon ECR GetAuthorizationToken (boto3 credential chain)"


def _client(region: str):
    import boto3

    # A fresh session: boto3's default session caches credentials for the process.
    return boto3.Session().client("ecr", region_name=region)


def _aws_error(e: Exception, what: str, region: str) -> Exception:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(e, NoCredentialsError):
        return BadInput(
            f"{what}: no AWS credentials found",
            "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "?")
        if code in ("AccessDeniedException", "UnrecognizedClientException"):
            return BadInput(f"{what}: AWS refused the credentials ({code})")
        return Unavailable(f"{what}: ECR in {region} answered {code}")
    if isinstance(e, BotoCoreError):
        return Unavailable(f"{what}: cannot reach ECR in {region}: {type(e).__name__}")
    return e


def ecr_credential(region: str, registry_id: str | None = None) -> Credential:
    """A Basic credential (user AWS) for an ECR registry, from GetAuthorizationToken."""
    from botocore.exceptions import BotoCoreError, ClientError

    kwargs = {"registryIds": [registry_id]} if registry_id else {}
    try:
        data = _client(region).get_authorization_token(**kwargs)["authorizationData"][0]
    except (BotoCoreError, ClientError) as e:
        raise _aws_error(e, "ECR authorization token", region) from None
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return Credential(user, password, _SOURCE)


def ensure_repository(region: str, repository: str, registry_id: str | None = None) -> bool:
    """Create the ECR repository when missing. Returns True when it was created."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(region)
    ids = {"registryId": registry_id} if registry_id else {}
    try:
        client.describe_repositories(repositoryNames=[repository], **ids)
        return False
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
            raise _aws_error(e, f"ECR repository {repository}", region) from None
    except BotoCoreError as e:
        raise _aws_error(e, f"ECR repository {repository}", region) from None
    try:
        client.create_repository(repositoryName=repository, **ids)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "RepositoryAlreadyExistsException":
            raise _aws_error(e, f"creating ECR repository {repository}", region) from None
    except BotoCoreError as e:
        raise _aws_error(e, f"creating ECR repository {repository}", region) from None
    return True


def parse_ecr_host(host: str) -> tuple[str, str] | None:
    """(registry_id, region) for an ECR host, else None."""
    m = ECR_HOST_RE.match(host)
    return (m.group(1), m.group(2)) if m else None


def is_ecr(host: str) -> bool:
    return bool(re.match(ECR_HOST_RE, host))
