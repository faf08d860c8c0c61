"""Archive and retention (issue 4, items 1 and 3; DESIGN.md invariant 8).

Every test here works on the real file system with 4 KiB segments, so a few
hundred records make a dozen segments. The archiver batches for up to 50 ms:
tests call ``wal.wait_archived()`` before looking at ``archive/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import lsnwal
from lsnwal.fs import OsFileSystem
from lsnwal.testing import BlockingSyncBackend

SMALL = 4096


def payload(i: int) -> bytes:
    """A deterministic payload whose length varies with ``i``."""
    return b"rec-%06d|" % i + bytes([i % 251]) * (40 + i % 90)


def dump(path: Path, **kw: object) -> list[tuple[int, int, float, bytes]]:
    """Every replayed record as (lsn, kind, timestamp, payload)."""
    return [(r.lsn, int(r.kind), r.timestamp, r.payload) for r in lsnwal.replay(path, **kw)]


def data_of(path: Path, **kw: object) -> dict[int, bytes]:
    """Replayed DATA payloads by LSN."""
    return {
        r.lsn: r.payload
        for r in lsnwal.replay(path, **kw)
        if r.kind is lsnwal.RecordKind.DATA
    }


def names(d: Path) -> list[str]:
    """Sorted file names in a directory (empty when it does not exist)."""
    return sorted(os.listdir(d)) if d.is_dir() else []


def hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (LOCK excluded), by relative path."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "LOCK":
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def archived(wal_dir: Path) -> list[lsnwal.SegmentInfo]:
    """The archived segments, oldest first."""
    return [s for s in lsnwal.collect_all_segments(wal_dir) if s.state == "archive"]


def fill(wal: lsnwal.AsyncWalWriter, n: int, start: int = 0) -> dict[int, bytes]:
    """Append ``n`` records, force a rotation and wait for them to be durable and archived."""
    out = {}
    for i in range(start, start + n):
        p = payload(i)
        out[wal.append(p)] = p
    wal.rotate()
    assert wal.sync_async().wait(10)
    assert wal.wait_archived(10)
    return out


def test_pending_segment_archived_only_after_synced(wal_dir: Path) -> None:
    """A rotated segment stays in pending/ while its fsync is blocked and moves only after."""
    backend = BlockingSyncBackend(timeout_s=20)
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    wal = lsnwal.open(wal_dir, cfg, sync_backend=backend)
    try:
        for i in range(100):
            wal.append(payload(i))
        assert backend.entered.wait(10)
        time.sleep(0.2)  # give a wrong archiver every chance (it batches for 50 ms)
        assert wal.synced_lsn == 0
        pending = names(wal_dir / "pending")
        assert pending, "rotated segments must wait in pending/"
        assert names(wal_dir / "archive") == []
        backend.release()
        wal.sync()
        assert wal.wait_archived(10)
        assert names(wal_dir / "pending") == []
        assert set(pending) <= set(names(wal_dir / "archive"))
        for seg in archived(wal_dir):
            assert seg.last_lsn <= wal.synced_lsn
    finally:
        backend.release()
        wal.close()
    assert [r[0] for r in dump(wal_dir)] == list(range(1, 101))


def test_archiving_does_not_delay_synced_lsn(wal_dir: Path) -> None:
    """While the archiver is stuck before its move, later syncs still advance synced_lsn."""
    gate = threading.Event()
    stuck = threading.Event()

    def hook(point: str) -> None:
        if point == "before_archive_move" and threading.current_thread().name == "lsnwal-archive":
            stuck.set()
            gate.wait(20)

    wal = lsnwal.open(wal_dir, lsnwal.WalConfig(segment_max_bytes=SMALL), failpoint=hook)
    try:
        fill_lsns = [wal.append(payload(i)) for i in range(30)]
        wal.rotate()
        assert wal.sync_async().wait(10)
        assert stuck.wait(10)
        for round_ in range(5):
            lsns = [wal.append(payload(1000 + 10 * round_ + i)) for i in range(40)]
            wal.rotate()
            assert wal.sync_async().wait(10)
            assert wal.synced_lsn >= lsns[-1]
        assert names(wal_dir / "pending"), "segments wait in pending/ while the archiver is stuck"
        assert wal.synced_lsn >= fill_lsns[-1]
    finally:
        gate.set()
        wal.close()
    assert names(wal_dir / "pending") == []
    assert [r[0] for r in dump(wal_dir)] == list(range(1, 231))


def test_archive_disabled_keeps_segments_until_checkpoint(wal_dir: Path) -> None:
    """Archive off: a synced segment goes only once the durable checkpoint covers all of it."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_enabled=False)
    with lsnwal.open(wal_dir, cfg) as wal:
        expected = fill(wal, 300)
        before = archived(wal_dir)
        assert len(before) >= 8
        assert wal.prune() == []  # no checkpoint: nothing may go
        assert archived(wal_dir) == before
        cp = before[4].last_lsn + 3  # inside the sixth segment
        wal.checkpoint(cp)
        # Not yet durable: the CHECKPOINT record sits unsynced in the active segment.
        assert wal.prune(dry_run=True) == []
        wal.sync()
        assert wal.wait_archived(10)
        wal.prune()
        after = archived(wal_dir)
        gone = [s for s in before if s not in after]
        assert [s.path for s in gone] == [s.path for s in before[:5]]
        assert all(s.last_lsn <= cp for s in gone)
        assert after[0].first_lsn <= cp + 1 <= after[0].last_lsn + 1
        assert wal.stats().checkpoint_lsn == cp
    got = data_of(wal_dir)
    assert got == {lsn: p for lsn, p in expected.items() if lsn >= before[5].first_lsn}
    assert lsnwal.verify(wal_dir).ok


