"""The archiver: moves synced segments out of ``pending/`` and enforces retention.

Owns ``archive/`` and the retention policy, on a thread of its own so that
archiving and compression never delay the advance of ``synced_lsn``. Rules:

* A segment arrives here only after ``synced_lsn`` covers its last LSN.
* Same file system, plain: rename into ``archive/`` (never replacing), then
  fsync ``archive/``. Crash before that fsync: the segment is found in
  ``pending/`` again and re-archived at the next open.
* Compressed, or another file system: write ``<name>.tmp`` in ``archive/``,
  fsync it, rename it to its final name, fsync ``archive/``, then remove the
  pending copy. Crash in between: the same segment is found twice and counted
  once; a ``.tmp`` file is removed at open.
* An archived file is never overwritten; a same-named file with different
  content stops the archiver (the segment stays in ``pending/``, nothing lost).
* Retention (invariant 8): a segment is deleted only when every record in it is
  at or below the durable checkpoint (whose CHECKPOINT record is itself synced).
  With ``archive_enabled=False`` that is the only rule; with the archive on,
  the count/bytes/age limits prune the oldest segments first and stop at the
  first one that may not go, so only the oldest end is ever cut (no gaps).
  Unlinks are followed by an fsync of ``archive/``.
* With ``archive_url`` set, archived segments are handed to the shipper
  (``lsnwal.ship``), and no segment is deleted locally — by retention or
  because the archive is off — before the store acknowledged it. The store is
  connected and checked here, before this thread starts: a store that cannot
  be used makes the open fail with one ``StoreError``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import WalConfig
from .errors import WalError
from .fs import FailpointHook, FileSystem, SyncBackend, sync_dir_at
from .layout import unlink_loses
from .names import TMP_SUFFIX, ZSTD_SUFFIX, WalPaths, parse_segment_name, segment_name
from .recovery import Seg, load_archived, same_records
from .seekindex import append_index, write_index
from .segment import read_header, read_seal
from .writer import SealedSegment

if TYPE_CHECKING:
    from .ship import Shipper
    from .store.connect import ShipTarget

log = logging.getLogger("lsnwal")

#: the archiver gathers synced segments for up to this long (or this many) per batch
ARCHIVE_BATCH_DELAY_S = 0.05
ARCHIVE_BATCH_SEGMENTS = 256


@dataclass
class ArchivedSegment:
    """What the archiver knows about one archived segment (last LSN/time may load lazily)."""

    path: str
    first_lsn: int
    size_bytes: int
    last_lsn: int | None = None
    last_ts: float | None = None


@dataclass(frozen=True)
class PruneCandidate:
    """A segment retention would delete, and why."""

    path: str
    first_lsn: int
    last_lsn: int
    size_bytes: int
    reason: str


class Archiver:
    """A thread that archives synced segments and prunes by policy."""

    def __init__(
        self,
        fs: FileSystem,
        backend: SyncBackend,
        paths: WalPaths,
        config: WalConfig,
        existing: list[Seg],
        *,
        checkpoint_lsn: int,
        failpoint: FailpointHook | None = None,
        ship_target: ShipTarget | None = None,
    ) -> None:
        self._fs = fs
        self._backend = backend
        self._paths = paths
        self._config = config
        self._fp = failpoint
        self._cv = threading.Condition(threading.Lock())
        self._queue: collections.deque[SealedSegment] = collections.deque()
        self._busy = False
        self._stopping = False
        self._drain_requested = 0
        self.error: BaseException | None = None
        self.segments: collections.deque[ArchivedSegment] = collections.deque(
            ArchivedSegment(
                s.path,
                s.first_lsn,
                s.size or _size(fs, s.path),
                s.last_lsn if s.seal is not None else None,
                s.last_ts if s.seal is not None else None,
            )
            for s in existing
        )
        self.archive_bytes = sum(s.size_bytes for s in self.segments)
        self._synced_lsn = 0
        self._cp_pending: collections.deque[tuple[int, int]] = collections.deque()
        self.durable_checkpoint = checkpoint_lsn
        self.pruned_segments = 0
        self._same_dev = fs.same_device(paths.pending, paths.archive)
        self._kicked = False
        self.shipper: Shipper | None = None
        if config.archive_url is not None:
            from .ship import Shipper, connect
            from .store.base import StoreTransientError
            from .store.timeline import save_state

            # Connected already by the caller (before anything was created), or here. A
            # store that does not answer now is connected to later by the shipper.
            target = ship_target
            if target is None:
                try:
                    target = connect(config, paths.root)
                except StoreTransientError as exc:
                    log.warning("lsnwal: %s; shipping starts when the store answers", exc)
            if target is not None:
                try:
                    save_state(target.wal_root, target.url, target.state)
                except BaseException:
                    target.close()
                    raise
            self.shipper = Shipper(
                target, config,
                [(s.path, s.first_lsn, s.last_lsn, s.size_bytes) for s in self.segments],
                self._kick,
                lambda: self.durable_checkpoint,
                lambda: connect(config, paths.root),
            )
        self._thread = threading.Thread(target=self._run, name="lsnwal-archive", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ inputs

    def submit(self, segs: list[SealedSegment], synced_lsn: int) -> None:
        """Hand over segments the sync thread has made durable."""
        with self._cv:
            if synced_lsn > self._synced_lsn:
                self._synced_lsn = synced_lsn
            if segs:
                self._queue.extend(segs)
                self._cv.notify_all()
            elif self._cp_pending and self._cp_pending[0][0] <= synced_lsn:
                self._cv.notify_all()  # a checkpoint became durable: retention may act

    def note_checkpoint(self, record_lsn: int, checkpoint_lsn: int) -> None:
        """A CHECKPOINT record at ``record_lsn`` declares ``checkpoint_lsn`` (durable later)."""
        with self._cv:
            self._cp_pending.append((record_lsn, checkpoint_lsn))
            self._cv.notify_all()

    def note_synced(self, synced_lsn: int) -> None:
        """``synced_lsn`` advanced (maybe making a checkpoint durable): re-check retention."""
        with self._cv:
            if synced_lsn > self._synced_lsn:
                self._synced_lsn = synced_lsn
                if self._cp_pending and self._cp_pending[0][0] <= synced_lsn:
                    self._cv.notify_all()

    def _kick(self) -> None:
        """The shipper made progress: retention may delete what the store now holds."""
        with self._cv:
            self._kicked = True
            self._cv.notify_all()

    def _durable_checkpoint_locked(self) -> int:
        while self._cp_pending and self._cp_pending[0][0] <= self._synced_lsn:
            _, cp = self._cp_pending.popleft()
            self.durable_checkpoint = max(self.durable_checkpoint, cp)
        return self.durable_checkpoint

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(
                    lambda: bool(self._queue)
                    or self._stopping
                    or self._kicked
                    or bool(self._cp_pending and self._cp_pending[0][0] <= self._synced_lsn)
                )
                self._kicked = False
                # Batch: one rename burst and one directory fsync for many segments, so
                # that archiving does not compete with commit fsyncs for the journal.
                # This thread is off the commit path; the wait delays only archiving.
                deadline = time.monotonic() + ARCHIVE_BATCH_DELAY_S
                while (
                    len(self._queue) < ARCHIVE_BATCH_SEGMENTS
                    and not self._stopping
                    and not self._drain_requested
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cv.wait(remaining)
                batch = list(self._queue)
                self._queue.clear()
                cp = self._durable_checkpoint_locked()
                stopping = self._stopping
                self._busy = True
            try:
                if batch and self.error is None:
                    self._archive(batch)
                if self.error is None:
                    self._prune(cp, dry_run=False)
            except BaseException as exc:  # keep the segments where they are, report loudly
                self.error = exc
                log.error("lsnwal: archiving stopped: %r (segments stay in pending/)", exc,
                          extra={"event": "archive_failed", "error": repr(exc),
                                 "archive_dir": self._paths.archive})
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
            if stopping:
                with self._cv:
                    if not self._queue:
                        return

    def _archive(self, batch: list[SealedSegment]) -> None:
        fs, fp = self._fs, self._fp
        compress = self._config.compression == "zstd"
        done: list[ArchivedSegment] = []
        copies: list[str] = []
        for seg in batch:
            name = segment_name(seg.first_lsn, compressed=compress)
            dst = os.path.join(self._paths.archive, name)
            if fp is not None:
                fp("before_archive_move")
            if compress or not self._same_dev:
                size = self._copy(seg, dst, compress)
                copies.append(seg.path)
            else:
                if fs.exists(dst):
                    self._check_same(seg.path, dst)
                    _refuse_same_file(seg.path, dst)
                    fs.unlink(seg.path)
                else:
                    fs.rename(seg.path, dst)
                size = seg.size_bytes
            if fp is not None:
                fp("after_archive_move")
            done.append(ArchivedSegment(dst, seg.first_lsn, size, seg.last_lsn, seg.last_ts))
        self._sync_dir(self._paths.archive)
        if copies:
            # The archived copies are durable: the pending ones may go now.
            for p in copies:
                with contextlib.suppress(FileNotFoundError):
                    fs.unlink(p)
            self._sync_dir(self._paths.pending)
        with self._cv:
            self.segments.extend(done)
            self.archive_bytes += sum(s.size_bytes for s in done)
        append_index(fs, self._paths.root, [(s.first_lsn, compress) for s in done])
        if self.shipper is not None:
            self.shipper.submit(
                (s.path, s.first_lsn, s.last_lsn or s.first_lsn, s.size_bytes) for s in done)

    def _copy(self, seg: SealedSegment, dst: str, compress: bool) -> int:
        fs = self._fs
        if fs.exists(dst):
            self._check_same(seg.path, dst)
            _refuse_same_file(seg.path, dst)  # the caller deletes seg.path next
            return fs.size(dst)
        tmp = dst + TMP_SUFFIX
        if fs.exists(tmp):
            fs.unlink(tmp)
        src = fs.open_read(seg.path)
        out = fs.create(tmp)
        size = 0
        try:
            total = fs.fsize(src)
            if compress:
                from .compress import compress_segment

                header = read_header(fs, src)
                seal = read_seal(fs, src, total)
                if seal is None:
                    raise ValueError(f"{seg.path} has no seal; cannot compress it")
                for piece in compress_segment(
                    header, seal, lambda o, n: fs.pread(src, n, o), self._config.compression_level
                ):
                    fs.write(out, piece)
                    size += len(piece)
            else:
                off = 0
                while off < total:
                    chunk = fs.pread(src, min(1 << 20, total - off), off)
                    if not chunk:
                        break
                    fs.write(out, chunk)
                    off += len(chunk)
                size = off
            self._backend.sync_file(out)
        finally:
            fs.close(out)
            fs.close(src)
        fs.rename(tmp, dst)
        return size

    def _check_same(self, src: str, dst: str) -> None:
        """An archived name already exists: fine if it is the same segment, else an error."""
        fs = self._fs
        parsed = parse_segment_name(os.path.basename(dst))
        a = load_archived(fs, Seg(dst, "archive", parsed[0] if parsed else None))
        fd = fs.open_read(src)
        try:
            seal = read_seal(fs, fd, fs.fsize(fd))
        finally:
            fs.close(fd)
        if seal is None or a.seal is None or seal.last_lsn != a.seal.last_lsn \
                or not same_records(fs, src, seal.data_end, a):
            raise FileExistsError(f"{dst} exists with different content than {src}")

    def _sync_dir(self, path: str) -> None:
        if self._fp is not None:
            self._fp("before_dir_fsync")
        sync_dir_at(self._fs, self._backend, path)
        if self._fp is not None:
            self._fp("after_dir_fsync")

    # ------------------------------------------------------------------ retention

    def _last_lsn(self, seg: ArchivedSegment) -> tuple[int, float]:
        if seg.last_lsn is None or seg.last_ts is None:
            s = load_archived(self._fs, Seg(seg.path, "archive", seg.first_lsn))
            seg.last_lsn, seg.last_ts = s.last_lsn, s.last_ts
        return seg.last_lsn, seg.last_ts

    def plan(self, checkpoint_lsn: int, now: float | None = None) -> list[PruneCandidate]:
        """What retention would delete now, oldest first, with the reason for each."""
        cfg = self._config
        now = time.time() if now is None else now
        with self._cv:
            segs = list(self.segments)
            total_bytes = self.archive_bytes
        count = len(segs)
        out = []
        for seg in segs:
            last, last_ts = self._last_lsn(seg)
            if last > checkpoint_lsn:
                break  # never past the checkpoint, and only the oldest end is cut
            if self.shipper is not None and not self.shipper.is_shipped(seg.first_lsn):
                break  # the store has not acknowledged it yet: the local copy stays
            reason = ""
            if not cfg.archive_enabled:
                reason = f"archive disabled and checkpoint {checkpoint_lsn} covers it"
            elif cfg.archive_max_segments is not None and count > cfg.archive_max_segments:
                reason = f"more than archive_max_segments={cfg.archive_max_segments}"
            elif cfg.archive_max_bytes is not None and total_bytes > cfg.archive_max_bytes:
                reason = f"archive over archive_max_bytes={cfg.archive_max_bytes}"
            elif cfg.archive_max_age_s is not None and now - last_ts > cfg.archive_max_age_s:
                reason = f"newest record older than archive_max_age_s={cfg.archive_max_age_s}"
            if not reason:
                break
            out.append(PruneCandidate(seg.path, seg.first_lsn, last, seg.size_bytes, reason))
            count -= 1
            total_bytes -= seg.size_bytes
        return out

    def _prune(self, checkpoint_lsn: int, dry_run: bool) -> list[PruneCandidate]:
        plan = self.plan(checkpoint_lsn)
        if dry_run or not plan:
            return plan
        fs = self._fs
        for c in plan:
            if self._fp is not None:
                self._fp("before_prune")
            fs.unlink(c.path)
            if self._fp is not None:
                self._fp("after_prune")
            with self._cv:
                self.segments.popleft()
                self.archive_bytes -= c.size_bytes
                self.pruned_segments += 1
        # Crash before this fsync: some unlinks may be undone; those segments are all
        # at or below the checkpoint, so keeping them longer is harmless.
        self._sync_dir(self._paths.archive)
        self.rewrite_index()
        return plan

    def rewrite_index(self) -> None:
        """Rewrite the seek index from the segments this archiver knows (a hint)."""
        with self._cv:
            entries = [(s.first_lsn, s.path.endswith(ZSTD_SUFFIX)) for s in self.segments]
        write_index(self._fs, self._paths.root, entries)

    def prune_now(self, dry_run: bool) -> list[PruneCandidate]:
        """Apply (or with ``dry_run`` only list) retention now, from the caller's thread."""
        self.drain()
        with self._cv:
            self._cv.wait_for(lambda: not self._busy)
            cp = self._durable_checkpoint_locked()
            self._busy = True
        try:
            return self._prune(cp, dry_run)
        finally:
            with self._cv:
                self._busy = False
                self._cv.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far has been archived (and pruned)."""
        with self._cv:
            self._drain_requested += 1
            self._cv.notify_all()
            try:
                # A checkpoint made durable but not yet applied is work too (retention).
                return self._cv.wait_for(
                    lambda: not self._queue and not self._busy and not (
                        self._cp_pending and self._cp_pending[0][0] <= self._synced_lsn),
                    timeout,
                )
            finally:
                self._drain_requested -= 1

    def stop(self) -> None:
        """Finish queued work and join the thread (then the shipper's, bounded)."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join()
        if self.shipper is not None:
            self.shipper.stop()

    def wait_shipped(self, timeout: float | None = None) -> bool:
        """Wait until every archived segment is in the store (True at once without a store)."""
        self.drain(timeout)
        return True if self.shipper is None else self.shipper.drain(timeout)

    def shipping_stats(self) -> dict[str, Any]:
        """The ``ship_*`` fields of ``WalStats`` (empty without a store)."""
        return {} if self.shipper is None else self.shipper.stats()


def _size(fs: FileSystem, path: str) -> int:
    try:
        return fs.size(path)
    except OSError:
        return 0


def _refuse_same_file(src: str, dst: str) -> None:
    """Deleting ``src`` as "the other copy" of ``dst`` must not delete the only copy."""
    if unlink_loses(src, dst):
        raise WalError(f"{src} and {dst} are one file: refusing to delete it as a copy")
