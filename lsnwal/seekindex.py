"""The archive's seek index: ``<wal>/archive.index``, the first LSN of every archived segment.

Owns the file that lets ``replay(from_lsn=...)`` find its starting segment
without listing an archive of thousands of files. It is a **hint**, never
trusted: every segment read through it is checked against its own header, a
replay that starts from it checks continuity up to the live segments, and any
doubt (missing, damaged, stale or short index) falls back to listing the
directory. So it is written without fsync and a crash can leave it short or
stale at no risk.

Layout: ``INDEX_MAGIC`` (8 bytes), then one little-endian u64 per archived
segment, ``first_lsn << 1 | compressed``, in LSN order. The archiver appends an
entry per archived segment (after the archive directory fsync) and rewrites the
file after pruning; ``open()`` rewrites it from the directory listing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct

from .fs import FileSystem

log = logging.getLogger("lsnwal")

INDEX_NAME = "archive.index"  # in the WAL directory, so archive/ holds only segments
INDEX_MAGIC = b"LSNWIDX1"
_ENTRY = struct.Struct("<Q")

Entry = tuple[int, bool]  # (first_lsn, compressed)


def _encode(entries: list[Entry]) -> bytes:
    return b"".join(_ENTRY.pack(lsn << 1 | int(c)) for lsn, c in entries)


def write_index(fs: FileSystem, root: str, entries: list[Entry]) -> None:
    """Replace the index with ``entries`` (best effort: an error only costs seek speed)."""
    path = os.path.join(root, INDEX_NAME)
    try:
        if fs.exists(path):
            fs.unlink(path)
        fd = fs.create(path)
        try:
            fs.write(fd, INDEX_MAGIC + _encode(entries))
        finally:
            fs.close(fd)
    except OSError as exc:
        log.debug("lsnwal: could not write %s: %r", path, exc,
                  extra={"event": "seek_index_failed", "path": path, "error": repr(exc)})
        with contextlib.suppress(OSError):
            fs.unlink(path)


def append_index(fs: FileSystem, root: str, entries: list[Entry]) -> None:
    """Add entries for newly archived segments (best effort)."""
    path = os.path.join(root, INDEX_NAME)
    try:
        if not fs.exists(path):
            return  # without the older entries an index would only mislead seeks
        fd = fs.open_write(path)
        try:
            fs.write(fd, _encode(entries))
        finally:
            fs.close(fd)
    except OSError as exc:
        log.debug("lsnwal: could not append to %s: %r", path, exc,
                  extra={"event": "seek_index_failed", "path": path, "error": repr(exc)})
        with contextlib.suppress(OSError):
            fs.unlink(path)


def seek_entries(fs: FileSystem, root: str, lsn: int) -> list[Entry] | None:
    """The entries from the last one whose first LSN is <= ``lsn`` to the end, or None.

    A binary search with 8-byte reads: O(log n) reads plus the tail it returns,
    so a seek costs the same for 10 or 100,000 archived segments. The entries
    returned must be strictly increasing; anything else (no index, no entry at or
    below ``lsn``, a damaged index) is None.
    """
    path = os.path.join(root, INDEX_NAME)
    try:
        fd = fs.open_read(path)
    except OSError:
        return None
    try:
        head = len(INDEX_MAGIC)
        size = fs.fsize(fd)
        if fs.pread(fd, head, 0) != INDEX_MAGIC:
            return None
        n = (size - head) // _ENTRY.size
        lo, hi = 0, n  # find the last entry <= lsn: invariant entries[<lo] <= lsn < entries[>=hi]
        while lo < hi:
            mid = (lo + hi) // 2
            raw = fs.pread(fd, _ENTRY.size, head + mid * _ENTRY.size)
            if len(raw) != _ENTRY.size:
                return None
            if _ENTRY.unpack(raw)[0] >> 1 <= lsn:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            return None
        tail = fs.pread(fd, (n - lo + 1) * _ENTRY.size, head + (lo - 1) * _ENTRY.size)
    except OSError:
        return None
    finally:
        fs.close(fd)
    out: list[Entry] = []
    prev = 0
    for (value,) in _ENTRY.iter_unpack(tail[: len(tail) - len(tail) % _ENTRY.size]):
        first = value >> 1
        if first <= prev:
            return None
        out.append((first, bool(value & 1)))
        prev = first
    return out if out and out[0][0] <= lsn else None


def read_index(fs: FileSystem, root: str) -> list[Entry] | None:
    """The index's entries, or None when it is missing or not well formed."""
    path = os.path.join(root, INDEX_NAME)
    try:
        fd = fs.open_read(path)
    except OSError:
        return None
    try:
        data = fs.pread(fd, fs.fsize(fd), 0)
    except OSError:
        return None
    finally:
        fs.close(fd)
    if not data.startswith(INDEX_MAGIC):
        return None
    body = data[len(INDEX_MAGIC) :]
    body = body[: len(body) - len(body) % _ENTRY.size]  # an append may be under way
    out: list[Entry] = []
    prev = 0
    for (value,) in _ENTRY.iter_unpack(body):
        lsn = value >> 1
        if lsn <= prev:
            return None
        out.append((lsn, bool(value & 1)))
        prev = lsn
    return out