def test_archive_disabled_prunes_on_its_own_after_checkpoint(wal_dir: Path) -> None:
    """With the archive off, the archiver deletes covered segments once the checkpoint is synced."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_enabled=False)
    with lsnwal.open(wal_dir, cfg) as wal:
        fill(wal, 200)
        segs = archived(wal_dir)
        wal.checkpoint(wal.last_lsn)
        wal.sync()
        assert wal.wait_archived(10)  # covers retention triggered by the durable checkpoint
        assert archived(wal_dir) == []
        assert wal.stats().pruned_segments == len(segs)


def test_archive_off_no_checkpoint_loses_nothing_across_reopens(wal_dir: Path) -> None:
    """Archive off and no checkpoint: fifteen reopen cycles keep every record byte for byte."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_enabled=False)
    expected: dict[int, bytes] = {}
    i = 0
    for cycle in range(15):
        with lsnwal.open(wal_dir, cfg) as wal:
            assert wal.current_lsn == len(expected) + 1
            for _ in range(35 + cycle):
                p = payload(i)
                expected[wal.append(p)] = p
                i += 1
            if cycle % 3 == 0:
                wal.sync()
            elif cycle % 3 == 1:
                assert wal.sync_async().wait(10)
                wal.prune()
            # the third kind of cycle relies on close()'s final sync
        assert data_of(wal_dir) == expected
    assert list(expected) == list(range(1, len(expected) + 1))
    report = lsnwal.verify(wal_dir)
    assert report.ok, report.problems
    assert report.records == len(expected)


