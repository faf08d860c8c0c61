"""``verify``: a read-only check of the whole WAL that reports and never raises (issue 4, item 7).

Damage is made by hand in closed WALs, at offsets computed from the format
(48-byte segment header, 28-byte record header), so each test can assert the
exact file, offset and LSN of the problem reported.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

import lsnwal
from lsnwal import format as fmt
from lsnwal.watermark import WATERMARK_NAME

SMALL = 4096
H = fmt.HEADER_SIZE
R = fmt.RECORD_HEADER_SIZE


def payload(i: int) -> bytes:
    """A deterministic payload whose length varies with ``i``."""
    return b"verify-%05d|" % i + bytes([i % 256]) * (20 + i % 60)


def hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (LOCK excluded), by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "LOCK"
    }


def build(path: Path, n: int = 400, marks: bool = True) -> dict[int, bytes]:
    """A closed WAL of ``n`` DATA records (plus a mark and a checkpoint), all archived."""
    expected = {}
    with lsnwal.open(path, lsnwal.WalConfig(segment_max_bytes=SMALL)) as wal:
        for i in range(n):
            p = payload(i)
            expected[wal.append(p)] = p
            if marks and i == n // 2:
                wal.mark("half")
                wal.checkpoint(10, payload=b"cp")
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
    return expected


def archived(path: Path) -> list[lsnwal.SegmentInfo]:
    """Archived segments, oldest first."""
    return [s for s in lsnwal.collect_all_segments(path) if s.state == "archive"]


def record_offsets(seg: lsnwal.SegmentInfo, path: Path) -> list[tuple[int, int]]:
    """``(file offset, lsn)`` of each record of a plain segment holding only DATA records."""
    out = []
    off = H
    for r in lsnwal.replay(path, from_lsn=seg.first_lsn, until_lsn=seg.last_lsn):
        assert r.kind is lsnwal.RecordKind.DATA
        out.append((off, r.lsn))
        off += R + len(r.payload)
    return out


def data_segments(path: Path) -> list[lsnwal.SegmentInfo]:
    """Archived segments that hold DATA records only (their record offsets are easy to compute)."""
    special = {r.lsn for r in lsnwal.replay(path) if r.kind is not lsnwal.RecordKind.DATA}
    return [s for s in archived(path)
            if not any(s.first_lsn <= lsn <= s.last_lsn for lsn in special)]


def extend_active(path: Path, n: int, torn: bool = False) -> list[tuple[int, int]]:
    """Append ``n`` valid records (and, if ``torn``, half of one more) to the active file.

    Returns ``(file offset, lsn)`` of each whole record written. This is what a
    crash leaves: records in the active segment, maybe a partial one at its end.
    """
    last = max((r.lsn for r in lsnwal.replay(path)), default=0)
    active = path / "active.wal"
    header = fmt.decode_segment_header(active.read_bytes()[:H])
    assert header.first_lsn <= last + 1
    if header.first_lsn == last + 1:
        assert active.stat().st_size == H
    off = active.stat().st_size
    buf = bytearray()
    out = []
    for k in range(n + int(torn)):
        start = len(buf)
        fmt.encode_record(buf, last + 1 + k, int(lsnwal.RecordKind.DATA), header.created + k,
                          payload(5000 + k))
        if k < n:
            out.append((off + start, last + 1 + k))
        else:
            del buf[start + (len(buf) - start) // 2 :]
    with open(active, "ab") as f:
        f.write(bytes(buf))
    return out


def flip(file: str | Path, offset: int, mask: int = 0x01) -> None:
    """Flip bits of one byte of a file in place."""
    data = bytearray(Path(file).read_bytes())
    data[offset] ^= mask
    Path(file).write_bytes(bytes(data))


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, bytes]]:
    """A pristine archived WAL that tests copy before damaging."""
    path = tmp_path_factory.mktemp("healthy") / "wal"
    return path, build(path)


@pytest.fixture
def copy(healthy: tuple[Path, dict[int, bytes]], tmp_path: Path) -> Path:
    """A private copy of the healthy WAL."""
    dst = tmp_path / "wal"
    shutil.copytree(healthy[0], dst)
    return dst


def test_healthy_wal_is_ok_with_correct_counts(healthy: tuple[Path, dict[int, bytes]]) -> None:
    """verify on a healthy WAL is ok, has no problem, and counts segments and records right."""
    path, expected = healthy
    report = lsnwal.verify(path)
    assert report.ok
    assert report.problems == []
    with_records = [s for s in lsnwal.collect_all_segments(path) if s.last_lsn >= s.first_lsn]
    assert report.segments == len(with_records)
    assert report.records == len(expected) + 2  # the mark and the checkpoint
    assert (report.first_lsn, report.last_lsn) == (1, len(expected) + 2)


def test_verify_on_an_open_wal_spanning_all_states(wal_dir: Path) -> None:
    """verify checks archive, pending and active segments of a WAL that is open."""
    import threading

    gate = threading.Event()

    def hook(point: str) -> None:
        if point == "before_archive_move" and threading.current_thread().name == "lsnwal-archive":
            gate.wait(20)

    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(wal_dir, cfg) as wal:
        for i in range(100):
            wal.append(payload(i))
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
    with lsnwal.open(wal_dir, cfg, failpoint=hook) as wal:
        for i in range(100, 200):
            wal.append(payload(i))
        assert wal.sync_async().wait(10)
        for i in range(200, 210):
            wal.append(payload(i))
        wal.sync()
        assert {s.state for s in lsnwal.collect_all_segments(wal_dir)} == {
            "archive", "pending", "active"}
        report = lsnwal.verify(wal_dir)
        gate.set()
    assert report.ok, report.problems
    assert report.records == 210
    assert report.last_lsn == 210


def test_flipped_payload_byte_in_archived_segment(copy: Path) -> None:
    """A flipped payload byte is reported with file, record offset and last good LSN."""
    seg = data_segments(copy)[2]
    offs = record_offsets(seg, copy)
    off, lsn = offs[5]
    flip(seg.path, off + R + 3)
    report = lsnwal.verify(copy)
    assert not report.ok
    (problem,) = report.problems
    assert problem.file == seg.path
    assert problem.offset == off
    assert problem.lsn == lsn - 1
    assert problem.message
    with pytest.raises(lsnwal.WalCorruptionError) as exc:
        list(lsnwal.replay(copy))
    assert (exc.value.path, exc.value.offset) == (seg.path, off)
    # records before the damage are still served
    got = list(lsnwal.replay(copy, until_lsn=lsn - 1))
    assert got[-1].lsn == lsn - 1


@pytest.mark.parametrize(
    ("where", "field_offset"),
    [
        ("record crc", 0),
        ("record length", 4),
        ("record lsn", 8),
        ("record timestamp", 16),
        ("record kind", 24),
        ("last payload byte", None),
    ],
)
def test_flipped_byte_in_each_record_field(
    copy: Path, where: str, field_offset: int | None
) -> None:
    """Whatever field of a record is damaged, verify names the file and that record's offset."""
    seg = data_segments(copy)[4]
    offs = record_offsets(seg, copy)
    off, lsn = offs[-3]
    nxt = offs[-2][0]
    flip(seg.path, nxt - 1 if field_offset is None else off + field_offset, 0x10)
    report = lsnwal.verify(copy)
    assert not report.ok, where
    assert report.problems[0].file == seg.path
    assert report.problems[0].offset == off, where
    assert report.problems[0].lsn == lsn - 1, where


