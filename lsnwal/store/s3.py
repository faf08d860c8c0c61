"""``S3Store``: the object-store seam on an S3-compatible service, through ``boto3``.

Owns every boto3 call lsnwal makes and the mapping of S3 answers to the
seam's errors. Rules:

* Puts are create-only (``If-None-Match: *``; 412 means "exists") and carry a
  precomputed CRC32C (``ChecksumCRC32C``) the store verifies; the SDK's own
  checksum machinery is set to ``when_required`` (no ``awscrt`` needed, and
  stores that do not know the newer default checksums keep working).
* Credentials come from the usual AWS environment/config chain or a client
  passed in; they are never put into a message: every error text goes
  through ``Redactor``.
* Errors are classified once here: 412 -> exists/conflict, 400 BadDigest ->
  integrity, 401/403 and bad keys -> auth, NoSuchBucket -> not found,
  connection trouble/5xx/throttling -> transient.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from .base import (
    ObjectInfo,
    StoreAuthError,
    StoreConflictError,
    StoreError,
    StoreIntegrityError,
    StoreNotFoundError,
    StoreTransientError,
    crc32c_b64,
    crc32c_from_b64,
)

_AUTH_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
    "ExpiredToken", "AuthorizationHeaderMalformed", "InvalidClientTokenId", "403", "401",
    "AllAccessDisabled", "AccountProblem",
})
_INTEGRITY_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch",
                              "InvalidChecksum"})
_TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                              "Throttling", "ThrottlingException", "RequestTimeTooSkewed",
                              "ConditionalRequestConflict", "OperationAborted"})


class Redactor:
    """Replaces every known credential string in a text by ``***``."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text


