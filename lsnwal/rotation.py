"""``Rotator``: segment rotation and backpressure for one open WAL.

Rotation happens when the active segment is full (``segment_max_bytes``), old
(``segment_max_age_s``, from the sync thread) or asked for (``wal.rotate()``),
never because of a commit. Rules kept here:

* **Renames are announced.** ``rotate`` brackets the writer's seal + rename +
  new active file with the commit path's ``begin_rename``/``end_rename``, so no
  LSN in a renamed file is acknowledged before both directories are fsynced
  (invariant 5), whichever thread runs that fsync.
* **Backpressure counts rotated, unsynced segments.** A rotation waits (writer
  lock released meanwhile) while ``max_pending_segments``/``max_pending_bytes``
  are reached, up to a timeout, then raises ``BackpressureTimeout`` having
  appended nothing. A batch that needs several rotations reserves room for all
  of them before it writes its first record. The sync thread's age rotation
  never waits (it is the thread that would make room).
* **Nothing leaks.** A rotation that fails after its rename hands the sealed
  segment (and its descriptor) to the commit path, which closes it.

Every method but ``rotate_for_age`` runs with the WAL's writer lock held.
"""

from __future__ import annotations

import threading
import time

from . import format as fmt
from .config import WalConfig
from .errors import BackpressureTimeout, WalClosedError, WalSyncError
from .sync import SegmentSyncManager
from .writer import SealedSegment, SegmentWriter


class Rotator:
    """Rotation and backpressure for one WAL (see the module header)."""

    def __init__(
        self,
        lock: threading.Lock,
        writer: SegmentWriter,
        mgr: SegmentSyncManager,
        config: WalConfig,
        root: str,
    ) -> None:
        self._lock = lock
        self._w = writer
        self._mgr = mgr
        self._config = config
        self._root = root
        #: set by the WAL's close() (no reference back to the WAL: it must stay collectable)
        self.closed = False
        self.rotations = 0
        self.backpressure_s = 0.0

    def _check(self) -> None:
        if self.closed:
            raise WalClosedError(f"the WAL at {self._root} is closed")
        if self._mgr.failure is not None:
            raise self._mgr.failure

    def _fail(self, exc: BaseException, what: str) -> WalSyncError:
        return self._mgr.fail(exc, what)

    def wait_room(self, rotations: int, timeout: float | None) -> None:
        """Wait until ``rotations`` more segments may be pending; ``BackpressureTimeout``
        after ``timeout`` (default: ``backpressure_timeout_s``)."""
        cfg = self._config
        mgr = self._mgr
        max_segs = cfg.max_pending_segments - max(0, rotations - 1)
        if mgr.has_room(max_segs, cfg.max_pending_bytes):
            return
        t0 = time.monotonic()
        limit = cfg.backpressure_timeout_s if timeout is None else timeout
        deadline = t0 + limit
        try:
            while not mgr.has_room(max_segs, cfg.max_pending_bytes):
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
            self.backpressure_s += time.monotonic() - t0

    def rotate(self) -> int:
        """Seal the active segment into ``pending/`` and queue it; return its last LSN."""
        mgr = self._mgr
        w = self._w
        mgr.begin_rename()
        w.sealed = None
        sealed: SealedSegment | None = None
        try:
            sealed = w.rotate()
        except OSError as exc:
            if w.fd < 0 and w.sealed is not None:  # renamed, but no new active file
                sealed = w.sealed
            raise self._fail(exc, "segment rotation") from exc
        finally:
            mgr.end_rename(sealed)  # closes its descriptor if the WAL failed
        self.rotations += 1
        mgr.age_deadline = None
        return sealed.last_lsn

    def rotate_for_room(self, payload_len: int) -> None:
        """The active segment is full: rotate it (waiting for backpressure room)."""
        self.wait_room(1, None)
        if not self._w.fits(payload_len):
            self.rotate()

    def append_spanning(self, items: list[bytes]) -> int:
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
        self.wait_room(rotations, None)
        first = w.next_lsn
        for p in items:
            if not w.fits(len(p)):
                self.rotate()
            w.append(1, p)
        return first

    def arm_age(self) -> None:
        """Start the age clock of a segment that just got its first record."""
        age = self._config.segment_max_age_s
        mgr = self._mgr
        if age is not None and mgr.age_deadline is None and self._w.record_count:
            mgr.age_deadline = time.monotonic() + age
            mgr.notify_age()

    def rotate_for_age(self) -> None:
        """From the sync thread: rotate the active segment if it is older than allowed."""
        cfg = self._config
        age = cfg.segment_max_age_s
        assert age is not None
        mgr = self._mgr
        with self._lock:
            w = self._w
            if self.closed or mgr.failure is not None or w.record_count == 0:
                return
            due = w.first_ts + age - time.time()
            if due > 0:  # the clock moved, or the segment is younger: look again later
                mgr.age_deadline = time.monotonic() + due
                return
            if not mgr.has_room(cfg.max_pending_segments, cfg.max_pending_bytes):
                mgr.age_deadline = time.monotonic() + min(age, 1.0)
                return  # never wait here: the thread that would make room is this one
            try:
                w.flush()
            except OSError as exc:
                raise self._fail(exc, "write to the active segment") from exc
            self.rotate()
