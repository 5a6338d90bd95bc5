"""A store in S3 or any S3-compatible server (`s3://bucket/prefix`), through boto3.

Guarantees (docs/store.md):
- Nothing partial under a final key: single PUTs carry ChecksumSHA256 (the server rejects a
  body that does not match), multipart uploads become visible only at CompleteMultipartUpload
  and carry per-part SHA256 checksums.
- Write-once: HEAD first (cheap, skips the upload), then `If-None-Match: *` on the PUT (and on
  CompleteMultipartUpload); a 412 means another writer got there first, which is fine because
  write-once keys are content addressed or first-writer-wins records. Servers that do not
  implement conditional writes get a plain PUT after the HEAD (safe for content-addressed keys:
  same key, same bytes).
- Records (aliases, build records) use `If-Match: <etag>` / `If-None-Match: *`; 412/409 raise
  RaceLost.
- Errors become one line naming endpoint and bucket (never credentials): Unavailable (exit 5).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagebuilder.errors import BadInput, NotFound, Unavailable
from imagebuilder.store.base import ObjectInfo, RaceLost, check_key
from imagebuilder.testhooks import kill_point

SINGLE_PUT_MAX = 64 << 20  # bigger bodies go multipart (parallel parts)
PART_SIZE = 16 << 20
CONCURRENCY = 8
ATTEMPTS = int(os.environ.get("IMGBUILD_S3_ATTEMPTS", 4))  # botocore retries 5xx/throttling/drops
_CRED_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "403",
    "Forbidden",
}
_RACE_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_UNSUPPORTED_CODES = {"NotImplemented", "501"}


def parse_s3_url(url: str) -> tuple[str, str]:
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise BadInput(f"bad store URL {url!r}: no bucket", "use s3://bucket/prefix")
    return bucket, prefix.strip("/")


class S3Store:
    def __init__(self, url: str, endpoint_url: str | None = None, addressing: str | None = None):
        from imagebuilder.urls import strip_credentials

        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = endpoint_url
        self._where = f"bucket {self.bucket!r} at {strip_credentials(endpoint_url or 'AWS S3')}"
        self._addressing = (
            addressing
            or os.environ.get("IMGBUILD_S3_ADDRESSING_STYLE")
            or ("path" if endpoint_url else "auto")
        )
        self._client = None
        self._lock = threading.Lock()
        self._conditional = True  # cleared when the server says it does not implement it
        self._bucket_checked = False

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint={self.endpoint_url!r})"

    # --- client and errors -----------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self):
        import boto3
        from botocore.config import Config

        session = boto3.session.Session()
        region = session.region_name or "us-east-1"
        cfg = Config(
            # Every PUT carries ChecksumSHA256 (a signed header the server checks against the
            # body), so hashing the body again for the signature, as botocore does on http://
            # endpoints, bought nothing: ~5% of the client CPU of a cold cache.
            s3={"addressing_style": self._addressing, "payload_signing_enabled": False},
            retries={"max_attempts": ATTEMPTS, "mode": "standard"},
            max_pool_connections=32,
            connect_timeout=10,
            read_timeout=60,
        )
        client = session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=region, config=cfg
        )
        client.meta.events.register(
            "before-parameter-build.s3.CompleteMultipartUpload", self._complete_if_none_match
        )
        return client

    def _complete_if_none_match(self, params, **kwargs):
        # Multipart uploads are only used for write-once keys: never replace an object.
        if self._conditional:
            params.setdefault("IfNoneMatch", "*")

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    @contextmanager
    def _errors(self, what: str):
        """Map boto/botocore failures to one clear line (never the secret)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        try:
            yield
        except (NoCredentialsError, PartialCredentialsError):
            raise Unavailable(
                f"no S3 credentials for {self._where}",
                "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
            ) from None
        except BotoConnectionError as e:
            raise Unavailable(
                f"S3 endpoint unreachable for {self._where} ({type(e).__name__})",
                "check s3_endpoint_url and that the server is up",
            ) from None
        except ClientError as e:
            raise self._client_error(e, what) from None
        except BotoCoreError as e:
            raise Unavailable(f"S3 {what} failed for {self._where}: {type(e).__name__}") from None

    def _client_error(self, e, what: str) -> Exception:
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _CRED_CODES or status == 403:
            return Unavailable(
                f"S3 refused the credentials for {self._where} ({code or status})",
                "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for this bucket",
            )
        if code == "NoSuchBucket":
            return Unavailable(
                f"S3 {self._where} does not exist", "create the bucket or fix the store URL"
            )
        return Unavailable(f"S3 {what} failed for {self._where}: {code or status}")

    @staticmethod
    def _code(e) -> str:
        return str(e.response.get("Error", {}).get("Code", ""))

    def _check_bucket(self) -> None:
        """A 404 from HEAD does not say whether the key or the bucket is missing: ask once."""
        from botocore.exceptions import ClientError

        if self._bucket_checked:
            return
        with self._errors("bucket check"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as e:
                if self._code(e) in ("404", "NoSuchBucket", "NotFound"):
                    raise Unavailable(
                        f"S3 {self._where} does not exist", "create the bucket or fix the store URL"
                    ) from None
                raise
        self._bucket_checked = True

    # --- reads -----------------------------------------------------------------------------
    def local_path(self, key: str) -> Path | None:
        return None

    def stat(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        with self._errors(f"HEAD {key}"):
            try:
                r = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
            except ClientError as e:
                if self._code(e) in ("404", "NoSuchKey", "NotFound"):
                    self._check_bucket()
                    return None
                raise
        return ObjectInfo(
            key, r["ContentLength"], r["LastModified"].timestamp(), r.get("ETag", "").strip('"')
        )

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def get_bytes(self, key: str) -> bytes:
        got = self.get_record(key)
        if got is None:
            raise NotFound(f"{key} not found in store {self.url}")
        return got[0]

    def get_file(self, key: str, dest: Path) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import ClientError

        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
        cfg = TransferConfig(multipart_chunksize=PART_SIZE, max_concurrency=CONCURRENCY)
        try:
            with self._errors(f"download {key}"):
                try:
                    self.client.download_file(self.bucket, self._full(key), str(tmp), Config=cfg)
                except ClientError as e:
                    if self._code(e) in ("404", "NoSuchKey", "NotFound"):
                        self._check_bucket()
                        raise NotFound(f"{key} not found in store {self.url}") from None
                    raise
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def iter_chunks(self, key: str, size: int = 1 << 20) -> Iterator[bytes]:
        """Stream an object's bytes (verify re-hashes S3 objects without a temp file)."""
        from botocore.exceptions import ClientError

        with self._errors(f"read {key}"):
            try:
                r = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            except ClientError as e:
                if self._code(e) in ("404", "NoSuchKey", "NotFound"):
                    raise NotFound(f"{key} not found in store {self.url}") from None
                raise
            yield from r["Body"].iter_chunks(size)

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        full = (f"{self.prefix}/{prefix}" if self.prefix else prefix) if prefix else self.prefix
        if self.prefix and not prefix:
            full += "/"
        with self._errors(f"list {prefix or '/'}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for o in page.get("Contents", ()):
                    yield ObjectInfo(
                        self._rel(o["Key"]),
                        o["Size"],
                        o["LastModified"].timestamp(),
                        o.get("ETag", "").strip('"'),
                    )

    def list(self, prefix: str) -> Iterator[str]:
        for info in self.list_info(prefix):
            yield info.key

    # --- write-once ------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> bool:
        # With conditional writes the PUT itself refuses an existing key (412): no HEAD first.
        if not self._conditional and self.exists(key):
            return False
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        kill_point("store.put")
        return self._put_once(key, data, digest)

    def put_file(self, key: str, src: Path, sha256: str | None = None) -> bool:
        size = os.path.getsize(src)
        # multipart: only CompleteMultipartUpload is conditional, so HEAD before sending
        if (size > SINGLE_PUT_MAX or not self._conditional) and self.exists(key):
            return False
        if size > SINGLE_PUT_MAX:
            kill_point("store.put")
            return self._put_multipart(key, Path(src))
        if sha256 is None:
            from imagebuilder.fetch import sha256_file

            sha256 = sha256_file(src)
        digest = base64.b64encode(bytes.fromhex(sha256)).decode()
        kill_point("store.put")
        with open(src, "rb") as f:
            return self._put_once(key, f, digest)

    def _put_once(self, key: str, body, checksum_b64: str) -> bool:
        from botocore.exceptions import ClientError

        self._check_bucket()  # some servers (seaweedfs) create a missing bucket on PUT
        args = {"Bucket": self.bucket, "Key": self._full(key), "ChecksumSHA256": checksum_b64}
        with self._errors(f"upload {key}"):
            try:
                if self._conditional:
                    try:
                        self.client.put_object(Body=body, IfNoneMatch="*", **args)
                        return True
                    except ClientError as e:
                        if self._code(e) in _RACE_CODES:
                            return False
                        if self._code(e) not in _UNSUPPORTED_CODES:
                            raise
                        self._conditional = False
                        if hasattr(body, "seek"):
                            body.seek(0)
                self.client.put_object(Body=body, **args)
                return True
            except ClientError as e:
                if self._code(e) == "BadDigest":
                    from imagebuilder.errors import IntegrityError

                    raise IntegrityError(
                        f"S3 rejected {key}: its body changed while uploading (checksum mismatch)",
                        "rerun; if it repeats, check the disk and the network path",
                    ) from None
                raise

    def _put_multipart(self, key: str, src: Path) -> bool:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import ClientError

        self._check_bucket()
        cfg = TransferConfig(
            multipart_threshold=SINGLE_PUT_MAX,
            multipart_chunksize=PART_SIZE,
            max_concurrency=CONCURRENCY,
        )
        with self._errors(f"upload {key}"):
            try:
                self.client.upload_file(
                    str(src),
                    self.bucket,
                    self._full(key),
                    ExtraArgs={"ChecksumAlgorithm": "SHA256"},
                    Config=cfg,
                    Callback=lambda n: kill_point("store.part"),
                )
                return True
            except ClientError as e:
                if self._code(e) in _RACE_CODES:
                    return False
                raise
            except Exception as e:  # s3transfer wraps ClientErrors of CompleteMultipartUpload
                cause = e.__cause__ or e.__context__
                if isinstance(cause, ClientError) and self._code(cause) in _RACE_CODES:
                    return False
                if "PreconditionFailed" in str(e):
                    return False
                raise

    def delete(self, key: str) -> None:
        with self._errors(f"delete {key}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    # --- compare-and-swap records ----------------------------------------------------------
    def get_record(self, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        with self._errors(f"read {key}"):
            try:
                r = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            except ClientError as e:
                if self._code(e) in ("404", "NoSuchKey", "NotFound"):
                    self._check_bucket()
                    return None
                raise
            return r["Body"].read(), r["ETag"]

    def put_record(self, key: str, data: bytes, expect: str | None) -> str:
        from botocore.exceptions import ClientError

        self._check_bucket()
        cond = {"IfNoneMatch": "*"} if expect is None else {"IfMatch": expect}
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        kill_point("store.record")
        with self._errors(f"write {key}"):
            try:
                r = self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._full(key),
                    Body=data,
                    ChecksumSHA256=digest,
                    **cond,
                )
            except ClientError as e:
                code = self._code(e)
                if code in _RACE_CODES or (code == "NoSuchKey" and expect is not None):
                    raise RaceLost(
                        f"{key} was changed by another writer",
                        "read it again and retry (another imgbuild process wrote it first)",
                    ) from None
                if code in _UNSUPPORTED_CODES:
                    raise Unavailable(
                        f"S3 {self._where} does not support conditional writes, needed for {key}",
                        "use a server with If-Match/If-None-Match support (AWS S3, seaweedfs, MinIO)",
                    ) from None
                raise
        return r["ETag"]
