"""Read-only S3 with the standard library: SigV4-signed GET/HEAD/list and the AWS credential
chain, for the bootstrap (a task image may have nothing but Python).

Why not presigned URLs: they expire, and a deployed workflow (Argo, Step Functions) starts tasks
days or months after it was created. Why not boto3: it is not there before the bootstrap has a
runtime, and with it botocore's ~90 MB would have to be unpacked at every cold task start for
three kinds of request. Credentials, in boto3's order: environment variables, web identity
(EKS IRSA: an unsigned STS AssumeRoleWithWebIdentity), container credentials (ECS, Batch, EKS
Pod Identity), the shared credentials file, EC2 instance metadata (IMDSv2). No credentials at
all: unsigned requests (public buckets).
"""

from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ATTEMPTS = 4


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


# --- credentials ------------------------------------------------------------------------------


def _http(req: urllib.request.Request, timeout: float) -> bytes:
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def _from_env(env) -> Credentials | None:
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return Credentials(
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN")
        )
    return None


def _from_web_identity(env) -> Credentials | None:
    token_file, role = env.get("AWS_WEB_IDENTITY_TOKEN_FILE"), env.get("AWS_ROLE_ARN")
    if not (token_file and role):
        return None
    with open(token_file) as f:
        token = f.read().strip()
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = (
        env.get("AWS_ENDPOINT_URL_STS")
        or env.get("AWS_ENDPOINT_URL")
        or f"https://sts.{region}.amazonaws.com"
    )
    query = urllib.parse.urlencode(
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": role,
            "RoleSessionName": env.get("AWS_ROLE_SESSION_NAME") or f"imgbuild-{os.getpid()}",
            "WebIdentityToken": token,
        }
    )
    body = _http(urllib.request.Request(endpoint.rstrip("/") + "/?" + query), timeout=10)
    root = ET.fromstring(body)

    def find(tag: str) -> str:
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] == tag:
                return el.text or ""
        raise KeyError(tag)

    return Credentials(find("AccessKeyId"), find("SecretAccessKey"), find("SessionToken"))


def _from_container(env) -> Credentials | None:
    rel, full = (
        env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    )
    if not (rel or full):
        return None
    url = f"http://169.254.170.2{rel}" if rel else full
    req = urllib.request.Request(url)
    auth = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    if env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"):
        with open(env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]) as f:
            auth = f.read().strip()
    if auth:
        req.add_header("Authorization", auth)
    d = json.loads(_http(req, timeout=5))
    return Credentials(d["AccessKeyId"], d["SecretAccessKey"], d.get("Token"))


def _from_file(env) -> Credentials | None:
    path = env.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")
    if not os.path.isfile(path):
        return None
    cp = configparser.RawConfigParser()
    cp.read(path)
    profile = env.get("AWS_PROFILE") or "default"
    if not cp.has_section(profile) or not cp.has_option(profile, "aws_access_key_id"):
        return None
    s = cp[profile]
    return Credentials(
        s["aws_access_key_id"], s["aws_secret_access_key"], s.get("aws_session_token")
    )


def _from_imds(env) -> Credentials | None:
    if env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    base = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254").rstrip("/")
    try:
        tok = _http(
            urllib.request.Request(
                base + "/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"},
            ),
            timeout=1,
        ).decode()
        hdr = {"X-aws-ec2-metadata-token": tok}
        path = base + "/latest/meta-data/iam/security-credentials/"
        role = _http(urllib.request.Request(path, headers=hdr), 1).decode().split()[0]
        d = json.loads(_http(urllib.request.Request(path + role, headers=hdr), 1))
    except (OSError, ValueError, IndexError):
        return None
    return Credentials(d["AccessKeyId"], d["SecretAccessKey"], d.get("Token"))


def find_credentials(env=None) -> Credentials | None:
    env = os.environ if env is None else env
    for source in (_from_env, _from_web_identity, _from_container, _from_file, _from_imds):
        creds = source(env)
        if creds is not None:
            return creds
    return None


# --- signing ----------------------------------------------------------------------------------


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign(method: str, url: str, region: str, creds: Credentials, now: dt.datetime) -> dict:
    """SigV4 headers for an S3 request without a body."""
    parts = urllib.parse.urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    headers = {"host": parts.netloc, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    if creds.token:
        headers["x-amz-security-token"] = creds.token
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query)
    )
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            canonical_query,
            "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(headers)),
            signed,
            EMPTY_SHA256,
        ]
    )
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _sign(
        _sign(_sign(_sign(("AWS4" + creds.secret_key).encode(), date), region), "s3"),
        "aws4_request",
    )
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    del headers["host"]  # urllib sets it (the same value)
    return headers


# --- client -----------------------------------------------------------------------------------


class S3Reader:
    """GET/HEAD/list on one bucket; path-style for a custom endpoint, virtual-hosted on AWS."""

    def __init__(self, bucket: str, endpoint: str | None = None, env=None):
        env = os.environ if env is None else env
        self.bucket = bucket
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.creds = find_credentials(env)

    def url(self, key: str, query: dict | None = None) -> str:
        path = urllib.parse.quote(key, safe="/-_.~")
        if self.endpoint:
            base = f"{self.endpoint}/{self.bucket}/{path}"
        else:
            base = f"https://{self.bucket}.s3.{self.region}.amazonaws.com/{path}"
        return base + ("?" + urllib.parse.urlencode(sorted(query.items())) if query else "")

    def request(self, method: str, key: str, query: dict | None = None):
        """An open response (caller closes it); S3Error for HTTP errors after retries."""
        last: Exception | None = None
        for attempt in range(ATTEMPTS):
            url = self.url(key, query)
            headers = {}
            if self.creds is not None:
                now = dt.datetime.now(dt.timezone.utc)
                headers = sign(method, url, self.region, self.creds, now)
            try:
                return urllib.request.urlopen(
                    urllib.request.Request(url, method=method, headers=headers), timeout=60
                )
            except urllib.error.HTTPError as e:
                region = e.headers.get("x-amz-bucket-region")
                body = e.read() if method != "HEAD" else b""
                code = _xml_text(body, "Code") or str(e.code)
                if region and region != self.region and attempt == 0:
                    self.region = region  # the bucket lives elsewhere: sign for its region
                    continue
                if e.code >= 500 or e.code == 429:
                    last = S3Error(e.code, code, _xml_text(body, "Message") or str(e))
                else:
                    raise S3Error(e.code, code, _xml_text(body, "Message") or e.reason) from None
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                last = e
            time.sleep(min(0.2 * 2**attempt, 2.0))
        raise last if isinstance(last, S3Error) else S3Error(0, "Unreachable", str(last))

    def list(self, prefix: str) -> list[str]:
        keys, token = [], None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            with self.request("GET", "", q) as r:
                root = ET.fromstring(r.read())
            for el in root.iter():
                if el.tag.rsplit("}", 1)[-1] == "Key":
                    keys.append(el.text or "")
            token = _xml_text_el(root, "NextContinuationToken")
            if not token:
                return keys


def _xml_text(body: bytes, tag: str) -> str | None:
    try:
        return _xml_text_el(ET.fromstring(body), tag)
    except ET.ParseError:
        return None


def _xml_text_el(root, tag: str) -> str | None:
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == tag:
            return el.text
    return None
