"""Golden segment files pin format v1: committed bytes, the writer, the readers, the spec.

``tests/fixtures/make_fixtures.py`` builds the fixtures with lsnwal's codec and
fixed timestamps. These tests fail on any byte-level change of format v1 unless
the fixtures are regenerated on purpose (``LSNWAL_REGEN_FIXTURES=1``), and check
that the real writer, the real readers and ``docs/format.md`` agree with them.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import zstandard
from _golden import FIXTURES, load_generator

import lsnwal
from lsnwal import compress, scanner, segment
from lsnwal import format as fmt
from lsnwal.fs import OsFileSystem
from lsnwal.names import WalPaths, segment_name
from lsnwal.writer import SegmentWriter

DOC = Path(__file__).resolve().parent.parent / "docs" / "format.md"


gen = load_generator()
BUILT = {fx.name: fx for fx in gen.build_all()}
T0 = gen.T0


def committed(name: str) -> bytes:
    """The committed bytes of a fixture."""
    return (FIXTURES / name).read_bytes()


# --------------------------------------------------------------------------- committed bytes


@pytest.mark.parametrize("name", sorted(BUILT))
def test_generator_output_equals_committed_fixture(name: str) -> None:
    """The codec still produces each committed golden file exactly (or rewrites it on request)."""
    fx = BUILT[name]
    if os.environ.get(gen.REGEN_ENV) == "1":
        fx.path.write_bytes(fx.data)
    hint = (
        f"{name}: format v1 bytes changed. If this is deliberate, run "
        f"{gen.REGEN_ENV}=1 python tests/fixtures/make_fixtures.py, review the diff and "
        f"update docs/format.md (a change of meaning needs a new FORMAT_VERSION)."
    )
    if name.endswith(".zwal"):
        hint += f" (zstd {zstandard.ZSTD_VERSION}: a new zstd may frame bytes differently.)"
    assert committed(name) == fx.data, hint


def test_fixture_set_is_complete() -> None:
    """Every file in tests/fixtures is produced by the generator, and every fixture is committed."""
    on_disk = {p.name for p in FIXTURES.glob("v[0-9]*-*") if p.suffix in (".wal", ".zwal")}
    assert on_disk == set(BUILT)


def test_compressed_fixture_structure() -> None:
    """The committed .zwal has the plain header with FLAG_ZSTD, CRC-checked frames holding the
    plain records, and a seal whose block table describes those frames."""
    data = committed("v1-compressed.zwal")
    plain = committed("v1-sealed.wal")
    assert data[:8] == fmt.MAGIC
    header = fmt.decode_segment_header(data)
    plain_header = fmt.decode_segment_header(plain)
    assert header.flags == fmt.FLAG_ZSTD and header.compressed
    assert (header.first_lsn, header.created, header.checkpoint_lsn) == (
        plain_header.first_lsn, plain_header.created, plain_header.checkpoint_lsn)
    seal_off = fmt.decode_trailer(data)
    assert seal_off is not None
    seal = fmt.decode_seal_at(data[seal_off:], seal_off)
    plain_seal = BUILT["v1-sealed.wal"].seal
    assert seal is not None and plain_seal is not None
    assert (seal.last_lsn, seal.record_count, seal.first_ts, seal.last_ts,
            seal.checkpoint_lsn, seal.marks) == (
        plain_seal.last_lsn, plain_seal.record_count, plain_seal.first_ts,
        plain_seal.last_ts, plain_seal.checkpoint_lsn, plain_seal.marks)
    assert [b.first_lsn for b in seal.blocks] == [1, 4]
    offset = fmt.HEADER_SIZE
    raw_all = b""
    for b in seal.blocks:
        assert b.offset == offset  # frames are contiguous, from the header on
        stored = data[b.offset : b.offset + b.stored_len]
        assert stored[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
        assert fmt.crc32c(stored) == b.crc
        assert zstandard.frame_content_size(stored) == b.raw_len
        raw_all += compress.decompress_block(stored, b)
        offset += b.stored_len
    assert offset == seal.data_end == seal_off
    assert raw_all == plain[fmt.HEADER_SIZE : plain_seal.data_end]


# --------------------------------------------------------------------------- the writer


class _Clock:
    """A stand-in for the ``time`` module whose ``time()`` returns scripted values."""

    def __init__(self, values: list[float]) -> None:
        self.values = list(values)

    def time(self) -> float:
        return self.values.pop(0)


def test_segment_writer_writes_the_golden_bytes(tmp_path: Path, monkeypatch: Any) -> None:
    """SegmentWriter, given the fixtures' timestamps, writes v1-sealed, v1-active and
    v1-empty-sealed exactly (its inline encoder agrees with the codec)."""
    clock = _Clock([T0, T0 + 0.25, T0 + 0.5, T0 + 0.75, T0 + 1.0, T0 + 1.25, T0 + 1.5,
                    T0 + 2.0, T0 + 2.25, T0 + 2.5, T0 + 2.75, T0 + 3.0, T0 + 4.0])
    monkeypatch.setattr("lsnwal.writer._time", clock.time)
    paths = WalPaths(str(tmp_path), str(tmp_path / "pending"), str(tmp_path / "archive"))
    os.mkdir(paths.pending)
    w = SegmentWriter(OsFileSystem(), paths, next_lsn=1, last_ts=T0, checkpoint_lsn=0,
                      segment_max_bytes=1 << 20, write_buffer_bytes=1 << 20)
    try:
        for kind, _ts, stored in gen.SEALED_RECORDS:
            w.append(kind, stored)
        w.header_checkpoint = 2  # what the WAL does once the CHECKPOINT record is durable
        first = w.rotate()
        os.close(first.fd)
        w.append(fmt.RecordKind.DATA, b"set x=1")
        w.append(fmt.RecordKind.CHECKPOINT, fmt.encode_checkpoint_payload(7, b""))
        w.append(fmt.RecordKind.MARK, b"v2")
        w.flush()
        assert Path(paths.active).read_bytes() == committed("v1-active.wal")
        w.header_checkpoint = 7
        second = w.rotate()
        os.close(second.fd)
        third = w.rotate()  # nothing appended: a sealed segment holding no record
        os.close(third.fd)
    finally:
        w.close()
    pending = Path(paths.pending)
    assert (pending / segment_name(1)).read_bytes() == committed("v1-sealed.wal")
    assert (pending / segment_name(10)).read_bytes() == committed("v1-empty-sealed.wal")
    assert (pending / segment_name(7)).read_bytes()[:149] == committed("v1-active.wal")
    assert not clock.values


# --------------------------------------------------------------------------- the readers


class MemFS:
    """The read half of the file-system seam over one in-memory file (descriptor 0)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return self.data[offset : offset + size]

    def fsize(self, fd: int) -> int:
        return len(self.data)