def test_flipped_header_byte(copy: Path) -> None:
    """A damaged segment header is reported at offset 0 of that file."""
    seg = archived(copy)[3]
    flip(seg.path, 20)  # inside first_lsn
    report = lsnwal.verify(copy)
    assert not report.ok
    assert any(p.file == seg.path and p.offset == 0 for p in report.problems)


@pytest.mark.parametrize("which", ["middle", "newest"])
def test_damaged_seal_or_truncation_is_reported(copy: Path, which: str) -> None:
    """A segment cut short (its seal gone) is a problem naming it, in the middle or at the end."""
    segs = archived(copy)
    seg = segs[3] if which == "middle" else segs[-1]
    with open(seg.path, "r+b") as f:
        f.truncate(os.path.getsize(seg.path) - 7)
    report = lsnwal.verify(copy)
    assert not report.ok
    assert any(p.file == seg.path for p in report.problems)


def test_missing_middle_segment_is_a_gap(copy: Path) -> None:
    """A missing middle segment is a gap problem naming both neighbours."""
    segs = archived(copy)
    os.unlink(segs[5].path)
    report = lsnwal.verify(copy)
    assert not report.ok
    (gap,) = [p for p in report.problems if "gap" in p.message]
    assert gap.file == segs[6].path
    assert segs[4].path in gap.message
    assert gap.lsn == segs[4].last_lsn


def test_missing_oldest_segment_is_fine(copy: Path) -> None:
    """Without its oldest segment (pruned) the WAL still verifies, starting later."""
    segs = archived(copy)
    os.unlink(segs[0].path)
    report = lsnwal.verify(copy)
    assert report.ok, report.problems
    assert report.first_lsn == segs[1].first_lsn


