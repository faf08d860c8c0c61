"""The pure codec of format v1: round trips, every prefix, every flip, trailing junk, fuzzing.

The golden files of ``tests/fixtures`` are decoded at every prefix and after
every single-bit flip (and every whole-byte inversion); each case asserts the
verdict (END / SEALED / DAMAGED, ``truncated``), the offset the decoder reports
and the records it returned before stopping. The expected values come from the
fixtures' known layout (where each record starts and ends), not from the
decoder. Hypothesis properties state the fuzz contract: any input yields records
or an lsnwal error (``HeaderError``/``ValueError``/``WalError``), nothing else.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard
from _golden import FIXTURES, load_generator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsnwal import compress, scanner, segment
from lsnwal import format as fmt
from lsnwal.errors import WalError

gen = load_generator()
FX = {fx.name: fx for fx in gen.build_all()}
for _fx in FX.values():  # the tests decode the committed bytes, which must be the built ones
    _fx.data = (FIXTURES / _fx.name).read_bytes()
PLAIN = ["v1-sealed.wal", "v1-active.wal", "v1-empty-sealed.wal"]
H = fmt.HEADER_SIZE
R = fmt.RECORD_HEADER_SIZE
MASKS = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF)

#: what the decoders may raise on bad input; anything else is a bug. A plain
#: ``ValueError`` (the codec's own "malformed" errors) is allowed only as exactly that
#: type: its subclasses — ``UnicodeDecodeError`` above all — are foreign leaks.
ALLOWED = (fmt.HeaderError, WalError)


def ours(exc: BaseException) -> bool:
    """True for an error the codec raises on purpose (see ``ALLOWED``)."""
    return isinstance(exc, ALLOWED) or type(exc) is ValueError


# --------------------------------------------------------------------------- helpers


class MemFS:
    """The read half of the file-system seam over one in-memory file (descriptor 0)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return self.data[offset : offset + size]

    def fsize(self, fd: int) -> int:
        return len(self.data)


@dataclass
class Outcome:
    """What decoding a plain segment gave: verdict, offset, flags, records."""

    verdict: str
    pos: int
    truncated: bool
    records: list[fmt.Record]
    reason: str = ""
    seal: fmt.Seal | None = None


def scan(data: bytes | bytearray, expected: int | None, start: int = H) -> Outcome:
    """Decode ``data`` from ``start`` in one piece with the ``RecordScanner``."""
    sc = scanner.RecordScanner(data, start, expected)
    recs = [fmt.make_record(lsn, kind, ts, bytes(data[off + R : off + R + ln]))
            for off, lsn, kind, ts, ln in sc]
    return Outcome(sc.verdict, sc.pos, sc.truncated, recs, sc.reason, sc.seal)


def scan_segment(data: bytes | bytearray) -> Outcome:
    """Decode a whole plain segment: header, then records (HeaderError propagates)."""
    header = fmt.decode_segment_header(data)
    return scan(data, header.first_lsn)


def scan_chunked(data: bytes, expected: int | None, chunk: int, monkeypatch: Any) -> Outcome:
    """Decode through ``segment.scan_plain`` reading ``chunk`` bytes at a time."""
    monkeypatch.setattr(segment, "CHUNK_BYTES", chunk)
    end = segment.ScanEnd()
    fs: Any = MemFS(data)
    recs = [fmt.make_record(lsn, kind, ts, bytes(buf[p : p + ln]))
            for _off, lsn, kind, ts, buf, p, ln in
            segment.scan_plain(fs, 0, len(data), expected, end)]
    return Outcome(end.verdict, end.offset, end.truncated, recs, end.reason, end.seal)


def spans(fx: Any) -> list[tuple[int, int]]:
    """``(start, end)`` of every record of a plain fixture, the SEAL record included."""
    out = [(r.offset, r.end) for r in fx.records]
    if fx.seal is not None:
        out.append((fx.data_end, len(fx.data) - fmt.TRAILER_SIZE))
    return out


def records_before(fx: Any, pos: int) -> list[fmt.Record]:
    """The records a decoder must return intact when it stops at ``pos``."""
    return [r.record() for r in fx.records if r.end <= pos]


def expected_prefix(fx: Any, n: int) -> Outcome | None:
    """What decoding the first ``n`` bytes of a plain fixture must give (None: HeaderError)."""
    if n < H:
        return None
    if n == len(fx.data):
        verdict = scanner.SEALED if fx.seal is not None else scanner.END
        return Outcome(verdict, fx.data_end, False, records_before(fx, n))
    if n <= fx.data_end and n in [H] + [r.end for r in fx.records]:
        return Outcome(scanner.END, n, False, records_before(fx, n))
    if n > fx.data_end:  # inside the SEAL record or its trailer
        return Outcome(scanner.DAMAGED, fx.data_end, True, records_before(fx, fx.data_end))
    start = next(r.offset for r in fx.records if r.offset < n < r.end)
    return Outcome(scanner.DAMAGED, start, True, records_before(fx, start))


def expected_flip(fx: Any, i: int, data: bytes) -> Outcome | None:
    """What decoding a plain fixture with byte ``i`` changed to ``data[i]`` must give."""
    if i < H:
        return None
    if i >= len(fx.data) - fmt.TRAILER_SIZE and fx.seal is not None:  # the trailer
        return Outcome(scanner.DAMAGED, fx.data_end, False, records_before(fx, fx.data_end))
    start = next(s for s, e in spans(fx) if s <= i < e)
    truncated = False
    if start + 4 <= i < start + 8:  # the length field: the record may now run past the end
        (length,) = fmt.U32.unpack_from(data, start + 4)
        truncated = start + R + length > len(data)
    return Outcome(scanner.DAMAGED, start, truncated, records_before(fx, start))


