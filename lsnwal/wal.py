"""``AsyncWalWriter``: the public WAL object — open/recover, append, sync, checkpoint, close.

Owns the writer lock, the LOCK file and the wiring writer -> sync manager ->
archiver. Rules kept here:

* Bad input changes nothing: payloads are checked (type, size) before the lock
  is taken and before an LSN is assigned; ``append_batch`` checks every item
  first; a call that times out on backpressure has appended nothing.
* ``sync_async`` queues work only when the last LSN is not yet covered by queued
  work; while the sync thread is busy it only flags that work is wanted, and the
  thread makes one unit for every commit that arrived meanwhile (group commit).
  The unit is a rotation into ``pending/`` (``rotate_on_sync=True``, the
  default) or an in-place fsync of the active file through the same FIFO
  (``False``). Rotations use a pre-created spare file, waited for outside the
  writer lock, because creating a file can cost a millisecond.
* The blocking ``sync()`` fsyncs the active file in place when no rotated
  segment is waiting (nothing older can be unsynced then), so a lone committer
  pays one fsync, not a rename + create + fsync + directory fsync; otherwise it
  rotates and waits in FIFO order. Before acknowledging records of a fresh active
  file it fsyncs the WAL directory once, so the file's name is durable too.
* After any ``OSError`` on the write path the WAL is fail-stopped like after a
  failed fsync: ``WalSyncError`` for every later call; ``close()`` never raises
  for it and releases the lock so the directory can be reopened.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType

from . import format as fmt
from .archive import Archiver, PruneCandidate
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
from .names import TMP_SUFFIX, WalPaths, segment_name
from .recovery import Analysis, analyze, apply_cuts
from .stats import WalStats, percentile
from .sync import SegmentSyncManager, SyncHandle
from .watermark import WatermarkWriter
from .writer import SPARE_PREFIX, SPARE_SUFFIX, SealedSegment, SegmentWriter, SparePool

#: the sync thread waits at most this long for a pre-created segment file
SPARE_WAIT_S = 0.005


def _as_payload(payload: object) -> bytes:
    if type(payload) is bytes:
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, bytes):
        return bytes(payload)
    raise TypeError(f"payload must be bytes-like, not {type(payload).__name__}")


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
    ) -> None:
        cfg = config if config is not None else WalConfig()
        if not isinstance(cfg, WalConfig):
            raise TypeError("config must be a lsnwal.WalConfig")
        self._fs = fs = fs if fs is not None else OsFileSystem()
        self._backend = sync_backend if sync_backend is not None else fs.sync_backend()
        self._config = cfg
        self._max_record = cfg.max_record_bytes
        self._fp = failpoint
        self._paths = paths = WalPaths.of(path, cfg)
        self._lock = threading.Lock()
        self._closed = True
        self._lock_handle = -1
        self._root_fd = self._pending_fd = -1
        self._wm: WatermarkWriter | None = None
        self._bytes = self._rotations = 0
        self._backpressure_s = 0.0
        self.recovery_report: list[str] = []

        created_root = fs.makedirs(paths.root)
        try:
            self._lock_handle = fs.lock(paths.lock)
        except BlockingIOError:
            raise WalLockedError(
                f"{paths.root} is locked by another writer ({paths.lock})"
            ) from None
        try:
            self._open_locked(created_root)
        except BaseException:
            self._release_files()
            raise
        self._closed = False
        self._finalizer = weakref.finalize(
            self, _abandon, self._mgr, self._archiver, self._spares, self._w, fs,
            self._lock_handle, (self._root_fd, self._pending_fd), self._wm,
        )

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
    ) -> AsyncWalWriter:
        """Create the WAL directory, or recover the one that is there."""
        return cls(path, config, sync_backend=sync_backend, fs=fs, failpoint=failpoint)

    def _open_locked(self, created_root: bool) -> None:
        fs, backend, paths = self._fs, self._backend, self._paths
        made = [fs.makedirs(paths.pending), fs.makedirs(paths.archive)]
        if created_root or any(made):
            for d in {os.path.dirname(paths.root), paths.root, os.path.dirname(paths.pending),
                      os.path.dirname(paths.archive)}:
                self._sync_dir(d)
        for name in fs.listdir(paths.archive):  # copies interrupted by a crash
            if name.endswith(TMP_SUFFIX):
                fs.unlink(os.path.join(paths.archive, name))
        for name in fs.listdir(paths.root):  # unused spare files of an earlier run
            if name.startswith(SPARE_PREFIX) and name.endswith(SPARE_SUFFIX):
                fs.unlink(os.path.join(paths.root, name))
        an = analyze(fs, paths, self._config, check_archive=True)
        apply_cuts(fs, an, self._backend)
        self.recovery_report = an.report()
        recovered = self._seal_recovered(an)
        self._root_fd = fs.open_dir(paths.root)
        self._pending_fd = fs.open_dir(paths.pending)
        # Everything found is durable from here on (D8: leftovers are fsynced, not trusted).
        backend.sync_dir(self._pending_fd)
        # The durable watermark: everything found is durable now (fsynced once here;
        # the sync manager rewrites it before it tells a waiter; recovery reads it).
        # This one fsync uses the file system's own backend: it orders no record's
        # acknowledgement, and injected backends count and block record fsyncs.
        self._wm = wm = WatermarkWriter(fs, paths.root)
        wm.publish(an.next_lsn - 1, an.checkpoint_lsn)
        fs.sync_backend().sync_file(wm.fd)
        self._spares = SparePool(fs, paths.root)
        self._w = SegmentWriter(
            fs, paths, next_lsn=an.next_lsn, last_ts=an.last_ts,
            checkpoint_lsn=an.checkpoint_lsn, segment_max_bytes=self._config.segment_max_bytes,
            write_buffer_bytes=self._config.write_buffer_bytes, failpoint=self._fp,
            spares=self._spares,
        )
        backend.sync_dir(self._root_fd)  # the new active file's name is durable
        self._w.dir_synced = True
        self._checkpoint_lsn = an.checkpoint_lsn
        self._rotated_lsn = an.next_lsn - 1
        self._start_lsn = an.next_lsn
        self._archiver = Archiver(
            fs, backend, paths, self._config, an.archive, checkpoint_lsn=an.checkpoint_lsn,
            failpoint=self._fp,
        )
        self._archiver.rewrite_index()  # the seek index is a hint: rebuilt at every open
        self._mgr = SegmentSyncManager(
            fs, backend, self._pending_fd, initial_synced_lsn=an.next_lsn - 1,
            on_synced=self._archiver.submit, failpoint=self._fp, root_dir_fd=self._root_fd,
            on_durable=functools.partial(_publish, wm, an.checkpoint_lsn),
        )
        ref = weakref.ref(self)

        def rotate_for_sync() -> None:
            wal = ref()
            if wal is not None:
                wal._rotate_for_sync()

        self._mgr.rotate_callback = rotate_for_sync
        if recovered:
            self._archiver.submit(recovered, an.next_lsn - 1)

    def _seal_recovered(self, an: Analysis) -> list[SealedSegment]:
        """Seal, fsync and move into pending/ what recovery kept outside the archive."""
        fs, backend, paths = self._fs, self._backend, self._paths
        out: list[SealedSegment] = []
        for seg in an.live:
            if seg.count == 0 and seg.end.verdict != fmt.SEALED:
                fs.unlink(seg.path)  # header-only: nothing to keep, LSNs continue anyway
                continue
            fd = fs.open_write(seg.path)
            try:
                if seg.end.verdict != fmt.SEALED:
                    if fs.fsize(fd) != seg.data_end:
                        fs.truncate(fd, seg.data_end)
                    fs.write(fd, fmt.encode_seal(seg.rebuilt_seal()))
                backend.sync_file(fd)
                size = fs.fsize(fd)
            finally:
                fs.close(fd)
            path = seg.path
            if seg.state == "active":
                path = os.path.join(paths.pending, segment_name(seg.first_lsn))
                fs.rename(seg.path, path)
            out.append(SealedSegment(path, -1, seg.first_lsn, seg.last_lsn, size, seg.last_ts))
        return out

    def _sync_dir(self, path: str) -> None:
        fd = self._fs.open_dir(path)
        try:
            self._backend.sync_dir(fd)
        finally:
            self._fs.close(fd)

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
        """Append one DATA record; return its LSN (durable once ``synced_lsn`` reaches it)."""
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
                    self._rotate_for_room(n)
                    lsn = w.try_append(1, p)
            except BackpressureTimeout:  # a TimeoutError, hence an OSError: not a disk failure
                raise
            except OSError as exc:
                raise self._fail(exc, "write to the active segment") from exc
            self._bytes += n
            return lsn

    def append_batch(self, payloads: Iterable[bytes | bytearray | memoryview]) -> range:
        """Append many DATA records at once (all or nothing); return their LSNs as a range."""
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
                    first = self._append_spanning(items)
            except BackpressureTimeout:  # a TimeoutError, hence an OSError: not a disk failure
                raise
            except OSError as exc:
                raise self._fail(exc, "write to the active segment") from exc
            self._bytes += total - fmt.RECORD_HEADER_SIZE * len(items)
            return range(first, first + len(items))

    def _append_spanning(self, items: list[bytes]) -> int:
        """Append a batch that needs rotations, reserving backpressure room first."""
        w = self._w
        # Plan the segments the batch will need, so that nothing is appended unless
        # every rotation it needs can happen now.
        used = w.active_bytes
        count = w.record_count
        reserve = w.seal_reserve
        rotations = 0
        limit = self._config.segment_max_bytes
        for p in items:
            size = fmt.RECORD_HEADER_SIZE + len(p)
            if count and used + size + reserve > limit:
                rotations += 1
                used, count, reserve = fmt.HEADER_SIZE, 0, 200
            used += size
            count += 1
        cfg = self._config
        if rotations > cfg.max_pending_segments:
            raise ValueError(
                f"this batch needs {rotations} segment rotations, more than "
                f"max_pending_segments={cfg.max_pending_segments}; split it"
            )
        self._wait_room_locked(rotations, None)
        first = w.next_lsn
        for p in items:
            if not w.fits(len(p)):
                self._rotate_locked()
            w.append(1, p)
        return first

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
        if not w.fits(len(stored)):
            self._rotate_for_room(len(stored))
        try:
            return w.append(kind, stored)
        except OSError as exc:
            raise self._fail(exc, "write to the active segment") from exc

    # ------------------------------------------------------------------ rotation

    def _wait_room_locked(
        self, rotations: int, timeout: float | None, needed: Callable[[], bool] | None = None
    ) -> None:
        """Wait (lock released meanwhile) until ``rotations`` more segments may be pending
        (or, if given, until ``needed()`` turns False: someone else did the rotation)."""
        cfg = self._config
        mgr = self._mgr
        max_segs = cfg.max_pending_segments - max(0, rotations - 1)
        if mgr.has_room(max_segs, cfg.max_pending_bytes):
            return
        t0 = time.monotonic()
        limit = cfg.backpressure_timeout_s if timeout is None else timeout
        deadline = t0 + limit
        try:
            while not mgr.has_room(max_segs, cfg.max_pending_bytes) and (
                needed is None or needed()
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BackpressureTimeout(
                        f"{mgr.pending_segments} segments ({mgr.pending_bytes} bytes) wait for "
                        f"fsync; no room within {limit}s"
                    )
                self._lock.release()
                try:
                    mgr.wait_for_room(max_segs, cfg.max_pending_bytes, remaining)
                finally:
                    self._lock.acquire()
                self._check()
        finally:
            self._backpressure_s += time.monotonic() - t0

    def _rotate_locked(self) -> None:
        try:
            sealed = self._w.rotate()
        except OSError as exc:
            raise self._fail(exc, "segment rotation") from exc
        self._rotations += 1
        self._rotated_lsn = sealed.last_lsn
        self._mgr.enqueue(sealed)

    def _rotate_for_room(self, payload_len: int) -> None:
        """The active segment is full: rotate it (waiting for backpressure room)."""
        self._wait_room_locked(1, None)
        if not self._w.fits(payload_len):
            self._rotate_locked()

    # ------------------------------------------------------------------ durability

    def sync_async(self, timeout: float | None = None) -> SyncHandle:
        """Start making every appended record durable; return a handle for the last LSN.

        ``timeout`` bounds only the wait for backpressure room.
        """
        with self._lock:
            self._check()
            return self._sync_async_locked(timeout)

    def _sync_async_locked(self, timeout: float | None) -> SyncHandle:
        target = self._w.next_lsn - 1
        mgr = self._mgr
        if target <= self._rotated_lsn or target <= mgr.synced_lsn:
            return mgr.handle(target)  # already covered by queued or finished work
        if self._config.rotate_on_sync:
            # Backpressure (DESIGN.md): a commit that needs a rotation, made now or later by
            # the busy sync thread, waits while the pending limits are reached.
            self._wait_room_locked(1, timeout, lambda: target > self._rotated_lsn)
            if target <= self._rotated_lsn:
                return mgr.handle(target)
        # One lock round trip: register the handle and, if the sync thread is busy, ask
        # it to rotate once free (one rotation and one fsync then serve every commit
        # that arrived meanwhile). If it is idle, queue the work now.
        handle, now = mgr.request(target)
        if now:
            if not self._config.rotate_on_sync:
                self._queue_in_place_locked()
            elif self._spares.ready():
                self._rotate_locked()
            else:
                # No pre-created file yet: creating one here would hold the writer lock
                # for about a millisecond. Let the sync thread rotate once a spare is
                # ready; commits arriving meanwhile join the same rotation.
                mgr.defer_rotation()
        return handle

    def _queue_in_place_locked(self) -> None:
        """``rotate_on_sync=False``: ask the sync thread to fsync the active file in place."""
        w = self._w
        try:
            w.flush()
            fd = self._fs.dup(w.fd)
        except OSError as exc:
            raise self._fail(exc, "write to the active segment") from exc
        dir_fd = -1
        if not w.dir_synced:
            # The FIFO fsyncs the WAL directory before acknowledging anything of this
            # active file; every later unit is processed after that.
            dir_fd = self._root_fd
            w.dir_synced = True
        target = w.next_lsn - 1
        self._rotated_lsn = target
        self._mgr.enqueue(
            SealedSegment(self._paths.active, fd, w.first_lsn, target, 0, w.last_ts,
                          in_place=True, dir_fd=dir_fd)
        )

    def _rotate_for_sync(self) -> None:
        """Called by the sync thread when commits are waiting for a rotation."""
        if self._config.rotate_on_sync:
            # Wait for a pre-created file *outside* the writer lock: appends go on and
            # join this rotation (adaptive batching when file creation is slow).
            self._spares.wait_ready(SPARE_WAIT_S)
        with self._lock:
            if self._closed or self._mgr.failure is not None:
                return
            if self._w.next_lsn - 1 > self._rotated_lsn:
                if self._config.rotate_on_sync:
                    self._rotate_locked()
                else:
                    self._queue_in_place_locked()

    def sync(self) -> int:
        """Make every appended record durable; return the durable LSN (blocking)."""
        mgr = self._mgr
        with self._lock:
            self._check()
            w = self._w
            target = w.next_lsn - 1
            if target <= mgr.synced_lsn:
                with mgr.cv:
                    mgr.counters.commits += 1
                return mgr.synced_lsn
            in_place = target > self._rotated_lsn and mgr.idle()
            if in_place:
                try:
                    w.flush()
                    fd = self._fs.dup(w.fd)
                except OSError as exc:
                    raise self._fail(exc, "write to the active segment") from exc
                need_dir = not w.dir_synced
                generation = w.generation
            else:
                handle = self._sync_async_locked(None)
        if not in_place:
            handle.wait()
            self._archiver.note_synced(mgr.synced_lsn)
            return max(target, mgr.synced_lsn)
        try:
            fp = self._fp
            if fp is not None:
                fp("before_file_fsync")
            t0 = time.perf_counter()
            self._backend.sync_file(fd)
            mgr.counters.note_fsync(time.perf_counter() - t0)
            if fp is not None:
                fp("after_file_fsync")
            if need_dir:
                if fp is not None:
                    fp("before_dir_fsync")
                self._backend.sync_dir(self._root_fd)
                mgr.counters.dir_fsyncs += 1
                if fp is not None:
                    fp("after_dir_fsync")
        except BaseException as exc:
            raise self._fail(exc, "fsync of the active segment") from exc
        finally:
            with contextlib.suppress(OSError):
                self._fs.close(fd)
        if need_dir:
            with self._lock:
                if self._w.generation == generation:
                    self._w.dir_synced = True
        mgr.publish(target)
        self._archiver.note_synced(mgr.synced_lsn)
        return max(target, mgr.synced_lsn)

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
            records_appended=self._w.next_lsn - self._start_lsn,
            bytes_appended=self._bytes,
            rotations=self._rotations,
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
            backpressure_wait_s=self._backpressure_s,
            dir_fsyncs=dirs,
            pruned_segments=arch.pruned_segments,
            failed=mgr.failure is not None,
            archive_error=None if arch.error is None else repr(arch.error),
        )

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Final sync, drain the sync and archive threads, release the lock (idempotent)."""
        if self._closed:
            return
        if self._mgr.failure is None:
            with contextlib.suppress(WalSyncError):
                self.sync()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            w = self._w
            if self._mgr.failure is None:
                with contextlib.suppress(OSError):
                    w.flush()
        self._mgr.stop()
        self._archiver.stop()
        self._spares.stop()
        with contextlib.suppress(OSError):
            self._w.close()
        self._finalizer.detach()
        self._release_files()

    def _release_files(self) -> None:
        fs = self._fs
        for fd in (self._root_fd, self._pending_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    fs.close(fd)
        self._root_fd = self._pending_fd = -1
        if self._wm is not None:
            self._wm.close()
        if self._lock_handle >= 0:
            with contextlib.suppress(OSError):
                fs.unlock(self._lock_handle)
            self._lock_handle = -1

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


def _publish(wm: WatermarkWriter, checkpoint_lsn: int, lsn: int) -> None:
    wm.publish(lsn, checkpoint_lsn)


def _abandon(
    mgr: SegmentSyncManager,
    archiver: Archiver,
    spares: SparePool,
    writer: SegmentWriter,
    fs: FileSystem,
    lock_handle: int,
    dir_fds: tuple[int, int],
    wm: WatermarkWriter | None,
) -> None:
    """Release an AsyncWalWriter that was garbage-collected without ``close()``."""
    with contextlib.suppress(Exception):
        writer.close()
    mgr.stop(timeout=5.0)
    archiver.stop()
    spares.stop()
    for fd in dir_fds:
        with contextlib.suppress(OSError):
            fs.close(fd)
    if wm is not None:
        wm.close()
    with contextlib.suppress(OSError):
        fs.unlock(lock_handle)


def open(  # the public name is lsnwal.open
    path: str | os.PathLike[str],
    config: WalConfig | None = None,
    *,
    sync_backend: SyncBackend | None = None,
    fs: FileSystem | None = None,
    failpoint: FailpointHook | None = None,
) -> AsyncWalWriter:
    """Create or recover the WAL at ``path`` and return it open for writing."""
    return AsyncWalWriter.open_or_create(
        path, config, sync_backend=sync_backend, fs=fs, failpoint=failpoint
    )