def test_archive_off_with_checkpoint_across_reopens_keeps_uncovered(wal_dir: Path) -> None:
    """Archive off: records above a checkpoint survive reopens, and checkpoint_lsn is recovered."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_enabled=False)
    expected: dict[int, bytes] = {}
    cp = 0
    for cycle in range(6):
        with lsnwal.open(wal_dir, cfg) as wal:
            assert wal.checkpoint_lsn == cp
            expected.update(fill(wal, 60, start=cycle * 100))
            cp = wal.last_lsn - 40
            wal.checkpoint(cp, payload=b"state@%d" % cp)
            wal.sync()
            wal.wait_archived(10)
            wal.prune()
        got = data_of(wal_dir)
        assert {k: v for k, v in expected.items() if k > cp} == {
            k: v for k, v in got.items() if k > cp
        }
        assert all(got[k] == expected[k] for k in got)


def test_checkpoint_rules(open_wal: lsnwal.AsyncWalWriter, wal_dir: Path) -> None:
    """checkpoint() writes a CHECKPOINT record, is monotonic and refuses an LSN past last_lsn."""
    wal = open_wal
    for i in range(10):
        wal.append(payload(i))
    with pytest.raises(ValueError):
        wal.checkpoint(11)
    rec_lsn = wal.checkpoint(6, payload=b"app-state")
    assert rec_lsn == 11
    assert wal.checkpoint_lsn == 6
    with pytest.raises(ValueError):
        wal.checkpoint(5)
    assert wal.last_lsn == 11  # the refused calls used no LSN
    wal.checkpoint(6)  # the same LSN again is allowed
    wal.sync()
    cps = [r for r in lsnwal.replay(wal_dir) if r.kind is lsnwal.RecordKind.CHECKPOINT]
    assert [(r.lsn, r.checkpoint_lsn, r.payload) for r in cps] == [
        (11, 6, b"app-state"),
        (12, 6, b""),
    ]


def test_checkpoint_lsn_survives_reopen(wal_dir: Path) -> None:
    """checkpoint_lsn is recovered from the log after close and reopen."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(wal_dir, cfg) as wal:
        fill(wal, 200)
        wal.checkpoint(150)
        fill(wal, 100, start=500)  # the checkpoint ends up in the archive
    with lsnwal.open(wal_dir, cfg) as wal:
        assert wal.checkpoint_lsn == 150
        assert wal.stats().checkpoint_lsn == 150


def _check_after_prune(
    wal_dir: Path, before: list[lsnwal.SegmentInfo], cp: int, expected: dict[int, bytes]
) -> list[lsnwal.SegmentInfo]:
    """Assert retention cut only the oldest end, never past ``cp``; return what is left."""
    after = archived(wal_dir)
    kept = [s for s in after if s.first_lsn <= before[-1].first_lsn]  # newer ones may follow
    gone = before[: len(before) - len(kept)]
    assert before[len(gone) :] == kept, "only the oldest end may be cut"
    assert all(s.last_lsn <= cp for s in gone), "pruning passed the checkpoint"
    assert not any(Path(s.path).exists() for s in gone)
    report = lsnwal.verify(wal_dir)
    assert report.ok, report.problems
    oldest = after[0].first_lsn
    assert oldest <= cp + 1
    assert data_of(wal_dir) == {k: v for k, v in expected.items() if k >= oldest}
    if gone:
        with pytest.raises(lsnwal.LsnUnavailableError):
            list(lsnwal.replay(wal_dir, from_lsn=1))
    return after


def _checkpointed_archive(
    wal_dir: Path, seg_index: int, at_end: bool = False, n: int = 400
) -> tuple[dict[int, bytes], list[lsnwal.SegmentInfo], int]:
    """Build an archive (no limits) with a checkpoint inside segment ``seg_index``; close it.

    The active segment is left empty, so reopening submits nothing to the archiver
    and retention runs only when the test asks for it.
    """
    with lsnwal.open(wal_dir, lsnwal.WalConfig(segment_max_bytes=SMALL)) as wal:
        expected = fill(wal, n)
        segs = archived(wal_dir)
        assert len(segs) >= 10
        cp = segs[seg_index].last_lsn if at_end else segs[seg_index].first_lsn + 2
        wal.checkpoint(cp)
        wal.rotate()  # leave the active segment empty (see above)
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
    before = archived(wal_dir)
    assert before[: len(segs)] == segs
    return expected, before, cp


def test_prune_by_count_stops_at_checkpoint(wal_dir: Path) -> None:
    """archive_max_segments prunes the oldest first but never a segment above the checkpoint."""
    expected, before, cp = _checkpointed_archive(wal_dir, 5)
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_max_segments=3)
    with lsnwal.open(wal_dir, cfg) as wal:
        assert wal.checkpoint_lsn == cp
        plan = wal.prune()
        assert [c.first_lsn for c in plan] == [s.first_lsn for s in before[:5]]
        assert all("archive_max_segments" in c.reason for c in plan)
        after = _check_after_prune(wal_dir, before, cp, expected)
        assert len(after) > 3  # the checkpoint held the rest back
        assert wal.prune() == []


