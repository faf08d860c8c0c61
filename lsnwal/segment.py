"""Reading one segment file through the file-system seam: header, seal, records.

Owns streaming reads of plain and compressed segments. Records are decoded by
``format.RecordScanner`` (the only parser); this module only feeds it bytes in
chunks of about 1 MiB, so a segment is never loaded whole, and reports where a
scan stopped (file offset, verdict, reason).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from . import format as fmt
from .compress import decompress_block
from .fs import FileSystem

CHUNK_BYTES = 1024 * 1024

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

    verdict: str = fmt.END  # END, SEALED or DAMAGED
    offset: int = 0  # file offset of the stop (of the damage, for DAMAGED)
    reason: str = ""
    truncated: bool = False
    seal: fmt.Seal | None = None
    last_lsn: int | None = None


# (chunk's file offset, chunk bytes, records as (offset in chunk, lsn, kind, ts, length))
Chunk = tuple[int, bytes, list[tuple[int, int, int, float, int]]]


def plain_chunks(
    fs: FileSystem,
    fd: int,
    size: int,
    expected_lsn: int | None,
    end: ScanEnd,
    start: int = fmt.HEADER_SIZE,
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
        data = carry + fs.pread(fd, min(max(need, CHUNK_BYTES), avail), file_off) if avail > 0 \
            else carry
        base = file_off - len(carry)
        file_off += len(data) - len(carry)
        scan = fmt.RecordScanner(data, 0, expected_lsn, base)
        recs = scan.records()
        if recs:
            end.last_lsn = recs[-1][1]
            yield base, data, recs
        expected_lsn = scan.expected_lsn
        # A chunk that ends at a record boundary (END), inside a record (truncated) or
        # right after a seal trailer (SEALED) says nothing about the bytes not yet read.
        if file_off < size and (scan.verdict != fmt.DAMAGED or scan.truncated):
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
    for base, data, recs in plain_chunks(fs, fd, size, expected_lsn, end, start):
        for rel, lsn, kind, ts, ln in recs:
            yield base + rel, lsn, kind, ts, data, rel + h, ln


def compressed_chunks(
    fs: FileSystem,
    fd: int,
    seal: fmt.Seal,
    expected_lsn: int | None,
    end: ScanEnd,
    from_lsn: int | None = None,
) -> Iterator[Chunk]:
    """Decode a compressed segment frame by frame, skipping frames before ``from_lsn``.

    Each chunk is ``(frame offset in the file, decompressed frame, records)``.
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
            end.verdict, end.offset, end.reason = fmt.DAMAGED, b.offset, str(exc)
            return
        if expected_lsn is not None and b.first_lsn != expected_lsn:
            end.verdict, end.offset = fmt.DAMAGED, b.offset
            end.reason = f"frame starts at LSN {b.first_lsn} where {expected_lsn} was expected"
            return
        scan = fmt.RecordScanner(raw, 0, expected_lsn)
        recs = scan.records()
        if recs:
            end.last_lsn = recs[-1][1]
            yield b.offset, raw, recs
        if scan.verdict != fmt.END:
            end.verdict, end.offset = fmt.DAMAGED, b.offset
            end.reason = f"inside frame at raw offset {scan.pos}: {scan.reason}"
            return
        expected_lsn = scan.expected_lsn
    if expected_lsn is not None and expected_lsn != seal.last_lsn + 1:
        end.verdict, end.offset, end.reason = fmt.DAMAGED, seal.data_end, "frames end early"
        return
    end.verdict, end.offset, end.seal = fmt.SEALED, seal.data_end, seal


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
    for off, raw, recs in compressed_chunks(fs, fd, seal, expected_lsn, end, from_lsn):
        for rel, lsn, kind, ts, ln in recs:
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
