"""``WalConfig``: every knob of a WAL, validated when it is built.

One frozen, keyword-only dataclass. Units are in the field names. Invalid values
raise ``ValueError`` naming the field at construction, so a bad config never
reaches the disk. The class docstring (``help(WalConfig)``) and
``docs/operations.md`` document every field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

RecoveryMode = Literal["strict", "tolerate_tail", "stop_at_corruption"]
RECOVERY_MODES: tuple[str, ...] = ("strict", "tolerate_tail", "stop_at_corruption")

MIN_SEGMENT_BYTES = 4096
MAX_RECORD_LIMIT = (1 << 32) - 1 - 64  # the length field is a u32


@dataclass(frozen=True, kw_only=True)
class WalConfig:
    """Configuration of one WAL directory (all fields keyword-only, all validated).

    An invalid value raises ``ValueError`` naming the field when the config is
    built. Sizes are bytes, times seconds; ``replace(**changes)`` returns a
    validated copy.

    Attributes:
        segment_max_bytes: The active segment rotates before a record would take
            it past this size (default 64 MiB, at least 4096). A record larger
            than this gets a segment of its own.
        max_record_bytes: Largest payload ``append`` accepts, as given, before
            compression (default 16 MiB); larger raises ``RecordTooLargeError``.
        pending_dir: Where rotated segments wait for their fsync (default
            ``"pending"``; relative paths are inside the WAL directory).
        archive_dir: Where synced segments are kept (default ``"archive"``); an
            absolute path may be on another file system. Must differ from
            ``pending_dir``.
        archive_enabled: Keep synced segments for replay and point-in-time
            restore (default True); False deletes each segment once the
            checkpoint covers all of it.
        archive_max_segments: Prune the oldest checkpointed archive segments
            beyond this count (default None: no limit).
        archive_max_bytes: Prune the oldest checkpointed archive segments while
            the archive is larger than this (default None: no limit).
        archive_max_age_s: Prune checkpointed archive segments whose newest
            record is older than this many seconds (default None: no limit).
        max_pending_segments: Backpressure: the most rotated, not yet synced
            segments allowed at once (default 64).
        max_pending_bytes: Backpressure: the most rotated, not yet synced bytes
            allowed at once (default 1 GiB).
        backpressure_timeout_s: How long a rotation waits for room before
            ``BackpressureTimeout``, which appends nothing (default 30.0).
        compression: ``None`` (default) keeps archived segments plain;
            ``"zstd"`` compresses them off the commit path, in independent
            frames so that replay can still seek.
        compression_level: zstd level, -7 to 22 (default 3).
        recovery_mode: How ``open()`` treats damage: ``"tolerate_tail"``
            (default: cut a torn tail, refuse damage elsewhere), ``"strict"``
            (refuse any damage) or ``"stop_at_corruption"`` (cut the log at the
            first damaged record).
        segment_max_age_s: Also rotate the active segment once its first record
            is this many seconds old (default None: rotate by size only). Bounds
            how far the archive, and an object store fed from it, can lag behind.
            A commit never rotates: it fsyncs the active file in place.
        write_buffer_bytes: 0 (default): every ``append`` hands its record to the
            operating system before it returns, so killing the process (as
            opposed to a power loss) loses nothing appended. A positive value
            buffers appends in user space until that many bytes accumulate (and
            at every sync, rotation and close): faster bulk loads, but a process
            crash loses the buffered records that were not synced.
        archive_url: Ship archived segments to this object store (default None):
            ``s3://bucket/prefix`` (options ``?endpoint=...&region=...``) or
            ``file:///dir``. See "Object storage" in the operations guide.
        archive_store: A boto3 S3 client, or an ``lsnwal.store.ObjectStore``, to
            use instead of one built from the AWS environment (default None;
            needs ``archive_url``; never printed: it may hold credentials).
        archive_takeover: Take the store's shipping lease over from another
            writer, after a failover (default False).
        archive_ship_retry_max_s: Longest back-off between two attempts to ship
            a segment while the store fails (default 30.0).
        archive_ship_close_timeout_s: How long ``close()`` keeps shipping what
            is queued; the rest ships at the next open (default 10.0).
        store_max_segments: Store retention: delete the oldest checkpointed
            segment objects beyond this count (default None: no limit).
        store_max_bytes: Store retention: delete the oldest checkpointed segment
            objects while the store holds more than this (default None).
        store_max_age_s: Store retention: delete checkpointed segment objects
            whose newest record is older than this (default None).
        store_pinned_marks: Marks whose segment, and everything after it, store
            retention keeps (default ``()``).
    """

    #: The active segment rotates before a record would take it past this size.
    #: A record larger than this gets a segment of its own.
    segment_max_bytes: int = 64 * 1024 * 1024
    #: Largest payload accepted by ``append`` (as given, before compression).
    max_record_bytes: int = 16 * 1024 * 1024
    #: Where rotated segments wait for fsync; relative paths are inside the WAL dir.
    pending_dir: str = "pending"
    #: Where synced segments are kept; relative paths are inside the WAL dir.
    archive_dir: str = "archive"
    #: Keep synced segments for replay (True) or delete them once checkpointed.
    archive_enabled: bool = True
    #: Prune the oldest checkpointed archive segments beyond this count (None: no limit).
    archive_max_segments: int | None = None
    #: Prune the oldest checkpointed archive segments beyond this many bytes.
    archive_max_bytes: int | None = None
    #: Prune checkpointed archive segments whose newest record is older than this.
    archive_max_age_s: float | None = None
    #: Backpressure: most rotated-but-unsynced segments allowed at once.
    max_pending_segments: int = 64
    #: Backpressure: most rotated-but-unsynced bytes allowed at once.
    max_pending_bytes: int = 1024 * 1024 * 1024
    #: How long a rotation waits for room before ``BackpressureTimeout``
    #: (``float("inf")``: wait as long as it takes).
    backpressure_timeout_s: float = 30.0
    #: ``None`` (plain archive) or ``"zstd"`` (seekable zstd frames, off the commit path).
    compression: Literal["zstd"] | None = None
    #: zstd level used when ``compression == "zstd"``.
    compression_level: int = 3
    #: How open() treats damage: "strict", "tolerate_tail" or "stop_at_corruption".
    recovery_mode: RecoveryMode = "tolerate_tail"
    #: Also rotate the active segment once its first record is this old (None: rotate
    #: by size only). Bounds how far the archive (and an object store) can lag behind.
    segment_max_age_s: float | None = None
    #: 0 (the default): every ``append`` hands its record to the operating system
    #: before it returns, so killing the process loses nothing appended. A positive
    #: value buffers appends in user space until that many bytes accumulate (or a
    #: sync, rotation or close): faster bulk loads, but a process crash loses the
    #: buffered records that were not synced.
    write_buffer_bytes: int = 0

    # ---- object storage (lsnwal.ship, lsnwal.store; docs/operations.md "Object storage") ----
    #: Ship archived segments to this store (``s3://bucket/prefix`` or ``file:///dir``).
    archive_url: str | None = None
    #: A boto3 S3 client or an ``lsnwal.store.ObjectStore`` to use instead of building
    #: one from the AWS environment (never printed: it may hold credentials).
    archive_store: Any = field(default=None, compare=False, repr=False)
    #: Take the store's shipping lease over from another writer (after a failover).
    archive_takeover: bool = False
    #: Longest back-off between two attempts to ship a segment while the store fails.
    archive_ship_retry_max_s: float = 30.0
    #: How long ``close()`` keeps shipping what is queued before leaving it for next time.
    archive_ship_close_timeout_s: float = 10.0
    #: Store retention (never past the checkpoint or a pinned mark): oldest objects beyond
    #: this count / these bytes / this age (of their newest record) are deleted.
    store_max_segments: int | None = None
    store_max_bytes: int | None = None
    store_max_age_s: float | None = None
    #: Marks whose records store retention keeps (everything from the mark on stays).
    store_pinned_marks: tuple[str, ...] = ()
    # ---- end of object storage ----

    def __post_init__(self) -> None:
        _int_at_least("segment_max_bytes", self.segment_max_bytes, MIN_SEGMENT_BYTES)
        _int_at_least("max_record_bytes", self.max_record_bytes, 0)
        if self.max_record_bytes > MAX_RECORD_LIMIT:
            raise ValueError(f"max_record_bytes must be at most {MAX_RECORD_LIMIT}")
        for name in ("pending_dir", "archive_dir"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "\0" in value:
                raise ValueError(f"{name} must be a non-empty path string, got {value!r}")
        from .layout import check_strings  # layout imports names, which imports this module

        check_strings(self.pending_dir, self.archive_dir)
        if not isinstance(self.archive_enabled, bool):
            raise ValueError("archive_enabled must be a bool")
        for name in ("archive_max_segments", "archive_max_bytes"):
            value = getattr(self, name)
            if value is not None:
                _int_at_least(name, value, 1)
        if self.archive_max_age_s is not None:
            _number_positive("archive_max_age_s", self.archive_max_age_s)
        _int_at_least("max_pending_segments", self.max_pending_segments, 1)
        _int_at_least("max_pending_bytes", self.max_pending_bytes, 1)
        _number_positive("backpressure_timeout_s", self.backpressure_timeout_s)
        if self.compression not in (None, "zstd"):
            raise ValueError(f"compression must be None or 'zstd', got {self.compression!r}")
        _int_at_least("compression_level", self.compression_level, -7)
        if self.compression_level > 22:
            raise ValueError("compression_level must be at most 22")
        if self.recovery_mode not in RECOVERY_MODES:
            raise ValueError(
                f"recovery_mode must be one of {RECOVERY_MODES}, got {self.recovery_mode!r}"
            )
        _int_at_least("write_buffer_bytes", self.write_buffer_bytes, 0)
        if self.segment_max_age_s is not None:
            _number_positive("segment_max_age_s", self.segment_max_age_s)
            if self.segment_max_age_s == float("inf"):
                raise ValueError("segment_max_age_s must be finite (use None for no age limit)")
        self._validate_store()

    def _validate_store(self) -> None:
        """The object-storage block (a malformed URL is a ``StoreConfigError``, a ValueError)."""
        if self.archive_url is not None:
            from .store.base import StoreConfigError
            from .store.url import parse_url

            try:
                url = parse_url(self.archive_url)
            except StoreConfigError as exc:
                raise StoreConfigError(f"archive_url: {exc}") from None
            if url.timeline is not None:
                raise StoreConfigError("archive_url takes no timeline option (shipping picks it)")
        elif self.archive_store is not None:
            raise ValueError("archive_store needs archive_url (which bucket and prefix)")
        if not isinstance(self.archive_takeover, bool):
            raise ValueError("archive_takeover must be a bool")
        _number_positive("archive_ship_retry_max_s", self.archive_ship_retry_max_s)
        _number_positive("archive_ship_close_timeout_s", self.archive_ship_close_timeout_s)
        for name in ("store_max_segments", "store_max_bytes"):
            value = getattr(self, name)
            if value is not None:
                _int_at_least(name, value, 1)
        if self.store_max_age_s is not None:
            _number_positive("store_max_age_s", self.store_max_age_s)
        if not isinstance(self.store_pinned_marks, tuple) or not all(
                isinstance(m, str) and m for m in self.store_pinned_marks):
            raise ValueError("store_pinned_marks must be a tuple of mark names")

    def replace(self, **changes: object) -> WalConfig:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _int_at_least(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")


def _number_positive(name: str, value: object) -> None:
    """A positive number of seconds; ``inf`` means "no limit", NaN is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        seconds = float(value)  # an int too large for a float would overflow every clock sum
    except OverflowError:
        raise ValueError(f"{name} is too large; use float('inf') for no limit") from None
    if not seconds > 0:
        raise ValueError(f"{name} must be positive, got {value}")