@pytest.mark.parametrize("name", sorted(BUILT))
def test_segment_reader_decodes_each_fixture(name: str) -> None:
    """segment.read_header/read_seal/scan_* decode each committed file into the expected records."""
    fx = BUILT[name]
    data = committed(name)
    fs: Any = MemFS(data)
    header = segment.read_header(fs, 0)
    assert header == fx.header
    seal = segment.read_seal(fs, 0, len(data))
    assert seal == fx.seal
    end = segment.ScanEnd()
    if header.compressed:
        assert seal is not None
        raws = list(segment.scan_compressed(fs, 0, seal, header.first_lsn, end))
    else:
        raws = list(segment.scan_plain(fs, 0, len(data), header.first_lsn, end))
    got = [fmt.make_record(lsn, kind, ts, bytes(buf[p : p + ln]))
           for _off, lsn, kind, ts, buf, p, ln in raws]
    assert got == [r.record() for r in fx.records]
    assert end.verdict == (scanner.SEALED if fx.seal is not None else scanner.END)
    assert end.offset == fx.data_end
    if not header.compressed:
        assert [raw[0] for raw in raws] == [r.offset for r in fx.records]


def test_golden_records_have_the_documented_fields() -> None:
    """The fixtures' records read back with the kinds, names, checkpoint LSNs and times written."""
    recs = [r.record() for r in BUILT["v1-sealed.wal"].records]
    assert [r.lsn for r in recs] == [1, 2, 3, 4, 5, 6]
    assert [r.kind for r in recs] == [fmt.RecordKind.DATA, fmt.RecordKind.DATA,
                                      fmt.RecordKind.CHECKPOINT, fmt.RecordKind.MARK,
                                      fmt.RecordKind.DATA, fmt.RecordKind.DATA]
    assert recs[2].checkpoint_lsn == 2 and recs[2].payload == b"state@2"
    assert recs[3].name == "before-migration" and recs[3].checkpoint_lsn is None
    assert recs[4].payload == b""
    assert [r.timestamp for r in recs] == [T0 + 0.25 * i for i in range(1, 7)]


def _wal_from_fixtures(root: Path) -> None:
    """A WAL directory: LSN 1-6 archived compressed, LSN 7-9 in the active segment."""
    (root / "pending").mkdir(parents=True)
    (root / "archive").mkdir()
    shutil.copy(FIXTURES / "v1-compressed.zwal", root / "archive" / segment_name(1, True))
    shutil.copy(FIXTURES / "v1-active.wal", root / "active.wal")


def test_replay_and_verify_read_a_wal_made_of_golden_files(tmp_path: Path) -> None:
    """lsnwal.replay, verify and list_marks accept a WAL directory assembled from the fixtures."""
    root = tmp_path / "wal"
    _wal_from_fixtures(root)
    expected = [r.record() for r in BUILT["v1-sealed.wal"].records]
    expected += [r.record() for r in BUILT["v1-active.wal"].records]
    assert list(lsnwal.replay(root)) == expected
    assert [r.lsn for r in lsnwal.replay(root, until_mark="before-migration")] == [1, 2, 3, 4]
    assert lsnwal.list_marks(root) == [("before-migration", 4, T0 + 1.0), ("v2", 9, T0 + 2.75)]
    report = lsnwal.verify(root)
    assert report.ok, report.problems