def test_prune_by_count_runs_after_a_durable_checkpoint(wal_dir: Path) -> None:
    """With archive_max_segments set, the archiver prunes on its own once a checkpoint is synced."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_max_segments=3)
    with lsnwal.open(wal_dir, cfg) as wal:
        expected = fill(wal, 400)
        before = archived(wal_dir)
        assert len(before) >= 10  # no checkpoint: the limit is not applied
        cp = before[5].first_lsn + 2
        wal.checkpoint(cp)
        wal.sync()
        assert wal.wait_archived(10)
        after = _check_after_prune(wal_dir, before, cp, expected)
        assert after == before[5:]
        assert wal.stats().pruned_segments == 5
        wal.checkpoint(wal.last_lsn)
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
        after = _check_after_prune(wal_dir, before, wal.checkpoint_lsn, expected)
        assert len(after) == 3
        assert wal.stats().archive_segments == 3


def test_prune_by_bytes_stops_at_checkpoint(wal_dir: Path) -> None:
    """archive_max_bytes prunes the oldest first, stops at the checkpoint, then meets the limit."""
    limit = 3 * SMALL
    expected, before, cp = _checkpointed_archive(wal_dir, 3, at_end=True)
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_max_bytes=limit)
    with lsnwal.open(wal_dir, cfg) as wal:
        plan = wal.prune()
        assert [c.first_lsn for c in plan] == [s.first_lsn for s in before[:4]]
        assert all("archive_max_bytes" in c.reason for c in plan)
        _check_after_prune(wal_dir, before, cp, expected)
        wal.checkpoint(wal.last_lsn)
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
        after = _check_after_prune(wal_dir, before, wal.checkpoint_lsn, expected)
        total = sum(s.size_bytes for s in after)
        assert total <= limit
        # one segment fewer pruned would have left the archive over the limit
        last_gone = [s for s in before if s.last_lsn < after[0].first_lsn][-1]
        assert total + last_gone.size_bytes > limit
        assert wal.stats().archive_bytes == total
        assert wal.stats().archive_segments == len(after)


def _clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Let the test move the writer's wall clock: returns the offset to set, in seconds."""
    import lsnwal.writer as writer_mod

    real = time.time
    offset = [0.0]
    monkeypatch.setattr(writer_mod, "_time", lambda: real() + offset[0])
    return offset


def test_prune_by_age_only_old_segments(wal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """archive_max_age_s prunes segments whose newest record is old, not the fresh ones."""
    offset = _clock(monkeypatch)
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_max_age_s=600)
    with lsnwal.open(wal_dir, cfg) as wal:
        offset[0] = -3600.0  # phase 1 was written an hour ago
        old = fill(wal, 150)
        old_last = max(old)
        offset[0] = 0.0
        fresh = fill(wal, 150, start=1000)
        before = archived(wal_dir)
        assert before[0].first_lsn == 1  # no checkpoint yet: nothing went
        wal.checkpoint(wal.last_lsn)
        wal.sync()
        assert wal.wait_archived(10)
        after = _check_after_prune(wal_dir, before, wal.checkpoint_lsn, {**old, **fresh})
        assert after[0].first_lsn == old_last + 1  # every old segment went, no fresh one
        assert data_of(wal_dir) == fresh


