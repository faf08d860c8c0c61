"""Object storage for the archive: the store seam, its implementations, and the check.

Owns the ``lsnwal.store`` package: ``base`` (the ``ObjectStore`` seam and its
errors), ``local`` (a directory), ``s3`` (boto3, optional extra ``lsnwal[s3]``),
``url`` (URLs and the key layout), ``check`` (the capability check),
``timeline`` (lease and timelines), ``source`` (reading a WAL from a store
through the one codec) and ``follow`` (a standby kept up to date).
Nothing here is imported by the commit path.
"""

from __future__ import annotations

from .base import (
    ObjectInfo,
    ObjectStore,
    StoreAuthError,
    StoreCapabilityError,
    StoreConfigError,
    StoreConflictError,
    StoreError,
    StoreIntegrityError,
    StoreNotFoundError,
    StoreTransientError,
)
from .check import CheckReport, check_store
from .local import LocalStore
from .url import StoreUrl, is_store_url, open_store, parse_url

__all__ = [
    "CheckReport",
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "StoreAuthError",
    "StoreCapabilityError",
    "StoreConfigError",
    "StoreConflictError",
    "StoreError",
    "StoreIntegrityError",
    "StoreNotFoundError",
    "StoreTransientError",
    "StoreUrl",
    "check_store",
    "is_store_url",
    "open_store",
    "parse_url",
]
