"""The segment writer: LSN assignment, the active segment, its buffer, index and seal.

Owns the active segment file and the next LSN. It is not thread-safe: the
``AsyncWalWriter`` calls it under its lock. It never fsyncs; ``rotate`` returns a
``SealedSegment`` that the caller hands to whoever syncs it (the writer does not
import the sync manager — data flows one way).

Rotation, step by step (crash windows in the comments):

1. append the SEAL record and trailer to the buffer and write the buffer out
   — crash: the active file may be torn anywhere after its last fsync; recovery
   cuts the torn tail, nothing acknowledged lives there;
2. rename ``active.wal`` to ``pending/<first_lsn>.wal`` (never replacing)
   — crash: either name survives (rename is atomic); recovery finds it either way;
3. rename a pre-created spare file (``spare-N.tmp``, made by ``SparePool`` off
   the lock, because creating a file can cost a millisecond) to ``active.wal``,
   or create it if no spare is ready, and write its header (first LSN = last + 1,
   carrying the durable checkpoint LSN) — crash: the new file may be missing,
   empty or header-only; recovery recreates it and LSNs continue from the header
   or from the last record found. Its directory entry is made durable (fsync of
   the WAL directory) before any record in it is acknowledged (see wal.py).
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from dataclasses import dataclass

from . import format as fmt
from .fs import FailpointHook, FileSystem
from .names import WalPaths, segment_name

# Hot-path bindings (module globals are faster to reach than attribute chains).
_TAIL_PACK = fmt.RECORD_HEADER_TAIL.pack
_U32_PACK = fmt.U32.pack
_CRC = fmt.crc32c
_time = time.time  # the writer's clock (tests replace lsnwal.writer._time)

_EMPTY_SEAL_BYTES = fmt.RECORD_HEADER_SIZE + fmt.SEAL_FIXED.size + fmt.TRAILER_SIZE


@dataclass
class SealedSegment:
    """A unit of work for the sync manager (it owns ``fd`` from now on).

    Normally a rotated segment in ``pending/``. With ``in_place`` it is instead a
    request to fsync the active segment (``fd`` is a duplicate of its descriptor)
    up to ``last_lsn``, and ``dir_fd`` (if not -1) is the WAL directory to fsync
    so that the active file's name is durable too.
    """

    path: str
    fd: int
    first_lsn: int
    last_lsn: int
    size_bytes: int
    last_ts: float
    in_place: bool = False
    dir_fd: int = -1


SPARE_PREFIX = "spare-"
SPARE_SUFFIX = ".tmp"


class SparePool:
    """Pre-creates empty files for future active segments on a thread of its own.

    Creating a file can cost far more than renaming one (about 1 ms against
    20 us on the ext4 this was measured on), and rotation happens under the
    writer lock; a spare turns that create into a rename. Spares are plain empty
    files: a crash leaves them behind and ``open()`` deletes them.
    """

    def __init__(self, fs: FileSystem, directory: str, size: int = 2) -> None:
        self._fs = fs
        self._dir = directory
        self._size = size
        self._cv = threading.Condition(threading.Lock())
        self._ready: collections.deque[tuple[str, int]] = collections.deque()
        self._counter = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lsnwal-spare", daemon=True)
        self._thread.start()

    def take(self) -> tuple[str, int] | None:
        """A ready spare ``(path, fd)``, or None (the caller creates a file itself)."""
        with self._cv:
            spare = self._ready.popleft() if self._ready else None
            self._cv.notify_all()
            return spare

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopping or len(self._ready) < self._size)
                if self._stopping:
                    return
                self._counter += 1
                path = os.path.join(self._dir, f"{SPARE_PREFIX}{self._counter}{SPARE_SUFFIX}")
            try:
                fd = self._fs.create(path)
            except OSError:
                with self._cv:  # spares are an optimisation: the writer creates files itself
                    self._stopping = True
                    self._cv.notify_all()
                return
            with self._cv:
                self._ready.append((path, fd))
                self._cv.notify_all()

    def ready(self) -> bool:
        """True when a spare can be taken without waiting (or when there will be none)."""
        return bool(self._ready) or self._stopping

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a spare; True if one is ready."""
        with self._cv:
            return self._cv.wait_for(lambda: bool(self._ready) or self._stopping, timeout) \
                and bool(self._ready)

    def stop(self) -> None:
        """Stop the thread and delete unused spares."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join()
        while self._ready:
            path, fd = self._ready.popleft()
            with contextlib.suppress(OSError):
                self._fs.close(fd)
            with contextlib.suppress(OSError):
                self._fs.unlink(path)


class SegmentWriter:
    """Appends records to the active segment and rotates it into ``pending/``."""

    def __init__(
        self,
        fs: FileSystem,
        paths: WalPaths,
        *,
        next_lsn: int,
        last_ts: float,
        checkpoint_lsn: int,
        segment_max_bytes: int,
        write_buffer_bytes: int,
        failpoint: FailpointHook | None = None,
        spares: SparePool | None = None,
    ) -> None:
        self._fs = fs
        self._spares = spares
        self._paths = paths
        self._max = segment_max_bytes
        self._flush_at = write_buffer_bytes
        self._fp = failpoint
        self.next_lsn = next_lsn
        self.last_ts = last_ts
        #: durable checkpoint LSN written into the headers of new segments
        self.header_checkpoint = checkpoint_lsn
        self.buf = bytearray()
        self.fd = -1
        self.generation = 0
        self.dir_synced = False
        self._start_segment()

    # ------------------------------------------------------------------ state

    @property
    def last_lsn(self) -> int:
        """The last LSN assigned."""
        return self.next_lsn - 1

    @property
    def record_count(self) -> int:
        """Records in the active segment."""
        return self.next_lsn - self.first_lsn

    @property
    def active_bytes(self) -> int:
        """Bytes in the active segment, written or buffered."""
        return self.file_size + len(self.buf)

    def _start_segment(self) -> None:
        """Create a fresh active file whose first LSN is ``next_lsn`` (steps 3 above)."""
        fs = self._fs
        created = max(_time(), self.last_ts)
        header = fmt.encode_segment_header(self.next_lsn, created, self.header_checkpoint)
        if self._fp is not None:
            self._fp("before_active_create")
        spare = self._spares.take() if self._spares is not None else None
        if spare is not None:
            fd = spare[1]
            try:
                fs.rename(spare[0], self._paths.active)
            except BaseException:
                fs.close(fd)
                raise
        else:
            fd = fs.create(self._paths.active)
        try:
            fs.write(fd, header)
        except BaseException:
            fs.close(fd)
            raise
        if self._fp is not None:
            self._fp("after_active_create")
        self.fd = fd
        self.generation += 1
        self.dir_synced = False
        self.first_lsn = self.next_lsn
        self.file_size = fmt.HEADER_SIZE
        self.first_ts = 0.0
        self.blocks: list[fmt.Block] = []
        self.block_offset = fmt.HEADER_SIZE
        self.block_first_lsn = self.next_lsn
        self.block_first_ts = self.last_ts
        self.buf_first_lsn = self.next_lsn
        self.flushed_ts = self.last_ts
        self.marks: list[tuple[str, int, float]] = []
        self.seg_checkpoint = self.header_checkpoint
        self.seal_reserve = _EMPTY_SEAL_BYTES + fmt.SEAL_BLOCK.size
        self._update_room()

    def _update_room(self) -> None:
        """Bytes of buffer + payload the active segment still takes (kept for the hot path)."""
        self.room = self._max - self.file_size - self.seal_reserve - fmt.RECORD_HEADER_SIZE

    # ------------------------------------------------------------------ appends

    def fits(self, payload_len: int) -> bool:
        """True if a record of ``payload_len`` bytes may go into the active segment.

        A segment that holds no record accepts anything (a large record gets a
        segment of its own); otherwise the record must keep the segment, seal
        included, within ``segment_max_bytes``.
        """
        if self.next_lsn == self.first_lsn:
            return True
        total = self.file_size + len(self.buf) + fmt.RECORD_HEADER_SIZE + payload_len
        return total + self.seal_reserve <= self._max

    def append(self, kind: int, payload: bytes) -> int:
        """Append one record (the caller checked ``fits``); return its LSN."""
        lsn = self.try_append(kind, payload, True)
        return lsn

    def try_append(self, kind: int, payload: bytes, force: bool = False) -> int:
        """Append one record if it fits (see ``fits``) and return its LSN, else return 0.

        This is the hot path of ``AsyncWalWriter.append``: one call does the room
        check, the encoding (CRC over header fields and payload) and the buffering.
        """
        buf = self.buf
        lsn = self.next_lsn
        if len(buf) + len(payload) > self.room and not force and lsn != self.first_lsn:
            return 0
        ts = _time()
        last_ts = self.last_ts
        if ts < last_ts:  # keep timestamps monotonic within the WAL
            ts = last_ts
        if lsn == self.first_lsn:
            self.first_ts = ts
        tail = _TAIL_PACK(len(payload), lsn, ts, kind, 0, 0)
        buf += _U32_PACK(_CRC(payload, _CRC(tail)))
        buf += tail
        buf += payload
        self.next_lsn = lsn + 1
        self.last_ts = ts
        if kind != 1:
            self._note_special(kind, lsn, ts, payload)
        if len(buf) >= self._flush_at:
            self.flush()
        return lsn

    def append_at(self, kind: int, payload: bytes, ts: float) -> int:
        """Append one record with a given timestamp (restore copies records as they were)."""
        saved = self.last_ts
        self.last_ts = max(saved, ts)
        lsn = self.next_lsn
        if lsn == self.first_lsn:
            self.first_ts = self.last_ts
        buf = self.buf
        tail = fmt.RECORD_HEADER_TAIL.pack(len(payload), lsn, self.last_ts, kind, 0, 0)
        buf += fmt.U32.pack(fmt.crc32c(payload, fmt.crc32c(tail)))
        buf += tail
        buf += payload
        self.next_lsn = lsn + 1
        if kind != fmt.RecordKind.DATA:
            self._note_special(kind, lsn, self.last_ts, payload)
        if len(buf) >= self._flush_at:
            self.flush()
        return lsn

    def append_many(self, payloads: list[bytes]) -> int:
        """Append DATA records that all fit; return the first LSN. One timestamp for all."""
        lsn = first = self.next_lsn
        ts = _time()
        if ts < self.last_ts:
            ts = self.last_ts
        if lsn == self.first_lsn:
            self.first_ts = ts
        n = len(payloads)
        flush_at = self._flush_at
        # Encode in slices of about one write buffer (bounded memory, same flush points).
        step = max(1, min(1024, flush_at // (sum(map(len, payloads)) // n + 29)))
        for i in range(0, n, step):
            part = payloads[i : i + step]
            self.buf += fmt.encode_data_records(part, lsn, ts)
            lsn += len(part)
            if len(self.buf) >= flush_at:
                self.next_lsn = lsn
                self.flush()
        self.next_lsn = lsn
        self.last_ts = ts
        return first

    def _note_special(self, kind: int, lsn: int, ts: float, payload: bytes) -> None:
        if kind == fmt.RecordKind.MARK:
            name = payload.decode("utf-8")
            self.marks.append((name, lsn, ts))
            self.seal_reserve += fmt.SEAL_MARK.size + len(payload)
            self._update_room()
        elif kind == fmt.RecordKind.CHECKPOINT:
            (cp,) = fmt.CHECKPOINT_PREFIX.unpack_from(payload, 0)
            self.seg_checkpoint = max(self.seg_checkpoint, cp)

    def flush(self) -> None:
        """Hand buffered records to the OS (one write); start index blocks as they fill."""
        buf = self.buf
        if not buf:
            return
        if self.file_size - self.block_offset >= fmt.INDEX_INTERVAL_BYTES:
            self._close_block(self.file_size)
            self.block_offset = self.file_size
            self.block_first_lsn = self.buf_first_lsn
            self.block_first_ts = self.flushed_ts
        if self._fp is not None:
            self._fp("before_record_write")
        self._fs.write(self.fd, buf)
        if self._fp is not None:
            self._fp("after_record_write")
        self.file_size += len(buf)
        self._update_room()
        self.buf = bytearray()
        self.buf_first_lsn = self.next_lsn
        self.flushed_ts = self.last_ts  # a lower bound for the next block's first timestamp

    def _close_block(self, end: int) -> None:
        length = end - self.block_offset
        if length > 0:
            self.blocks.append(
                fmt.Block(self.block_first_lsn, self.block_first_ts, self.block_offset, length,
                          length, 0)
            )
            self.seal_reserve += fmt.SEAL_BLOCK.size
            self._update_room()

    # ------------------------------------------------------------------ rotation

    def seal_info(self) -> fmt.Seal:
        """The footer describing the active segment as written so far (after a flush)."""
        return fmt.Seal(
            last_lsn=self.next_lsn - 1,
            record_count=self.next_lsn - self.first_lsn,
            first_ts=self.first_ts,
            last_ts=self.last_ts,
            checkpoint_lsn=self.seg_checkpoint,
            data_end=self.file_size,
            blocks=tuple(self.blocks),
            marks=tuple(self.marks),
        )

    def rotate(self) -> SealedSegment:
        """Seal the active segment, move it to ``pending/`` and start a new one."""
        self.flush()
        self._close_block(self.file_size)
        seal = self.seal_info()
        self.buf += fmt.encode_seal(seal)
        if self._fp is not None:
            self._fp("before_record_write")
        self._fs.write(self.fd, self.buf)
        if self._fp is not None:
            self._fp("after_record_write")
        size = self.file_size + len(self.buf)
        self.buf = bytearray()
        dst = os.path.join(self._paths.pending, segment_name(self.first_lsn))
        if self._fp is not None:
            self._fp("before_rotate_rename")
        self._fs.rename(self._paths.active, dst)
        if self._fp is not None:
            self._fp("after_rotate_rename")
        sealed = SealedSegment(dst, self.fd, self.first_lsn, seal.last_lsn, size, self.last_ts)
        self.fd = -1
        # Carry the checkpoint forward so every later header/seal records it (open reads
        # only the newest archived seal). Safe before it is durable: a later segment is
        # kept by recovery only if this one, CHECKPOINT record included, is kept too.
        self.header_checkpoint = max(self.header_checkpoint, seal.checkpoint_lsn)
        self._start_segment()
        return sealed

    def close(self) -> None:
        """Write out the buffer and close the active file (no fsync here)."""
        if self.fd >= 0:
            try:
                self.flush()
            finally:
                self._fs.close(self.fd)
                self.fd = -1
