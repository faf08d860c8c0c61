"""Recovery: segment collection, continuity, torn tails, corruption and what open() reads.

WAL states are built on the real disk with lsnwal, then damaged with plain file
I/O at offsets computed from ``lsnwal.format`` constants. Recovered records are
compared byte for byte with what was written.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import random
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

import lsnwal
from lsnwal import WalConfig, WalCorruptionError
from lsnwal import format as fmt
from lsnwal.fs import OsFileSystem, OsSyncBackend
from lsnwal.names import segment_name
from lsnwal.spares import SPARE_PREFIX, SPARE_SUFFIX
from lsnwal.watermark import WATERMARK_NAME

SMALL = WalConfig(segment_max_bytes=4096)
MODES = ("strict", "tolerate_tail", "stop_at_corruption")


def cfg_for(mode: str, base: WalConfig = SMALL) -> WalConfig:
    """``base`` with recovery_mode ``mode``."""
    return base.replace(recovery_mode=mode)


# --------------------------------------------------------------------------- helpers


def layout(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """``(offset, lsn, end)`` of each user record in a plain segment image, and the data end.

    Walks the record headers directly (length at +4, LSN at +8, kind at +24), so the
    test does not rely on the decoder it checks.
    """
    off = fmt.HEADER_SIZE
    out = []
    while off + fmt.RECORD_HEADER_SIZE <= len(data):
        length, lsn = struct.unpack_from("<IQ", data, off + 4)
        if data[off + 24] == fmt.SEAL_KIND:
            break
        end = off + fmt.RECORD_HEADER_SIZE + length
        out.append((off, lsn, end))
        off = end
    return out, off


def header_first_lsn(path: Path | str) -> int:
    """The first LSN stored in a segment's header (bytes 16..24)."""
    with open(path, "rb") as f:
        head = f.read(fmt.HEADER_SIZE)
    assert head[:8] == fmt.MAGIC
    return int(struct.unpack_from("<Q", head, 16)[0])


def flip(path: Path, offset: int) -> None:
    """Invert every bit of the byte at ``offset``."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (empty pre-created spare files left out)."""
    out: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(SPARE_PREFIX) and name.endswith(SPARE_SUFFIX):
                continue
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def payloads_of(root: Path, config: WalConfig = SMALL) -> list[bytes]:
    """Payloads of every record of the WAL, in LSN order (LSNs checked gap-free from 1)."""
    recs = list(lsnwal.replay(root, config=config))
    assert [r.lsn for r in recs] == list(range(1, len(recs) + 1))
    return [r.payload for r in recs]


def archived(root: Path) -> list[Path]:
    """Archived segment files, oldest first."""
    return sorted((root / "archive").glob("*.wal"))


def pending(root: Path) -> list[Path]:
    """Pending segment files, oldest first."""
    return sorted((root / "pending").glob("*.wal"))


class NoSync(OsSyncBackend):
    """A backend that skips fsync: only used to build big test fixtures quickly."""

    def sync_file(self, fd: int) -> None:
        """Do nothing."""

    def sync_dir(self, fd: int) -> None:
        """Do nothing."""


# --------------------------------------------------------------------------- templates

TAIL_PAYLOADS = [b"first record", bytes(range(256)) * 2, b"", b"\x00" * 33, b"L" * 40]


@pytest.fixture(scope="module")
def tail_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed WAL whose active segment holds the five TAIL_PAYLOADS (no seal)."""
    root = tmp_path_factory.mktemp("tail") / "wal"
    with lsnwal.open(root) as wal:
        for p in TAIL_PAYLOADS:
            wal.append(p)
    # No published watermark (a WAL from before 0.2, or one lost): recovery falls back to
    # "damage with nothing valid after it is a torn tail" (test_recovery_watermark.py
    # covers the rule with a watermark).
    (root / WATERMARK_NAME).unlink()
    return root


def _multi_payloads() -> list[bytes]:
    rng = random.Random(7)
    return [rng.randbytes(rng.randrange(60, 260)) for _ in range(120)] + [
        b"tail-%d" % i for i in range(6)
    ]


MULTI_PAYLOADS = _multi_payloads()


@pytest.fixture(scope="module")
def multi_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed WAL with several archived 4 KiB segments and six records in the active one."""
    root = tmp_path_factory.mktemp("multi") / "wal"
    with lsnwal.open(root, SMALL) as wal:
        wal.append_batch(MULTI_PAYLOADS[:120])
        wal.rotate()
        wal.sync()
        wal.append_batch(MULTI_PAYLOADS[120:])
        assert wal.wait_archived(timeout=10)
    assert len(archived(root)) >= 5
    assert layout((root / "active.wal").read_bytes())[0][0][1] == 121
    (root / WATERMARK_NAME).unlink()  # the fallback rule, as in tail_template
    return root


def copy_of(template: Path, tmp_path: Path) -> Path:
    """A private copy of a template WAL directory."""
    root = tmp_path / "wal"
    shutil.copytree(template, root)
    return root


