"""Block CRCs in plain seals: the checked decoder agrees with the record-by-record one.

A sealed plain segment records the CRC32C of each index block; a reader that checks
a block with that one CRC decodes its records without their own CRCs. These tests
hold the two paths to one answer: on intact bytes (every record mix, truncation
point, batch limit and build mode) they must agree exactly; on damaged segments the
checked path must report the same damage, at the same record, as the per-record path
(a copy of the segment whose block CRCs are zeroed, the way lsnwal 0.1 wrote them);
and a block CRC that does not match leaves the decision to the records' own CRCs.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lsnwal
from lsnwal import format as fmt
from lsnwal import scanner, segment
from lsnwal.errors import WalCorruptionError
from lsnwal.fs import OsFileSystem
from lsnwal.names import segment_name

STRESS = os.environ.get("LSNWAL_STRESS") == "1"
H = fmt.HEADER_SIZE
MODES = (scanner.BUILD_TUPLES, scanner.BUILD_RECORDS, scanner.BUILD_RAW, scanner.BUILD_COUNT)

# --------------------------------------------------------------------------- the decoder


@st.composite
def segments(draw: st.DrawFn) -> tuple[bytes, int]:
    """Encoded records (DATA, CHECKPOINT, MARK; sizes 0..300), maybe sealed, maybe cut."""
    first = draw(st.integers(min_value=1, max_value=2**40))
    n = draw(st.integers(min_value=0, max_value=40))
    buf = bytearray()
    for i in range(n):
        kind = draw(st.sampled_from([1, 1, 1, 1, 2, 3]))
        if kind == 2:
            stored = fmt.encode_checkpoint_payload(draw(st.integers(0, 2**63)), b"s")
        elif kind == 3:
            stored = draw(st.text(min_size=1, max_size=20)).encode("utf-8")
        else:
            stored = draw(st.binary(max_size=300))
        fmt.encode_record(buf, first + i, kind, 1000.0 + i, stored)
    if draw(st.booleans()):  # sealed: the seal's offsets are relative to data[0] (base 0)
        seal = fmt.Seal(first + n - 1, n, 1000.0, 1000.0 + n, 0, len(buf), (), ())
        buf += fmt.encode_seal(seal)
    cut = draw(st.integers(min_value=0, max_value=len(buf)))
    if draw(st.booleans()):
        buf = buf[:cut]
    return bytes(buf), first


def decode(data: bytes, first: int, checked: bool, mode: int, batch: int | None, start: int = 0
           ) -> tuple[list[Any], str, int, bool, str, int, int | None]:
    """Everything a scan of ``data`` from ``start`` says, ``batch`` bytes of records at a time."""
    scan = scanner.RecordScanner(data, start, first, 0, checked=checked)
    items: list[Any] = []
    count = 0
    while True:
        items += scan.built(mode, None if batch is None else scan.pos + batch)
        count += scan.count
        if scan.verdict != scanner.END or scan.pos >= len(data) or batch is None:
            break
    return items, scan.verdict, scan.pos, scan.truncated, scan.reason, count, scan.last_lsn


@settings(max_examples=300, deadline=None)
@given(segments(), st.sampled_from(MODES), st.sampled_from([None, 1, 29, 200, 4096]))
def test_checked_decode_equals_the_full_decode(seg: tuple[bytes, int], mode: int,
                                               batch: int | None) -> None:
    """On intact bytes the checked decoder gives the full one's records, verdict, offset,
    reason, count and last LSN, in every build mode and at every batch limit."""
    data, first = seg
    want = decode(data, first, False, scanner.BUILD_TUPLES, None)
    got = decode(data, first, True, mode, batch)
    full = decode(data, first, False, mode, batch)
    assert got == full
    assert got[1:] == want[1:]
    tuples = want[0]
    if mode == scanner.BUILD_RECORDS:
        assert got[0] == [fmt.make_record(lsn, kind, ts, data[o + 28 : o + 28 + ln])
                          for o, lsn, kind, ts, ln in tuples]
        assert all(type(r) is fmt.Record for r in got[0])
    elif mode == scanner.BUILD_RAW:
        assert got[0] == [(lsn, data[o + 28 : o + 28 + ln])
                          for o, lsn, kind, _ts, ln in tuples if kind == 1]
    elif mode == scanner.BUILD_COUNT:
        assert got[0] == []
    else:
        assert got[0] == tuples


@settings(max_examples=200, deadline=None)
@given(segments(), st.sampled_from(MODES), st.data())
def test_checked_decode_from_any_record_or_past_the_end_equals_the_full_decode(
        seg: tuple[bytes, int], mode: int, data_: st.DataObject) -> None:
    """Started at any record boundary (a resume) or past the end of the data (a stale
    resume), the checked decoder says exactly what the full one says."""
    data, first = seg
    recs = decode(data, first, False, scanner.BUILD_TUPLES, None)[0]
    starts = [(o, lsn) for o, lsn, _k, _t, _l in recs] + [(len(data) + 1, first),
                                                           (len(data) + 40, first)]
    start, lsn = data_.draw(st.sampled_from(starts))
    batch = data_.draw(st.sampled_from([None, 1, 300]))
    assert decode(data, lsn, True, mode, batch, start) == \
        decode(data, lsn, False, mode, batch, start)


@settings(max_examples=300, deadline=None)
@given(segments(), st.data())
def test_checked_decode_of_damaged_bytes_stays_in_bounds(seg: tuple[bytes, int],
                                                         data_: st.DataObject) -> None:
    """Told (wrongly) that damaged bytes were checked, the decoder still ends, returns
    records inside the data with consecutive LSNs, and never more than the bytes hold."""
    data, first = seg
    if not data:
        return
    buf = bytearray(data)
    for _ in range(data_.draw(st.integers(1, 4))):
        i = data_.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= data_.draw(st.integers(1, 255))
    items, verdict, pos, _t, _r, count, last = decode(bytes(buf), first, True,
                                                      scanner.BUILD_TUPLES, 64)
    assert verdict in (scanner.END, scanner.SEALED, scanner.DAMAGED)
    assert 0 <= pos <= len(buf)
    assert [r[1] for r in items] == list(range(first, first + len(items)))
    assert count == len(items)
    assert all(o + 28 + ln <= len(buf) for o, _l, _k, _t, ln in items)
    assert last == (items[-1][1] if items else None)


# --------------------------------------------------------------------------- segments on disk


def payload(i: int) -> bytes:
    """A deterministic payload whose length varies with ``i``."""
    return b"blk-%05d|" % i + bytes([i % 251]) * (i * 13 % 150)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed WAL of archived 160 KiB plain segments holding 2-3 index blocks each."""
    root = tmp_path_factory.mktemp("blk") / "wal"
    with lsnwal.open(root, lsnwal.WalConfig(segment_max_bytes=160 * 1024)) as wal:
        for i in range(4000):
            wal.append(payload(i))
            if i % 700 == 5:
                wal.mark(f"m{i}")
            if i == 900:
                wal.checkpoint(800, payload=b"cp")
        wal.sync()
        wal.rotate()
        wal.sync()
        assert wal.wait_archived(10)
    return root


