"""The published durable watermark: ``<wal_dir>/WATERMARK``, one 64-byte record.

The writer rewrites it in place every time ``synced_lsn`` moves, *after* the
fsync that made those LSNs durable returned and before any waiter is told: a
store into a shared memory map of the file on the real file system (no system
call at all; other processes see it through the page cache at once), or one
``pwrite`` through other file-system seams. It is never fsynced on the commit
path (once at open). So the value in the file may lag the truth (the page was
not written back before a power loss, or a reader looked between the fsync and
the store) but it never leads it: every record at or below the published
``synced_lsn`` is on stable storage. Readers in other processes use it to yield
durable records only; recovery uses it to tell where the last acknowledged
fsync ended (damage past it is an unacknowledged torn tail).

Layout (little-endian, 64 bytes, see docs/format.md)::

    0  4  magic b"LSWM"
    4  2  version (1)
    6  2  flags (0)
    8  8  generation: +1 on every publish (a reader sees movement)
    16 8  synced_lsn
    24 8  checkpoint_lsn
    32 8  writer_pid
    40 8  opened_at (epoch seconds, float64) — identifies one writer session
    48 8  updated_at (epoch seconds, float64)
    56 4  reserved (0)
    60 4  crc32c of bytes 0..59

A reader that races a ``pwrite`` can see a torn mix of two values: the CRC
catches that and the reader simply reads again.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import time
from dataclasses import dataclass

from .format import crc32c
from .fs import FileSystem, OsFileSystem

WATERMARK_NAME = "WATERMARK"
WATERMARK_MAGIC = b"LSWM"
WATERMARK_VERSION = 1
_BODY = struct.Struct("<4sHHQQQQddI")
_CRC = struct.Struct("<I")
WATERMARK_SIZE = _BODY.size + _CRC.size  # 64
_READ_TRIES = 50


@dataclass(frozen=True)
class Watermark:
    """One published watermark as read from ``WATERMARK``."""

    synced_lsn: int
    checkpoint_lsn: int
    generation: int
    writer_pid: int
    opened_at: float
    updated_at: float


def encode_watermark(w: Watermark) -> bytes:
    """The 64 bytes that describe ``w``."""
    body = _BODY.pack(
        WATERMARK_MAGIC, WATERMARK_VERSION, 0, w.generation, w.synced_lsn, w.checkpoint_lsn,
        w.writer_pid, w.opened_at, w.updated_at, 0,
    )
    return body + _CRC.pack(crc32c(body))


def decode_watermark(data: bytes) -> Watermark | None:
    """The watermark in ``data``, or None if it is short, torn or not a watermark."""
    if len(data) < WATERMARK_SIZE:
        return None
    body = data[: _BODY.size]
    (crc,) = _CRC.unpack_from(data, _BODY.size)
    if crc32c(body) != crc:
        return None
    magic, version, _flags, gen, synced, cp, pid, opened, updated, _r = _BODY.unpack(body)
    if magic != WATERMARK_MAGIC or version != WATERMARK_VERSION:
        return None
    return Watermark(synced, cp, gen, pid, opened, updated)


class WatermarkWriter:
    """The writer's side: owns the open ``WATERMARK`` file and rewrites it in place."""

    def __init__(self, fs: FileSystem, root: str) -> None:
        self._fs = fs
        self.path = os.path.join(root, WATERMARK_NAME)
        self._map: mmap.mmap | None = None
        if type(fs) is OsFileSystem:
            # A shared mapping of the file's page: a publish is a memory store that other
            # processes see through the page cache at once, with no system call.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if os.fstat(self._fd).st_size < WATERMARK_SIZE:
                    os.ftruncate(self._fd, WATERMARK_SIZE)
                self._map = mmap.mmap(self._fd, WATERMARK_SIZE)
            except BaseException:
                os.close(self._fd)
                raise
        else:
            self._fd = fs.open_write(self.path) if fs.exists(self.path) else fs.create(self.path)
        self._buf = bytearray(WATERMARK_SIZE)
        self._body = memoryview(self._buf)[: _BODY.size]
        self._generation = 0
        self._opened_at = time.time()
        self._pid = os.getpid()
        self.synced_lsn = -1
        self.checkpoint_lsn = -1

    def publish(self, synced_lsn: int, checkpoint_lsn: int) -> None:
        """Write the new values (no fsync). Call only after ``synced_lsn`` is durable."""
        if synced_lsn == self.synced_lsn and checkpoint_lsn == self.checkpoint_lsn:
            return
        self._generation += 1
        self.synced_lsn = synced_lsn
        self.checkpoint_lsn = checkpoint_lsn
        buf = self._buf
        _BODY.pack_into(
            buf, 0, WATERMARK_MAGIC, WATERMARK_VERSION, 0, self._generation, synced_lsn,
            checkpoint_lsn, self._pid, self._opened_at, time.time(), 0,
        )
        _CRC.pack_into(buf, _BODY.size, crc32c(self._body))
        if self._map is not None:
            self._map[0:WATERMARK_SIZE] = buf
        else:
            self._fs.pwrite(self._fd, buf, 0)

    @property
    def fd(self) -> int:
        """The open descriptor (fsynced once at open by the WAL)."""
        return self._fd

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._body.release()
        if self._map is not None:
            with contextlib.suppress(BufferError, ValueError):
                self._map.close()
            self._map = None
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self._fs.close(self._fd)
            self._fd = -1


def read_watermark(root: str, fs: FileSystem | None = None) -> Watermark | None:
    """The watermark published in ``root``, or None when there is none (yet).

    Retries a torn read (a concurrent ``pwrite``) a few times; a file that stays
    unreadable is reported as None, which callers treat as "nothing known durable
    beyond what the segments themselves prove".
    """
    path = os.path.join(root, WATERMARK_NAME)
    for _ in range(_READ_TRIES):
        try:
            if fs is None:
                with open(path, "rb") as f:
                    data = f.read(WATERMARK_SIZE)
            else:
                fd = fs.open_read(path)
                try:
                    data = fs.pread(fd, WATERMARK_SIZE, 0)
                finally:
                    fs.close(fd)
        except FileNotFoundError:
            return None
        wm = decode_watermark(data)
        if wm is not None:
            return wm
        if len(data) < WATERMARK_SIZE:
            return None  # created but never published: a crash right after creation
    return None
