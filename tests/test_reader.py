"""WalReader's defect classes: read loops that must end, gaps that must name both files,
and targets (LSN, time, mark) x inclusive that must stop exactly where they say.

Damage is made by hand in closed WALs built with a fake writer clock, so every
expectation is computed from the list of records written (a model), never
hard-coded. The short sample runs in ``make test``; ``LSNWAL_STRESS=1`` tries every
truncation point.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest

import lsnwal
from lsnwal import format as fmt
from lsnwal import scanner
from lsnwal.names import segment_name

STRESS = os.environ.get("LSNWAL_STRESS") == "1"  # as conftest.stress_enabled()
SMALL = lsnwal.WalConfig(segment_max_bytes=4096)
H = fmt.HEADER_SIZE


def payload(i: int) -> bytes:
    """A deterministic payload whose length varies with ``i``."""
    return b"reader-%05d|" % i + bytes([i % 251]) * (30 + i * 7 % 90)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[lsnwal.Record]]:
    """A closed WAL over ~10 archived 4 KiB segments (marks, a checkpoint, a fake clock that
    repeats each timestamp three times), and its records as a reader returns them."""
    import lsnwal.writer as writer_mod

    root = tmp_path_factory.mktemp("reader") / "wal"
    ticks = itertools.count()
    real = writer_mod._time
    writer_mod._time = lambda: 1_000_000.0 + next(ticks) // 3
    try:
        with lsnwal.open(root, SMALL) as wal:
            for i in range(300):
                wal.append(payload(i))
                if i in (40, 170):
                    wal.mark(f"m{i}")
                if i == 100:
                    wal.checkpoint(90, payload=b"app")
            wal.sync()
            assert wal.wait_archived(10)
    finally:
        writer_mod._time = real
    recs = list(lsnwal.replay(root))
    assert [r.lsn for r in recs] == list(range(1, len(recs) + 1))
    return root, recs


def copy(template: tuple[Path, list[lsnwal.Record]], tmp_path: Path) -> Path:
    """A private copy of the template WAL."""
    root = tmp_path / "wal"
    shutil.copytree(template[0], root)
    return root


def chain(root: Path) -> list[Path]:
    """The segment files holding records, in LSN order (archive, then pending)."""
    return sorted((root / "archive").glob("*.wal")) + sorted((root / "pending").glob("*.wal"))


def to_pending(root: Path, count: int) -> None:
    """Move the newest ``count`` archived segments back to pending/ (not yet archived)."""
    for src in sorted((root / "archive").glob("*.wal"))[-count:]:
        os.rename(src, root / "pending" / src.name)


def rows(recs: list[lsnwal.Record]) -> list[tuple[int, lsnwal.RecordKind, float, bytes]]:
    """What must match byte for byte."""
    return [(r.lsn, r.kind, r.timestamp, r.payload) for r in recs]


def replay_until_error(root: Path, error: type[Exception]) -> list[lsnwal.Record]:
    """The records a replay yields before it raises ``error`` (it must raise it)."""
    got: list[lsnwal.Record] = []
    with pytest.raises(error) as info:
        for r in lsnwal.replay(root):
            got.append(r)
    assert type(info.value) is error  # not a subclass standing in for another verdict
    return got


# --------------------------------------------------------------------------- read loops end


def _cut_points(size: int) -> list[int]:
    if STRESS:
        return list(range(size))
    edge = [0, 1, H - 1, H, H + 1, H + fmt.RECORD_HEADER_SIZE, size // 2, size - 17,
            size - fmt.TRAILER_SIZE, size - 1]
    return sorted({p for p in [*edge, *range(0, size, 331)] if 0 <= p < size})


@pytest.mark.timeout(1800 if STRESS else 120)
@pytest.mark.parametrize("state", ["archive", "pending"])
def test_a_truncated_middle_segment_ends_every_read(
    template: tuple[Path, list[lsnwal.Record]], tmp_path: Path, state: str
) -> None:
    """Every middle segment (archived or pending) cut at every sampled point: replay raises
    WalCorruptionError after a byte-exact prefix (or, when only a pending seal is cut, gives
    every record), verify reports it, restore raises; none loops (the timeout guards)."""
    root = copy(template, tmp_path)
    if state == "pending":
        to_pending(root, 4)
    segs = chain(root)
    middles = [s for s in segs[1:-1] if s.parent.name == state]
    assert len(middles) >= 2
    tried = 0
    for seg in middles:
        original = seg.read_bytes()
        data_end = fmt.decode_trailer(original)
        assert data_end is not None
        prev_last = scanner.RecordScanner(chain(root)[segs.index(seg) - 1].read_bytes(), H,
                                      None).records()[-1][1]
        for cut in _cut_points(len(original)):
            seg.write_bytes(original[:cut])
            if state == "pending" and cut >= data_end:
                # only the seal is cut: every record is still there and read in order,
                # but verify must still report the unsealed segment
                assert rows(list(lsnwal.replay(root))) == rows(template[1])
            else:
                got = replay_until_error(root, lsnwal.WalCorruptionError)
                assert rows(got) == rows(template[1][: len(got)])  # a byte-exact prefix
                assert len(got) >= prev_last  # nothing before the damaged segment is lost
                if cut % 331 == 0 or not STRESS:  # restore writes and fsyncs: sampled
                    with pytest.raises(lsnwal.WalCorruptionError):
                        lsnwal.restore(root, tmp_path / f"r{tried}")
            report = lsnwal.verify(root)
            assert not report.ok
            assert any(str(seg) in p.file + p.message for p in report.problems), report
            tried += 1
        seg.write_bytes(original)
    assert tried >= 2 * 10
    assert lsnwal.verify(root).ok  # the copy is whole again: the damage was the cause


def test_a_segment_without_records_where_records_are_expected_is_a_gap(
    template: tuple[Path, list[lsnwal.Record]], tmp_path: Path
) -> None:
    """Every middle archived segment in turn replaced by a sealed empty one (its records
    gone) is a gap that names both neighbours; replay and verify both end."""
    root = copy(template, tmp_path)
    segs = chain(root)
    assert len(segs) >= 5
    for pos in range(1, len(segs) - 1):
        seg = segs[pos]
        original = seg.read_bytes()
        first = fmt.decode_segment_header(original[:H]).first_lsn
        empty = fmt.Seal(first - 1, 0, 0.0, 0.0, 0, H)
        seg.write_bytes(fmt.encode_segment_header(first, 1.0) + fmt.encode_seal(empty))
        got = replay_until_error(root, lsnwal.WalCorruptionError)
        assert rows(got) == rows(template[1][: first - 1])
        with pytest.raises(lsnwal.WalCorruptionError) as info:
            list(lsnwal.replay(root))
        assert str(seg) in str(info.value) and str(segs[pos + 1]) in str(info.value)
        assert not lsnwal.verify(root).ok
        seg.write_bytes(original)


@pytest.mark.parametrize("state", ["archive", "pending"])
def test_a_missing_middle_segment_is_corruption_naming_both_files(
    template: tuple[Path, list[lsnwal.Record]], tmp_path: Path, state: str
) -> None:
    """For every middle position, a missing segment is WalCorruptionError (not
    LsnUnavailableError) naming both neighbouring files, from replay, a seek into the gap,
    and verify."""
    root = copy(template, tmp_path)
    if state == "pending":
        to_pending(root, 5)
    segs = chain(root)
    positions = [i for i in range(1, len(segs) - 1) if segs[i].parent.name == state]
    assert len(positions) >= 3
    for i in positions:
        gone = segs[i].read_bytes()
        first = fmt.decode_segment_header(gone[:H]).first_lsn
        segs[i].unlink()
        got = replay_until_error(root, lsnwal.WalCorruptionError)
        assert rows(got) == rows(template[1][: first - 1])
        with pytest.raises(lsnwal.WalCorruptionError) as info:
            list(lsnwal.replay(root, from_lsn=first + 1))
        msg = str(info.value)
        assert str(segs[i - 1]) in msg and str(segs[i + 1]) in msg, msg
        report = lsnwal.verify(root)
        assert not report.ok
        assert any(str(segs[i - 1]) in p.message and str(segs[i + 1]) in p.message
                   for p in report.problems), report.problems
        segs[i].write_bytes(gone)


def test_pruned_oldest_segments_are_unavailable_not_corrupt(
    template: tuple[Path, list[lsnwal.Record]], tmp_path: Path
) -> None:
    """Removing the oldest segments (what retention does) is not damage: replay starts at the
    oldest retained record, and a from_lsn below it is LsnUnavailableError."""
    root = copy(template, tmp_path)
    segs = chain(root)
    for k in range(1, 4):
        segs[k - 1].unlink()
        oldest = fmt.decode_segment_header(segs[k].read_bytes()[:H]).first_lsn
        assert rows(list(lsnwal.replay(root))) == rows(template[1][oldest - 1 :])
        with pytest.raises(lsnwal.LsnUnavailableError):
            lsnwal.replay(root, from_lsn=oldest - 1)
        assert lsnwal.verify(root).ok


# --------------------------------------------------------------------------- targets


def _time_cases(recs: list[lsnwal.Record]) -> list[float]:
    ts = sorted({r.timestamp for r in recs})
    picks = [ts[0], ts[1], ts[len(ts) // 2], ts[-2], ts[-1]]
    return [*picks, ts[len(ts) // 3] + 0.5, ts[-1] + 100.0]


def _model(recs: list[lsnwal.Record], kind: str, value: object,
           inclusive: bool) -> list[lsnwal.Record] | None:
    """The records a replay to this target must give (None: RecoveryTargetError)."""
    if kind == "lsn":
        idx = [r.lsn for r in recs].index(value) if value in [r.lsn for r in recs] else None
    elif kind == "mark":
        idx = next(i for i, r in enumerate(recs) if r.name == value)
    else:
        at_or_before = [i for i, r in enumerate(recs) if r.timestamp <= float(str(value))]
        idx = at_or_before[-1] if at_or_before else None
    if idx is None:
        return None
    return recs[: idx + 1] if inclusive else recs[:idx]


def _target_cases(recs: list[lsnwal.Record]) -> list[tuple[str, object]]:
    marks = [r.name for r in recs if r.kind is lsnwal.RecordKind.MARK]
    last = recs[-1].lsn
    lsns = [1, 2, 50, last // 2, last - 1, last]
    return ([("lsn", x) for x in lsns] + [("mark", m) for m in marks]
            + [("time", t) for t in _time_cases(recs)])


@pytest.mark.parametrize("inclusive", [True, False])
def test_replay_targets_stop_exactly(
    template: tuple[Path, list[lsnwal.Record]], inclusive: bool
) -> None:
    """Every target kind (LSN, mark, time) at the edges and inside: replay gives exactly the
    records up to the target, and leaves the target itself out when not inclusive."""
    root, recs = template
    cases = _target_cases(recs)
    for kind, value in cases:
        want = _model(recs, kind, value, inclusive)
        assert want is not None
        kw = {f"until_{kind}": value}
        got = list(lsnwal.replay(root, inclusive=inclusive, **kw))  # type: ignore[arg-type]
        assert rows(got) == rows(want), (kind, value)
        raw = list(lsnwal.open_reader(root).iter_raw(until_lsn=want[-1].lsn)) if want else []
        assert raw == [(r.lsn, r.payload) for r in want if r.kind is lsnwal.RecordKind.DATA]
    assert len(cases) >= 14


def test_targets_that_cannot_be_met_raise_before_any_record(
    template: tuple[Path, list[lsnwal.Record]]
) -> None:
    """An LSN past the end, an unknown mark and a time before the first record raise
    RecoveryTargetError, inclusive or not, before the first record."""
    root, recs = template
    for inclusive in (True, False):
        for kw in ({"until_lsn": recs[-1].lsn + 1}, {"until_mark": "nope"},
                   {"until_time": recs[0].timestamp - 1}):
            got: list[lsnwal.Record] = []
            with pytest.raises(lsnwal.RecoveryTargetError):
                for r in lsnwal.replay(root, inclusive=inclusive, **kw):  # type: ignore[arg-type]
                    got.append(r)
            assert got == []


@pytest.mark.parametrize("inclusive", [True, False])
def test_restore_targets_continue_after_the_target(
    template: tuple[Path, list[lsnwal.Record]], tmp_path: Path, inclusive: bool
) -> None:
    """restore to every kind of target: the restored WAL holds exactly the model's records and
    continues one past the last LSN the target covers, also when that selects no record."""
    root, recs = template
    cases = [("lsn", 1), ("lsn", 2), ("lsn", recs[-1].lsn // 2), ("mark", "m170"),
             ("time", recs[0].timestamp), ("time", recs[len(recs) // 2].timestamp)]
    for n, (kind, value) in enumerate(cases):
        want = _model(recs, kind, value, inclusive)
        assert want is not None
        target = tmp_path / f"r{n}"
        res = lsnwal.restore(root, target, inclusive=inclusive,
                             **{f"until_{kind}": value})  # type: ignore[arg-type]
        assert res.records == len(want)
        assert rows(list(lsnwal.replay(target))) == rows(want)
        covered = want[-1].lsn if want else (recs[0].lsn - 1)
        with lsnwal.open(target) as wal:
            assert wal.current_lsn == covered + 1, (kind, value, inclusive)


def test_restore_selecting_nothing_keeps_the_position_and_checkpoint(tmp_path: Path) -> None:
    """A source pruned below its checkpoint, restored to just before its oldest retained
    record: zero records, and the new WAL continues at that LSN, never at 1, with every
    pruned LSN still covered by its checkpoint."""
    src = tmp_path / "src"
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, archive_max_segments=2)
    with lsnwal.open(src, cfg) as wal:
        for i in range(200):
            wal.append(payload(i))
        wal.checkpoint(180)
        wal.sync()
        for i in range(200, 400):
            wal.append(payload(i))
        wal.sync()
        assert wal.wait_archived(10)
    oldest = next(iter(lsnwal.replay(src))).lsn
    assert 1 < oldest <= 181  # retention pruned whole segments below the checkpoint
    res = lsnwal.restore(src, tmp_path / "dst", until_lsn=oldest, inclusive=False)
    assert res.records == 0
    with lsnwal.open(tmp_path / "dst") as wal:
        assert wal.current_lsn == oldest  # never LSN 1
        # what was pruned below the oldest record was covered by a checkpoint: still is
        assert wal.checkpoint_lsn == oldest - 1
        assert wal.append(b"next") == oldest
    full = lsnwal.restore(src, tmp_path / "all")
    assert full.first_lsn == oldest
    with lsnwal.open(tmp_path / "all") as wal:
        assert wal.checkpoint_lsn == 180  # the CHECKPOINT record came along


def test_header_lsn_decides_not_the_name(
    template: tuple[Path, list[lsnwal.Record]], tmp_path: Path
) -> None:
    """A segment whose file name disagrees with its header is reported, not followed."""
    root = copy(template, tmp_path)
    segs = chain(root)
    first = fmt.decode_segment_header(segs[3].read_bytes()[:H]).first_lsn
    os.rename(segs[3], segs[3].with_name(segment_name(first + 1)))
    with pytest.raises(lsnwal.WalCorruptionError):
        list(lsnwal.replay(root))
    assert not lsnwal.verify(root).ok


@pytest.mark.parametrize("zeros", [1, fmt.RECORD_HEADER_SIZE - 1, fmt.RECORD_HEADER_SIZE,
                                   4096, 1 << 20])
def test_zeros_after_the_last_record_mean_no_more_records_yet(
    template: tuple[Path, list[lsnwal.Record]], tmp_path: Path, zeros: int
) -> None:
    """An active file that ends in zeros (preallocated by the writer) is read up to its last
    complete record: every record, no problem, no torn-tail warning for a zero header."""
    root = copy(template, tmp_path)
    with lsnwal.open(root, SMALL) as wal:
        for i in range(300, 310):
            wal.append(payload(i))
    recs = list(lsnwal.replay(root))
    with open(root / "active.wal", "ab") as f:
        f.write(bytes(zeros))
    assert rows(list(lsnwal.replay(root))) == rows(recs)
    reader = lsnwal.open_reader(root)
    assert reader.last_lsn() == recs[-1].lsn
    follower = reader.follow(durable_only=False, poll_max_s=0.01)
    assert [next(follower).lsn for _ in recs] == [r.lsn for r in recs]
    reader.close()
    report = lsnwal.verify(root)
    assert report.ok, report.problems
    assert report.records == len(recs)
    if zeros >= fmt.RECORD_HEADER_SIZE:
        assert not any("torn" in w for w in report.warnings), report.warnings


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_descriptor_is_leaked_by_reads_that_fail_or_stop_early(
    template: tuple[Path, list[lsnwal.Record]], tmp_path: Path
) -> None:
    """Replays that raise on damage, stop at a target, are abandoned half-way, or run in
    stop_at_corruption mode leave the process with the descriptors it had."""
    root = copy(template, tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    seg = chain(root)[4]
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) // 2])
    quiet = lsnwal.WalConfig(segment_max_bytes=4096, recovery_mode="stop_at_corruption")
    for _ in range(20):
        with pytest.raises(lsnwal.WalCorruptionError):
            list(lsnwal.replay(root))
        assert list(lsnwal.replay(root, config=quiet))  # ends quietly at the damage
        assert [r.lsn for r in lsnwal.replay(root, until_lsn=5)] == [1, 2, 3, 4, 5]
        it = lsnwal.replay(root)
        next(it)
        del it  # abandoned after one record
        assert not lsnwal.verify(root).ok
    import gc

    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before