def archived(root: Path) -> list[Path]:
    return sorted((root / "archive").glob("*.wal"))


def seal_of(path: Path) -> fmt.Seal:
    fs = OsFileSystem()
    fd = fs.open_read(str(path))
    try:
        seal = segment.read_seal(fs, fd, fs.fsize(fd))
    finally:
        fs.close(fd)
    assert seal is not None
    return seal


def reseal(path: Path, seal: fmt.Seal) -> None:
    """Rewrite ``path``'s seal (same size: only CRC values change)."""
    data = path.read_bytes()
    new = fmt.encode_seal(seal)
    assert len(new) == len(data) - seal.data_end
    path.write_bytes(data[: seal.data_end] + new)


def zero_crcs(root: Path) -> None:
    """Make every archived seal look like lsnwal 0.1's: block CRCs not recorded."""
    for p in archived(root):
        s = seal_of(p)
        reseal(p, dataclasses.replace(
            s, blocks=tuple(dataclasses.replace(b, crc=0) for b in s.blocks)))


def outcome(root: Path) -> tuple[str, Any]:
    """What replay and verify say: the records (or the error) and the problems."""
    try:
        recs: Any = [(r.lsn, r.kind, r.payload) for r in lsnwal.replay(root)]
    except WalCorruptionError as exc:
        recs = ("error", Path(exc.path or "").name, exc.offset, exc.lsn, exc.reason)
    report = lsnwal.verify(root)
    problems = [(Path(p.file).name, p.offset, p.lsn, p.message) for p in report.problems]
    return repr(recs), (report.ok, report.records, problems)