def test_prune_by_age_respects_checkpoint(wal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments above the checkpoint stay, however old they are."""
    offset = _clock(monkeypatch)
    offset[0] = -3600.0  # everything was written an hour ago
    expected, before, cp = _checkpointed_archive(wal_dir, 2)
    offset[0] = 0.0
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_max_age_s=600)
    with lsnwal.open(wal_dir, cfg) as wal:
        plan = wal.prune()
        assert [c.first_lsn for c in plan] == [s.first_lsn for s in before[:2]]
        assert all("archive_max_age_s" in c.reason for c in plan)
        _check_after_prune(wal_dir, before, cp, expected)
        assert wal.prune() == []


def test_prune_dry_run_lists_and_deletes_nothing(wal_dir: Path) -> None:
    """prune(dry_run=True) lists the candidates with reasons and leaves every file in place."""
    expected, before, cp = _checkpointed_archive(wal_dir, 6, at_end=True)
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_max_segments=2)
    with lsnwal.open(wal_dir, cfg) as wal:
        snapshot = hashes(wal_dir / "archive")
        plan = wal.prune(dry_run=True)
        assert hashes(wal_dir / "archive") == snapshot
        assert [(c.path, c.first_lsn, c.last_lsn, c.size_bytes) for c in plan] == [
            (s.path, s.first_lsn, s.last_lsn, s.size_bytes) for s in before[:7]
        ]
        assert all("archive_max_segments" in c.reason for c in plan)
        assert wal.prune(dry_run=True) == plan  # still nothing deleted
        assert hashes(wal_dir / "archive") == snapshot
        assert wal.stats().pruned_segments == 0
        assert wal.prune() == plan
        assert [s.path for s in archived(wal_dir)] == [s.path for s in before[7:]]
        assert wal.stats().pruned_segments == 7
    _check_after_prune(wal_dir, before, cp, expected)


def test_pruning_the_oldest_segment_by_hand_is_legal(wal_dir: Path) -> None:
    """Removing the oldest archived segment leaves a WAL that verifies, replays and reopens."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(wal_dir, cfg) as wal:
        expected = fill(wal, 200)
    segs = archived(wal_dir)
    os.unlink(segs[0].path)
    assert lsnwal.verify(wal_dir).ok
    infos = lsnwal.collect_all_segments(wal_dir)
    assert infos[0].first_lsn == segs[1].first_lsn
    assert data_of(wal_dir) == {k: v for k, v in expected.items() if k >= segs[1].first_lsn}
    with lsnwal.open(wal_dir, cfg) as wal:
        assert wal.current_lsn == max(expected) + 1


def test_missing_middle_segment_is_a_gap(wal_dir: Path) -> None:
    """A missing middle archived segment is reported as a gap by verify, replay and collect."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(wal_dir, cfg) as wal:
        fill(wal, 200)
    segs = archived(wal_dir)
    victim = segs[3]
    os.unlink(victim.path)
    report = lsnwal.verify(wal_dir)
    assert not report.ok
    gap = [p for p in report.problems if "gap" in p.message]
    assert gap, report.problems
    assert gap[0].file == segs[4].path
    assert segs[2].path in gap[0].message
    with pytest.raises(lsnwal.WalCorruptionError) as exc:
        list(lsnwal.replay(wal_dir))
    assert exc.value.path == segs[4].path
    with pytest.raises(lsnwal.WalCorruptionError) as exc:
        lsnwal.collect_all_segments(wal_dir)
    assert "gap" in str(exc.value)
    assert segs[2].path in str(exc.value) and segs[4].path in str(exc.value)


def test_archived_file_is_never_overwritten(wal_dir: Path, tmp_path: Path) -> None:
    """A foreign segment under our archive name stops the archiver; ours stays in pending/."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    other = tmp_path / "other"
    with lsnwal.open(other, cfg) as o:
        fill(o, 5)
        for i in range(10):
            o.append(b"foreign-%d" % i)
        o.rotate()
        assert o.sync_async().wait(10)
        assert o.wait_archived(10)
    name = f"{6:020d}.wal"
    foreign = (other / "archive" / name).read_bytes()
    with lsnwal.open(wal_dir, cfg) as wal:
        expected = fill(wal, 5)
        assert wal.current_lsn == 6
        (wal_dir / "archive" / name).write_bytes(foreign)
        for i in range(30):
            p = payload(100 + i)
            expected[wal.append(p)] = p
        wal.rotate()
        assert wal.sync_async().wait(10)
        wal.wait_archived(10)
        assert (wal_dir / "archive" / name).read_bytes() == foreign
        assert name in names(wal_dir / "pending")
        assert wal.synced_lsn >= max(expected)
        # the archiver has stopped: later segments stay in pending/ too
        for i in range(40):
            p = payload(200 + i)
            expected[wal.append(p)] = p
        wal.rotate()
        assert wal.sync_async().wait(10)
        wal.wait_archived(10)
        assert len(names(wal_dir / "pending")) >= 2
        assert wal.synced_lsn == max(expected)
    assert (wal_dir / "archive" / name).read_bytes() == foreign
    # nothing lost: once the intruder is gone, every record is there byte for byte
    os.unlink(wal_dir / "archive" / name)
    assert data_of(wal_dir) == expected
    with lsnwal.open(wal_dir, cfg):
        pass
    assert names(wal_dir / "pending") == []
    assert data_of(wal_dir) == expected


def test_same_range_different_content_is_not_accepted(wal_dir: Path, tmp_path: Path) -> None:
    """A foreign archived file covering the same LSNs with other payloads is not taken as ours."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    other = tmp_path / "other"
    with lsnwal.open(other, cfg) as o:
        for _ in range(20):
            o.append(b"X" * 50)
        o.rotate()
        o.sync_async().wait(10)
        o.wait_archived(10)
    foreign = (other / "archive" / f"{1:020d}.wal").read_bytes()
    with lsnwal.open(wal_dir, cfg) as wal:
        (wal_dir / "archive" / f"{1:020d}.wal").write_bytes(foreign)
        expected = {wal.append(b"Y" * 50): b"Y" * 50 for _ in range(20)}
        wal.rotate()
        assert wal.sync_async().wait(10)
        wal.wait_archived(10)
        assert (wal_dir / "archive" / f"{1:020d}.wal").read_bytes() == foreign
        pend = wal_dir / "pending" / f"{1:020d}.wal"
        assert pend.exists(), "our segment was dropped in favour of a foreign file"
    os.unlink(wal_dir / "archive" / f"{1:020d}.wal")
    assert data_of(wal_dir) == expected


def test_duplicate_in_pending_is_counted_once(wal_dir: Path) -> None:
    """A segment in both archive/ and pending/ is one segment to collect, replay and verify."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(wal_dir, cfg) as wal:
        expected = fill(wal, 200)
    segs = archived(wal_dir)
    dup = segs[-1]
    shutil.copy(dup.path, wal_dir / "pending" / os.path.basename(dup.path))
    infos = lsnwal.collect_all_segments(wal_dir)
    firsts = [s.first_lsn for s in infos]
    assert firsts.count(dup.first_lsn) == 1
    assert firsts == sorted(firsts)
    lsns = [r[0] for r in dump(wal_dir)]
    assert lsns == list(range(1, max(expected) + 1))
    assert data_of(wal_dir) == expected
    report = lsnwal.verify(wal_dir)
    assert report.ok, report.problems
    assert report.records == len(expected)
    with lsnwal.open(wal_dir, cfg) as wal:
        assert wal.current_lsn == max(expected) + 1
        wal.append(b"after")
    assert names(wal_dir / "pending") == []
    assert data_of(wal_dir) == {**expected, max(expected) + 1: b"after"}


def test_stats_count_archive(wal_dir: Path) -> None:
    """stats() reports the archived segments and bytes that are on disk."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(wal_dir, cfg) as wal:
        fill(wal, 200)
        st = wal.stats()
        segs = archived(wal_dir)
        assert st.archive_segments == len(segs)
        assert st.archive_bytes == sum(s.size_bytes for s in segs)
        assert st.pending_segments == 0


class _OtherDeviceFs(OsFileSystem):
    """The real file system, claiming that pending/ and archive/ are on different devices."""

    def same_device(self, a: str, b: str) -> bool:
        """Force the copy-fsync-rename path of the archiver."""
        return False


def test_archive_across_file_systems_copies(wal_dir: Path) -> None:
    """The copy path (another file system) archives every segment byte for byte, no .tmp left."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(wal_dir, cfg, fs=_OtherDeviceFs()) as wal:
        expected = fill(wal, 150)
        assert len(archived(wal_dir)) >= 4
        assert names(wal_dir / "pending") == []
    assert names(wal_dir / "pending") == []
    assert not [n for n in names(wal_dir / "archive") if n.endswith(".tmp")]
    assert data_of(wal_dir) == expected
    assert lsnwal.verify(wal_dir).ok


def test_leftover_tmp_file_is_removed_at_open(wal_dir: Path) -> None:
    """A .tmp file left in archive/ by an interrupted copy is deleted by open()."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(wal_dir, cfg) as wal:
        expected = fill(wal, 100)
    (wal_dir / "archive" / f"{999:020d}.wal.tmp").write_bytes(b"half a copy")
    with lsnwal.open(wal_dir, cfg):
        pass
    assert not [n for n in names(wal_dir / "archive") if n.endswith(".tmp")]
    assert data_of(wal_dir) == expected
