"""Connecting a WAL to its store, and what a segment object carries.

Owns ``connect`` (run when a WAL opens with ``archive_url``: URL, client,
bucket check, capability check, timeline, lease — any failure is one
``StoreError`` before anything is shipped), ``ShipTarget`` (the checked
connection the shipper uses) and ``object_metadata`` (the ASCII metadata
of a segment object, decoded from its seal through the one codec).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import format as fmt
from ..config import WalConfig
from .base import ObjectStore, StoreError
from .check import require_capabilities
from .timeline import Lease, ShipState, resolve_timeline
from .url import open_store, parse_url

META_MARKS_MAX = 1500  # bytes of mark metadata kept in an object (S3 allows 2 KiB in all)


@dataclass
class ShipTarget:
    """A checked store connection: the store, where to write, as whom."""

    store: ObjectStore
    prefix: str
    url: str  # redacted, no query: s3://bucket/prefix
    state: ShipState
    lease: Lease
    wal_root: str

    def close(self) -> None:
        """Release the lease and the connections."""
        self.lease.release()
        self.store.close()


def connect(config: WalConfig, wal_root: str) -> ShipTarget:
    """Open, check and lease the store named by ``config.archive_url`` (raise ``StoreError``).

    A malformed URL, an unknown bucket, wrong credentials, a store that fails the
    capability check or a prefix leased by another writer all raise here, before
    anything is shipped. Nothing is written locally (``wal_root`` may not exist
    yet): the archiver saves the ``SHIPPING`` state once the WAL directory is open.
    """
    assert config.archive_url is not None
    url = parse_url(config.archive_url)
    store = open_store(url, config.archive_store)
    try:
        check_bucket = getattr(store, "check_bucket", None)
        if check_bucket is not None:
            check_bucket()
        require_capabilities(store, url.prefix)
        state = resolve_timeline(store, url.prefix, str(url), wal_root)
        lease = Lease(store, url.prefix, state)
        lease.acquire(config.archive_takeover)
    except StoreError:
        store.close()
        raise
    except Exception as exc:  # a bug or an unexpected SDK error: still one clear WalError
        store.close()
        raise StoreError(f"cannot use {store.location}: {type(exc).__name__}") from None
    return ShipTarget(store, url.prefix, str(url), state, lease, wal_root)


def object_metadata(data: bytes, timeline: int, prev: str | None = None) -> dict[str, str]:
    """The metadata of a segment object, from the seal inside ``data`` (ASCII only)."""
    meta = {"lsnwal-timeline": str(timeline)}
    if prev is not None:
        meta["lsnwal-prev-name"] = prev
    off = fmt.decode_trailer(data[-fmt.TRAILER_SIZE:])
    seal = fmt.decode_seal_at(memoryview(data)[off:], off) if off is not None and \
        fmt.HEADER_SIZE <= off < len(data) else None
    if seal is None:
        return meta
    hdr = fmt.decode_segment_header(data[: fmt.HEADER_SIZE])
    meta.update({
        "lsnwal-first-lsn": str(hdr.first_lsn), "lsnwal-last-lsn": str(seal.last_lsn),
        "lsnwal-first-ts": repr(seal.first_ts), "lsnwal-last-ts": repr(seal.last_ts),
        "lsnwal-checkpoint-lsn": str(seal.checkpoint_lsn), "lsnwal-records": str(seal.record_count),
        "lsnwal-marks": str(len(seal.marks)),
    })
    names = ",".join(f"{lsn}:{name.encode().hex()}" for name, lsn, _ts in seal.marks)
    if len(names) <= META_MARKS_MAX:
        meta["lsnwal-mark-names"] = names  # hex keeps any UTF-8 name ASCII-safe
    return meta