def flipped(data: bytes, i: int, mask: int) -> bytes:
    """``data`` with byte ``i`` XORed with ``mask``."""
    out = bytearray(data)
    out[i] ^= mask
    return bytes(out)


def check(got: Outcome, want: Outcome, what: str) -> None:
    """Assert verdict, offset, truncated flag and the records returned."""
    assert (got.verdict, got.pos, got.truncated) == (want.verdict, want.pos, want.truncated), \
        f"{what}: got {got.verdict}@{got.pos} truncated={got.truncated} ({got.reason})"
    assert got.records == want.records, what


# --------------------------------------------------------------------------- round trips

kinds = st.sampled_from([fmt.RecordKind.DATA, fmt.RecordKind.CHECKPOINT, fmt.RecordKind.MARK])
timestamps = st.floats(min_value=0.0, max_value=4e9, allow_nan=False)
lsns = st.integers(min_value=1, max_value=2**63)


@st.composite
def stored_payloads(draw: st.DrawFn, kind: fmt.RecordKind) -> bytes:
    """A stored payload valid for ``kind``."""
    if kind is fmt.RecordKind.CHECKPOINT:
        cp = draw(st.integers(min_value=0, max_value=2**64 - 1))
        return fmt.encode_checkpoint_payload(cp, draw(st.binary(max_size=64)))
    if kind is fmt.RecordKind.MARK:
        name = draw(st.text(min_size=1, max_size=40))
        return name.encode("utf-8")
    return draw(st.binary(max_size=300))


@st.composite
def record_runs(draw: st.DrawFn) -> tuple[int, list[tuple[int, float, bytes]]]:
    """A first LSN and a run of (kind, timestamp, stored payload) for consecutive LSNs."""
    first = draw(st.integers(min_value=1, max_value=2**62))
    n = draw(st.integers(min_value=0, max_value=8))
    out = []
    for _ in range(n):
        kind = draw(kinds)
        out.append((int(kind), draw(timestamps), draw(stored_payloads(kind))))
    return first, out


@settings(max_examples=150, deadline=None)
@given(record_runs())
def test_records_round_trip_through_the_scanner(run: tuple[int, list[tuple[int, float, bytes]]]
                                                 ) -> None:
    """Records encoded with encode_record decode to the same LSN, kind, time and payload."""
    first, items = run
    buf = bytearray()
    offsets = []
    for i, (kind, ts, stored) in enumerate(items):
        offsets.append(len(buf))
        fmt.encode_record(buf, first + i, kind, ts, stored)
    sc = scanner.RecordScanner(bytes(buf), 0, first)
    got = list(sc)
    assert [(o, lsn, k, ts, ln) for o, lsn, k, ts, ln in got] == [
        (offsets[i], first + i, kind, ts, len(stored)) for i, (kind, ts, stored) in enumerate(items)
    ]
    assert (sc.verdict, sc.pos, sc.truncated) == (scanner.END, len(buf), False)
    assert sc.last_lsn == (first + len(items) - 1 if items else None)
    assert sc.expected_lsn == first + len(items)
    for (off, lsn, kind, ts, ln), (_k, _t, stored) in zip(got, items, strict=True):
        rec = fmt.make_record(lsn, kind, ts, bytes(buf[off + R : off + R + ln]))
        assert rec.kind == kind and rec.lsn == lsn and rec.timestamp == ts
        if kind == fmt.RecordKind.CHECKPOINT:
            assert fmt.encode_checkpoint_payload(rec.checkpoint_lsn or 0, rec.payload) == stored
        else:
            assert rec.payload == stored and rec.checkpoint_lsn is None


def test_record_encoding_layout() -> None:
    """encode_record writes crc, length, LSN, time, kind, zero flags/reserved, then the payload."""
    buf = bytearray(b"prefix")
    fmt.encode_record(buf, 42, fmt.RecordKind.MARK, 1.5, b"m")
    crc, length, lsn, ts, kind, flags, reserved = fmt.RECORD_HEADER.unpack_from(buf, 6)
    assert (length, lsn, ts, kind, flags, reserved) == (1, 42, 1.5, 3, 0, 0)
    assert crc == fmt.crc32c(bytes(buf[10:]))  # bytes 4..end of the record
    assert bytes(buf[6 + R :]) == b"m" and len(buf) == 6 + R + 1


@settings(max_examples=100, deadline=None)
@given(lsns, timestamps, st.integers(min_value=0, max_value=2**64 - 1),
       st.sampled_from([0, fmt.FLAG_ZSTD]))
def test_segment_header_round_trip(first: int, created: float, cp: int, flags: int) -> None:
    """encode_segment_header then decode_segment_header gives back every field."""
    raw = fmt.encode_segment_header(first, created, cp, flags)
    assert len(raw) == H and raw[:8] == fmt.MAGIC
    h = fmt.decode_segment_header(raw + b"records follow")
    assert h == fmt.SegmentHeader(1, flags, first, created, cp)
    assert h.compressed is bool(flags)


def _reheader(raw: bytes, off: int, new: bytes) -> bytes:
    """Replace bytes at ``off`` of a header and fix its CRC (a well-formed but odd header)."""
    body = raw[:off] + new + raw[off + len(new) : fmt.HEADER_CRC_SPAN]
    return body + fmt.U32.pack(fmt.crc32c(body))