def to_pending(root: Path, count: int) -> list[Path]:
    """Move the newest ``count`` archived segments back to pending/ (a crash before archiving)."""
    moved = []
    for src in archived(root)[-count:]:
        dst = root / "pending" / src.name
        os.rename(src, dst)
        moved.append(dst)
    return moved


# --------------------------------------------------------------------------- collect_all_segments


def test_collect_orders_by_header_and_chains(multi_template: Path, tmp_path: Path) -> None:
    """collect_all_segments lists archive, pending, active in header-LSN order without gaps."""
    root = copy_of(multi_template, tmp_path)
    to_pending(root, 2)
    segs = lsnwal.collect_all_segments(root, SMALL)
    states = [s.state for s in segs]
    assert states == ["archive"] * (len(segs) - 3) + ["pending", "pending", "active"]
    assert segs[0].first_lsn == 1
    assert segs[-1].last_lsn == len(MULTI_PAYLOADS)
    for a, b in itertools.pairwise(segs):
        assert b.first_lsn == a.last_lsn + 1
    for s in segs:
        assert s.first_lsn == header_first_lsn(s.path)
        assert s.size_bytes == os.path.getsize(s.path)
        assert not s.compressed
        if s.state != "active":
            assert os.path.basename(s.path) == segment_name(s.first_lsn)


def test_collect_changes_nothing(multi_template: Path, tmp_path: Path) -> None:
    """collect_all_segments is read-only even when the tail is torn."""
    root = copy_of(multi_template, tmp_path)
    with open(root / "active.wal", "ab") as f:
        f.write(b"\x01garbage")
    before = snapshot(root)
    lsnwal.collect_all_segments(root, SMALL)
    assert snapshot(root) == before


