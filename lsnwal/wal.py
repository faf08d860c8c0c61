"""``AsyncWalWriter``: the public WAL object — open/recover, append, sync, checkpoint, close.

A thin façade that owns the writer lock, the LOCK file and the wiring
writer -> commit path (``sync.py``) -> archiver. Rules kept here:

* **Bad input changes nothing** (invariant 10): payloads are checked (type,
  C-contiguity, size) before the lock is taken and before an LSN is assigned;
  ``append_batch`` checks every item first; a call that times out on
  backpressure has appended nothing.
* **A commit never costs a file.** ``sync()`` and ``sync_async()`` ask the commit
  path for an in-place fsync of the active file up to the last LSN (one unit,
  extended by every commit that arrives before it is taken). Segments rotate
  only when full (``segment_max_bytes``) or old (``segment_max_age_s``).
* **One lock round trip per append**; the record reaches the OS inside it
  (invariant 11), so LSN order is file order.
* **Rotation** marks its renames with the commit path (``begin_rename`` /
  ``end_rename``), so no LSN in a renamed file is acknowledged before both
  directories are fsynced (invariant 5), whichever thread runs that fsync.
* **Fail-stop**: after any ``OSError`` on the write path the WAL fails like after
  a failed fsync; nothing more is written to that file (not even on close);
  ``close()`` never raises for it and releases the lock so the directory can be
  reopened.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterable
from types import TracebackType

from . import format as fmt
from .archive import PruneCandidate
from .config import WalConfig
from .errors import (
    BackpressureTimeout,
    RecordTooLargeError,
    WalClosedError,
    WalError,
    WalLockedError,
    WalSyncError,
)
from .fs import FailpointHook, FileSystem, OsFileSystem, SyncBackend
from .handle import SyncHandle
from .identity import prepare_wal_dir
from .names import WalPaths
from .opening import abandon, close_fds, open_parts
from .rotation import Rotator
from .stats import WalStats, percentile


def _as_payload(payload: object) -> bytes:
    """The payload as ``bytes``: any C-contiguous buffer is accepted, anything else refused."""
    if type(payload) is bytes:
        return payload
    if isinstance(payload, bytes):
        return bytes(payload)
    try:
        view = memoryview(payload)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"payload must be bytes-like (a buffer), not {type(payload).__name__}"
        ) from None
    with view:
        if not view.c_contiguous:
            raise TypeError(
                "payload is a non-contiguous buffer; pass a C-contiguous one "
                "(for example bytes(view) or view.tobytes())"
            )
        return view.tobytes()


class AsyncWalWriter:
    """A write-ahead log directory opened for writing (use ``lsnwal.open``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: WalConfig | None = None,
        *,
        sync_backend: SyncBackend | None = None,
        fs: FileSystem | None = None,
        failpoint: FailpointHook | None = None,
        create_if_missing: bool = True,
        error_if_exists: bool = False,
    ) -> None:
        cfg = config if config is not None else WalConfig()
        if not isinstance(cfg, WalConfig):
            raise TypeError("config must be a lsnwal.WalConfig")
        self._fs = fs = fs if fs is not None else OsFileSystem()
        self._backend = sync_backend if sync_backend is not None else fs.sync_backend()
        self._config = cfg
        self._max_record = cfg.max_record_bytes
        self._max_age = cfg.segment_max_age_s
        self._fp = failpoint
        self._paths = paths = WalPaths.of(path, cfg)
        self._lock = threading.Lock()
        self._closed = True
        self._lock_handle = -1
        self._bytes = 0

        # Open modes and the identity file (written with the file system's own backend:
        # once per directory, before this WAL's sync backend takes over).
        created_root = prepare_wal_dir(fs, paths.root, create_if_missing=create_if_missing,
                                       error_if_exists=error_if_exists)
        try:
            self._lock_handle = fs.lock(paths.lock)
        except BlockingIOError:
            raise WalLockedError(
                f"{paths.root} is locked by another writer ({paths.lock})"
            ) from None
        try:
            parts = open_parts(fs, self._backend, paths, cfg, failpoint, created_root)
        except BaseException:
            with contextlib.suppress(OSError):
                fs.unlock(self._lock_handle)
            raise
        self._parts = parts
        self._w, self._mgr, self._archiver = parts.writer, parts.mgr, parts.archiver
        self._checkpoint_lsn = parts.checkpoint_lsn
        self._rot = rot = Rotator(self._lock, self._w, self._mgr, cfg, paths.root)
        #: what recovery did at open (cuts, set-aside files, duplicates), one line each
        self.recovery_report: list[str] = parts.recovery_report
        if cfg.segment_max_age_s is not None:
            self._mgr.age_callback = rot.rotate_for_age
        self._closed = False
        self._finalizer = weakref.finalize(self, abandon, parts, fs, self._lock_handle)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike[str],
        config: WalConfig | None = None,
        *,
        sync_backend: SyncBackend | None = None,
        fs: FileSystem | None = None,
        failpoint: FailpointHook | None = None,
        create_if_missing: bool = True,
        error_if_exists: bool = False,
    ) -> AsyncWalWriter:
        """Create the WAL directory, or recover the one that is there.

        ``create_if_missing=False`` refuses a directory that holds no WAL yet;
        ``error_if_exists=True`` refuses one that does. A non-empty directory
        that is not a WAL is always refused (``WalError``).
        """
        return cls(path, config, sync_backend=sync_backend, fs=fs, failpoint=failpoint,
                   create_if_missing=create_if_missing, error_if_exists=error_if_exists)

    # ------------------------------------------------------------------ properties

    @property
    def path(self) -> str:
        """The WAL directory."""
        return self._paths.root

    @property
    def config(self) -> WalConfig:
        """The configuration this WAL was opened with."""
        return self._config

    @property
    def synced_lsn(self) -> int:
        """Every record at or below this LSN is on stable storage."""
        return self._mgr.synced_lsn

    @property
    def last_lsn(self) -> int:
        """The last LSN assigned (0 for a new WAL)."""
        return self._w.next_lsn - 1

    @property
    def current_lsn(self) -> int:
        """The next LSN to be assigned."""
        return self._w.next_lsn

    @property
    def checkpoint_lsn(self) -> int:
        """The highest LSN the application declared covered by its own state."""
        return self._checkpoint_lsn

    @property
    def failure(self) -> WalSyncError | None:
        """The error that fail-stopped this WAL, or None."""
        return self._mgr.failure

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise WalClosedError(f"the WAL at {self._paths.root} is closed")
        failure = self._mgr.failure
        if failure is not None:
            raise failure

    def _fail(self, exc: BaseException, what: str) -> WalSyncError:
        return self._mgr.fail(exc, what)

    # ------------------------------------------------------------------ appends

    def append(self, payload: bytes | bytearray | memoryview) -> int:
        """Append one DATA record; return its LSN (durable once ``synced_lsn`` reaches it).

        The record is handed to the operating system before this returns (unless
        ``write_buffer_bytes`` opted into a user-space buffer).
        """
        p = payload if type(payload) is bytes else _as_payload(payload)
        n = len(p)
        if n > self._max_record:
            raise RecordTooLargeError(
                f"payload of {n} bytes exceeds max_record_bytes={self._config.max_record_bytes}"
            )
        with self._lock:
            if self._closed or self._mgr.failure is not None:
                self._check()
            w = self._w
            try:
                lsn = w.try_append(1, p)
                while not lsn:  # the active segment is full (rare): rotate, then retry
                    self._rot.rotate_for_room(n)
                    lsn = w.try_append(1, p)
            except BackpressureTimeout:  # a TimeoutError, hence an OSError: not a disk failure
                raise
            except OSError as exc:
                raise self._fail(exc, "write to the active segment") from exc
            self._bytes += n
            if lsn == w.first_lsn and self._max_age is not None:
                self._rot.arm_age()
            return lsn

    def append_batch(self, payloads: Iterable[bytes | bytearray | memoryview]) -> range:
        """Append many DATA records at once (all or nothing); return their LSNs as a range.

        The batch reaches the operating system in one write per ~1 MiB of records.
        """
        raw = list(payloads)
        items: list[bytes] = (
            raw  # type: ignore[assignment]
            if set(map(type, raw)) <= {bytes}
            else [_as_payload(p) for p in raw]
        )
        if not items:
            with self._lock:
                self._check()
                return range(self._w.next_lsn, self._w.next_lsn)
        limit = self._config.max_record_bytes
        biggest = max(map(len, items))
        if biggest > limit:
            raise RecordTooLargeError(
                f"a payload of {biggest} bytes exceeds max_record_bytes={limit}"
            )
        total = sum(map(len, items)) + fmt.RECORD_HEADER_SIZE * len(items)
        with self._lock:
            self._check()
            w = self._w
            try:
                # fits() accepts anything into an empty segment (a single large record
                # gets a segment of its own); a batch of several must still fit whole.
                if w.fits(total - fmt.RECORD_HEADER_SIZE) and (
                    len(items) == 1
                    or w.active_bytes + total + w.seal_reserve <= self._config.segment_max_bytes
                ):
                    first = w.append_many(items)
                else:
                    first = self._rot.append_spanning(items)
            except BackpressureTimeout:  # a TimeoutError, hence an OSError: not a disk failure
                raise
            except OSError as exc:
                raise self._fail(exc, "write to the active segment") from exc
            self._bytes += total - fmt.RECORD_HEADER_SIZE * len(items)
            if self._max_age is not None:
                self._rot.arm_age()
            return range(first, first + len(items))

    def checkpoint(self, lsn: int, payload: bytes | bytearray | memoryview = b"") -> int:
        """Declare that the application's state covers every record up to ``lsn``.

        Writes a CHECKPOINT record (returning its LSN) and raises ``checkpoint_lsn``.
        Segments whose records are all at or below a checkpoint whose record is
        durable may then be deleted (archive off) or pruned (archive limits).
        """
        if isinstance(lsn, bool) or not isinstance(lsn, int):
            raise TypeError("checkpoint lsn must be an int")
        p = _as_payload(payload)
        if len(p) + fmt.CHECKPOINT_PREFIX.size > self._config.max_record_bytes:
            raise RecordTooLargeError("checkpoint payload exceeds max_record_bytes")
        with self._lock:
            self._check()
            if lsn < 0 or lsn > self._w.last_lsn:
                raise ValueError(
                    f"checkpoint LSN {lsn} is outside 0..last_lsn={self._w.last_lsn}"
                )
            if lsn < self._checkpoint_lsn:
                raise ValueError(
                    f"checkpoint LSN {lsn} is below the current checkpoint {self._checkpoint_lsn}"
                )
            record_lsn = self._append_special(
                fmt.RecordKind.CHECKPOINT, fmt.encode_checkpoint_payload(lsn, p)
            )
            self._checkpoint_lsn = lsn
            self._mgr.note_checkpoint(record_lsn, lsn)
        self._archiver.note_checkpoint(record_lsn, lsn)
        self._archiver.note_synced(self._mgr.synced_lsn)
        return record_lsn

    def mark(self, name: str) -> int:
        """Write a named restore point (a MARK record); return its LSN."""
        if not isinstance(name, str):
            raise TypeError("mark name must be a str")
        raw = name.encode("utf-8")
        if not raw or len(raw) > fmt.MAX_MARK_NAME_BYTES:
            raise ValueError(f"mark name must be 1..{fmt.MAX_MARK_NAME_BYTES} bytes of UTF-8")
        with self._lock:
            self._check()
            return self._append_special(fmt.RecordKind.MARK, raw)

    def _append_special(self, kind: int, stored: bytes) -> int:
        w = self._w
        try:
            if not w.fits(len(stored)):
                self._rot.rotate_for_room(len(stored))
            lsn = w.append(kind, stored)
            if self._max_age is not None:
                self._rot.arm_age()
            return lsn
        except BackpressureTimeout:
            raise
        except OSError as exc:
            raise self._fail(exc, "write to the active segment") from exc

    # ------------------------------------------------------------------ rotation

    def rotate(self, timeout: float | None = None) -> int:
        """Seal the active segment now and start a new one; return the sealed segment's
        last LSN (0 when the active segment holds no record: nothing is done).

        Never needed for durability (``sync`` fsyncs the active file in place); use it
        to make everything appended so far archivable (and shippable) at once, as
        ``pg_switch_wal`` does. ``timeout`` bounds the wait for backpressure room.
        """
        with self._lock:
            self._check()
            w = self._w
            if w.record_count == 0:
                return 0
            self._rot.wait_room(1, timeout)  # may release the lock: look again after
            return self._rot.rotate() if w.record_count else 0

    # ------------------------------------------------------------------ durability

    def sync_async(self, timeout: float | None = None) -> SyncHandle:
        """Start making every appended record durable; return a handle for the last LSN.

        ``timeout`` bounds only the wait for backpressure room (``max_pending_*``).
        """
        with self._lock:
            self._check()
            w = self._w
            target = w.next_lsn - 1
            mgr = self._mgr
            if target <= mgr.synced_lsn:
                return mgr.request(w.fd, target, False)
            cfg = self._config
            if not mgr.has_room(cfg.max_pending_segments, cfg.max_pending_bytes):
                self._rot.wait_room(1, timeout)
            if w.buf:
                self._flush_locked()
            return mgr.request(w.fd, target, True)

    def sync(self) -> int:
        """Make every appended record durable; return the durable LSN (blocking).

        When no fsync is in flight the calling thread runs it itself; otherwise it
        waits for the one in flight and (if needed) leads the next, which then
        serves every commit that arrived meanwhile.
        """
        mgr = self._mgr
        with self._lock:
            if self._closed or mgr.failure is not None:
                self._check()
            w = self._w
            target = w.next_lsn - 1
            if w.buf:
                self._flush_locked()
            got = mgr.sync_or_handle(w.fd, target)
        if got is not None:
            if type(got) is list:
                mgr.lead_round(got, target)
            else:
                assert isinstance(got, SyncHandle)
                if not got.done_flag:
                    mgr.wait_handle(got, None)
                if got.error is not None:
                    raise got.error
        return max(target, mgr.synced_lsn)

    def _flush_locked(self) -> None:
        try:
            self._w.flush()
        except OSError as exc:
            raise self._fail(exc, "write to the active segment") from exc
    # ------------------------------------------------------------------ retention & stats

    def prune(self, dry_run: bool = False) -> list[PruneCandidate]:
        """Apply retention now (or, with ``dry_run``, only list what would go and why)."""
        self._check()
        if self._archiver.error is not None:
            raise WalError(
                f"archiving stopped ({self._archiver.error!r}); segments stay in pending/ "
                "until the WAL is reopened"
            )
        self._archiver.note_synced(self._mgr.synced_lsn)
        return self._archiver.prune_now(dry_run)

    def wait_archived(self, timeout: float | None = None) -> bool:
        """Wait until every synced segment has been archived (tests and tools use this)."""
        return self._archiver.drain(timeout)

    def stats(self) -> WalStats:
        """A snapshot of this WAL's counters."""
        mgr = self._mgr
        with mgr.cv:
            c = mgr.counters
            lat = sorted(c.latencies)
            fsyncs, commits, dirs, fmax = c.fsyncs, c.commits, c.dir_fsyncs, c.fsync_max_s
            pseg, pbytes, synced = mgr.pending_segments, mgr.pending_bytes, mgr.synced_lsn
        arch = self._archiver
        return WalStats(
            last_lsn=self._w.next_lsn - 1,
            synced_lsn=synced,
            checkpoint_lsn=self._checkpoint_lsn,
            records_appended=self._w.next_lsn - self._parts.start_lsn,
            bytes_appended=self._bytes,
            rotations=self._rot.rotations,
            fsyncs=fsyncs,
            fsync_p50_s=percentile(lat, 0.5),
            fsync_p99_s=percentile(lat, 0.99),
            fsync_max_s=fmax,
            commits=commits,
            commits_per_fsync=commits / fsyncs if fsyncs else 0.0,
            pending_segments=pseg,
            pending_bytes=pbytes,
            archive_segments=len(arch.segments),
            archive_bytes=arch.archive_bytes,
            backpressure_wait_s=self._rot.backpressure_s,
            dir_fsyncs=dirs,
            pruned_segments=arch.pruned_segments,
            failed=mgr.failure is not None,
            archive_error=None if arch.error is None else repr(arch.error),
        )

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Final sync, drain the sync and archive threads, release the lock (idempotent).

        When it returns every ``SyncHandle`` is done: durable through the final
        sync, or failed with a ``WalError`` (``WalClosedError`` for a commit that
        raced ``close``, the WAL's failure after a failed write or fsync).
        """
        if self._closed:
            return
        if self._mgr.failure is None:
            with contextlib.suppress(WalError):
                self.sync()
        with self._lock:
            if self._closed:
                return
            self._closed = self._rot.closed = True
            if self._mgr.failure is not None:
                self._w.broken = True  # after a failure nothing more is written (not a byte)
        parts = self._parts
        parts.mgr.stop()
        parts.archiver.stop()
        parts.spares.stop()
        with contextlib.suppress(OSError):
            parts.writer.close()
        parts.watermark.close()
        self._finalizer.detach()
        close_fds(self._fs, [parts.root_fd, parts.pending_fd])
        with contextlib.suppress(OSError):
            self._fs.unlock(self._lock_handle)

    def __enter__(self) -> AsyncWalWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("failed" if self.failure else "open")
        return f"<AsyncWalWriter {self._paths.root} {state} last_lsn={self.last_lsn}>"


def open(  # the public name is lsnwal.open
    path: str | os.PathLike[str],
    config: WalConfig | None = None,
    *,
    sync_backend: SyncBackend | None = None,
    fs: FileSystem | None = None,
    failpoint: FailpointHook | None = None,
    create_if_missing: bool = True,
    error_if_exists: bool = False,
) -> AsyncWalWriter:
    """Create or recover the WAL at ``path`` and return it open for writing.

    ``create_if_missing=False`` refuses a directory that holds no WAL yet;
    ``error_if_exists=True`` refuses one that does. A non-empty directory that is
    not a WAL is always refused (``WalError``), so a mistyped path never starts
    an empty log.
    """
    return AsyncWalWriter.open_or_create(
        path, config, sync_backend=sync_backend, fs=fs, failpoint=failpoint,
        create_if_missing=create_if_missing, error_if_exists=error_if_exists,
    )