GOOD_HEADER = fmt.encode_segment_header(5, 1.0, 0)


@pytest.mark.parametrize(("data", "message"), [
    (GOOD_HEADER[:47], "truncated (47 of 48 bytes)"),
    (b"", "truncated (0 of 48 bytes)"),
    (b"\x00" + GOOD_HEADER[1:], "bad magic"),
    (GOOD_HEADER[:44] + b"\0\0\0\0", "checksum mismatch"),
    (_reheader(GOOD_HEADER, 8, struct.pack("<H", 2)), "unsupported format version 2"),
    (_reheader(GOOD_HEADER, 8, struct.pack("<H", 0)), "unsupported format version 0"),
    (_reheader(GOOD_HEADER, 10, struct.pack("<H", 2)), "flags 0x2"),
    (_reheader(GOOD_HEADER, 12, struct.pack("<I", 64)), "header size 64"),
    (_reheader(GOOD_HEADER, 16, struct.pack("<Q", 0)), "invalid first LSN 0"),
], ids=["short", "empty", "magic", "crc", "v2", "v0", "flags", "size", "lsn0"])
def test_segment_header_rejections(data: bytes, message: str) -> None:
    """decode_segment_header refuses each bad header with a HeaderError that says why."""
    with pytest.raises(fmt.HeaderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fmt.decode_segment_header(data)


def test_later_format_version_is_refused_clearly() -> None:
    """A well-formed header of format version 2 is refused by name, not as damage."""
    v2 = _reheader(GOOD_HEADER, 8, struct.pack("<H", 2))
    with pytest.raises(fmt.HeaderError) as info:
        fmt.decode_segment_header(v2)
    assert "unsupported format version 2" in str(info.value)
    assert "reads 1" in str(info.value)
    assert isinstance(info.value, ValueError)


blocks_st = st.builds(
    fmt.Block,
    st.integers(0, 2**64 - 1), timestamps, st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
)
marks_st = st.tuples(st.text(max_size=30), st.integers(0, 2**64 - 1), timestamps)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2**63), st.integers(0, 2**32), timestamps, timestamps,
       st.integers(0, 2**63), st.integers(H, 2**40),
       st.lists(blocks_st, max_size=4), st.lists(marks_st, max_size=4))
def test_seal_round_trip(last: int, count: int, fts: float, lts: float, cp: int, end: int,
                         blocks: list[fmt.Block], marks: list[tuple[str, int, float]]) -> None:
    """encode_seal_payload/decode_seal_payload and encode_seal/decode_seal_at are inverses."""
    seal = fmt.Seal(last, count, fts, lts, cp, end, tuple(blocks), tuple(marks))
    payload = fmt.encode_seal_payload(seal)
    assert fmt.decode_seal_payload(payload) == seal
    assert fmt.decode_seal_payload(memoryview(payload)) == seal
    raw = fmt.encode_seal(seal)
    assert len(raw) == R + len(payload) + fmt.TRAILER_SIZE
    assert fmt.decode_seal_at(raw, end) == seal
    assert fmt.decode_trailer(b"anything" + raw) == end
    assert fmt.decode_seal_at(raw, end + 1) is None  # the trailer names another offset


SEAL = fmt.Seal(9, 3, 1.0, 2.0, 4, 100, (fmt.Block(7, 1.0, 48, 52, 52),), (("m", 8, 1.5),))
SEAL_RAW = fmt.encode_seal(SEAL)


def _bad_seal(**changes: Any) -> bytes:
    fields = {**SEAL.__dict__, **changes}
    return fmt.encode_seal(fmt.Seal(**fields))


@pytest.mark.parametrize(("data", "offset"), [
    (SEAL_RAW[:-1], 100),  # trailer cut
    (SEAL_RAW + b"\0", 100),  # junk after the trailer
    (SEAL_RAW, 99),  # not where the trailer says
    (SEAL_RAW[:-8] + b"LSNWSEAX", 100),  # trailer magic
    (flipped(SEAL_RAW, R + 3, 0x01), 100),  # payload byte: CRC
    (b"", 100),
    (SEAL_RAW[:R + fmt.TRAILER_SIZE - 1], 100),
], ids=["short", "junk", "offset", "magic", "crc", "empty", "tiny"])
def test_decode_seal_at_rejects_bad_seals(data: bytes, offset: int) -> None:
    """decode_seal_at returns None for a seal that is cut, moved, damaged or followed by junk."""
    assert fmt.decode_seal_at(SEAL_RAW, 100) == SEAL
    assert fmt.decode_seal_at(data, offset) is None


def test_decode_seal_at_requires_consistent_fields() -> None:
    """A seal whose record LSN or data_end disagrees with its trailer is not accepted."""
    raw = bytearray()
    fmt.encode_record(raw, 8, fmt.SEAL_KIND, 2.0, fmt.encode_seal_payload(SEAL))  # LSN 8, not 9
    raw += fmt.TRAILER.pack(100, fmt.TRAILER_MAGIC)
    assert fmt.decode_seal_at(bytes(raw), 100) is None
    moved = fmt.encode_seal(fmt.Seal(9, 3, 1.0, 2.0, 4, 100, (), ()))
    patched = moved[:-16] + fmt.TRAILER.pack(101, fmt.TRAILER_MAGIC)  # data_end 100, trailer 101
    assert fmt.decode_seal_at(patched, 101) is None


