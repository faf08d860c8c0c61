"""Reading one located segment as a live reader must: archived, pending or being written.

Owns the per-segment half of the live-safe read side (``chain.py`` walks the
chain; this module reads one file of it through its open descriptor). Records
are decoded by ``scanner.RecordScanner`` through ``segment.py``'s chunk readers:
there is no second parser. Rules kept here:

* An archived segment must carry a valid seal; its records must end exactly at
  it. Anything else is damage (file, offset, last good LSN).
* A pending or active segment is read up to its last complete record. An
  incomplete record or an all-zero record header at the end means "no more
  records yet" (a write in progress, a preallocated file). Damage followed by
  valid records is read again ``DAMAGE_REREADS`` times (a write may be in
  flight) before it is reported.
* Damage raises ``WalCorruptionError`` unless a ``report`` callback takes it
  (``verify``); the segment then ends at the damage, marked ``damaged``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import format as fmt
from . import scanner
from .errors import WalCorruptionError
from .fs import FileSystem
from .segment import (
    Chunk,
    ScanEnd,
    compressed_chunks,
    plain_chunks,
    read_seal,
    sealed_chunks,
    seek_offset,
)

#: re-reads of damage in a live segment before it is reported (a write may be in flight)
DAMAGE_REREADS = 4
_REREAD_SLEEP_S = 0.002
#: how far past damage in a live segment the reader looks for valid records
_CONTINUATION_WINDOW = 4 * 1024 * 1024

Report = Callable[[str, "int | None", "int | None", str], None]


@dataclass
class Loc:
    """One located segment: an open descriptor and what its header says."""

    fd: int
    path: str
    state: str  # "active", "pending" or "archive"
    header: fmt.SegmentHeader


@dataclass
class SegEnd:
    """How a walked segment ended."""

    last_lsn: int  # first_lsn - 1 when it held no record
    sealed: bool
    seal: fmt.Seal | None
    count: int
    offset: int = 0  # where a live read stopped
    damaged: bool = False  # damage was reported (the walk cannot tell where it ends)
    torn: str = ""  # a live read stopped at an incomplete or bad last record: why



def read_segment(
    fs: FileSystem,
    loc: Loc,
    from_lsn: int,
    out: list[SegEnd],
    report: Report | None = None,
    resume: SegEnd | None = None,
    build: int = scanner.BUILD_TUPLES,
) -> Iterator[Chunk]:
    """Decoded chunks of ``loc`` (records from about ``from_lsn``); its end goes to ``out``.

    ``resume`` (plain segments) starts at ``resume.offset`` with LSN
    ``resume.last_lsn + 1`` instead of the header or the seal's index.

    Raises ``WalCorruptionError`` for damage unless ``report`` takes it (then the
    segment ends at the damage).
    """
    h = loc.header
    expected = h.first_lsn
    if loc.state == "archive":
        size = fs.fsize(loc.fd)
        seal = read_seal(fs, loc.fd, size)
        if seal is None or seal.last_lsn < expected - 1:
            _damage(report, "archived segment has no valid seal (footer)", loc.path, size,
                    expected - 1)
            out.append(SegEnd(expected - 1, False, None, 0, damaged=True))
            return
        end = ScanEnd()
        if h.compressed:
            chunks = compressed_chunks(fs, loc.fd, seal, expected, end, from_lsn, build)
        else:
            start, start_lsn = fmt.HEADER_SIZE, expected
            if resume is not None:
                start, start_lsn = resume.offset, resume.last_lsn + 1
            elif from_lsn > expected:
                off, lsn = seek_offset(seal, from_lsn)
                if lsn > 0:
                    start, start_lsn = off, lsn
            chunks = sealed_chunks(fs, loc.fd, size, seal, start_lsn, end, start, build)
        count = 0
        for chunk in chunks:
            count += chunk.count
            yield chunk
        _bad_block_crc(report, loc.path, end)
        if end.verdict != scanner.SEALED:
            _damage(report, end.reason or "archived segment ends without its seal",
                    loc.path, end.offset,
                    end.last_lsn if end.last_lsn is not None else expected - 1)
        out.append(SegEnd(seal.last_lsn, True, seal, count, size,
                          damaged=end.verdict != scanner.SEALED))
        return
    yield from read_live(fs, loc, out, report, resume, build)

def read_live(
    fs: FileSystem, loc: Loc, out: list[SegEnd], report: Report | None,
    resume: SegEnd | None, build: int = scanner.BUILD_TUPLES,
) -> Iterator[Chunk]:
    """Decoded chunks of a pending/active segment up to what is there now (see module)."""
    fd = loc.fd
    expected = loc.header.first_lsn if resume is None else resume.last_lsn + 1
    off = fmt.HEADER_SIZE if resume is None else resume.offset
    count = 0 if resume is None else resume.count
    if loc.state == "pending":  # rotated: sealed before its rename, unless a crash cut it
        size = fs.fsize(fd)
        seal = read_seal(fs, fd, size)
        if seal is not None and seal.last_lsn >= expected - 1:
            end = ScanEnd()
            for chunk in sealed_chunks(fs, fd, size, seal, expected, end, off, build):
                count += chunk.count
                yield chunk
            _bad_block_crc(report, loc.path, end)
            if end.verdict == scanner.SEALED:
                out.append(SegEnd(seal.last_lsn, True, seal, count, end.offset))
                return
            # damage: read it again the live way below (which reports it with its rules)
            expected = end.last_lsn + 1 if end.last_lsn is not None else expected
            off = end.offset if end.last_lsn is not None else off
    rereads = 0
    while True:
        size = fs.fsize(fd)
        end = ScanEnd()
        for chunk in plain_chunks(fs, fd, size, expected, end, off, build):
            count += chunk.count
            yield chunk
        if end.last_lsn is not None:
            expected = end.last_lsn + 1
        off = end.offset
        if end.verdict == scanner.SEALED:
            out.append(SegEnd(expected - 1, True, end.seal, count, off))
            return
        torn = end.reason if end.verdict == scanner.DAMAGED else ""
        if end.verdict == scanner.DAMAGED and not end.truncated:
            head = fs.pread(fd, fmt.RECORD_HEADER_SIZE, off)
            if head.count(0) != len(head):
                if rereads < DAMAGE_REREADS:  # a write may be under way: look again
                    rereads += 1
                    time.sleep(_REREAD_SLEEP_S * rereads)
                    continue
                tail = fs.pread(fd, min(size - off, _CONTINUATION_WINDOW), off)
                if scanner.find_continuation(tail, 0, expected - 1) is not None:
                    _damage(report, end.reason, loc.path, off, expected - 1)
                    out.append(SegEnd(expected - 1, False, None, count, off, damaged=True))
                    return
            else:
                torn = ""  # zeros: a preallocated file, no record written there yet
        # What is there now ends here (a torn or still-growing tail): the walk
        # decides whether the log ends here too.
        out.append(SegEnd(expected - 1, False, None, count, off, torn=torn))
        return


def _bad_block_crc(report: Report | None, path: str, end: ScanEnd) -> None:
    """Tell ``verify`` (not a replay: the records are whole) about a seal whose block CRC
    disagrees with records that all match their own CRCs."""
    if report is not None and end.bad_block_crc is not None:
        report(path, end.bad_block_crc, None,
               "an index block's CRC in the seal does not match its records "
               "(each record matches its own CRC)")


def _damage(report: Report | None, reason: str, path: str, offset: int | None,
            lsn: int | None) -> None:
    if report is None:
        raise WalCorruptionError(reason, path=path, offset=offset, lsn=lsn)
    report(path, offset, lsn, reason)