def test_writer_records_a_crc_for_every_block(template: Path) -> None:
    """Every block of every sealed segment carries the CRC32C of its bytes."""
    blocks = 0
    for p in archived(template):
        data = p.read_bytes()
        seal = seal_of(p)
        assert fmt.blocks_tile(seal.blocks, seal.data_end)
        for b in seal.blocks:
            assert b.crc == fmt.crc32c(data[b.offset : b.offset + b.raw_len]) != 0
            blocks += 1
    assert blocks > len(archived(template)) >= 3


def test_zeroed_block_crcs_read_the_same_records(template: Path, tmp_path: Path) -> None:
    """A segment without block CRCs (lsnwal 0.1) reads record by record to the same records."""
    root = tmp_path / "wal"
    shutil.copytree(template, root)
    want = outcome(template)
    zero_crcs(root)
    assert outcome(root) == want
    assert want[1][0] and want[1][1] > 4000


@pytest.mark.parametrize("state", ["archive", "pending"])
def test_a_wrong_block_crc_leaves_the_decision_to_the_records(template: Path, tmp_path: Path,
                                                               state: str) -> None:
    """A seal whose block CRC does not match intact records: the records' CRCs decide
    (replay gives every record), and verify reports the seal's block, and nothing else."""
    root = tmp_path / "wal"
    shutil.copytree(template, root)
    want = outcome(template)
    p = archived(root)[1]
    if state == "pending":
        p = p.rename(root / "pending" / p.name)
        (root / "archive.index").unlink(missing_ok=True)
    s = seal_of(p)
    blocks = list(s.blocks)
    blocks[1] = dataclasses.replace(blocks[1], crc=blocks[1].crc ^ 1)
    reseal(p, dataclasses.replace(s, blocks=tuple(blocks)))
    recs, (ok, count, problems) = outcome(root)
    assert recs == want[0] and count == want[1][1] and not ok
    assert [pr[:3] for pr in problems] == [(p.name, blocks[1].offset, None)]
    assert "block's CRC" in problems[0][3]