@pytest.mark.parametrize(("payload", "message"), [
    (b"", "malformed seal"),
    (fmt.encode_seal_payload(SEAL) + b"\0", "trailing bytes"),
    (fmt.encode_seal_payload(SEAL)[:-1], "mark name truncated"),
    (fmt.encode_seal_payload(SEAL)[:-3], "malformed seal"),
    (fmt.encode_seal_payload(fmt.Seal(1, 1, 0.0, 0.0, 0, 48, (), (("\u00e9", 1, 0.0),)))[:-1]
     + b"\xff", "malformed seal"),
], ids=["empty", "trailing", "name-cut", "mark-cut", "utf8"])
def test_decode_seal_payload_rejections(payload: bytes, message: str) -> None:
    """decode_seal_payload raises ValueError (never struct/Unicode errors) for malformed footers."""
    with pytest.raises(ValueError, match=message):
        fmt.decode_seal_payload(payload)


def test_decode_trailer() -> None:
    """decode_trailer finds the seal offset in the last 16 bytes, or None without the magic."""
    assert fmt.decode_trailer(fmt.TRAILER.pack(77, fmt.TRAILER_MAGIC)) == 77
    assert fmt.decode_trailer(fmt.TRAILER.pack(77, b"LSNWSEAl")) is None
    assert fmt.decode_trailer(fmt.TRAILER_MAGIC) is None
    assert fmt.decode_trailer(b"") is None


def test_make_record_and_record_accessors() -> None:
    """make_record strips a CHECKPOINT's LSN prefix and names MARKs; Records compare by value."""
    cp = fmt.make_record(5, 2, 1.25, fmt.encode_checkpoint_payload(3, b"app"))
    assert (cp.lsn, cp.kind, cp.timestamp, cp.payload, cp.checkpoint_lsn) == (
        5, fmt.RecordKind.CHECKPOINT, 1.25, b"app", 3)
    assert cp.name is None
    mark = fmt.make_record(6, 3, 1.5, "caf\u00e9".encode())
    assert mark.kind is fmt.RecordKind.MARK and mark.name == "caf\u00e9"
    assert mark.checkpoint_lsn is None and mark.payload == b"caf\xc3\xa9"
    data = fmt.make_record(7, 1, 2.0, b"x" * 40)
    assert data.kind is fmt.RecordKind.DATA and data.name is None
    assert data == fmt.Record(7, fmt.RecordKind.DATA, 2.0, b"x" * 40)
    assert data != fmt.Record(7, fmt.RecordKind.DATA, 2.0, b"x" * 41)
    assert data != "not a record"
    assert "..." in repr(data) and "DATA" in repr(data)
    assert fmt.make_record(8, 3, 0.0, b"\xff").name == "\ufffd"  # never raises on bad UTF-8
    with pytest.raises(TypeError):
        hash(data)


def test_records_are_immutable_values_that_survive_pickling_and_copies() -> None:
    """A Record cannot be changed, equals only Records with the same fields (never the bare
    tuple of its fields), and pickles and copies to an equal Record of the same type."""
    import copy
    import pickle

    rec = fmt.make_record(5, 2, 1.25, fmt.encode_checkpoint_payload(3, b"app"))
    for attr, value in [("lsn", 6), ("payload", b"x"), ("kind", fmt.RecordKind.DATA),
                        ("timestamp", 0.0), ("checkpoint_lsn", 1), ("other", 1)]:
        with pytest.raises(AttributeError):
            setattr(rec, attr, value)
    fields = (5, fmt.RecordKind.CHECKPOINT, 1.25, b"app", 3)
    assert rec != fields and fields != rec
    assert (rec == fields) is False and (fields == rec) is False
    for twin in (pickle.loads(pickle.dumps(rec, protocol=p))
                 for p in range(pickle.HIGHEST_PROTOCOL + 1)):
        assert type(twin) is fmt.Record and twin == rec and twin.checkpoint_lsn == 3
    assert copy.copy(rec) == rec and copy.deepcopy(rec) == rec
    assert fmt.Record(5, fmt.RecordKind.CHECKPOINT, 1.25, b"app", 3) == rec


# --------------------------------------------------------------------------- every prefix


@pytest.mark.parametrize("name", PLAIN)
def test_every_prefix_of_plain_fixtures(name: str) -> None:
    """Every prefix decodes to END at a record boundary, else a truncated DAMAGED at the cut
    record's start (HeaderError below 48 bytes), with the earlier records intact."""
    fx = FX[name]
    seen = {scanner.END: 0, scanner.SEALED: 0, scanner.DAMAGED: 0}
    for n in range(len(fx.data) + 1):
        data = fx.data[:n]
        want = expected_prefix(fx, n)
        if want is None:
            with pytest.raises(fmt.HeaderError):
                scan_segment(data)
            continue
        got = scan_segment(data)
        check(got, want, f"{name}[:{n}]")
        seen[got.verdict] += 1
        if got.verdict == scanner.SEALED:
            assert got.seal == fx.seal
    assert seen[scanner.END] == len(fx.records) + 1  # one per record boundary
    assert seen[scanner.SEALED] == (fx.seal is not None)


def test_every_prefix_of_the_compressed_fixture() -> None:
    """A cut .zwal has no seal to find (HeaderError below 48 bytes); only the whole file does."""
    fx = FX["v1-compressed.zwal"]
    fs: Any
    for n in range(len(fx.data) + 1):
        data = fx.data[:n]
        fs = MemFS(data)
        if n < H:
            with pytest.raises(fmt.HeaderError):
                segment.read_header(fs, 0)
            continue
        assert segment.read_header(fs, 0).compressed
        assert segment.read_seal(fs, 0, n) == (fx.seal if n == len(fx.data) else None), n


