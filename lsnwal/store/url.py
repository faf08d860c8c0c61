"""Store URLs and object keys: the one place that parses ``s3://`` / ``file://`` and names keys.

Owns the URL grammar and the key layout under a prefix::

    s3://BUCKET[/PREFIX][?endpoint=http://127.0.0.1:8333&region=us-east-1]
    file:///ABSOLUTE/DIRECTORY

    PREFIX/tl-00000001/00000000000000000001.wal   a segment on timeline 1
    PREFIX/history/tl-00000002                    where timeline 2 branched off
    PREFIX/LEASE                                  the shipping writer's lease
    PREFIX/tip/tl-00000001                        hint: the newest segment shipped on it
    PREFIX/.lsnwal-probe/...                      capability-check probes

Rules: a URL with credentials in it (``user:secret@``) is refused without
echoing them; only ``endpoint`` and ``region`` are accepted as query options;
a key is built only here.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .base import ObjectStore, StoreConfigError, StoreError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
TIMELINE_DIGITS = 8


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL."""

    scheme: str
    bucket: str  # the directory for file://
    prefix: str  # no leading or trailing slash; may be empty
    endpoint: str | None = None
    region: str | None = None
    timeline: int | None = None  # reading only: which history to follow (default: newest)

    def __str__(self) -> str:
        if self.scheme == "file":
            return "file://" + self.bucket
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def parse_url(url: object) -> StoreUrl:
    """Parse and validate a store URL; ``StoreConfigError`` (a ValueError) if malformed."""
    if not isinstance(url, str) or not url:
        raise StoreConfigError("a store URL must be a non-empty string like s3://bucket/prefix")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise StoreConfigError("malformed store URL (expected s3://bucket/prefix)") from None
    if "@" in parts.netloc:
        raise StoreConfigError(
            "credentials do not belong in a store URL; use the AWS environment "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), a profile, or pass a client")
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"endpoint", "region", "timeline"})
    if unknown:
        raise StoreConfigError(
            f"unknown store URL option(s) {unknown} (known: endpoint, region, timeline)")
    opts = {k: v[-1] for k, v in query.items()}
    timeline = None
    if "timeline" in opts:
        if not opts["timeline"].isdigit() or not 0 < int(opts["timeline"]) < 10**TIMELINE_DIGITS:
            raise StoreConfigError("the timeline option must be a positive integer")
        timeline = int(opts["timeline"])
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") \
                or set(opts) - {"timeline"}:
            raise StoreConfigError("a file store URL is file:///absolute/directory")
        return StoreUrl("file", parts.path.rstrip("/") or "/", "", timeline=timeline)
    if parts.scheme != "s3":
        raise StoreConfigError(
            f"unsupported store URL scheme {parts.scheme!r} (use s3:// or file://)")
    bucket = parts.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise StoreConfigError(f"invalid bucket name {bucket!r} in the store URL")
    prefix = parts.path.strip("/")
    if prefix and any(p in ("", ".", "..") for p in prefix.split("/")):
        raise StoreConfigError(f"invalid prefix {prefix!r} in the store URL")
    endpoint = opts.get("endpoint") or None
    if endpoint is not None:
        ep = urllib.parse.urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.hostname or "@" in ep.netloc:
            raise StoreConfigError("the endpoint option must be an http(s)://host[:port] URL")
    return StoreUrl("s3", bucket, prefix, endpoint, opts.get("region") or None, timeline)


def is_store_url(value: object) -> bool:
    """True for strings that name a store (``s3://`` or ``file://``) rather than a path."""
    return isinstance(value, str) and value.startswith(("s3://", "file://"))


def open_store(url: StoreUrl | str, client: Any = None) -> ObjectStore:
    """The store for ``url``: an ``ObjectStore`` passed as ``client`` is used as is,
    a boto3 client is wrapped, otherwise one is built from the AWS environment."""
    u = url if isinstance(url, StoreUrl) else parse_url(url)
    if client is not None and isinstance(client, ObjectStore):
        return client
    if u.scheme == "file":
        from .local import LocalStore

        return LocalStore(u.bucket)
    from .s3 import S3Store, make_client

    try:
        c = client if client is not None else make_client(u.endpoint, u.region)
    except StoreError:
        raise
    except Exception as exc:  # botocore config errors (bad region, profile, ...)
        raise StoreConfigError(f"cannot build an S3 client: {type(exc).__name__}") from None
    return S3Store(u.bucket, c, str(u))


def _join(prefix: str, rest: str) -> str:
    return f"{prefix}/{rest}" if prefix else rest


def timeline_dir(prefix: str, timeline: int) -> str:
    """The key prefix (ending in ``/``) of one timeline's segments."""
    return _join(prefix, f"tl-{timeline:0{TIMELINE_DIGITS}d}/")


def segment_key(prefix: str, timeline: int, name: str) -> str:
    """The key of the segment file ``name`` on ``timeline``."""
    return timeline_dir(prefix, timeline) + name


def history_prefix(prefix: str) -> str:
    """Where the history objects live (listed apart from the segments)."""
    return _join(prefix, "history/")


def history_key(prefix: str, timeline: int) -> str:
    """The key of the history object that created ``timeline``."""
    return history_prefix(prefix) + f"tl-{timeline:0{TIMELINE_DIGITS}d}"


def tip_key(prefix: str, timeline: int) -> str:
    """The key of the hint naming the newest shipped segment of ``timeline``."""
    return _join(prefix, f"tip/tl-{timeline:0{TIMELINE_DIGITS}d}")


def lease_key(prefix: str) -> str:
    """The key of the shipping lease."""
    return _join(prefix, "LEASE")


def probe_prefix(prefix: str) -> str:
    """Where the capability check writes (and removes) its probe objects."""
    return _join(prefix, ".lsnwal-probe/")


def parse_timeline(key_part: str) -> int | None:
    """The timeline number of ``tl-NNNNNNNN`` (None for anything else)."""
    if len(key_part) == TIMELINE_DIGITS + 3 and key_part.startswith("tl-") \
            and key_part[3:].isdigit():
        return int(key_part[3:])
    return None