def test_names_that_lie_in_the_archive_are_an_error(multi_template: Path, tmp_path: Path) -> None:
    """Two archived segments with swapped names raise WalCorruptionError naming a swapped file."""
    root = copy_of(multi_template, tmp_path)
    a, b = archived(root)[1], archived(root)[2]
    tmp = a.with_name("swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    with pytest.raises(WalCorruptionError) as info:
        lsnwal.collect_all_segments(root, SMALL)
    assert info.value.path in (str(a), str(b))
    assert "header" in str(info.value)


@pytest.mark.parametrize("mode", MODES)
def test_pending_name_that_lies_is_an_error(
    multi_template: Path, tmp_path: Path, mode: str
) -> None:
    """A pending segment whose name disagrees with its header is refused by open(), naming it."""
    root = copy_of(multi_template, tmp_path)
    (seg,) = to_pending(root, 1)
    liar = seg.with_name(segment_name(header_first_lsn(seg) + 1))
    os.rename(seg, liar)
    with pytest.raises(WalCorruptionError) as info:
        lsnwal.open(root, cfg_for(mode))
    assert info.value.path == str(liar)
    with pytest.raises(WalCorruptionError):
        lsnwal.collect_all_segments(root, SMALL)


# --------------------------------------------------------------------------- gaps and overlaps


def forge_segment(first_lsn: int, payloads: list[bytes], ts: float = 1.0e9) -> bytes:
    """A sealed plain segment holding ``payloads`` from ``first_lsn`` (built with the codec)."""
    buf = bytearray(fmt.encode_segment_header(first_lsn, ts))
    for i, p in enumerate(payloads):
        fmt.encode_record(buf, first_lsn + i, int(lsnwal.RecordKind.DATA), ts, p)
    seal = fmt.Seal(first_lsn + len(payloads) - 1, len(payloads), ts, ts, 0, len(buf))
    return bytes(buf) + fmt.encode_seal(seal)


def _gap_in_archive(root: Path) -> tuple[Path, Path, Callable[[], object]]:
    segs = archived(root)
    segs[2].unlink()
    return segs[1], segs[3], lambda: lsnwal.collect_all_segments(root, SMALL)


def _gap_archive_to_pending(root: Path) -> tuple[Path, Path, Callable[[], object]]:
    moved = to_pending(root, 2)
    moved[0].unlink()
    return archived(root)[-1], moved[1], lambda: lsnwal.open(root, SMALL)


def _gap_between_pending(root: Path) -> tuple[Path, Path, Callable[[], object]]:
    moved = to_pending(root, 3)
    moved[1].unlink()
    return moved[0], moved[2], lambda: lsnwal.open(root, SMALL)


def _gap_pending_to_active(root: Path) -> tuple[Path, Path, Callable[[], object]]:
    moved = to_pending(root, 2)
    moved[1].unlink()
    return moved[0], root / "active.wal", lambda: lsnwal.open(root, SMALL)


def _overlap_archive_to_pending(root: Path) -> tuple[Path, Path, Callable[[], object]]:
    tail = archived(root)[-1]
    last = layout(tail.read_bytes())[0][-1][1]
    # a different segment that starts inside the archived tail's LSN range
    forged = root / "pending" / segment_name(last - 1)
    forged.write_bytes(forge_segment(last - 1, [b"x", b"y", b"z"]))
    return tail, forged, lambda: lsnwal.open(root, SMALL)


def _overlap_between_pending(root: Path) -> tuple[Path, Path, Callable[[], object]]:
    moved = to_pending(root, 2)
    a_last = layout(moved[0].read_bytes())[0][-1][1]
    data = moved[1].read_bytes()
    moved[1].unlink()
    forged = root / "pending" / segment_name(a_last)
    n = len(layout(data)[0])
    forged.write_bytes(forge_segment(a_last, [b"o"] * n))
    return moved[0], forged, lambda: lsnwal.open(root, SMALL)


def _overlap_in_archive(root: Path) -> tuple[Path, Path, Callable[[], object]]:
    segs = archived(root)
    first = header_first_lsn(segs[3])
    segs[3].unlink()
    forged = segs[3].with_name(segment_name(first - 2))
    forged.write_bytes(forge_segment(first - 2, [b"o"] * 30))
    return segs[2], forged, lambda: lsnwal.collect_all_segments(root, SMALL)


CONTINUITY_CASES = {
    "gap-in-archive": _gap_in_archive,
    "gap-archive-to-pending": _gap_archive_to_pending,
    "gap-between-pending": _gap_between_pending,
    "gap-pending-to-active": _gap_pending_to_active,
    "overlap-archive-to-pending": _overlap_archive_to_pending,
    "overlap-between-pending": _overlap_between_pending,
    "overlap-in-archive": _overlap_in_archive,
}


@pytest.mark.parametrize("case", CONTINUITY_CASES)
def test_gap_or_overlap_names_both_files(multi_template: Path, tmp_path: Path, case: str) -> None:
    """A gap or an overlap between segments raises WalCorruptionError naming both neighbours."""
    root = copy_of(multi_template, tmp_path)
    prev, nxt, call = CONTINUITY_CASES[case](root)
    before = snapshot(root)
    with pytest.raises(WalCorruptionError) as info:
        call()
    msg = str(info.value)
    assert str(prev) in msg
    assert str(nxt) in msg
    assert ("gap" if case.startswith("gap") else "overlap") in msg
    assert snapshot(root) == before  # refusing to open changes nothing
    # and the full check finds it too
    with pytest.raises(WalCorruptionError):
        lsnwal.collect_all_segments(root, SMALL)


def test_gap_in_archive_is_reported_by_replay_and_verify(
    multi_template: Path, tmp_path: Path
) -> None:
    """A missing archived segment is reported by replay and verify with the file after the gap."""
    root = copy_of(multi_template, tmp_path)
    _prev, nxt, _ = _gap_in_archive(root)
    with pytest.raises(WalCorruptionError) as info:
        list(lsnwal.replay(root, config=SMALL))
    assert info.value.path == str(nxt)
    report = lsnwal.verify(root, config=SMALL)
    assert not report.ok
    assert str(nxt) in {p.file for p in report.problems}


# --------------------------------------------------------------------------- duplicates


@pytest.mark.parametrize("which", [-1, 2])
def test_same_segment_in_archive_and_pending_counted_once(
    multi_template: Path, tmp_path: Path, which: int
) -> None:
    """A byte-identical copy of an archived segment in pending/ is counted once and removed."""
    root = copy_of(multi_template, tmp_path)
    src = archived(root)[which]
    dup = root / "pending" / src.name
    shutil.copyfile(src, dup)
    segs = lsnwal.collect_all_segments(root, SMALL)
    firsts = [s.first_lsn for s in segs]
    assert len(firsts) == len(set(firsts))
    for a, b in itertools.pairwise(segs):
        assert b.first_lsn == a.last_lsn + 1
    with lsnwal.open(root, SMALL) as wal:
        assert wal.last_lsn == len(MULTI_PAYLOADS)
        assert not dup.exists()
        assert src.exists()
        assert any("duplicate" in line and str(dup) in line for line in wal.recovery_report)
        wal.append(b"next")
    assert payloads_of(root) == [*MULTI_PAYLOADS, b"next"]


# --------------------------------------------------------------------------- torn tails


def _truncate_in_header(d: bytes, r: list[tuple[int, int, int]]) -> tuple[bytes, int, int]:
    s = r[-1][0]
    return d[: s + 11], s, 4


def _set_lsn(d: bytes, s: int, lsn: int) -> bytes:
    """The image with the record at ``s`` re-labelled with ``lsn`` (and a valid CRC)."""
    b = bytearray(d)
    struct.pack_into("<Q", b, s + 8, lsn)
    length = struct.unpack_from("<I", b, s + 4)[0]
    end = s + fmt.RECORD_HEADER_SIZE + length
    struct.pack_into("<I", b, s, fmt.crc32c(bytes(b[s + 4 : end])))
    return bytes(b)


def _flip_at(d: bytes, off: int) -> bytes:
    b = bytearray(d)
    b[off] ^= 0x40
    return bytes(b)


_RNG_BYTES = random.Random(11).randbytes(3000)

# name -> damage(image, records) -> (damaged image, offset of the cut, records kept)
TAIL_CASES: dict[str, Callable[[bytes, list[tuple[int, int, int]]], tuple[bytes, int, int]]] = {
    "zeros-appended": lambda d, r: (d + bytes(4096), r[-1][2], 5),
    "few-zeros-appended": lambda d, r: (d + bytes(7), r[-1][2], 5),
    "last-record-zero-filled": lambda d, r: (d[: r[-1][0]] + bytes(len(d) - r[-1][0]), r[-1][0], 4),
    "last-record-zero-filled-and-padded": lambda d, r: (
        d[: r[-1][0]] + bytes(len(d) - r[-1][0] + 5000),
        r[-1][0],
        4,
    ),
    "garbage-appended": lambda d, r: (d + _RNG_BYTES, r[-1][2], 5),
    "one-garbage-byte-appended": lambda d, r: (d + b"\x07", r[-1][2], 5),
    "garbage-after-partial-record": lambda d, r: (
        d[: r[-1][0] + 10] + _RNG_BYTES[:500],
        r[-1][0],
        4,
    ),
    "partial-record-header": _truncate_in_header,
    "last-payload-byte-flipped": lambda d, r: (_flip_at(d, r[-1][2] - 3), r[-1][0], 4),
    "last-crc-flipped": lambda d, r: (_flip_at(d, r[-1][0]), r[-1][0], 4),
    "last-length-too-big": lambda d, r: (
        d[: r[-1][0] + 4] + struct.pack("<I", 10**6) + d[r[-1][0] + 8 :],
        r[-1][0],
        4,
    ),
    "last-record-wrong-lsn": lambda d, r: (_set_lsn(d, r[-1][0], 99), r[-1][0], 4),
    "stale-record-after-end": lambda d, r: (d + d[r[0][0] : r[0][2]], r[-1][2], 5),
}


def _tail_case(template: Path, tmp_path: Path, where: str) -> tuple[Path, Path, bytes]:
    """A copy of the tail template whose newest segment is the active file or a pending one."""
    root = copy_of(template, tmp_path)
    seg = root / "active.wal"
    if where == "pending":
        # crash between "rename active into pending/" and "create the next active"
        dst = root / "pending" / segment_name(1)
        os.rename(seg, dst)
        seg = dst
    return root, seg, seg.read_bytes()


def check_cut(
    root: Path, seg: Path, damaged: bytes, cut: int, kept: int, mode: str = "tolerate_tail"
) -> None:
    """Open cuts ``seg`` at ``cut``, keeps the cut bytes in .broken and ``kept`` records."""
    config = WalConfig(recovery_mode=mode)  # type: ignore[arg-type]
    with lsnwal.open(root, config) as wal:
        assert wal.last_lsn == kept
        report = "\n".join(wal.recovery_report)
        assert "cut" in report
        assert str(seg) in report
        assert f"offset {cut}" in report
        assert wal.append(b"after recovery") == kept + 1
        assert wal.wait_archived(timeout=10)
    broken = Path(str(seg) + ".broken")
    assert broken.read_bytes() == damaged[cut:]
    assert payloads_of(root, config) == [*TAIL_PAYLOADS[:kept], b"after recovery"]


def check_strict_refuses(root: Path, seg: Path, cut: int, kept: int) -> None:
    """Strict open raises with path, offset and last good LSN, and changes nothing."""
    before = snapshot(root)
    with pytest.raises(WalCorruptionError) as info:
        lsnwal.open(root, WalConfig(recovery_mode="strict"))
    exc = info.value
    assert (exc.path, exc.offset, exc.lsn) == (str(seg), cut, kept)
    assert str(seg) in str(exc)
    assert snapshot(root) == before


@pytest.mark.parametrize("where", ["active", "pending"])
@pytest.mark.parametrize("case", TAIL_CASES)
def test_torn_tail_is_cut(tail_template: Path, tmp_path: Path, case: str, where: str) -> None:
    """A damaged end of the newest segment is cut in tolerate_tail, kept as .broken, reported."""
    root, seg, image = _tail_case(tail_template, tmp_path, where)
    recs, end = layout(image)
    assert [lsn for _, lsn, _ in recs] == [1, 2, 3, 4, 5] and end == len(image)
    damaged, cut, kept = TAIL_CASES[case](image, recs)
    seg.write_bytes(damaged)
    check_cut(root, seg, damaged, cut, kept)


@pytest.mark.parametrize("where", ["active", "pending"])
@pytest.mark.parametrize("case", TAIL_CASES)
def test_torn_tail_strict(tail_template: Path, tmp_path: Path, case: str, where: str) -> None:
    """In strict mode every torn tail raises WalCorruptionError at the exact offset and LSN."""
    root, seg, image = _tail_case(tail_template, tmp_path, where)
    damaged, cut, kept = TAIL_CASES[case](image, layout(image)[0])
    seg.write_bytes(damaged)
    check_strict_refuses(root, seg, cut, kept)
    # the refused open released the lock; stop_at_corruption cuts the same way
    check_cut(root, seg, damaged, cut, kept, mode="stop_at_corruption")


@pytest.mark.parametrize("where", ["active", "pending"])
def test_truncation_at_every_offset_of_the_last_record(
    tail_template: Path, tmp_path: Path, where: str
) -> None:
    """Truncating inside the last record at any offset cuts back to the record before it."""
    image = (tail_template / "active.wal").read_bytes()
    start, _lsn, end = layout(image)[0][-1]
    for n, size in enumerate(range(start + 1, end)):
        root, seg, _ = _tail_case(tail_template, tmp_path / f"t{n}", where)
        damaged = image[:size]
        seg.write_bytes(damaged)
        check_strict_refuses(root, seg, start, 4)
        check_cut(root, seg, damaged, start, 4)


def test_truncation_at_record_boundaries_is_a_clean_end(
    tail_template: Path, tmp_path: Path
) -> None:
    """Truncating exactly at a record boundary is no damage: even strict mode opens it."""
    image = (tail_template / "active.wal").read_bytes()
    for n, (start, lsn, _end) in enumerate(layout(image)[0]):
        root, seg, _ = _tail_case(tail_template, tmp_path / f"b{n}", "active")
        seg.write_bytes(image[:start])
        with lsnwal.open(root, WalConfig(recovery_mode="strict")) as wal:
            assert wal.last_lsn == lsn - 1
            assert not any("cut" in line for line in wal.recovery_report)
        assert not Path(str(seg) + ".broken").exists()
        assert payloads_of(root) == TAIL_PAYLOADS[: lsn - 1]


def test_torn_seal_of_newest_pending_segment(multi_template: Path, tmp_path: Path) -> None:
    """A newest pending segment whose seal is torn keeps all its records; the seal bytes go."""
    root = copy_of(multi_template, tmp_path)
    (root / "active.wal").unlink()  # crash before the next active file was created
    (seg,) = to_pending(root, 1)
    image = seg.read_bytes()
    _recs, data_end = layout(image)
    for size in (data_end + 5, len(image) - 1):
        damaged = image[:size]
        seg.write_bytes(damaged)
        with pytest.raises(WalCorruptionError) as info:
            lsnwal.open(root, cfg_for("strict"))
        assert (info.value.path, info.value.offset) == (str(seg), data_end)
    with lsnwal.open(root, SMALL) as wal:
        assert wal.last_lsn == 120
        assert any("cut" in line for line in wal.recovery_report)
        assert wal.append(b"on") == 121
    assert Path(str(seg) + ".broken").read_bytes() == damaged[data_end:]
    assert payloads_of(root) == [*MULTI_PAYLOADS[:120], b"on"]


@pytest.mark.parametrize("size", [0, 1, 20, fmt.HEADER_SIZE - 1])
def test_pending_segment_with_torn_header(multi_template: Path, tmp_path: Path, size: int) -> None:
    """A newest pending segment whose header is torn is set aside (kept as .broken), not read."""
    root = copy_of(multi_template, tmp_path)
    (root / "active.wal").unlink()
    (seg,) = to_pending(root, 1)
    first = header_first_lsn(seg)
    torn = seg.read_bytes()[:size]
    seg.write_bytes(torn)
    with pytest.raises(WalCorruptionError) as info:
        lsnwal.open(root, cfg_for("strict"))
    assert (info.value.path, info.value.offset, info.value.lsn) == (str(seg), 0, first - 1)
    with lsnwal.open(root, SMALL) as wal:
        assert wal.last_lsn == first - 1
        assert any(str(seg) in line for line in wal.recovery_report)
        assert wal.append(b"resumed") == first
    assert not seg.exists()
    assert Path(str(seg) + ".broken").read_bytes() == torn
    assert payloads_of(root) == [*MULTI_PAYLOADS[: first - 1], b"resumed"]


@pytest.mark.parametrize("size", [0, 9, fmt.HEADER_SIZE - 1])
def test_active_file_with_torn_header(multi_template: Path, tmp_path: Path, size: int) -> None:
    """An active file torn inside its header (crash right after creation) is set aside
    (an empty one, which holds no evidence, is removed)."""
    root = copy_of(multi_template, tmp_path)
    seg = root / "active.wal"
    seg.unlink()
    torn = fmt.encode_segment_header(121, 1.0e9)[:size]
    seg.write_bytes(torn)
    with pytest.raises(WalCorruptionError) as info:
        lsnwal.open(root, cfg_for("strict"))
    assert (info.value.path, info.value.offset, info.value.lsn) == (str(seg), 0, 120)
    with lsnwal.open(root, SMALL) as wal:
        assert wal.last_lsn == 120
        assert wal.append(b"next") == 121
    if size == 0:
        assert not Path(str(seg) + ".broken").exists()
    else:
        assert Path(str(seg) + ".broken").read_bytes() == torn
    assert payloads_of(root) == [*MULTI_PAYLOADS[:120], b"next"]


def test_second_cut_keeps_the_first_evidence(tail_template: Path, tmp_path: Path) -> None:
    """Two torn tails of the same file in a row leave two distinct .broken files."""
    root, seg, image = _tail_case(tail_template, tmp_path, "active")
    seg.write_bytes(image + b"first junk")
    with lsnwal.open(root) as wal:
        assert wal.last_lsn == 5
    with lsnwal.open(root) as wal:
        wal.append(b"six")
    with open(seg, "ab") as f:
        f.write(b"second junk")
    with lsnwal.open(root) as wal:
        assert wal.last_lsn == 6
    assert Path(str(seg) + ".broken").read_bytes() == b"first junk"
    assert Path(str(seg) + ".broken.1").read_bytes() == b"second junk"
    assert payloads_of(root) == [*TAIL_PAYLOADS, b"six"]


# --------------------------------------------------------------------------- corruption


def _mid_active(root: Path) -> tuple[Path, int]:
    return root / "active.wal", 2  # the third record of six


def _mid_pending(root: Path) -> tuple[Path, int]:
    seg = to_pending(root, 3)[0]
    return seg, len(layout(seg.read_bytes())[0]) // 2


def _first_of_newest_pending(root: Path) -> tuple[Path, int]:
    seg = to_pending(root, 2)[1]
    return seg, 0


def _last_of_older_pending(root: Path) -> tuple[Path, int]:
    seg = to_pending(root, 2)[0]
    return seg, len(layout(seg.read_bytes())[0]) - 1


CORRUPTION_PLACES: dict[str, Callable[[Path], tuple[Path, int]]] = {
    "active-middle": _mid_active,
    "pending-middle": _mid_pending,
    "newest-pending-first-record": _first_of_newest_pending,
    "older-pending-last-record": _last_of_older_pending,
}
# which byte of the record to flip, relative to its start
CORRUPTION_BYTES = {"payload": fmt.RECORD_HEADER_SIZE + 3, "crc": 1, "length": 5, "lsn": 9}


@pytest.mark.parametrize("byte", CORRUPTION_BYTES)
@pytest.mark.parametrize("place", CORRUPTION_PLACES)
def test_flipped_byte_mid_segment(
    multi_template: Path, tmp_path: Path, place: str, byte: str
) -> None:
    """Corruption followed by valid records raises in strict and tolerate_tail, cuts otherwise."""
    root = copy_of(multi_template, tmp_path)
    seg, index = CORRUPTION_PLACES[place](root)
    start, lsn, _end = layout(seg.read_bytes())[0][index]
    flip(seg, start + CORRUPTION_BYTES[byte])
    damaged = seg.read_bytes()
    before = snapshot(root)
    for mode in ("strict", "tolerate_tail"):
        with pytest.raises(WalCorruptionError) as info:
            lsnwal.open(root, cfg_for(mode))
        exc = info.value
        assert (exc.path, exc.offset, exc.lsn) == (str(seg), start, lsn - 1)
        assert snapshot(root) == before
    later = (
        []
        if seg.name == "active.wal"
        else [*(p for p in pending(root) if p.name > seg.name), root / "active.wal"]
    )
    with lsnwal.open(root, cfg_for("stop_at_corruption")) as wal:
        assert wal.last_lsn == lsn - 1
        assert any("cut" in line and str(seg) in line for line in wal.recovery_report)
        assert wal.append(b"continued") == lsn
    assert Path(str(seg) + ".broken").read_bytes() == damaged[start:]
    for p in later:  # every later non-archived segment is kept aside as evidence
        assert Path(str(p) + ".broken").exists()
    assert payloads_of(root) == [*MULTI_PAYLOADS[: lsn - 1], b"continued"]


@pytest.mark.parametrize("where", ["active", "pending"])
def test_flipped_header_byte_is_corruption(tmp_path: Path, where: str) -> None:
    """A damaged header in front of valid, synced records is corruption, never a torn tail."""
    root = tmp_path / "wal"
    with lsnwal.open(root) as wal:
        wal.append_batch([b"a"] * 1100)  # LSNs past the first 1024
        assert wal.wait_archived(timeout=10)
    with lsnwal.open(root) as wal:
        wal.append_batch([b"b" * 10] * 50)
        assert wal.sync() == 1150
    seg = root / "active.wal"
    assert header_first_lsn(seg) == 1101
    if where == "pending":
        os.rename(seg, root / "pending" / segment_name(1101))
        seg = root / "pending" / segment_name(1101)
    flip(seg, 20)
    before = snapshot(root)
    for mode in ("strict", "tolerate_tail"):
        with pytest.raises(WalCorruptionError) as info:
            lsnwal.open(root, cfg_for(mode, WalConfig()))
        assert (info.value.path, info.value.offset, info.value.lsn) == (str(seg), 0, 1100)
        assert snapshot(root) == before


# --------------------------------------------------------------------------- archived segments


def _archived_record(root: Path, seg_index: int, rec_index: int) -> tuple[Path, int, int]:
    seg = archived(root)[seg_index]
    start, lsn, _ = layout(seg.read_bytes())[0][rec_index]
    return seg, start, lsn


@pytest.mark.parametrize(
    ("seg_index", "rec_index"),
    [(2, 5), (0, 0), (-1, 3), (-1, -1)],
    ids=["middle", "first-record-of-first", "newest-archived", "last-record-of-newest"],
)
def test_damage_inside_archived_segment(
    multi_template: Path, tmp_path: Path, seg_index: int, rec_index: int
) -> None:
    """Open ignores record damage inside archived segments; replay and verify report it exactly."""
    root = copy_of(multi_template, tmp_path)
    seg, start, lsn = _archived_record(root, seg_index, rec_index)
    flip(seg, start + fmt.RECORD_HEADER_SIZE + 1)
    for mode in MODES:
        with lsnwal.open(root, cfg_for(mode)) as wal:
            assert wal.last_lsn == len(MULTI_PAYLOADS)
            assert wal.recovery_report == []
    with lsnwal.open(root, SMALL) as wal:
        assert wal.append(b"more") == len(MULTI_PAYLOADS) + 1
    replayed: list[lsnwal.Record] = []
    with pytest.raises(WalCorruptionError) as info:
        for rec in lsnwal.replay(root, config=SMALL):
            replayed.append(rec)
    exc = info.value
    assert (exc.path, exc.offset, exc.lsn) == (str(seg), start, lsn - 1)
    assert [r.payload for r in replayed] == MULTI_PAYLOADS[: lsn - 1]
    report = lsnwal.verify(root, config=SMALL)
    assert not report.ok
    assert (str(seg), start, lsn - 1) in {(p.file, p.offset, p.lsn) for p in report.problems}


def test_damaged_header_of_old_archived_segment(multi_template: Path, tmp_path: Path) -> None:
    """An old archived segment's damaged header does not stop open() but stops replay there."""
    root = copy_of(multi_template, tmp_path)
    seg = archived(root)[1]
    first = header_first_lsn(seg)
    flip(seg, 30)
    with lsnwal.open(root, cfg_for("strict")) as wal:
        assert wal.last_lsn == len(MULTI_PAYLOADS)
    with pytest.raises(WalCorruptionError) as info:
        list(lsnwal.replay(root, config=SMALL))
    assert (info.value.path, info.value.offset, info.value.lsn) == (str(seg), 0, first - 1)
    report = lsnwal.verify(root, config=SMALL)
    assert str(seg) in {p.file for p in report.problems}


@pytest.mark.parametrize("where", ["header", "seal", "trailer", "truncated"])
def test_damage_to_what_open_reads_of_newest_archived(
    multi_template: Path, tmp_path: Path, where: str
) -> None:
    """Open refuses a newest archived segment whose header or seal is damaged, naming the file."""
    root = copy_of(multi_template, tmp_path)
    seg = archived(root)[-1]
    image = seg.read_bytes()
    data_end = layout(image)[1]
    if where == "header":
        flip(seg, 12)
    elif where == "seal":
        flip(seg, data_end + fmt.RECORD_HEADER_SIZE + 2)
    elif where == "trailer":
        flip(seg, len(image) - 2)
    else:
        seg.write_bytes(image[:-3])
    before = snapshot(root)
    for mode in MODES:
        with pytest.raises(WalCorruptionError) as info:
            lsnwal.open(root, cfg_for(mode))
        assert info.value.path == str(seg)
    assert snapshot(root) == before


# --------------------------------------------------------------------------- leftovers and cost


class TracingFS(OsFileSystem):
    """OsFileSystem that counts reads per path and records which paths were fsynced."""

    def __init__(self) -> None:
        self.reads: collections.Counter[str] = collections.Counter()
        self.fd_paths: dict[int, str] = {}
        self.synced: list[str] = []

    def open_read(self, path: str) -> int:
        """Open for reading, counting the path."""
        self.reads[os.path.abspath(path)] += 1
        return super().open_read(path)

    def open_write(self, path: str) -> int:
        """Open for writing, remembering the descriptor's path."""
        fd = super().open_write(path)
        self.fd_paths[fd] = os.path.abspath(path)
        return fd

    def open_dir(self, path: str) -> int:
        """Open a directory, remembering the descriptor's path."""
        fd = super().open_dir(path)
        self.fd_paths[fd] = os.path.abspath(path)
        return fd

    def close(self, fd: int) -> None:
        """Close and forget the descriptor."""
        self.fd_paths.pop(fd, None)
        super().close(fd)

    def sync_backend(self) -> lsnwal.SyncBackend:
        """A real backend that also records the synced paths."""
        fs = self

        class Backend(OsSyncBackend):
            def sync_file(self, fd: int) -> None:
                fs.synced.append(fs.fd_paths.get(fd, f"fd:{fd}"))
                super().sync_file(fd)

            def sync_dir(self, fd: int) -> None:
                fs.synced.append(fs.fd_paths.get(fd, f"fd:{fd}"))
                super().sync_dir(fd)

        return Backend()


@pytest.mark.parametrize("mode", MODES)
def test_leftover_pending_segments_are_resynced_and_archived(
    multi_template: Path, tmp_path: Path, mode: str
) -> None:
    """Open fsyncs pending leftovers (and pending/) before trusting them, then archives them."""
    root = copy_of(multi_template, tmp_path)
    moved = to_pending(root, 3)
    contents = {p.name: p.read_bytes() for p in moved}
    fs = TracingFS()
    with lsnwal.open(root, cfg_for(mode), fs=fs) as wal:
        assert wal.synced_lsn == len(MULTI_PAYLOADS)
        for p in moved:
            assert str(p) in fs.synced
        assert str(root / "pending") in fs.synced
        assert wal.wait_archived(timeout=10)
        assert pending(root) == []
        for name, data in contents.items():
            assert (root / "archive" / name).read_bytes() == data
    assert payloads_of(root) == MULTI_PAYLOADS


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed WAL with 200 archived segments of one record each."""
    root = tmp_path_factory.mktemp("big") / "wal"
    rec = b"r" * (SMALL.segment_max_bytes - 200)
    with lsnwal.open(root, SMALL, sync_backend=NoSync()) as wal:
        for _ in range(201):
            wal.append(rec)
        wal.sync()
        assert wal.wait_archived(timeout=30)
    assert len(archived(root)) >= 200
    return root


def test_open_does_not_read_old_archived_segments(big_archive: Path, tmp_path: Path) -> None:
    """Opening a WAL with 200 archived segments opens at most two of them."""
    root = copy_of(big_archive, tmp_path)
    segs = {str(p) for p in archived(root)}
    fs = TracingFS()
    with lsnwal.open(root, SMALL, fs=fs) as wal:
        assert wal.last_lsn == 201
        assert wal.wait_archived(timeout=10)
        opened = {p for p in fs.reads if p in segs}
    assert len(opened) <= 2, sorted(opened)
    assert str(archived(root)[-2]) in opened or str(archived(root)[-1]) in opened
    # the counting works: a replay opens every archived segment
    fs.reads.clear()
    assert sum(1 for _ in lsnwal.replay(root, config=SMALL, fs=fs)) == 201
    assert segs <= set(fs.reads)


def test_pending_and_archive_outside_the_wal_directory(tmp_path: Path) -> None:
    """Absolute pending_dir/archive_dir are collected, recovered and replayed like the defaults."""
    pend, arch = tmp_path / "fast" / "pending", tmp_path / "disk2" / "archive"
    cfg = WalConfig(segment_max_bytes=4096, pending_dir=str(pend), archive_dir=str(arch))
    root = tmp_path / "wal"
    with lsnwal.open(root, cfg) as wal:
        wal.append_batch(MULTI_PAYLOADS[:120])
        wal.sync()
        assert wal.wait_archived(timeout=10)
    assert not (root / "archive").exists() and not (root / "pending").exists()
    segs = lsnwal.collect_all_segments(root, cfg)
    assert {os.path.dirname(s.path) for s in segs if s.state == "archive"} == {str(arch)}
    # a crash before archiving leaves the newest segment in the external pending dir
    newest = sorted(arch.glob("*.wal"))[-1]
    os.rename(newest, pend / newest.name)
    with lsnwal.open(root, cfg) as wal:
        assert wal.last_lsn == 120
        assert wal.wait_archived(timeout=10)
        assert (arch / newest.name).exists()
        wal.append(b"more")
    assert payloads_of(root, cfg) == [*MULTI_PAYLOADS[:120], b"more"]


def test_active_duplicate_of_newest_pending_is_dropped(tmp_path: Path) -> None:
    """An ``active.wal`` byte-identical to the newest pending segment (a rename whose old
    name survived) is the same segment found twice: open counts it once, loses nothing."""
    d = tmp_path / "wal"
    cfg = WalConfig(segment_max_bytes=4096)
    payloads = [b"rec-%03d" % i * 9 for i in range(12)]
    with lsnwal.open(d, cfg) as wal:
        wal.append_batch(payloads)
        wal.rotate()
        wal.sync_async().wait(10)
        wal.wait_archived(10)
    # Rebuild the state "renamed into pending/, old name kept": move the archived copy
    # back to pending/ and give it its old name too (a hard link, as both names would be).
    archived = sorted((d / "archive").iterdir())
    assert len(archived) == 1
    pending = d / "pending" / archived[0].name
    os.rename(archived[0], pending)
    os.unlink(d / "active.wal")
    os.link(pending, d / "active.wal")
    with lsnwal.open(d, cfg) as wal:
        assert wal.last_lsn == len(payloads)
        assert any("duplicate" in line for line in wal.recovery_report)
        wal.append(b"after")
    got = [(r.lsn, r.payload) for r in lsnwal.replay(d)]
    assert got == [(i + 1, p) for i, p in enumerate(payloads)] + [(13, b"after")]
    assert lsnwal.verify(d).ok