# --------------------------------------------------------------------------- every flip


@pytest.mark.parametrize("name", PLAIN)
def test_every_byte_flip_of_plain_fixtures(name: str) -> None:
    """Each single-bit flip and byte inversion is DAMAGED at the start of the hit record (the seal
    offset for a trailer byte, HeaderError in the header); records before it come back intact."""
    fx = FX[name]
    cases = 0
    for i in range(len(fx.data)):
        for mask in MASKS:
            data = flipped(fx.data, i, mask)
            want = expected_flip(fx, i, data)
            if want is None:
                with pytest.raises(fmt.HeaderError):
                    scan_segment(data)
            else:
                check(scan_segment(data), want, f"{name} byte {i} ^ {mask:#x}")
            cases += 1
    assert cases == len(fx.data) * len(MASKS)


@pytest.mark.parametrize("name", PLAIN)
def test_flip_classification_torn_or_corrupt(name: str) -> None:
    """After a flip, find_continuation finds the next record (or seal) when one follows the
    damaged record, and nothing when the damage is in the last one: corruption vs torn tail."""
    fx = FX[name]
    all_spans = spans(fx)
    for i in range(H, len(fx.data)):
        data = flipped(fx.data, i, 0xFF)
        got = scan_segment(data)
        assert got.verdict == scanner.DAMAGED
        last_good = got.records[-1].lsn if got.records else fx.header.first_lsn - 1
        nxt = [s for s, _e in all_spans if s > got.pos]
        want = nxt[0] if nxt else None
        assert scanner.find_continuation(data, got.pos, last_good) == want, (name, i)


def test_every_byte_flip_of_the_compressed_fixture() -> None:
    """A flip in a zstd frame is DAMAGED at that frame's offset (earlier frames' records intact);
    in the seal or trailer the seal is refused; in the header HeaderError."""
    fx = FX["v1-compressed.zwal"]
    frames = fx.frames
    frame_recs = {1: 0, 4: 3}  # first LSN of a frame -> index of its first record
    for i in range(len(fx.data)):
        for mask in MASKS:
            data = flipped(fx.data, i, mask)
            fs: Any = MemFS(data)
            if i < H:
                with pytest.raises(fmt.HeaderError):
                    segment.read_header(fs, 0)
                continue
            header = segment.read_header(fs, 0)
            seal = segment.read_seal(fs, 0, len(data))
            if i >= fx.data_end:
                assert seal is None, (i, mask)
                continue
            assert seal == fx.seal
            end = segment.ScanEnd()
            got = [fmt.make_record(lsn, kind, ts, bytes(buf[p : p + ln]))
                   for _o, lsn, kind, ts, buf, p, ln in
                   segment.scan_compressed(fs, 0, seal, header.first_lsn, end)]
            hit = next(b for b in frames if b.offset <= i < b.offset + b.stored_len)
            assert (end.verdict, end.offset) == (scanner.DAMAGED, hit.offset), (i, mask)
            assert "checksum" in end.reason
            assert got == [r.record() for r in fx.records[: frame_recs[hit.first_lsn]]]


# --------------------------------------------------------------------------- trailing junk


JUNK = [b"\x00", b"\x00" * 64, b"x", b"garbage after the end", fmt.TRAILER_MAGIC,
        fmt.TRAILER.pack(0, fmt.TRAILER_MAGIC)]


@pytest.mark.parametrize("name", ["v1-sealed.wal", "v1-empty-sealed.wal"])
@pytest.mark.parametrize("junk", [*JUNK, "copy", "record"])
def test_trailing_junk_after_a_sealed_segment(name: str, junk: bytes | str) -> None:
    """Any bytes after a seal's trailer make the segment DAMAGED at the end of the trailer, not
    truncated, with every record intact and the seal decoded; read_seal no longer finds it."""
    fx = FX[name]
    if junk == "copy":
        extra = fx.data[H:]  # a second copy of the records and seal
    elif junk == "record":
        buf = bytearray()
        fmt.encode_record(buf, fx.seal.last_lsn + 1, 1, 0.0, b"late")
        extra = bytes(buf)
    else:
        assert isinstance(junk, bytes)
        extra = junk
    data = fx.data + extra
    got = scan_segment(data)
    check(got, Outcome(scanner.DAMAGED, len(fx.data), False, records_before(fx, len(fx.data))),
          f"{name}+{extra[:8]!r}")
    assert "after the seal trailer" in got.reason
    assert got.seal == fx.seal  # the segment is whole: recovery trims the junk, never re-seals
    fs: Any = MemFS(data)
    assert segment.read_seal(fs, 0, len(data)) is None


@pytest.mark.parametrize("junk", JUNK)
def test_trailing_junk_after_an_active_segment(junk: bytes) -> None:
    """Bytes after the last record of an unsealed segment are DAMAGED at the end of that record:
    truncated when shorter than a record header; a zero tail is recognised by is_zero."""
    fx = FX["v1-active.wal"]
    data = fx.data + junk
    got = scan_segment(data)
    assert got.verdict == scanner.DAMAGED and got.pos == len(fx.data)
    assert got.records == records_before(fx, len(fx.data))
    if len(junk) < R:
        assert got.truncated
    assert scanner.is_zero(data, got.pos) == (junk.count(0) == len(junk))
    assert scanner.find_continuation(data, got.pos, 9) is None


