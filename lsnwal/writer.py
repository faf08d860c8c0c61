"""The segment writer: LSN assignment, the active segment, its index and seal.

Owns the active segment file and the next LSN. It is not thread-safe: the
``AsyncWalWriter`` calls it under its lock. It never fsyncs; ``rotate`` returns a
``SealedSegment`` that the caller hands to whoever syncs it (the writer does not
import the sync manager — data flows one way).

Appends reach the OS before they return (invariant 11): by default every
``append`` is one ``write`` of one record, every ``append_many`` one ``write``
per ~1 MiB of records, so ``kill -9`` of the process loses nothing appended.
``write_buffer_bytes > 0`` opts into a user-space buffer for bulk loads. After a
failed write the writer is *broken*: it never writes to that file again (not
even on close), so a partial record can only ever be the file's last bytes.

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

import os
import time
from dataclasses import dataclass

from . import format as fmt
from .fs import FailpointHook, FileSystem
from .names import WalPaths, segment_name
from .spares import SparePool

# Hot-path bindings (module globals are faster to reach than attribute chains).
_TAIL_PACK = fmt.RECORD_HEADER_TAIL.pack
_U32_PACK = fmt.U32.pack
_CRC = fmt.crc32c
_time = time.time  # the writer's clock (tests replace lsnwal.writer._time)

_EMPTY_SEAL_BYTES = fmt.RECORD_HEADER_SIZE + fmt.SEAL_FIXED.size + fmt.TRAILER_SIZE
#: an unbuffered ``append_many`` writes at most this much per syscall
_BATCH_WRITE_BYTES = 1024 * 1024


@dataclass
class SealedSegment:
    """A rotated segment in ``pending/``; whoever syncs it owns ``fd`` from now on."""

    path: str
    fd: int
    first_lsn: int
    last_lsn: int
    size_bytes: int
    last_ts: float


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
        self._write = fs.write
        self._spares = spares
        self._paths = paths
        self._max = segment_max_bytes
        #: 0: every record goes to the OS at once; >0: buffer up to this many bytes
        self._flush_at = write_buffer_bytes
        self._fp = failpoint
        self.next_lsn = next_lsn
        self.last_ts = last_ts
        #: durable checkpoint LSN written into the headers of new segments
        self.header_checkpoint = checkpoint_lsn
        self.buf = bytearray()
        self.fd = -1
        self.generation = 0
        #: set after a failed write: nothing is ever written to this file again
        self.broken = False
        #: the segment the last ``rotate`` sealed (kept if starting the next one fails)
        self.sealed: SealedSegment | None = None
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
        """Create a fresh active file whose first LSN is ``next_lsn`` (step 3 above)."""
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
        self.first_lsn = self.next_lsn
        self.file_size = fmt.HEADER_SIZE
        self.first_ts = 0.0
        self.blocks: list[fmt.Block] = []
        self.block_offset = fmt.HEADER_SIZE
        self.block_first_lsn = self.next_lsn
        self.block_first_ts = self.last_ts
        self.block_crc = 0  # CRC32C of the current block's bytes so far (the seal keeps it)
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
        return self.try_append(kind, payload, True)

    def try_append(self, kind: int, payload: bytes, force: bool = False) -> int:
        """Append one record if it fits (see ``fits``) and return its LSN, else return 0.

        This is the hot path of ``AsyncWalWriter.append``: one call does the room
        check, the encoding (CRC over header fields and payload) and the write.
        """
        lsn = self.next_lsn
        n = len(payload)
        if len(self.buf) + n > self.room and not force and lsn != self.first_lsn:
            return 0
        ts = _time()
        if ts < self.last_ts:  # keep timestamps monotonic within the WAL
            ts = self.last_ts
        self._put(kind, lsn, ts, payload)
        return lsn

    def append_at(self, kind: int, payload: bytes, ts: float) -> int:
        """Append one record with a given timestamp (restore copies records as they were)."""
        lsn = self.next_lsn
        self._put(kind, lsn, max(self.last_ts, ts), payload)
        return lsn

    def _put(self, kind: int, lsn: int, ts: float, payload: bytes) -> None:
        if self.broken:
            raise OSError("the active segment had a failed write; nothing more is written")
        if lsn == self.first_lsn:
            self.first_ts = ts
        tail = _TAIL_PACK(len(payload), lsn, ts, kind, 0, 0)
        rec = _U32_PACK(_CRC(payload, _CRC(tail))) + tail + payload
        if self._flush_at:
            self.buf += rec
            self.next_lsn = lsn + 1
            self.last_ts = ts
            if kind != 1:
                self._note_special(kind, lsn, ts, payload)
            if len(self.buf) >= self._flush_at:
                self.flush()
            return
        self._write_records(rec, lsn, ts)
        self.room -= len(rec)
        self.next_lsn = lsn + 1
        self.last_ts = ts
        if kind != 1:
            self._note_special(kind, lsn, ts, payload)

    def _write_records(self, data: bytes, first_lsn: int, ts: float) -> None:
        """Write encoded records (unbuffered), starting an index block first when due."""
        size = self.file_size
        if size - self.block_offset >= fmt.INDEX_INTERVAL_BYTES:
            self._close_block(size)
            self.block_offset = size
            self.block_first_lsn = first_lsn
            self.block_first_ts = ts
            self.block_crc = 0
        self._raw_write(data)
        self.block_crc = _CRC(data, self.block_crc)
        self.file_size = size + len(data)

    def _raw_write(self, data: bytes | bytearray) -> None:
        """One write to the active file; a failure breaks the writer for good."""
        fp = self._fp
        if fp is not None:
            fp("before_record_write")
        try:
            self._write(self.fd, data)
        except BaseException:
            # The kernel may have taken part of ``data``: the file now ends in a partial
            # record. Writing anything after it would bury that under valid-looking bytes.
            self.broken = True
            self.buf = bytearray()
            raise
        if fp is not None:
            fp("after_record_write")

    def append_many(self, payloads: list[bytes]) -> int:
        """Append DATA records that all fit; return the first LSN. One timestamp for all.

        Unbuffered, the batch reaches the OS in one write per ~1 MiB of records.
        """
        if self.broken:
            raise OSError("the active segment had a failed write; nothing more is written")
        lsn = first = self.next_lsn
        ts = _time()
        if ts < self.last_ts:
            ts = self.last_ts
        if lsn == self.first_lsn:
            self.first_ts = ts
        n = len(payloads)
        chunk = self._flush_at or _BATCH_WRITE_BYTES
        step = max(1, min(n, chunk // (sum(map(len, payloads)) // n + fmt.RECORD_HEADER_SIZE)))
        for i in range(0, n, step):
            part = payloads[i : i + step]
            data = fmt.encode_data_records(part, lsn, ts)
            if self._flush_at:
                self.buf += data
                lsn += len(part)
                if len(self.buf) >= self._flush_at:
                    self.next_lsn = lsn
                    self.flush()
                continue
            self._write_records(data, lsn, ts)
            lsn += len(part)
            self.next_lsn = lsn
        self._update_room()
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
        if not buf or self.broken:
            return
        if self.file_size - self.block_offset >= fmt.INDEX_INTERVAL_BYTES:
            self._close_block(self.file_size)
            self.block_offset = self.file_size
            self.block_first_lsn = self.buf_first_lsn
            self.block_first_ts = self.flushed_ts
            self.block_crc = 0
        self._raw_write(buf)
        self.block_crc = _CRC(buf, self.block_crc)
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
                          length, self.block_crc)
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
        if self.broken:
            raise OSError("the active segment had a failed write; it cannot be sealed")
        self.flush()
        self._close_block(self.file_size)
        seal = self.seal_info()
        sealed_bytes = fmt.encode_seal(seal)
        self._raw_write(sealed_bytes)
        size = self.file_size + len(sealed_bytes)
        dst = os.path.join(self._paths.pending, segment_name(self.first_lsn))
        if self._fp is not None:
            self._fp("before_rotate_rename")
        self._fs.rename(self._paths.active, dst)
        if self._fp is not None:
            self._fp("after_rotate_rename")
        sealed = SealedSegment(dst, self.fd, self.first_lsn, seal.last_lsn, size, self.last_ts)
        # From here the descriptor belongs to ``sealed`` (the sync unit closes it), even
        # if starting the next segment fails below.
        self.fd = -1
        # Carry the checkpoint forward so every later header/seal records it (open reads
        # only the newest archived seal). Safe before it is durable: a later segment is
        # kept by recovery only if this one, CHECKPOINT record included, is kept too.
        self.header_checkpoint = max(self.header_checkpoint, seal.checkpoint_lsn)
        self.sealed = sealed
        self._start_segment()
        return sealed

    def close(self) -> None:
        """Write out the buffer (unless a write failed) and close the active file (no fsync)."""
        if self.fd >= 0:
            try:
                if not self.broken:
                    self.flush()
            finally:
                self._fs.close(self.fd)
                self.fd = -1
