"""The on-disk format v1: every constant, and a pure codec (no I/O, no clock).

The byte-level specification is ``docs/format.md``; this module is its only
implementation. The writer, recovery, replay, verify and the CLI all decode
records through ``scanner.RecordScanner`` and headers and seals through
``decode_segment_header``/``decode_seal_at`` here: there is no second parser.

Grammar (little-endian throughout)::

    segment     := header block* [seal trailer]
    header      := 48 bytes (SEGMENT_HEADER), CRC32C over its first 44 bytes
    block       := record*                     (plain segment)
                 | zstd-frame(record*)         (FLAG_ZSTD segment; one frame per block)
    record      := RECORD_HEADER (28 bytes) payload
    seal        := a record of kind SEAL whose payload is the segment's footer
    trailer     := u64 seal_offset, 8 bytes TRAILER_MAGIC

A record's CRC32C covers bytes 4..28 of its header (length, LSN, timestamp,
kind, flags, reserved) and its payload as stored, so checking a record never
needs anything but its own bytes.
"""

from __future__ import annotations

import enum
import itertools
import struct
from dataclasses import dataclass, field
from operator import itemgetter as _itemgetter

import crc32c as _crc32c

crc32c = _crc32c.crc32c

# --------------------------------------------------------------------------- constants

MAGIC = b"\x89LSNWAL\n"
FORMAT_VERSION = 1
FLAG_ZSTD = 0x0001
KNOWN_FLAGS = FLAG_ZSTD

#: magic, version, flags, header_size, first_lsn, created, checkpoint_lsn, reserved, crc
SEGMENT_HEADER = struct.Struct("<8sHHIQdQII")
HEADER_SIZE = SEGMENT_HEADER.size  # 48
HEADER_CRC_SPAN = HEADER_SIZE - 4  # the CRC covers bytes 0..44

#: crc, length, lsn, timestamp, kind, flags, reserved
RECORD_HEADER = struct.Struct("<IIQdBBH")
RECORD_HEADER_TAIL = struct.Struct("<IQdBBH")  # the 24 bytes the CRC covers first
#: length, lsn, timestamp, kind: what a scan of a checked block reads (no CRC, no spare bytes)
RECORD_FIELDS = struct.Struct("<4xIQdB")
RECORD_FIELDS_RAW = struct.Struct("<4xIQ8xB")  # length, lsn, kind
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 28
U32 = struct.Struct("<I")

#: seal_offset, magic
TRAILER = struct.Struct("<Q8s")
TRAILER_SIZE = TRAILER.size  # 16
TRAILER_MAGIC = b"LSNWSEAL"

#: last_lsn, record_count, first_ts, last_ts, checkpoint_lsn, data_end, n_blocks, n_marks
SEAL_FIXED = struct.Struct("<QQddQQII")
#: first_lsn, first_ts, offset, stored_len, raw_len, crc_of_stored (0 in plain segments)
SEAL_BLOCK = struct.Struct("<QdQIII")
#: lsn, timestamp, name_len (then the UTF-8 name)
SEAL_MARK = struct.Struct("<QdH")
#: checkpoint payload prefix: the checkpointed LSN
CHECKPOINT_PREFIX = struct.Struct("<Q")

#: the writer starts a new index block after this many bytes of records
INDEX_INTERVAL_BYTES = 64 * 1024
#: compressed segments group records into independent zstd frames of about this size
ZSTD_FRAME_BYTES = 1024 * 1024
MAX_MARK_NAME_BYTES = 255


class RecordKind(enum.IntEnum):
    """What a record is: application data, a checkpoint, or a named restore point."""

    DATA = 1
    CHECKPOINT = 2
    MARK = 3


SEAL_KIND = 0x53  # "S": internal, closes a segment; never yielded to users
_USER_KINDS = frozenset(int(k) for k in RecordKind)
_DATA_KIND = int(RecordKind.DATA)
_tuple_new = tuple.__new__
# stored payload bounds: a CHECKPOINT carries its 8-byte LSN; a MARK name is 1..255 bytes
_MIN_LEN = {int(RecordKind.CHECKPOINT): CHECKPOINT_PREFIX.size, int(RecordKind.MARK): 1}
_MAX_LEN = {int(RecordKind.CHECKPOINT): 2**32 - 1, int(RecordKind.MARK): MAX_MARK_NAME_BYTES}