# --------------------------------------------------------------------------- continuation, zero


def test_find_continuation_finds_the_next_valid_record() -> None:
    """find_continuation returns the offset of the first CRC-valid record with a higher LSN."""
    fx = FX["v1-sealed.wal"]
    recs = fx.records
    data = flipped(fx.data, recs[1].offset + R, 0x01)  # damage the payload of LSN 2
    assert scanner.find_continuation(data, recs[1].offset, 1) == recs[2].offset
    # several damaged records in a row: the first intact one after them
    data2 = flipped(flipped(data, recs[2].offset + R, 0x01), recs[3].offset + R, 0x01)
    assert scanner.find_continuation(data2, recs[1].offset, 1) == recs[4].offset
    # LSNs at or below last_good are not a continuation
    assert scanner.find_continuation(fx.data, recs[0].offset, 6) is None
    # a record further ahead than max_ahead LSNs is not looked for
    assert scanner.find_continuation(data2, recs[1].offset, 1, max_ahead=3) is None  # LSN 5 = 1 + 4
    assert scanner.find_continuation(data2, recs[1].offset, 1, max_ahead=4) == recs[4].offset
    # the record at ``start`` itself never counts, even when intact
    assert scanner.find_continuation(fx.data, recs[1].offset, 1) == recs[2].offset
    assert scanner.find_continuation(b"", 0, 0) is None


def test_find_continuation_ignores_lsn_lookalikes() -> None:
    """An encoded LSN inside a payload, or a record with a bad CRC or unknown kind, is skipped."""
    buf = bytearray()
    fmt.encode_record(buf, 1, 1, 0.0, struct.pack("<QQQQ", 2, 2, 2, 2))  # LSN 2 inside a payload
    bad = bytearray()
    fmt.encode_record(bad, 2, 1, 0.0, b"x")
    bad[-1] ^= 1
    odd = bytearray()
    fmt.encode_record(odd, 2, 9, 0.0, b"y")  # kind 9: valid CRC, unknown kind
    data = bytes(buf + bad + odd)
    assert scanner.find_continuation(data, 0, 1) is None
    good = bytearray()
    fmt.encode_record(good, 2, 1, 0.0, b"z")
    assert scanner.find_continuation(data + good, 0, 1) == len(data)


def test_is_zero() -> None:
    """is_zero is True exactly when every byte from ``start`` on is zero (or there is none)."""
    assert scanner.is_zero(b"", 0)
    assert scanner.is_zero(b"abc", 3)
    assert scanner.is_zero(b"abc\0\0", 3)
    assert scanner.is_zero(bytearray(100), 0)
    assert scanner.is_zero(memoryview(b"x\0"), 1)
    assert not scanner.is_zero(b"\0\0\x01", 0)
    assert not scanner.is_zero(b"\0" * 50 + b"\x80" + b"\0" * 50, 10)


# --------------------------------------------------------------------------- whole vs split


def _split_inputs() -> Iterator[tuple[str, bytes, int]]:
    for name in PLAIN:
        fx = FX[name]
        first = fx.header.first_lsn
        yield f"{name} whole", fx.data, first
        for n in range(H, len(fx.data)):
            yield f"{name}[:{n}]", fx.data[:n], first
        for i in range(H, len(fx.data)):
            yield f"{name} byte {i} ^ 0xff", flipped(fx.data, i, 0xFF), first
        for junk in JUNK:
            yield f"{name} + {junk[:8]!r}", fx.data + junk, first


SPLIT_INPUTS = list(_split_inputs())


@pytest.mark.parametrize("chunk", [1, 7, 28, 29, 64, 1 << 20])
def test_chunked_reading_equals_whole_input(chunk: int, monkeypatch: Any) -> None:
    """segment.scan_plain reading ``chunk`` bytes at a time gives the verdict, offset, reason,
    seal and records of one RecordScanner pass over the whole input."""
    for what, data, first in SPLIT_INPUTS:
        whole = scan(data, first)
        got = scan_chunked(data, first, chunk, monkeypatch)
        check(got, whole, f"{what} in chunks of {chunk}")
        assert (got.reason, got.seal) == (whole.reason, whole.seal), what


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([*PLAIN, "v1-sealed.wal+junk"]), st.integers(1, 80))
def test_resumed_scanning_agrees_with_one_pass(name: str, step: int) -> None:
    """Scanning a growing prefix and resuming from the reported position and expected LSN
    (h11-style split feeding) ends with the verdict, offset and records of one pass."""
    fx = FX[name.removesuffix("+junk")]
    full = fx.data + (b"junk" if name.endswith("+junk") else b"")
    whole = scan(full, fx.header.first_lsn)
    pos, expected, recs = H, fx.header.first_lsn, []
    upto = H
    while True:
        upto = min(len(full), upto + step)
        sc = scanner.RecordScanner(full[:upto], pos, expected)
        for off, lsn, kind, ts, ln in sc:
            recs.append(fmt.make_record(lsn, kind, ts, full[off + R : off + R + ln]))
        pos, expected = sc.pos, sc.expected_lsn
        more = sc.verdict == scanner.END or (sc.verdict == scanner.DAMAGED and sc.truncated) or (
            sc.verdict == scanner.SEALED)
        if upto == len(full) or not more:
            break
    assert (sc.verdict, sc.pos, sc.truncated, recs) == (
        whole.verdict, whole.pos, whole.truncated, whole.records)