@pytest.mark.parametrize(
    "damage",
    ["zero-length file", "garbage file", "foreign name", "all zeros", "swapped segments"],
)
def test_verify_never_raises(copy: Path, damage: str) -> None:
    """Odd files and wholesale damage give a report with problems, never an exception."""
    segs = archived(copy)
    mid = Path(segs[4].path)
    if damage == "zero-length file":
        mid.write_bytes(b"")
    elif damage == "garbage file":
        mid.write_bytes(os.urandom(3000))
    elif damage == "foreign name":
        # a segment stored under a name that claims another first LSN
        os.rename(mid, mid.with_name(f"{segs[4].first_lsn + 1:020d}.wal"))
    elif damage == "all zeros":
        mid.write_bytes(b"\0" * os.path.getsize(mid))
    else:
        a, b = Path(segs[2].path), Path(segs[3].path)
        tmp = a.with_suffix(".swap")
        os.rename(a, tmp)
        os.rename(b, a)
        os.rename(tmp, b)
    report = lsnwal.verify(copy)
    assert isinstance(report, lsnwal.VerifyReport)
    assert not report.ok
    assert report.problems and all(p.file for p in report.problems)


def test_verify_missing_directory(tmp_path: Path) -> None:
    """verify on a path that holds no WAL reports it instead of raising."""
    report = lsnwal.verify(tmp_path / "nothing-here")
    assert not report.ok
    assert report.problems


def test_verify_is_read_only(copy: Path) -> None:
    """verify changes no file, even with damage and a torn tail present."""
    extend_active(copy, 3, torn=True)  # a torn tail in the active segment
    seg = data_segments(copy)[2]
    flip(seg.path, record_offsets(seg, copy)[1][0] + R)
    before = hashes(copy)
    names_before = sorted(str(p) for p in copy.rglob("*"))
    lsnwal.verify(copy)
    assert hashes(copy) == before
    assert sorted(str(p) for p in copy.rglob("*")) == names_before


def test_torn_tail_outside_archive_is_a_warning(copy: Path) -> None:
    """A torn last record in the active segment is a warning (open() cuts it), not a problem."""
    last = lsnwal.verify(copy).last_lsn
    assert last is not None
    written = extend_active(copy, 3, torn=True)
    assert [lsn for _, lsn in written] == [last + 1, last + 2, last + 3]
    report = lsnwal.verify(copy)
    assert report.ok, report.problems
    assert report.warnings
    assert report.last_lsn == last + 3
    with lsnwal.open(copy) as wal:  # open agrees: the torn record is cut, the rest kept
        assert wal.current_lsn == last + 4


def test_corruption_in_active_segment_is_a_problem(copy: Path) -> None:
    """A flipped byte mid-active with good records after it is corruption, not a torn tail."""
    written = extend_active(copy, 5)
    off, lsn = written[1]
    flip(copy / "active.wal", off + R + 2)
    (copy / WATERMARK_NAME).unlink()  # no watermark: judged by the records that follow
    report = lsnwal.verify(copy)
    assert not report.ok
    assert report.problems[0].file == str(copy / "active.wal")
    assert report.problems[0].offset == off
    assert report.problems[0].lsn == lsn - 1


def test_duplicate_in_pending_with_same_content_is_fine(copy: Path) -> None:
    """The same segment in archive/ and pending/ (a crash mid-archive) verifies, counted once."""
    base = lsnwal.verify(copy)
    seg = archived(copy)[-1]
    shutil.copy(seg.path, copy / "pending" / os.path.basename(seg.path))
    report = lsnwal.verify(copy)
    assert report.ok, report.problems
    assert (report.records, report.segments, report.last_lsn) == (
        base.records, base.segments, base.last_lsn)
    assert any("duplicate" in w for w in report.warnings)


def test_duplicate_in_pending_with_different_content_is_a_problem(copy: Path) -> None:
    """A pending copy whose records differ from the archived segment is reported."""
    seg = archived(copy)[-1]
    data = bytearray(Path(seg.path).read_bytes())
    # change a payload byte and fix the record CRC: only a content comparison can tell
    ln = fmt.U32.unpack_from(data, H + 4)[0]
    data[H + R] ^= 0x01
    crc = fmt.crc32c(bytes(data[H + R : H + R + ln]), fmt.crc32c(bytes(data[H + 4 : H + R])))
    fmt.U32.pack_into(data, H, crc)
    dup = copy / "pending" / os.path.basename(seg.path)
    dup.write_bytes(bytes(data))
    report = lsnwal.verify(copy)
    assert not report.ok
    assert any(str(dup) in (p.file + p.message) for p in report.problems)


def test_verify_with_relocated_archive(tmp_path: Path) -> None:
    """verify uses the config's archive_dir and counts the records stored there."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_dir=str(tmp_path / "far"))
    with lsnwal.open(tmp_path / "wal", cfg) as wal:
        wal.append_batch([payload(i) for i in range(300)])
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
    report = lsnwal.verify(tmp_path / "wal", config=cfg)
    assert report.ok, report.problems
    assert report.records == 300