def _flip_points(path: Path) -> list[int]:
    """Bytes to flip: every 29th under LSNWAL_STRESS=1 (about 5,000), ~40 spread over the
    blocks otherwise (the first and last byte of every block included)."""
    seal = seal_of(path)
    step = 29 if STRESS else max(1, (seal.data_end - H) // 40)
    edges = {b.offset for b in seal.blocks} | {b.offset + b.raw_len - 1 for b in seal.blocks}
    return sorted(set(range(H + 3, seal.data_end, step)) | edges)


def test_every_byte_flip_is_reported_as_the_per_record_path_reports_it(
        template: Path, tmp_path: Path) -> None:
    """A flipped byte in a block's records: replay raises and verify reports exactly what a
    copy without block CRCs (record-by-record checks) says — same file, offset and LSN."""
    target = archived(template)[1]
    name = target.name
    checked, plain = tmp_path / "checked", tmp_path / "plain"
    shutil.copytree(template, checked)
    shutil.copytree(template, plain)
    zero_crcs(plain)
    original = (checked / "archive" / name).read_bytes()
    original_plain = (plain / "archive" / name).read_bytes()
    cases = 0
    for i in _flip_points(target):
        for root, base in ((checked, original), (plain, original_plain)):
            bad = bytearray(base)
            bad[i] ^= 0x20
            (root / "archive" / name).write_bytes(bad)
        got, want = outcome(checked), outcome(plain)
        assert got == want, f"byte {i}"
        assert "error" in got[0] and not got[1][0], f"byte {i}: damage not reported"
        cases += 1
    assert cases >= 20


def test_a_recovered_segment_is_sealed_with_block_crcs(tmp_path: Path) -> None:
    """An active segment left unsealed (a crash, or a close) is sealed at open with its
    block CRCs computed from the records recovery kept."""
    root = tmp_path / "wal"
    cfg = lsnwal.WalConfig(archive_enabled=False)
    with lsnwal.open(root, cfg) as wal:
        for i in range(3000):
            wal.append(payload(i))
        wal.sync()
    assert fmt.decode_trailer((root / "active.wal").read_bytes()) is None  # not sealed
    with lsnwal.open(root, cfg) as wal2:
        assert wal2.last_lsn == 3000
    sealed = next(p for p in (root / "pending" / segment_name(1),
                              root / "archive" / segment_name(1)) if p.exists())
    seal = seal_of(sealed)
    data = sealed.read_bytes()
    assert len(seal.blocks) > 1
    assert all(b.crc == fmt.crc32c(data[b.offset : b.offset + b.raw_len]) != 0
               for b in seal.blocks)
    assert [r.payload for r in lsnwal.replay(root)] == [payload(i) for i in range(3000)]


# --------------------------------------------------------------------------- review findings


def test_a_start_past_the_data_is_a_truncated_header_in_every_mode() -> None:
    """Starting past the end (a stale resume offset) is "truncated record header" for the
    checked decoder too, in every build mode: no exception, no negative count."""
    buf = bytearray()
    for i in range(4):
        fmt.encode_record(buf, 1 + i, 1, 1.0, b"z" * (10 + i))
    data = bytes(buf)
    for extra in (1, 8, 28, 100):
        for mode in MODES:
            for checked in (True, False):
                scan = scanner.RecordScanner(data, len(data) + extra, 5, 0, checked=checked)
                items = scan.built(mode)
                assert (items, scan.count, scan.last_lsn) == ([], 0, None), (extra, mode)
                assert (scan.verdict, scan.truncated) == (scanner.DAMAGED, True)
                assert scan.reason == "truncated record header"


def _segment_file(tmp_path: Path, n: int, cut_back: int) -> tuple[Path, bytes]:
    buf = bytearray(fmt.encode_segment_header(1, 1.0))
    for i in range(n):
        fmt.encode_record(buf, 1 + i, 1, 1.0, b"y" * 100)
    path = tmp_path / "seg.wal"
    path.write_bytes(bytes(buf[: len(buf) - cut_back]))
    return path, bytes(buf)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cut_back", [0, 1, 50, 128, 129, 4000])
def test_a_file_shorter_than_the_size_given_ends_the_read(tmp_path: Path, cut_back: int) -> None:
    """plain_chunks told a size larger than the file (it was cut after fsize was read) ends
    with the records that are there and says where they end, instead of spinning."""
    path, full = _segment_file(tmp_path, 20_000, cut_back)
    fs = OsFileSystem()
    fd = fs.open_read(str(path))
    try:
        end = segment.ScanEnd()
        count = sum(c.count for c in segment.plain_chunks(fs, fd, len(full), 1, end))
    finally:
        fs.close(fd)
    whole = (path.stat().st_size - H) // 128
    assert count == whole and end.last_lsn == (whole or None)
    assert end.offset == H + 128 * whole
    assert end.verdict == (scanner.END if (path.stat().st_size - H) % 128 == 0
                           else scanner.DAMAGED)


def test_a_pending_segment_cut_while_it_is_read_gives_every_record_before_the_cut(
        tmp_path: Path) -> None:
    """A sealed pending segment cut (by another process) between its seal read and a block
    read: replay gives every record still in the file, then reports the loss as a gap."""
    from lsnwal.reader import WalReader

    root = tmp_path / "wal"
    with lsnwal.open(root, lsnwal.WalConfig(segment_max_bytes=8 << 20,
                                            archive_enabled=False)) as w:
        for _ in range(30):
            w.append_batch([b"x" * 100] * 1000)
        w.sync()
        w.rotate()
        w.sync()
    for p in (root / "archive").glob("*.wal"):
        os.rename(p, root / "pending" / p.name)
    (root / "archive.index").unlink(missing_ok=True)
    seg = root / "pending" / segment_name(1)
    data = seg.read_bytes()
    seal = seal_of(seg)
    second = next(b for b in seal.blocks if b.offset >= H + segment.CHUNK_BYTES)
    cut, last = second.offset, second.first_lsn - 1
    while cut < second.offset + 300_000:  # a record boundary inside the second read
        cut += 28 + fmt.U32.unpack_from(data, cut + 4)[0]
        last += 1

    class CuttingFs(OsFileSystem):
        done = False

        def pread(self, fd: int, size: int, offset: int) -> bytes:
            if offset == second.offset and size > 1000 and not self.done:
                self.done = True
                os.truncate(seg, cut)  # the concurrent cut
            return super().pread(fd, size, offset)

    got: list[int] = []
    with pytest.raises(WalCorruptionError, match="LSN gap") as info:
        for r in WalReader(root, None, fs=CuttingFs()).replay():
            got.append(r.lsn)
    assert got == list(range(1, last + 1)) and info.value.lsn == last


def test_a_replay_closed_early_releases_its_segment(template: Path) -> None:
    """replay() and iter_raw() can be closed like generators: the open segment is released
    at once and nothing more is yielded."""
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = fds()
    for it in (lsnwal.replay(template), lsnwal.open_reader(template).iter_raw()):
        assert next(it) is not None
        assert fds() == before + 1
        it.close()  # type: ignore[attr-defined]
        assert fds() == before and list(it) == []
        it.close()  # type: ignore[attr-defined]  # idempotent