# --------------------------------------------------------------------------- fuzz contract


def _full_read(data: bytes) -> list[fmt.Record]:
    """Read a segment as recovery/replay do; return its records (lsnwal errors propagate)."""
    fs: Any = MemFS(data)
    header = segment.read_header(fs, 0)
    seal = segment.read_seal(fs, 0, len(data))
    end = segment.ScanEnd()
    if header.compressed:
        if seal is None:
            raise ValueError("no seal")
        raws = segment.scan_compressed(fs, 0, seal, header.first_lsn, end)
    else:
        raws = segment.scan_plain(fs, 0, len(data), header.first_lsn, end)
    out = [fmt.make_record(lsn, kind, ts, bytes(buf[p : p + ln]))
           for _o, lsn, kind, ts, buf, p, ln in raws]
    if end.verdict == scanner.DAMAGED and end.offset is not None:
        scanner.is_zero(data, min(end.offset, len(data)))
        scanner.find_continuation(data, end.offset, end.last_lsn or 0)
    return out


def _only_our_errors(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception as exc:
        if not ours(exc):
            raise


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.integers(0, 64))
def test_arbitrary_bytes_never_escape_with_foreign_errors(data: bytes, start: int) -> None:
    """Arbitrary bytes fed to every decoder yield values or lsnwal errors, never struct.error,
    IndexError, UnicodeDecodeError or a zstd error."""
    _only_our_errors(lambda: fmt.decode_segment_header(data))
    _only_our_errors(lambda: fmt.decode_seal_payload(data))
    _only_our_errors(lambda: fmt.decode_seal_at(data, start))
    _only_our_errors(lambda: fmt.decode_trailer(data))
    _only_our_errors(lambda: scan(data, None, min(start, len(data))))
    _only_our_errors(lambda: scan(data, start or None, 0))
    _only_our_errors(lambda: scanner.find_continuation(data, 0, start))
    _only_our_errors(lambda: _full_read(fmt.encode_segment_header(1, 0.0) + data))
    _only_our_errors(lambda: _full_read(fmt.encode_segment_header(1, 0.0, 0, fmt.FLAG_ZSTD)
                                        + data))
    block = fmt.Block(1, 0.0, 0, len(data), start * 7, fmt.crc32c(data))
    _only_our_errors(lambda: compress.decompress_block(data, block))


@settings(max_examples=800, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(max_size=40)),
                max_size=5),
       st.integers(1, 5))
