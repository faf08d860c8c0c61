"""Decoding records from bytes: ``RecordScanner``, the one parser of format v1 records.

Owns the record decoder every reader uses (recovery, replay, verify, the
archiver's re-check, the CLI) — there is no second parser — and the rules it
keeps: a record is taken only whole, with a good CRC (or inside a block whose
CRC one call checked), a known kind and the next LSN; a SEAL record is checked
against its trailer; where decoding stops, the verdict says why (END, SEALED,
DAMAGED). The byte layout itself (constants, ``Record``, headers, seals) is
``format.py``'s.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from typing import Any

from .format import (
    _DATA_KIND,
    _MAX_LEN,
    _MIN_LEN,
    _USER_KINDS,
    RECORD_FIELDS,
    RECORD_FIELDS_RAW,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SEAL_KIND,
    TRAILER,
    TRAILER_MAGIC,
    TRAILER_SIZE,
    Record,
    RecordKind,
    Seal,
    _tuple_new,
    crc32c,
    decode_seal_payload,
    make_record,
)

#: what ``RecordScanner.built`` makes of each record
BUILD_TUPLES = 0  # (offset in data, lsn, kind, timestamp, payload length)
BUILD_RECORDS = 1  # public Record objects
BUILD_RAW = 2  # (lsn, payload) of DATA records only
BUILD_COUNT = 3  # nothing: the records are checked and counted (verify)


def _convert(recs: list[tuple[int, int, int, float, int]], data: bytes | bytearray | memoryview,
             mode: int, only_data: bool = False) -> list[Any]:
    """Decoded record tuples as ``mode`` asks (the records' fields, payloads sliced out).

    ``only_data`` says that every record is a DATA record (the scan saw no other kind).
    """
    if mode == BUILD_RAW:
        return [(lsn, data[(p := rel + 28) : p + ln]) for rel, lsn, kind, _ts, ln in recs
                if kind == _DATA_KIND]
    if mode == BUILD_COUNT:
        return []
    data_kind = RecordKind.DATA
    if only_data:  # plain tuples first, made Records by one C-level map
        fields = [(lsn, data_kind, ts, data[(p := rel + 28) : p + ln], None)
                  for rel, lsn, _kind, ts, ln in recs]
        return list(map(_tuple_new, itertools.repeat(Record, len(fields)), fields))
    return [make_record(lsn, kind, ts, bytes(data[rel + 28 : rel + 28 + ln]))
            for rel, lsn, kind, ts, ln in recs]


#: crc, length, lsn, timestamp, kind (flags and reserved are not read)
_CHECKED_FIELDS = struct.Struct("<IIQdB3x")

END = "end"  # the data ended exactly at a record boundary
SEALED = "sealed"  # a valid seal and trailer closed the segment
DAMAGED = "damaged"  # a record could not be decoded at ``pos`` (see ``reason``)


class RecordScanner:
    """Decode consecutive records of ``data`` from ``pos``; never raises on bad bytes.

    Iterating yields ``(offset, lsn, kind, timestamp, length)`` for each good
    record; the payload is ``data[offset + 28 : offset + 28 + length]``. When the
    iteration stops, ``verdict`` is END, SEALED or DAMAGED, ``pos`` is where it
    stopped, ``reason`` says why for DAMAGED and ``seal`` holds a decoded seal
    (also for DAMAGED "bytes after the seal trailer": a whole segment plus junk).
    ``truncated`` is True when the damage is a record running past the data.
    ``expected_lsn`` (if not None) is the LSN the first record must carry; the
    following ones must count up by one.

    ``checked=True`` says the caller has already checked the bytes as a whole
    (an index block whose CRC32C in the seal matched): records are then decoded
    without their own CRCs — every other rule (length, kind, LSN sequence, seal)
    still holds. Use it only on bytes that one CRC call has covered.
    """

    __slots__ = (
        "_special",
        "base",
        "checked",
        "count",
        "data",
        "expected_lsn",
        "last_lsn",
        "pos",
        "reason",
        "seal",
        "truncated",
        "verdict",
    )

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        pos: int,
        expected_lsn: int | None,
        base: int = 0,
        checked: bool = False,
    ) -> None:
        self.base = base  # file offset of data[0]: seals record absolute offsets
        self.checked = checked
        self.count = 0  # records decoded by the last call (every kind)
        self._special = False  # the last full scan decoded a record of another kind than DATA
        self.data = data
        self.pos = pos
        self.expected_lsn = expected_lsn
        self.last_lsn: int | None = None
        self.verdict = END
        self.reason = ""
        self.seal: Seal | None = None
        self.truncated = False

    def __iter__(self) -> Iterator[tuple[int, int, int, float, int]]:
        return iter(self.records())

    def records(self) -> list[tuple[int, int, int, float, int]]:
        """Decode every good record (one tight loop: the hot path of recovery and replay)."""
        return self.built(BUILD_TUPLES)

    def _scan(self, stop: int) -> list[tuple[int, int, int, float, int]]:
        """The full loop: every rule and every record CRC, for records starting before ``stop``."""
        data = self.data
        n = len(data)
        pos = self.pos
        expected = self.expected_lsn
        unpack = _CHECKED_FIELDS.unpack_from
        crc = crc32c
        out: list[tuple[int, int, int, float, int]] = []
        append = out.append
        mv = memoryview(data)
        special = False  # a record of another kind than DATA was decoded
        last = min(n - RECORD_HEADER_SIZE, stop - 1)  # the last offset a record may start at
        try:
            while pos <= last:
                c, ln, lsn, ts, kind = unpack(data, pos)
                end = pos + 28 + ln  # 28: RECORD_HEADER_SIZE, inlined (the hot path)
                if end > n:
                    self._damage(f"record length {ln} runs past the data", truncated=True)
                    break
                if crc(mv[pos + 4 : end]) != c:
                    self._damage("record checksum mismatch")
                    break
                if kind != _DATA_KIND:
                    special = True
                    if kind == SEAL_KIND:
                        pos = self._seal(mv, pos, end, lsn, expected)
                        break
                    if kind not in _USER_KINDS:
                        self._damage(f"unknown record kind {kind}")
                        break
                    if not _MIN_LEN[kind] <= ln <= _MAX_LEN[kind]:
                        self._damage(f"{RecordKind(kind).name} record of {ln} bytes")
                        break
                if lsn != expected and expected is not None:
                    self._damage(f"LSN {lsn} where {expected} was expected")
                    break
                append((pos, lsn, kind, ts, ln))
                expected = lsn + 1
                pos = end
            else:  # no record header fits at ``pos`` (or ``stop`` was reached)
                if pos + RECORD_HEADER_SIZE > n and pos != n:
                    self._damage("truncated record header", truncated=True)
        finally:
            mv.release()
        if out:
            self.last_lsn = out[-1][1]
        self.pos = pos
        self.expected_lsn = expected
        self._special = special
        return out

    def built(self, mode: int, limit: int | None = None) -> list[Any]:
        """Decode good records as ``mode`` asks: ``BUILD_TUPLES`` (like ``records``),
        ``BUILD_RECORDS`` (public ``Record`` objects), ``BUILD_RAW`` (``(lsn, payload)``
        of DATA records only) or ``BUILD_COUNT`` (nothing: checked and counted).
        ``count`` and ``last_lsn`` cover every record decoded.

        With ``limit`` (an offset in the data) records starting at or after it are
        left for the next call: ``verdict`` stays END and ``pos`` is below the end.
        """
        stop = len(self.data) if limit is None else min(limit, len(self.data))
        first = self.expected_lsn
        if self.checked and first is not None and self.pos <= len(self.data):
            out = self._records_checked(mode, stop)
            assert self.expected_lsn is not None
            self.count = self.expected_lsn - first
            return out
        recs = self._scan(stop)
        self.count = len(recs)
        if mode == BUILD_TUPLES:
            return recs
        return _convert(recs, self.data, mode, not self._special)

    def _records_checked(self, mode: int, stop: int) -> list[Any]:
        """``records`` for bytes a block CRC already covered: the same rules, no record CRC.

        DATA records in sequence take the short path, one loop per build mode (a
        branch per record would cost more than the loop); any other record (another
        kind, a wrong LSN, a length past the data) goes through the full loop, one
        record at a time, which decodes it or says why it cannot. Records starting
        at or after ``stop`` are left for the next call. Only the last record taken
        can run past the data (each starts where the one before ended): that is
        checked once, after the loop.
        """
        data = self.data
        n = len(data)
        unpack, unpack_raw = RECORD_FIELDS.unpack_from, RECORD_FIELDS_RAW.unpack_from
        out: list[Any] = []
        append = out.append
        last = min(n - RECORD_HEADER_SIZE, stop - 1)
        ln = 0
        pos = self.pos
        assert self.expected_lsn is not None  # (built() checks)
        expected: int = self.expected_lsn
        start_lsn = expected
        new, rec, kd = _tuple_new, Record, RecordKind.DATA
        while True:
            loop_start = pos
            if mode == BUILD_RECORDS:
                # Plain tuples first, made Records by one C-level map below: a call of
                # tuple.__new__ per record from Python costs more than the whole loop body.
                first_new = len(out)
                while pos <= last:
                    ln, lsn, ts, kind = unpack(data, pos)
                    if kind != 1 or lsn != expected:  # 1: DATA
                        break
                    p = pos + 28  # 28: RECORD_HEADER_SIZE, inlined (the hot path)
                    pos = p + ln
                    append((lsn, kd, ts, data[p:pos], None))
                    expected += 1
                fresh = out[first_new:]
                out[first_new:] = map(new, itertools.repeat(rec, len(fresh)), fresh)
            elif mode == BUILD_RAW:
                while pos <= last:
                    ln, lsn, kind = unpack_raw(data, pos)
                    if kind != 1 or lsn != expected:
                        break
                    p = pos + 28
                    pos = p + ln
                    append((lsn, data[p:pos]))
                    expected += 1
            elif mode == BUILD_COUNT:
                while pos <= last:
                    ln, lsn, kind = unpack_raw(data, pos)
                    if kind != 1 or lsn != expected:
                        break
                    pos += 28 + ln
                    expected += 1
            else:
                while pos <= last:
                    ln, lsn, ts, kind = unpack(data, pos)
                    if kind != 1 or lsn != expected:
                        break
                    append((pos, lsn, kind, ts, ln))
                    pos += 28 + ln
                    expected += 1
            if pos > n and pos != loop_start:  # the last record taken runs past the data:
                # take it back and let _scan say so
                pos -= 28 + ln
                expected -= 1
                if mode != BUILD_COUNT:
                    del out[-1]
            self.pos, self.expected_lsn = pos, expected
            if pos >= stop:
                break
            one = self._scan(pos + 1)  # exactly the record at ``pos``, fully checked
            if one:
                out += one if mode == BUILD_TUPLES else _convert(one, data, mode,
                                                                 not self._special)
            if self.verdict != END or self.pos == pos:
                break
            pos = self.pos
            assert self.expected_lsn is not None
            expected = self.expected_lsn
        if self.expected_lsn != start_lsn:  # some record decoded: the last one's LSN
            assert self.expected_lsn is not None
            self.last_lsn = self.expected_lsn - 1
        return out

    def _damage(self, reason: str, truncated: bool = False) -> None:
        self.verdict = DAMAGED
        self.reason = reason
        self.truncated = truncated

    def _seal(self, mv: memoryview, pos: int, end: int, lsn: int, expected: int | None) -> int:
        """Check a SEAL record at ``pos``; return the offset the verdict refers to."""
        n = len(mv)
        if end + TRAILER_SIZE > n:
            self._damage("seal without its trailer", truncated=True)
            return pos
        offset, magic = TRAILER.unpack_from(mv, end)
        if magic != TRAILER_MAGIC or offset != self.base + pos:
            self._damage("seal trailer does not match")
            return pos
        try:
            seal = decode_seal_payload(mv[pos + 28 : end])
        except ValueError as exc:
            self._damage(str(exc))
            return pos
        if seal.data_end != self.base + pos or (
            expected is not None and seal.last_lsn != expected - 1
        ):
            self._damage("seal does not describe this segment")
            return pos
        self.seal = seal
        if end + TRAILER_SIZE != n:
            # A complete, valid seal followed by junk (zeros a file system appended, a
            # stray write): the segment itself is whole; ``seal`` is kept so that
            # recovery can trim the junk instead of sealing the segment a second time.
            self._damage("bytes after the seal trailer")
            return end + TRAILER_SIZE
        self.verdict = SEALED
        return pos


def find_continuation(
    data: bytes | bytearray | memoryview, start: int, last_good_lsn: int, max_ahead: int = 1024
) -> int | None:
    """Offset of a valid record after ``start`` with an LSN above ``last_good_lsn``, or None.

    Used to tell a torn tail (nothing valid follows the damage) from corruption in
    the middle of a segment (valid records follow). It searches for the encoded
    LSN values last_good+1 .. last_good+max_ahead, so it costs a few ``bytes.find``
    calls, not a decode at every byte offset.
    """
    raw = bytes(data)
    n = len(raw)
    best: int | None = None
    limit = min(max_ahead, max(1, (n - start) // RECORD_HEADER_SIZE + 1))
    for k in range(1, limit + 1):
        needle = struct.pack("<Q", last_good_lsn + k)
        at = raw.find(needle, start + 1)
        while at != -1 and (best is None or at - 8 < best):
            rec = at - 8
            if rec > start and rec + RECORD_HEADER_SIZE <= n:
                c, ln, lsn, _ts, kind, _f, _r = RECORD_HEADER.unpack_from(raw, rec)
                end = rec + RECORD_HEADER_SIZE + ln
                if (
                    end <= n
                    and lsn == last_good_lsn + k
                    and (kind in _USER_KINDS or kind == SEAL_KIND)
                    and crc32c(raw[rec + 4 : end]) == c
                ):
                    best = rec
                    break
            at = raw.find(needle, at + 1)
    return best


def is_zero(data: bytes | bytearray | memoryview, start: int) -> bool:
    """True when every byte from ``start`` to the end is zero."""
    tail = bytes(data[start:])
    return tail.count(0) == len(tail)