def _client_secrets(client: Any) -> list[str]:
    out = [os.environ.get(k, "") for k in
           ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
    try:
        creds = client._request_signer._credentials.get_frozen_credentials()
        out += [creds.access_key or "", creds.secret_key or "", creds.token or ""]
    except Exception:  # no credentials resolved yet: nothing to hide
        pass
    return out


_CLIENTS: dict[tuple[str | None, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def make_client(endpoint: str | None, region: str | None) -> Any:
    """A boto3 S3 client configured the way lsnwal needs it (see the module rules).

    Clients are thread-safe and costly to build (~0.1 s), so one is kept per
    endpoint, region and credentials from the environment.
    """
    key = (endpoint, region, *(os.environ.get(k) for k in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")))
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = _new_client(endpoint, region)
    return client


def _new_client(endpoint: str | None, region: str | None) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - depends on the install
        raise StoreError(
            "s3:// URLs need boto3: pip install 'lsnwal[s3]'") from None
    cfg = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "total_max_attempts": 2},
        connect_timeout=3,
        read_timeout=30,
        s3={"addressing_style": "path"} if endpoint else None,
    )
    session = boto3.session.Session()
    region = region or session.region_name or "us-east-1"
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=cfg)


class S3Store:
    """An ``ObjectStore`` in one bucket of an S3-compatible service."""

    def __init__(self, bucket: str, client: Any, location: str) -> None:
        self.bucket = bucket
        self.client = client
        self.location = location
        self.redact = Redactor(_client_secrets(client))

    # -------------------------------------------------------------- errors

    def _error(self, exc: BaseException, what: str) -> StoreError:
        """Map a botocore exception to the seam's error classes (credentials redacted)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"{what} in {self.location}"
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            msg = self.redact(f"{where}: {code or status} {err.get('Message', '')}".strip())
            if code in ("NoSuchBucket",) or (status == 404 and what == "check bucket"):
                return StoreNotFoundError(f"{where}: the bucket does not exist ({code or 404})")
            if code in _AUTH_CODES or status in (401, 403):
                return StoreAuthError(msg)
            if code in _INTEGRITY_CODES:
                return StoreIntegrityError(msg)
            if code in ("PreconditionFailed",) or status == 412:
                return StoreConflictError(msg)
            if code in _TRANSIENT_CODES or status >= 500 or status in (408, 409, 429):
                return StoreTransientError(msg)
            return StoreError(msg)
        if isinstance(exc, NoCredentialsError):
            return StoreAuthError(f"{where}: no AWS credentials found")
        if isinstance(exc, BotoCoreError):
            return StoreTransientError(self.redact(f"{where}: {type(exc).__name__}: {exc}"))
        if isinstance(exc, OSError):
            return StoreTransientError(self.redact(f"{where}: {type(exc).__name__}: {exc}"))
        return StoreError(self.redact(f"{where}: {type(exc).__name__}: {exc}"))

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except Exception as exc:
            raise self._error(exc, what) from None

    # -------------------------------------------------------------- the seam

    def check_bucket(self) -> None:
        """HEAD the bucket: raises StoreNotFoundError / StoreAuthError / transient errors."""
        self._call("check bucket", self.client.head_bucket)

    def put_if_absent(
        self, key: str, data: bytes, crc: int, metadata: Mapping[str, str] | None = None
    ) -> bool:
        """PutObject with ``If-None-Match: *`` and the CRC32C; False on 412 (exists)."""
        try:
            self._call(f"put {key}", self.client.put_object, Key=key, Body=data,
                       IfNoneMatch="*", ChecksumCRC32C=crc32c_b64(crc),
                       Metadata=dict(metadata or {}))
        except StoreConflictError:
            return False
        return True

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        """PutObject with ``If-Match: etag`` (or ``If-None-Match: *`` when ``etag`` is None)."""
        cond: dict[str, str] = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            resp = self._call(f"swap {key}", self.client.put_object, Key=key, Body=data, **cond)
        except StoreError as exc:
            if isinstance(exc, StoreConflictError) or "NoSuchKey" in str(exc):
                raise StoreConflictError(str(exc)) from None
            raise
        return str(resp.get("ETag", ""))

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Ranged GET (``bytes=a-b``, or ``bytes=-n`` for a suffix); b"" past the end."""
        if start < 0:
            rng = f"bytes={start}"
        elif end is None:
            rng = f"bytes={start}-" if start else ""
        else:
            if end <= start:
                return b""
            rng = f"bytes={start}-{end - 1}"
        kwargs: dict[str, str] = {"Key": key}
        if rng:
            kwargs["Range"] = rng
        try:
            resp = self._call(f"get {key}", self.client.get_object, **kwargs)
        except StoreError as exc:
            if "InvalidRange" in str(exc) or " 416" in str(exc):
                return b""
            raise
        try:
            return bytes(resp["Body"].read())
        except Exception as exc:
            raise self._error(exc, f"get {key}") from None

    def head(self, key: str) -> ObjectInfo | None:
        """HeadObject with the stored checksum; None for 404."""
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as exc:
            from botocore.exceptions import ClientError

            if isinstance(exc, ClientError) and str(
                exc.response.get("Error", {}).get("Code")
            ) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(exc, f"head {key}") from None
        crc = resp.get("ChecksumCRC32C")
        return ObjectInfo(
            key, int(resp.get("ContentLength", 0)), str(resp.get("ETag", "")),
            crc32c_from_b64(crc) if isinstance(crc, str) and "-" not in crc else None,
            dict(resp.get("Metadata", {})),
        )

    def list(
        self, prefix: str, start_after: str = "", limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """ListObjectsV2 pages (1,000 keys each, fewer with ``limit``) from ``start_after`` on."""
        token: str | None = None
        left = limit
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix}
            if left is not None:
                kwargs["MaxKeys"] = max(1, min(left, 1000))
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            resp = self._call(f"list {prefix}", self.client.list_objects_v2, **kwargs)
            for item in resp.get("Contents", []):
                yield ObjectInfo(str(item["Key"]), int(item.get("Size", 0)),
                                 str(item.get("ETag", "")))
                if left is not None:
                    left -= 1
                    if left <= 0:
                        return
            if not resp.get("IsTruncated"):
                return
            token = resp.get("NextContinuationToken")

    def delete(self, key: str) -> None:
        """DeleteObject (idempotent)."""
        self._call(f"delete {key}", self.client.delete_object, Key=key)

    def close(self) -> None:
        """Nothing to release: the (shared or caller's) client keeps its connection pool."""
