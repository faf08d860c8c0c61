"""Reading one segment file through the file-system seam: header, seal, records.

Owns streaming reads of plain and compressed segments. Records are decoded by
``scanner.RecordScanner`` (the only parser); this module only feeds it bytes in
chunks of about 1 MiB, so a segment is never loaded whole, and reports where a
scan stopped (file offset, verdict, reason).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import format as fmt
from . import scanner
from .compress import decompress_block
from .fs import FileSystem

CHUNK_BYTES = 1024 * 1024
#: bytes of records per decoded batch (Chunk): a batch of built records is gone before
#: Python's cyclic GC has counted 700 new objects, so its collections stay young and cheap
BATCH_BYTES = 32 * 1024

# (file offset, lsn, kind, timestamp, buffer, payload start in buffer, payload length)
RawRecord = tuple[int, int, int, float, bytes, int, int]


def read_header(fs: FileSystem, fd: int) -> fmt.SegmentHeader:
    """Decode the header of an open segment (``format.HeaderError`` if bad)."""
    return fmt.decode_segment_header(fs.pread(fd, fmt.HEADER_SIZE, 0))


def read_seal(fs: FileSystem, fd: int, size: int) -> fmt.Seal | None:
    """The seal of an open segment found through its trailer, or None if absent/bad."""
    if size < fmt.HEADER_SIZE + fmt.RECORD_HEADER_SIZE + fmt.TRAILER_SIZE:
        return None
    trailer = fs.pread(fd, fmt.TRAILER_SIZE, size - fmt.TRAILER_SIZE)
    offset = fmt.decode_trailer(trailer)
    if offset is None or not fmt.HEADER_SIZE <= offset < size - fmt.TRAILER_SIZE:
        return None
    return fmt.decode_seal_at(fs.pread(fd, size - offset, offset), offset)


@dataclass
class ScanEnd:
    """Where and why a segment scan stopped."""

    verdict: str = scanner.END  # END, SEALED or DAMAGED
    offset: int = 0  # file offset of the stop (of the damage, for DAMAGED)
    reason: str = ""
    truncated: bool = False
    seal: fmt.Seal | None = None
    last_lsn: int | None = None
    #: file offset of the first index block whose CRC in the seal does not match bytes
    #: whose records all checked out by their own CRCs (the seal is wrong, not the data)
    bad_block_crc: int | None = None


class Chunk:
    """The records decoded from one read: ``recs`` in the build mode asked for.

    ``base`` is the file offset of ``data`` (a plain segment) or of the frame (a
    compressed one); ``recs`` holds, per ``format.BUILD_*``, ``(offset in data,
    lsn, kind, timestamp, payload length)`` tuples, ``Record`` objects or ``(lsn,
    payload)`` pairs of DATA records; ``count`` and ``last_lsn`` cover every record
    decoded (never 0: a read that decodes nothing yields no chunk).
    """

    __slots__ = ("base", "count", "data", "last_lsn", "recs")

    def __init__(self, base: int, data: bytes, recs: list[Any], count: int,
                 last_lsn: int) -> None:
        self.base = base
        self.data = data
        self.recs = recs
        self.count = count
        self.last_lsn = last_lsn


def _decode(scan: scanner.RecordScanner, base: int, data: bytes, build: int,
            end: ScanEnd) -> Iterator[Chunk]:
    """Every record ``scan`` decodes from ``data``, ``BATCH_BYTES`` of records a chunk."""
    n = len(data)
    while True:
        recs = scan.built(build, scan.pos + BATCH_BYTES)
        if scan.count:
            assert scan.last_lsn is not None
            end.last_lsn = scan.last_lsn
            yield Chunk(base, data, recs, scan.count, scan.last_lsn)
        if scan.verdict != scanner.END or scan.pos >= n:
            return


def plain_chunks(
    fs: FileSystem,
    fd: int,
    size: int,
    expected_lsn: int | None,
    end: ScanEnd,
    start: int = fmt.HEADER_SIZE,
    build: int = scanner.BUILD_TUPLES,
) -> Iterator[Chunk]:
    """Decode a plain segment from ``start`` about 1 MiB at a time; fill ``end`` when done.

    Each chunk starts at a record boundary; a record cut by the read is carried
    into the next chunk, so a chunk boundary never looks like the end of the log.
    """
    file_off = start
    carry = b""
    need = CHUNK_BYTES
    while True:
        avail = size - file_off
        data = carry
        if avail > 0:
            want = min(max(need, CHUNK_BYTES), avail)
            got = fs.pread(fd, want, file_off)
            if len(got) < want:  # the file got shorter under us (a cut): it ends here now
                size = file_off + len(got)
            data = carry + got
        base = file_off - len(carry)
        file_off += len(data) - len(carry)
        scan = scanner.RecordScanner(data, 0, expected_lsn, base)
        yield from _decode(scan, base, data, build, end)
        expected_lsn = scan.expected_lsn
        # A chunk that ends at a record boundary (END), inside a record (truncated) or
        # right after a seal trailer (SEALED) says nothing about the bytes not yet read.
        if file_off < size and (scan.verdict != scanner.DAMAGED or scan.truncated):
            carry = data[scan.pos :]
            if len(carry) >= fmt.RECORD_HEADER_SIZE:
                ln = fmt.U32.unpack_from(carry, 4)[0]
                need = fmt.RECORD_HEADER_SIZE + ln + fmt.TRAILER_SIZE - len(carry)
            else:
                need = CHUNK_BYTES
            continue
        end.verdict = scan.verdict
        end.offset = base + scan.pos
        end.reason = scan.reason
        end.truncated = scan.truncated
        end.seal = scan.seal
        return


def scan_plain(
    fs: FileSystem,
    fd: int,
    size: int,
    expected_lsn: int | None,
    end: ScanEnd,
    start: int = fmt.HEADER_SIZE,
) -> Iterator[RawRecord]:
    """Yield every record of a plain segment from ``start``; fill ``end`` when done."""
    h = fmt.RECORD_HEADER_SIZE
    for c in plain_chunks(fs, fd, size, expected_lsn, end, start):
        data, base = c.data, c.base
        for rel, lsn, kind, ts, ln in c.recs:
            yield base + rel, lsn, kind, ts, data, rel + h, ln


def sealed_chunks(
    fs: FileSystem,
    fd: int,
    size: int,
    seal: fmt.Seal,
    expected_lsn: int,
    end: ScanEnd,
    start: int = fmt.HEADER_SIZE,
    build: int = scanner.BUILD_TUPLES,
) -> Iterator[Chunk]:
    """Decode a sealed plain segment (a valid ``seal``) from ``start``, a few blocks a read.

    A run of index blocks whose CRCs the seal records and which match (one CRC
    call per block) is decoded without the records' own CRCs; any other run —
    a block written before block CRCs, or one that does not match — is decoded
    record by record, and the records' CRCs decide. Fills ``end`` like
    ``plain_chunks``; a seal whose block index does not tile the records falls
    back to ``plain_chunks``.
    """
    blocks = seal.blocks
    if not fmt.blocks_tile(blocks, seal.data_end):
        yield from plain_chunks(fs, fd, size, expected_lsn, end, start, build)
        return
    i = 0
    while i + 1 < len(blocks) and blocks[i + 1].offset <= start:
        i += 1
    while i < len(blocks):
        group = [blocks[i]]
        nbytes = blocks[i].raw_len
        i += 1
        while i < len(blocks) and nbytes < CHUNK_BYTES:
            group.append(blocks[i])
            nbytes += blocks[i].raw_len
            i += 1
        base = group[0].offset
        data = fs.pread(fd, nbytes, base)
        if len(data) != nbytes:  # nothing of this group is decoded: the damage starts here
            end.verdict, end.offset = scanner.DAMAGED, base
            end.reason, end.truncated = "segment shorter than its index", True
            return
        bad = fmt.first_bad_block(data, group, base)
        scan = scanner.RecordScanner(data, max(start - base, 0), expected_lsn, base,
                                     checked=bad is None and all(b.crc for b in group))
        yield from _decode(scan, base, data, build, end)
        if bad is not None and scan.verdict == scanner.END and scan.pos == nbytes \
                and end.bad_block_crc is None:
            end.bad_block_crc = bad.offset  # the records decide (they are whole)
        if scan.verdict != scanner.END or scan.pos != nbytes:
            end.verdict, end.offset, end.reason = scanner.DAMAGED, base + scan.pos, scan.reason
            end.truncated = scan.truncated
            if scan.verdict == scanner.END:  # a block ends inside a record: the index lies
                end.reason = "index block ends inside a record"
            return
        assert scan.expected_lsn is not None
        expected_lsn = scan.expected_lsn
    if expected_lsn != seal.last_lsn + 1:
        end.verdict, end.offset = scanner.DAMAGED, seal.data_end
        end.reason = f"records end at LSN {expected_lsn - 1}, the seal says {seal.last_lsn}"
        return
    end.verdict, end.offset, end.seal = scanner.SEALED, seal.data_end, seal


def compressed_chunks(
    fs: FileSystem,
    fd: int,
    seal: fmt.Seal,
    expected_lsn: int | None,
    end: ScanEnd,
    from_lsn: int | None = None,
    build: int = scanner.BUILD_TUPLES,
) -> Iterator[Chunk]:
    """Decode a compressed segment frame by frame, skipping frames before ``from_lsn``.

    A chunk's ``base`` is the frame's offset in the file, its ``data`` the
    decompressed frame. A frame whose CRC matched holds records that were checked
    one by one before they were compressed: they are decoded without their own
    CRCs (``compress.compress_segment``).
    """
    blocks = seal.blocks
    first = 0
    if from_lsn is not None:
        for i, b in enumerate(blocks):
            if b.first_lsn <= from_lsn:
                first = i
        if first:
            expected_lsn = blocks[first].first_lsn
    for b in blocks[first:]:
        stored = fs.pread(fd, b.stored_len, b.offset)
        try:
            raw = decompress_block(stored, b)
        except ValueError as exc:
            end.verdict, end.offset, end.reason = scanner.DAMAGED, b.offset, str(exc)
            return
        if expected_lsn is not None and b.first_lsn != expected_lsn:
            end.verdict, end.offset = scanner.DAMAGED, b.offset
            end.reason = f"frame starts at LSN {b.first_lsn} where {expected_lsn} was expected"
            return
        scan = scanner.RecordScanner(raw, 0, expected_lsn, checked=True)
        yield from _decode(scan, b.offset, raw, build, end)
        if scan.verdict != scanner.END:
            end.verdict, end.offset = scanner.DAMAGED, b.offset
            end.reason = f"inside frame at raw offset {scan.pos}: {scan.reason}"
            return
        expected_lsn = scan.expected_lsn
    if expected_lsn is not None and expected_lsn != seal.last_lsn + 1:
        end.verdict, end.offset, end.reason = scanner.DAMAGED, seal.data_end, "frames end early"
        return
    end.verdict, end.offset, end.seal = scanner.SEALED, seal.data_end, seal


def scan_compressed(
    fs: FileSystem,
    fd: int,
    seal: fmt.Seal,
    expected_lsn: int | None,
    end: ScanEnd,
    from_lsn: int | None = None,
) -> Iterator[RawRecord]:
    """Yield the records of a compressed segment, decompressing only frames needed."""
    h = fmt.RECORD_HEADER_SIZE
    for c in compressed_chunks(fs, fd, seal, expected_lsn, end, from_lsn):
        off, raw = c.base, c.data
        for rel, lsn, kind, ts, ln in c.recs:
            yield off, lsn, kind, ts, raw, rel + h, ln


def seek_offset(seal: fmt.Seal, from_lsn: int) -> tuple[int, int]:
    """``(file offset, first LSN there)`` of the index block to start reading at."""
    offset, lsn = fmt.HEADER_SIZE, -1
    for b in seal.blocks:
        if b.first_lsn <= from_lsn:
            offset, lsn = b.offset, b.first_lsn
        else:
            break
    return offset, lsn
