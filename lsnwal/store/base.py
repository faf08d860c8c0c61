"""The object-store seam: the five operations lsnwal needs from a store, and its errors.

Owns ``ObjectStore`` (put-if-absent with a CRC32C, compare-and-swap put, ranged
get, list-after, head, delete), ``ObjectInfo`` and the error classes. Every
store (``LocalStore``, ``S3Store``, a test double) implements exactly this, so
shipping, reading, retention and the capability check never see boto3. Rules:

* ``put_if_absent`` never replaces an object: it returns ``False`` when the key
  exists (whatever its content); the caller compares checksums (invariant 12).
* The CRC32C given to a put is checked by the store against the bytes it
  received; a mismatch is ``StoreIntegrityError`` and nothing is stored.
* Errors are split by what the caller can do: ``StoreTransientError`` (retry
  with back-off), ``StoreAuthError`` / ``StoreNotFoundError`` (configuration:
  stop and tell the operator). No message ever carries a credential.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import crc32c as _crc32c

from ..errors import WalError


class StoreError(WalError):
    """An object-store operation failed (the message never holds a credential)."""


class StoreTransientError(StoreError):
    """A failure that may pass (connection refused, timeout, 5xx, throttling): retry."""


class StoreAuthError(StoreError):
    """The store refused our credentials or the permission (403, bad key or signature)."""


class StoreNotFoundError(StoreError):
    """The bucket (or base directory) does not exist."""


class StoreIntegrityError(StoreError):
    """The store received bytes whose CRC32C differs from the one we sent (nothing stored)."""


class StoreConflictError(StoreError):
    """A compare-and-swap lost: the object changed since it was read."""


class StoreCapabilityError(StoreError):
    """The store does not enforce what shipping relies on (conditions, checksums, ranges)."""


class StoreConfigError(StoreError, ValueError):
    """A malformed store URL or store option (also a ``ValueError``: bad configuration)."""


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """The CRC32C of ``data`` (the checksum the store verifies on every put)."""
    return int(_crc32c.crc32c(data))


def crc32c_b64(value: int) -> str:
    """The S3 wire form of a CRC32C: base64 of its 4 big-endian bytes."""
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


def crc32c_from_b64(text: str) -> int | None:
    """Parse the S3 wire form back (None if it is not a plain 4-byte CRC32C)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    return int.from_bytes(raw, "big") if len(raw) == 4 else None


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD or a LIST tells about one object."""

    key: str
    size: int
    etag: str = ""
    #: the CRC32C the store keeps for the object, when it reports one (HEAD only)
    crc32c: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class ObjectStore(Protocol):
    """The operations lsnwal needs from an object store (keys are full keys, no bucket)."""

    #: a redacted, human-readable location (``s3://bucket/prefix``), for messages
    location: str

    def put_if_absent(
        self, key: str, data: bytes, crc: int, metadata: Mapping[str, str] | None = None
    ) -> bool:
        """Create ``key`` with ``data`` if absent: True if created, False if it existed."""

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        """Replace ``key`` only if its ETag is ``etag`` (None: only if absent); new ETag.

        Raises ``StoreConflictError`` when the condition does not hold.
        """

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of ``key`` (``end=None``: to the end; start<0: a suffix)."""

    def head(self, key: str) -> ObjectInfo | None:
        """Size, ETag, CRC32C and metadata of ``key``, or None if it does not exist."""

    def list(
        self, prefix: str, start_after: str = "", limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` and sorts after ``start_after``, in order
        (at most ``limit`` of them: a small page costs the store less)."""

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is already gone)."""

    def close(self) -> None:
        """Release connections."""