# --------------------------------------------------------------------------- records


class Record(tuple):  # type: ignore[type-arg]
    """One decoded record: ``lsn``, ``kind``, ``timestamp`` (epoch seconds), ``payload``.

    Immutable and small: a tuple underneath (built by the read path at C speed),
    read through named attributes; ``checkpoint_lsn`` is set on CHECKPOINT records.
    Records compare by value with other Records only and are not hashable.
    """

    __slots__ = ()

    def __new__(
        cls,
        lsn: int,
        kind: RecordKind,
        timestamp: float,
        payload: bytes,
        checkpoint_lsn: int | None = None,
    ) -> Record:
        return _tuple_new(cls, (lsn, kind, timestamp, payload, checkpoint_lsn))

    lsn: int = property(_itemgetter(0), doc="The record's LSN.")  # type: ignore[assignment]
    kind: RecordKind = property(  # type: ignore[assignment]
        _itemgetter(1), doc="DATA, CHECKPOINT or MARK.")
    timestamp: float = property(  # type: ignore[assignment]
        _itemgetter(2), doc="When it was appended (epoch seconds).")
    payload: bytes = property(  # type: ignore[assignment]
        _itemgetter(3), doc="The payload as the application gave it.")
    #: for a CHECKPOINT record, the LSN the application's state covers
    checkpoint_lsn: int | None = property(  # type: ignore[assignment]
        _itemgetter(4), doc="For a CHECKPOINT record, the LSN the application's state covers.")

    @property
    def name(self) -> str | None:
        """A MARK record's name (None for other kinds)."""
        if self[1] is RecordKind.MARK:
            return self[3].decode("utf-8", "replace")  # type: ignore[no-any-return]
        return None

    def __getnewargs__(self) -> tuple[object, ...]:  # pickling: the fields, in order
        return tuple(self)

    def __repr__(self) -> str:
        payload = self.payload
        return (
            f"Record(lsn={self.lsn}, kind={self.kind.name}, timestamp={self.timestamp!r}, "
            f"payload={payload[:32]!r}{'...' if len(payload) > 32 else ''})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not (isinstance(other, Record) and tuple.__eq__(self, other))

    __hash__ = None  # type: ignore[assignment]


def make_record(lsn: int, kind: int, ts: float, stored: bytes) -> Record:
    """Build a public ``Record`` from a decoded record's fields and stored payload."""
    if kind == RecordKind.DATA:
        return Record(lsn, RecordKind.DATA, ts, stored)
    if kind == RecordKind.CHECKPOINT:
        (cp,) = CHECKPOINT_PREFIX.unpack_from(stored, 0)
        return Record(lsn, RecordKind.CHECKPOINT, ts, stored[CHECKPOINT_PREFIX.size :], cp)
    return Record(lsn, RecordKind(kind), ts, stored)


def encode_record(buf: bytearray, lsn: int, kind: int, ts: float, payload: bytes) -> None:
    """Append one encoded record to ``buf``."""
    tail = RECORD_HEADER_TAIL.pack(len(payload), lsn, ts, kind, 0, 0)
    buf += U32.pack(crc32c(payload, crc32c(tail)))
    buf += tail
    buf += payload


def encode_data_records(payloads: list[bytes], first_lsn: int, ts: float) -> bytes:
    """Encode DATA records for ``payloads`` (LSNs from ``first_lsn``, one timestamp).

    The same bytes as ``encode_record`` for each payload, built with C-level
    ``map`` calls over the whole list: the batch path of the writer. The CRC of
    the header tail followed by the payload equals ``crc32c(payload,
    crc32c(tail))`` (CRC continuation), so one call per record suffices.
    """
    n = len(payloads)
    rep = itertools.repeat
    tails = list(
        map(
            RECORD_HEADER_TAIL.pack,
            map(len, payloads),
            range(first_lsn, first_lsn + n),
            rep(ts, n),
            rep(int(RecordKind.DATA), n),
            rep(0, n),
            rep(0, n),
        )
    )
    parts: list[bytes] = [b""] * (3 * n)
    parts[0::3] = list(map(U32.pack, map(crc32c, map(bytes.__add__, tails, payloads))))
    parts[1::3] = tails
    parts[2::3] = payloads
    return b"".join(parts)


def encode_checkpoint_payload(checkpoint_lsn: int, payload: bytes) -> bytes:
    """The stored payload of a CHECKPOINT record."""
    return CHECKPOINT_PREFIX.pack(checkpoint_lsn) + payload


# --------------------------------------------------------------------------- headers


@dataclass(frozen=True)
class SegmentHeader:
    """A decoded segment header."""

    version: int
    flags: int
    first_lsn: int
    created: float
    checkpoint_lsn: int

    @property
    def compressed(self) -> bool:
        """True when the body is made of zstd frames."""
        return bool(self.flags & FLAG_ZSTD)


class HeaderError(ValueError):
    """A segment header cannot be decoded; ``reason`` says why."""


class UnsupportedFormatError(HeaderError):
    """An intact header (magic and CRC good) of a version, size or flags this lsnwal cannot
    read: a newer writer made it. Readers refuse it; it is never taken for a torn tail."""


def encode_segment_header(
    first_lsn: int, created: float, checkpoint_lsn: int = 0, flags: int = 0
) -> bytes:
    """Encode a v1 segment header."""
    body = SEGMENT_HEADER.pack(
        MAGIC, FORMAT_VERSION, flags, HEADER_SIZE, first_lsn, created, checkpoint_lsn, 0, 0
    )[:HEADER_CRC_SPAN]
    return body + U32.pack(crc32c(body))


def decode_segment_header(data: bytes | bytearray | memoryview) -> SegmentHeader:
    """Decode and check a segment header; raise ``HeaderError`` when it is not valid."""
    if len(data) < HEADER_SIZE:
        raise HeaderError(f"segment header truncated ({len(data)} of {HEADER_SIZE} bytes)")
    magic, version, flags, size, first, created, cp, _res, crc = SEGMENT_HEADER.unpack_from(
        data, 0
    )
    if magic != MAGIC:
        raise HeaderError("not an lsnwal segment (bad magic)")
    if crc != crc32c(bytes(data[:HEADER_CRC_SPAN])):
        raise HeaderError("segment header checksum mismatch")
    if version != FORMAT_VERSION:
        raise UnsupportedFormatError(f"unsupported format version {version} (this lsnwal reads 1)")
    if size != HEADER_SIZE or flags & ~KNOWN_FLAGS:
        raise UnsupportedFormatError(f"unsupported header size {size} or flags {flags:#x}")
    if first < 1:
        raise HeaderError(f"invalid first LSN {first}")
    return SegmentHeader(version, flags, first, created, cp)


# --------------------------------------------------------------------------- seal (footer)


@dataclass(frozen=True)
class Block:
    """An index entry: a run of whole records starting at ``offset``."""

    first_lsn: int
    first_ts: float
    offset: int
    stored_len: int
    raw_len: int
    crc: int = 0


@dataclass(frozen=True)
class Seal:
    """A segment's footer: what open/replay need without reading the records."""

    last_lsn: int
    record_count: int
    first_ts: float
    last_ts: float
    checkpoint_lsn: int
    data_end: int
    blocks: tuple[Block, ...] = ()
    marks: tuple[tuple[str, int, float], ...] = field(default=())


def encode_seal_payload(seal: Seal) -> bytes:
    """Encode a footer body (the payload of the SEAL record)."""
    parts = [
        SEAL_FIXED.pack(
            seal.last_lsn,
            seal.record_count,
            seal.first_ts,
            seal.last_ts,
            seal.checkpoint_lsn,
            seal.data_end,
            len(seal.blocks),
            len(seal.marks),
        )
    ]
    for b in seal.blocks:
        parts.append(
            SEAL_BLOCK.pack(b.first_lsn, b.first_ts, b.offset, b.stored_len, b.raw_len, b.crc)
        )
    for name, lsn, ts in seal.marks:
        raw = name.encode("utf-8")
        parts.append(SEAL_MARK.pack(lsn, ts, len(raw)) + raw)
    return b"".join(parts)


def decode_seal_payload(data: bytes | memoryview) -> Seal:
    """Decode a footer body; raise ``ValueError`` when it is malformed."""
    try:
        last, count, fts, lts, cp, end, nb, nm = SEAL_FIXED.unpack_from(data, 0)
        pos = SEAL_FIXED.size
        blocks = []
        for _ in range(nb):
            blocks.append(Block(*SEAL_BLOCK.unpack_from(data, pos)))
            pos += SEAL_BLOCK.size
        marks = []
        for _ in range(nm):
            lsn, ts, ln = SEAL_MARK.unpack_from(data, pos)
            pos += SEAL_MARK.size
            raw = bytes(data[pos : pos + ln])
            if len(raw) != ln:
                raise ValueError("mark name truncated")
            marks.append((raw.decode("utf-8"), lsn, ts))
            pos += ln
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed seal: {exc}") from None
    if pos != len(data):
        raise ValueError("malformed seal: trailing bytes")
    return Seal(last, count, fts, lts, cp, end, tuple(blocks), tuple(marks))


def blocks_tile(blocks: tuple[Block, ...], data_end: int) -> bool:
    """True when plain ``blocks`` cover ``[HEADER_SIZE, data_end)`` in order, without gaps."""
    at = HEADER_SIZE
    for b in blocks:
        if b.offset != at or b.stored_len != b.raw_len or b.raw_len <= 0:
            return False
        at += b.raw_len
    return at == data_end


def blocks_intact(data: bytes | memoryview, blocks: list[Block], base: int) -> bool:
    """True when every block (file offsets; ``data`` starts at ``base``) has a recorded CRC
    that matches its bytes: one CRC call per block instead of one per record.

    A block CRC of 0 means "not recorded" (plain segments written by lsnwal 0.1).
    """
    return all(b.crc for b in blocks) and first_bad_block(data, blocks, base) is None


def first_bad_block(data: bytes | memoryview, blocks: list[Block], base: int) -> Block | None:
    """The first block with a recorded CRC (not 0) that does not match its bytes, or None."""
    mv = memoryview(data)
    try:
        for b in blocks:
            rel = b.offset - base
            if b.crc and crc32c(mv[rel : rel + b.raw_len]) != b.crc:
                return b
        return None
    finally:
        mv.release()


def encode_seal(seal: Seal) -> bytes:
    """Encode the SEAL record and trailer that close a segment at ``seal.data_end``."""
    buf = bytearray()
    encode_record(buf, seal.last_lsn, SEAL_KIND, seal.last_ts, encode_seal_payload(seal))
    buf += TRAILER.pack(seal.data_end, TRAILER_MAGIC)
    return bytes(buf)


def decode_seal_at(data: bytes | memoryview, seal_offset: int) -> Seal | None:
    """Decode the SEAL record + trailer in ``data`` (the file's bytes from ``seal_offset``)."""
    if len(data) < RECORD_HEADER_SIZE + TRAILER_SIZE:
        return None
    c, ln, lsn, _ts, kind, _f, _r = RECORD_HEADER.unpack_from(data, 0)
    end = RECORD_HEADER_SIZE + ln
    if kind != SEAL_KIND or end + TRAILER_SIZE != len(data):
        return None
    if crc32c(bytes(data[4:end])) != c:
        return None
    offset, magic = TRAILER.unpack_from(data, end)
    if magic != TRAILER_MAGIC or offset != seal_offset:
        return None
    try:
        seal = decode_seal_payload(data[RECORD_HEADER_SIZE:end])
    except ValueError:
        return None
    if seal.data_end != seal_offset or seal.last_lsn != lsn:
        return None
    return seal


def decode_trailer(data: bytes | memoryview) -> int | None:
    """Return the seal offset from a segment's last 16 bytes, or None if absent."""
    if len(data) < TRAILER_SIZE:
        return None
    offset, magic = TRAILER.unpack_from(data, len(data) - TRAILER_SIZE)
    return int(offset) if magic == TRAILER_MAGIC else None