def test_crc_valid_records_of_any_kind_decode_or_are_refused(
        items: list[tuple[int, int, bytes]], first: int) -> None:
    """Records with a valid CRC but any kind, LSN and payload (a checkpoint too short for its LSN
    prefix, a seal that describes nothing) decode to Records or a DAMAGED verdict."""
    buf = bytearray(fmt.encode_segment_header(first, 0.0))
    for kind, lsn, payload in items:
        fmt.encode_record(buf, lsn, kind, 0.0, payload)
    _only_our_errors(lambda: _full_read(bytes(buf)))
    sc = scanner.RecordScanner(bytes(buf), H, None)
    for off, lsn, kind, ts, ln in sc:
        rec = fmt.make_record(lsn, kind, ts, bytes(buf[off + R : off + R + ln]))
        assert rec.kind in set(fmt.RecordKind)


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    """A golden file with random overwrites, insertions, deletions or a cut."""
    fx = FX[draw(st.sampled_from(sorted(FX)))]
    data = bytearray(fx.data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        i = draw(st.integers(0, len(data)))
        if op == "set" and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        else:
            del data[i:]
    return bytes(data)


@settings(max_examples=1500, deadline=None)
@given(mutated_fixture())
def test_mutated_golden_files_never_escape_with_foreign_errors(data: bytes) -> None:
    """Mutated golden files read through header, seal, scanner and zstd frames yield records or
    lsnwal errors only; whatever records come back carry valid kinds and consecutive LSNs."""
    try:
        recs = _full_read(data)
    except Exception as exc:
        if ours(exc):
            return
        raise
    assert all(r.kind in set(fmt.RecordKind) for r in recs)
    if recs:
        assert [r.lsn for r in recs] == list(range(recs[0].lsn, recs[0].lsn + len(recs)))


def test_forged_zstd_frame_size_is_refused() -> None:
    """A CRC-valid frame claiming a huge content size raises ValueError, not MemoryError."""
    raw = zstandard.ZstdCompressor(write_content_size=True).compress(b"x" * 100)
    # frame header descriptor 0xE0: single segment, 8-byte frame content size
    forged = raw[:4] + bytes([0xE0]) + struct.pack("<Q", 1 << 40) + raw[6:]
    assert zstandard.frame_content_size(forged) == 1 << 40
    block = fmt.Block(1, 0.0, 48, len(forged), 100, fmt.crc32c(forged))
    with pytest.raises(ValueError):
        compress.decompress_block(forged, block)


@pytest.mark.parametrize(("stored", "raw_len", "crc_ok"), [
    (b"", 0, True),
    (b"not zstd at all", 15, True),
    (zstandard.ZstdCompressor().compress(b"abc"), 3, False),
    (zstandard.ZstdCompressor().compress(b"abc"), 4, True),
    (zstandard.ZstdCompressor().compress(b"abc")[:-1], 3, True),
    (zstandard.ZstdCompressor(write_content_size=False).compress(b"abc"), 3, True),
], ids=["empty", "garbage", "crc", "length", "cut", "no-size"])
def test_decompress_block_rejections(stored: bytes, raw_len: int, crc_ok: bool) -> None:
    """decompress_block checks the frame CRC, zstd validity, the declared content size (which
    must be present) and the raw length, raising ValueError for each."""
    crc = fmt.crc32c(stored) if crc_ok else fmt.crc32c(stored) ^ 1
    with pytest.raises(ValueError):
        compress.decompress_block(stored, fmt.Block(1, 0.0, 48, len(stored), raw_len, crc))
    good = zstandard.ZstdCompressor().compress(b"abc")
    assert compress.decompress_block(good, fmt.Block(1, 0.0, 48, len(good), 3,
                                                     fmt.crc32c(good))) == b"abc"


def test_extreme_field_values_survive_the_codec() -> None:
    """Timestamps and LSNs at the edges of their types round-trip exactly."""
    for lsn, ts in [(2**64 - 1, -0.0), (1, math.inf), (2**63, 1e-300)]:
        buf = bytearray()
        fmt.encode_record(buf, lsn, 1, ts, b"")
        got = list(scanner.RecordScanner(bytes(buf), 0, None))
        assert [(g[1], g[3]) for g in got] == [(lsn, ts)]
        assert math.copysign(1.0, got[0][3]) == math.copysign(1.0, ts)


def test_scanner_refuses_checkpoint_and_mark_records_of_impossible_size() -> None:
    """A CRC-valid CHECKPOINT shorter than its 8-byte LSN, or an empty or over-long MARK, is
    DAMAGED at its offset instead of reaching make_record."""
    for kind, payload in [(2, b""), (2, b"1234567"), (3, b""), (3, b"m" * 256)]:
        buf = bytearray()
        fmt.encode_record(buf, 1, 1, 0.0, b"ok")
        at = len(buf)
        fmt.encode_record(buf, 2, kind, 0.0, payload)
        got = scan(bytes(buf), 1, 0)
        assert (got.verdict, got.pos, got.truncated) == (scanner.DAMAGED, at, False), \
            (kind, payload)
        assert [r.lsn for r in got.records] == [1]
    for kind, payload in [(2, b"12345678"), (3, b"m"), (3, b"m" * 255)]:
        buf = bytearray()
        fmt.encode_record(buf, 1, kind, 0.0, payload)
        assert scan(bytes(buf), 1, 0).verdict == scanner.END


def test_replay_reads_past_a_record_boundary_on_a_read_boundary(tmp_path: Path) -> None:
    """With 128-byte records the first 1 MiB read ends exactly between two records; replay,
    verify and reopen still see every record (the chunked reader used to stop there)."""
    import lsnwal

    root = tmp_path / "wal"
    n = segment.CHUNK_BYTES // (R + 100) + 100
    assert segment.CHUNK_BYTES % (R + 100) == 0
    with lsnwal.open(root) as wal:
        wal.append_batch([b"x" * 100] * n)
        wal.sync()
    assert sum(1 for _ in lsnwal.replay(root)) == n
    assert lsnwal.verify(root).ok
    with lsnwal.open(root) as wal:
        assert wal.last_lsn == n


def test_batch_encoder_matches_single_record_codec() -> None:
    """encode_data_records produces exactly the bytes of encode_record applied one by one."""
    import random

    rng = random.Random(7)
    for _ in range(100):
        payloads = [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 40))]
        first = rng.randint(1, 10**12)
        ts = rng.random() * 2e9
        one_by_one = bytearray()
        for i, p in enumerate(payloads):
            fmt.encode_record(one_by_one, first + i, int(fmt.RecordKind.DATA), ts, p)
        assert fmt.encode_data_records(payloads, first, ts) == bytes(one_by_one)


@pytest.mark.parametrize("exc", [UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
                                 struct.error("x"), IndexError(), KeyError(), TypeError(),
                                 OverflowError(), MemoryError()])
def test_foreign_errors_are_not_ours(exc: BaseException) -> None:
    """The fuzz filter lets no foreign error through, ValueError subclasses included."""
    assert not ours(exc)
    with pytest.raises(type(exc)):
        _only_our_errors(lambda: (_ for _ in ()).throw(exc))
    assert ours(ValueError("malformed seal")) and ours(fmt.HeaderError("bad magic"))


def test_seal_with_an_undecodable_mark_name_is_refused_as_ours() -> None:
    """A seal whose mark name is not UTF-8 (CRC made valid) is a malformed seal, never a
    UnicodeDecodeError, through decode_seal_payload and through the scanner."""
    seal = fmt.Seal(3, 3, 1.0, 2.0, 0, H + 3 * R, (), (("m", 2, 1.5),))
    payload = bytearray(fmt.encode_seal_payload(seal))
    payload[-1] = 0xFF  # the one-byte name "m" becomes invalid UTF-8
    with pytest.raises(ValueError) as info:
        fmt.decode_seal_payload(bytes(payload))
    assert ours(info.value)
    buf = bytearray(fmt.encode_segment_header(1, 0.0))
    for lsn in (1, 2, 3):
        fmt.encode_record(buf, lsn, 1, 1.0, b"")
    seal_at = len(buf)
    fmt.encode_record(buf, 3, fmt.SEAL_KIND, 2.0, bytes(payload))
    buf += fmt.TRAILER.pack(seal_at, fmt.TRAILER_MAGIC)
    got = scan_segment(bytes(buf))
    assert got.verdict == scanner.DAMAGED and got.pos == seal_at and got.seal is None