def test_open_continues_after_golden_files(tmp_path: Path) -> None:
    """lsnwal.open on the golden WAL directory resumes at LSN 10 with checkpoint LSN 7."""
    root = tmp_path / "wal"
    _wal_from_fixtures(root)
    with lsnwal.open(root) as wal:
        assert (wal.last_lsn, wal.checkpoint_lsn) == (9, 7)
        assert wal.append(b"next") == 10
        wal.sync()
    assert [r.lsn for r in lsnwal.replay(root)] == list(range(1, 11))


def _as_version(data: bytes, version: int) -> bytes:
    """A golden file whose header says another format version (with a correct header CRC)."""
    body = data[:8] + struct.pack("<H", version) + data[10 : fmt.HEADER_CRC_SPAN]
    return body + fmt.U32.pack(fmt.crc32c(body)) + data[fmt.HEADER_SIZE :]


@pytest.mark.parametrize("where", ["active", "pending", "archive"])
def test_a_later_format_version_is_refused_not_cut(tmp_path: Path, where: str) -> None:
    """A segment of format version 2 makes open, replay and verify fail naming the version,
    wherever it lies; it is never cut or set aside as a torn tail."""
    root = tmp_path / "wal"
    (root / "pending").mkdir(parents=True)
    (root / "archive").mkdir()
    if where == "active":
        target = root / "active.wal"
        target.write_bytes(_as_version(committed("v1-active.wal"), 2))
    else:
        target = root / where / segment_name(1)
        target.write_bytes(_as_version(committed("v1-sealed.wal"), 2))
    with pytest.raises(lsnwal.WalCorruptionError, match="unsupported format version 2"):
        list(lsnwal.replay(root))
    report = lsnwal.verify(root)
    assert not report.ok
    assert any("unsupported format version 2" in str(p) for p in report.problems)
    with pytest.raises(lsnwal.WalCorruptionError, match="unsupported format version 2") as info:
        lsnwal.open(root)
    assert info.value.path == str(target) and info.value.offset == 0
    assert sorted(p.name for p in target.parent.iterdir() if p.suffix != ".wal"
                  and p.name not in ("LOCK", "LSNWAL") and p.is_file()) == []  # no .broken


# --------------------------------------------------------------------------- the spec


_HEX_LINE = re.compile(r"^([0-9a-f]{6})  ((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:\s|$)")
_GOLDEN_BLOCK = re.compile(r"<!-- golden: (\S+) -->\s*```[a-z]*\n(.*?)```", re.S)


def test_docs_worked_examples_match_the_fixtures() -> None:
    """Every annotated hexdump in docs/format.md is a contiguous run of the named golden file
    that reaches its end."""
    text = DOC.read_text(encoding="utf-8")
    blocks = _GOLDEN_BLOCK.findall(text)
    assert {name for name, _ in blocks} >= {"v1-active.wal", "v1-sealed.wal"}
    for name, body in blocks:
        data = committed(name)
        pos: int | None = None
        for line in body.splitlines():
            m = _HEX_LINE.match(line)
            if not m:
                assert line.startswith("--") or not line.strip(), line
                continue
            off = int(m.group(1), 16)
            raw = bytes.fromhex(m.group(2))
            assert pos is None or off == pos, f"{name}: gap before {line!r}"
            assert data[off : off + len(raw)] == raw, f"{name}: {line!r}"
            pos = off + len(raw)
        assert pos == len(data), f"{name}: the example stops at {pos} of {len(data)}"


def test_docs_dump_is_what_the_generator_prints() -> None:
    """The worked example in docs/format.md is the generator's annotated dump, unedited."""
    text = DOC.read_text(encoding="utf-8")
    for name, body in _GOLDEN_BLOCK.findall(text):
        first = next(ln for ln in body.splitlines() if _HEX_LINE.match(ln))
        start = int(first[:6], 16)
        assert body.rstrip("\n").splitlines() == gen.annotate(committed(name), start)


_ROW = re.compile(r"^\| `([A-Z_]+)` \| `([^`]+)` \|", re.M)


def test_docs_constants_table_matches_the_codec() -> None:
    """Each `NAME` | `value` row of the constants table in docs/format.md equals format.NAME."""
    rows = _ROW.findall(DOC.read_text(encoding="utf-8"))
    names = {n for n, _ in rows}
    assert {"MAGIC", "FORMAT_VERSION", "FLAG_ZSTD", "SEGMENT_HEADER", "RECORD_HEADER",
            "TRAILER_MAGIC", "SEAL_KIND", "INDEX_INTERVAL_BYTES", "ZSTD_FRAME_BYTES"} <= names
    for name, value in rows:
        actual = getattr(fmt, name)
        if isinstance(actual, struct.Struct):
            assert value == actual.format, name
        else:
            assert ast.literal_eval(value) == actual, name
