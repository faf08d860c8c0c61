"""Point-in-time replay, restore and restore points (issue 4, items 4-6).

``replay`` must stop exactly at its target (LSN, time or mark; inclusive or
exclusive), refuse targets it cannot meet before yielding anything, and seek
without reading earlier segments. ``restore`` builds a new, openable WAL that
continues at target + 1 and never touches its source.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import lsnwal
from lsnwal import RecordKind
from lsnwal.fs import OsFileSystem

SMALL = 4096
UTC = dt.timezone.utc


def payload(i: int) -> bytes:
    """A deterministic payload whose length varies with ``i``."""
    return b"pitr-%06d|" % i + bytes([(i * 7) % 256]) * (30 + i % 70)


def rows(recs: list[lsnwal.Record]) -> list[tuple[int, RecordKind, float, bytes, int | None]]:
    """Records as comparable tuples, timestamps and checkpoint LSNs included."""
    return [(r.lsn, r.kind, r.timestamp, r.payload, r.checkpoint_lsn) for r in recs]


def hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (the LOCK file excluded), by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "LOCK"
    }


def collect_until_error(it: Callable[[], Iterator[lsnwal.Record]]) -> list[lsnwal.Record]:
    """Run a replay that must fail; return what it yielded before failing (must be nothing)."""
    got: list[lsnwal.Record] = []
    with pytest.raises(lsnwal.RecoveryTargetError) as exc:
        for r in it():
            got.append(r)
    assert isinstance(exc.value, lsnwal.WalError)
    return got


@dataclass
class History:
    """A WAL written in two phases with a mark, a checkpoint and a time between phases."""

    path: Path
    all: list[lsnwal.Record]
    phase1_last: int
    mark_lsn: int
    t_between: float


def write_history(path: Path, cfg: lsnwal.WalConfig | None = None) -> History:
    """Phase 1 (with a checkpoint), a mark, a pause with a time taken in it, then phase 2."""
    cfg = cfg or lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(path, cfg) as wal:
        for i in range(120):
            wal.append(payload(i))
        wal.checkpoint(60, payload=b"app@60")
        mark_lsn = wal.mark("before-migration")
        wal.sync()
        phase1_last = wal.last_lsn
        time.sleep(0.02)
        t = time.time()
        time.sleep(0.02)
        for i in range(120, 260):
            wal.append(payload(i))
        wal.mark("after-migration")
        for i in range(260, 300):
            wal.append(payload(i))
    recs = list(lsnwal.replay(path))
    assert [r.lsn for r in recs] == list(range(1, len(recs) + 1))
    return History(path, recs, phase1_last, mark_lsn, t)


@pytest.fixture
def hist(wal_dir: Path) -> History:
    """A closed two-phase WAL over many small segments."""
    return write_history(wal_dir)


# --------------------------------------------------------------------------- by LSN


def test_until_lsn_inclusive_and_exclusive(hist: History) -> None:
    """until_lsn stops exactly at the target, including it or not, across segment boundaries."""
    infos = [s for s in lsnwal.collect_all_segments(hist.path) if s.last_lsn >= s.first_lsn]
    assert len(infos) >= 8
    last = hist.all[-1].lsn
    targets = {1, 2, 77, infos[2].first_lsn, infos[2].last_lsn, infos[-1].first_lsn, last}
    for target in sorted(targets):
        got = list(lsnwal.replay(hist.path, until_lsn=target))
        assert rows(got) == rows(hist.all[:target])
        got = list(lsnwal.replay(hist.path, until_lsn=target, inclusive=False))
        assert rows(got) == rows(hist.all[: target - 1])


def test_from_lsn_and_until_lsn_window(hist: History) -> None:
    """from_lsn starts exactly at its LSN (mid-segment too) and combines with until_lsn."""
    for start in (1, 2, 45, 150, hist.all[-1].lsn):
        got = list(lsnwal.replay(hist.path, from_lsn=start))
        assert rows(got) == rows(hist.all[start - 1 :])
    got = list(lsnwal.replay(hist.path, from_lsn=100, until_lsn=200))
    assert rows(got) == rows(hist.all[99:200])
    got = list(lsnwal.replay(hist.path, from_lsn=100, until_lsn=200, inclusive=False))
    assert rows(got) == rows(hist.all[99:199])
    assert list(lsnwal.replay(hist.path, from_lsn=hist.all[-1].lsn + 1)) == []


# --------------------------------------------------------------------------- by time


def test_until_time_between_two_phases(hist: History) -> None:
    """A time taken between two phases of writes gives back exactly phase 1."""
    phase1 = rows(hist.all[: hist.phase1_last])
    assert all(r.timestamp < hist.t_between for r in hist.all[: hist.phase1_last])
    assert all(r.timestamp > hist.t_between for r in hist.all[hist.phase1_last :])
    assert rows(list(lsnwal.replay(hist.path, until_time=hist.t_between))) == phase1
    # exclusive leaves out the target record: the last record at or before the time
    got = list(lsnwal.replay(hist.path, until_time=hist.t_between, inclusive=False))
    assert rows(got) == phase1[:-1]


def test_until_time_on_an_open_wal(wal_dir: Path) -> None:
    """PITR by time works on a live WAL whose records span archive, pending and active."""
    with lsnwal.open(wal_dir, lsnwal.WalConfig(segment_max_bytes=SMALL)) as wal:
        phase1 = [wal.append(payload(i)) for i in range(100)]
        wal.sync()
        time.sleep(0.02)
        t = time.time()
        time.sleep(0.02)
        for i in range(100, 200):
            wal.append(payload(i))
        wal.sync()
        got = list(lsnwal.replay(wal_dir, until_time=t))
        assert [r.lsn for r in got] == phase1
        assert [r.payload for r in got] == [payload(i) for i in range(100)]


def test_until_time_at_a_record_timestamp(hist: History) -> None:
    """A target equal to a record's timestamp includes it, and exclusive mode leaves it out."""
    for idx in (0, 50, 200, len(hist.all) - 1):
        t = hist.all[idx].timestamp
        incl = [r for r in hist.all if r.timestamp <= t]
        excl = [r for r in hist.all if r.timestamp < t]
        assert rows(list(lsnwal.replay(hist.path, until_time=t))) == rows(incl)
        # at the first record's own time, exclusive means "just before it": nothing
        got = list(lsnwal.replay(hist.path, until_time=t, inclusive=False))
        assert rows(got) == rows(excl)


def test_until_time_accepts_aware_datetime(hist: History) -> None:
    """An aware datetime (any zone) means the same instant as epoch seconds."""
    expected = rows(list(lsnwal.replay(hist.path, until_time=hist.t_between)))
    utc = dt.datetime.fromtimestamp(hist.t_between, tz=dt.timezone.utc)
    plus5 = utc.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    assert rows(list(lsnwal.replay(hist.path, until_time=utc))) == expected
    assert rows(list(lsnwal.replay(hist.path, until_time=plus5))) == expected


def test_until_time_rejects_naive_datetime(hist: History) -> None:
    """A naive datetime is a ValueError, raised before anything is read."""
    naive = dt.datetime.fromtimestamp(hist.t_between)
    with pytest.raises(ValueError):
        lsnwal.replay(hist.path, until_time=naive)
    with pytest.raises(ValueError):
        lsnwal.restore(hist.path, hist.path.parent / "r", until_time=naive)
    assert not (hist.path.parent / "r").exists()


def test_timestamps_stay_monotonic_when_clock_steps_back(
    wal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records keep non-decreasing timestamps across a backwards clock step and a reopen."""
    import lsnwal.writer as writer_mod

    real = time.time
    offset = [0.0]
    monkeypatch.setattr(writer_mod, "_time", lambda: real() + offset[0])
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(wal_dir, cfg) as wal:
        for i in range(100):
            wal.append(payload(i))
        offset[0] = -3600.0  # the wall clock jumps an hour back
        for i in range(100, 200):
            wal.append(payload(i))
    with lsnwal.open(wal_dir, cfg) as wal:
        for i in range(200, 250):
            wal.append(payload(i))
    recs = list(lsnwal.replay(wal_dir))
    ts = [r.timestamp for r in recs]
    assert ts == sorted(ts)
    assert [r.payload for r in recs] == [payload(i) for i in range(250)]
    # a time target still cuts at one place in LSN order
    t = recs[99].timestamp
    got = list(lsnwal.replay(wal_dir, until_time=t))
    assert [r.lsn for r in got] == [r.lsn for r in recs if r.timestamp <= t]
    assert got[-1].lsn >= 100


# --------------------------------------------------------------------------- by mark


def test_until_mark_inclusive_and_exclusive(hist: History) -> None:
    """until_mark stops at the MARK record, which inclusive keeps and exclusive drops."""
    got = list(lsnwal.replay(hist.path, until_mark="before-migration"))
    assert rows(got) == rows(hist.all[: hist.mark_lsn])
    assert got[-1].kind is RecordKind.MARK and got[-1].name == "before-migration"
    got = list(lsnwal.replay(hist.path, until_mark="before-migration", inclusive=False))
    assert rows(got) == rows(hist.all[: hist.mark_lsn - 1])
    after = next(r for r in hist.all if r.name == "after-migration")
    got = list(lsnwal.replay(hist.path, until_mark="after-migration"))
    assert rows(got) == rows(hist.all[: after.lsn])


def test_list_marks(hist: History) -> None:
    """list_marks gives name, LSN and time of every MARK record, in LSN order."""
    marks = [(r.name, r.lsn, r.timestamp) for r in hist.all if r.kind is RecordKind.MARK]
    assert len(marks) == 2
    assert lsnwal.list_marks(hist.path) == marks


def test_list_marks_across_archive_pending_and_active(wal_dir: Path) -> None:
    """Marks are found wherever their record lives, while the WAL is open and after reopen."""
    gate = threading.Event()

    def hook(point: str) -> None:
        if point == "before_archive_move" and threading.current_thread().name == "lsnwal-archive":
            gate.wait(20)

    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    with lsnwal.open(wal_dir, cfg) as wal:
        wal.mark("in-archive")
        for i in range(60):
            wal.append(payload(i))
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
    with lsnwal.open(wal_dir, cfg, failpoint=hook) as wal:
        wal.mark("in-pending \N{SNOWMAN}")
        for i in range(60):
            wal.append(payload(i))
        assert wal.sync_async().wait(10)
        wal.mark("in-active")
        wal.sync()
        states = {s.state for s in lsnwal.collect_all_segments(wal_dir)}
        assert states == {"archive", "pending", "active"}
        names = [m[0] for m in lsnwal.list_marks(wal_dir)]
        assert names == ["in-archive", "in-pending \N{SNOWMAN}", "in-active"]
        expect = [(r.name, r.lsn, r.timestamp) for r in lsnwal.replay(wal_dir)
                  if r.kind is RecordKind.MARK]
        assert lsnwal.list_marks(wal_dir) == expect
        gate.set()
    assert lsnwal.list_marks(wal_dir) == expect
    with lsnwal.open(wal_dir, cfg):
        pass
    assert lsnwal.list_marks(wal_dir) == expect


def test_mark_name_validation(open_wal: lsnwal.AsyncWalWriter) -> None:
    """An empty or oversized mark name is refused and uses no LSN."""
    with pytest.raises(ValueError):
        open_wal.mark("")
    with pytest.raises(ValueError):
        open_wal.mark("x" * 300)
    assert open_wal.last_lsn == 0
    assert open_wal.mark("ok") == 1


# --------------------------------------------------------------------------- impossible targets


def test_unreachable_targets_raise_before_yielding(hist: History) -> None:
    """LSN past the end, an unknown mark and a time before the first record raise, yield nothing."""
    last = hist.all[-1].lsn
    first_ts = hist.all[0].timestamp
    cases: list[Callable[[], Iterator[lsnwal.Record]]] = [
        lambda: lsnwal.replay(hist.path, until_lsn=last + 1),
        lambda: lsnwal.replay(hist.path, until_lsn=last + 1000, inclusive=False),
        lambda: lsnwal.replay(hist.path, until_mark="no-such-mark"),
        lambda: lsnwal.replay(hist.path, until_time=first_ts - 10),
        lambda: lsnwal.replay(hist.path, until_time=first_ts - 10, from_lsn=50),
        lambda: lsnwal.replay(hist.path, until_time=first_ts - 1e-3, inclusive=False),
        lambda: lsnwal.replay(hist.path, until_time=dt.datetime(2000, 1, 1, tzinfo=UTC)),
        lambda: lsnwal.replay(hist.path, until_lsn=last + 1, kinds=[RecordKind.MARK]),
    ]
    for case in cases:
        assert collect_until_error(case) == []


def test_targets_on_an_empty_wal(wal_dir: Path) -> None:
    """A new WAL replays nothing, and any target on it cannot be met."""
    with lsnwal.open(wal_dir):
        pass
    assert list(lsnwal.replay(wal_dir)) == []
    assert collect_until_error(lambda: lsnwal.replay(wal_dir, until_lsn=1)) == []
    assert collect_until_error(lambda: lsnwal.replay(wal_dir, until_mark="m")) == []
    assert collect_until_error(lambda: lsnwal.replay(wal_dir, until_time=time.time())) == []


def test_only_one_target_at_a_time(hist: History) -> None:
    """Giving two targets at once is a ValueError."""
    with pytest.raises(ValueError):
        lsnwal.replay(hist.path, until_lsn=5, until_mark="before-migration")
    with pytest.raises(ValueError):
        lsnwal.replay(hist.path, until_lsn=5, until_time=hist.t_between)


def _prune_oldest(path: Path) -> int:
    """Checkpoint everything and prune to the newest 3 segments; return the oldest LSN left."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_max_segments=3)
    with lsnwal.open(path, cfg) as wal:
        wal.checkpoint(wal.last_lsn)
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
        wal.prune()
    oldest = lsnwal.collect_all_segments(path)[0].first_lsn
    assert oldest > 1
    return oldest


def test_pruned_from_lsn_is_unavailable(hist: History) -> None:
    """from_lsn below the oldest retained record raises LsnUnavailableError; at it, replay works."""
    oldest = _prune_oldest(hist.path)
    for start in (1, oldest - 1):
        with pytest.raises(lsnwal.LsnUnavailableError) as exc:
            list(lsnwal.replay(hist.path, from_lsn=start))
        assert isinstance(exc.value, lsnwal.WalError)
    got = list(lsnwal.replay(hist.path, from_lsn=oldest))
    assert rows(got[: len(hist.all) - oldest + 1]) == rows(hist.all[oldest - 1 :])
    assert rows(list(lsnwal.replay(hist.path)))[0][0] == oldest
    # targets before the oldest retained record cannot be met either
    assert collect_until_error(lambda: lsnwal.replay(hist.path, until_lsn=oldest - 1)) == []
    assert collect_until_error(
        lambda: lsnwal.replay(hist.path, until_time=hist.all[oldest - 2].timestamp - 1e-3)
    ) == []


# --------------------------------------------------------------------------- kinds


def test_kinds_filter(hist: History) -> None:
    """kinds keeps only the given record kinds; targets still count every record."""
    marks = list(lsnwal.replay(hist.path, kinds=[RecordKind.MARK]))
    assert [r.name for r in marks] == ["before-migration", "after-migration"]
    cps = list(lsnwal.replay(hist.path, kinds={RecordKind.CHECKPOINT}))
    assert [(r.checkpoint_lsn, r.payload) for r in cps] == [(60, b"app@60")]
    data = list(lsnwal.replay(hist.path, kinds=(RecordKind.DATA,)))
    assert rows(data) == rows([r for r in hist.all if r.kind is RecordKind.DATA])
    assert [r.payload for r in data] == [payload(i) for i in range(300)]
    both = list(lsnwal.replay(hist.path, kinds=[RecordKind.MARK, RecordKind.CHECKPOINT]))
    assert [r.lsn for r in both] == sorted(r.lsn for r in marks + cps)
    got = list(lsnwal.replay(hist.path, until_mark="before-migration", kinds=[RecordKind.MARK]))
    assert [r.name for r in got] == ["before-migration"]
    got = list(lsnwal.replay(hist.path, until_mark="before-migration", inclusive=False,
                             kinds=[RecordKind.MARK]))
    assert got == []
    assert list(lsnwal.replay(hist.path, kinds=[])) == []


# --------------------------------------------------------------------------- seeking


class CountingFs(OsFileSystem):
    """The real file system, counting opens for reading and bytes read per path."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.read_bytes: dict[str, int] = {}
        self._paths: dict[int, str] = {}

    def open_read(self, path: str) -> int:
        """Open and remember which file a descriptor belongs to."""
        fd = super().open_read(path)
        self.opened.append(path)
        self._paths[fd] = path
        return fd

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Read and count the bytes."""
        out = super().pread(fd, size, offset)
        p = self._paths.get(fd, "?")
        self.read_bytes[p] = self.read_bytes.get(p, 0) + len(out)
        return out


def test_replay_seeks_without_reading_earlier_segments(wal_dir: Path) -> None:
    """replay(from_lsn=X) with X in the last of ~100 archived segments opens only a few files."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL)
    expected = {}
    with lsnwal.open(wal_dir, cfg) as wal:
        for i in range(3700):
            p = payload(i)
            expected[wal.append(p)] = p
        wal.rotate()
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
    segs = [s for s in lsnwal.collect_all_segments(wal_dir) if s.state == "archive"]
    assert len(segs) >= 100
    target = segs[-1]
    x = (target.first_lsn + target.last_lsn) // 2
    fs = CountingFs()
    got = list(lsnwal.replay(wal_dir, from_lsn=x, fs=fs))
    assert [(r.lsn, r.payload) for r in got] == [(k, v) for k, v in expected.items() if k >= x]
    assert len(fs.opened) <= 6, fs.opened
    index = os.path.join(wal_dir, "archive.index")  # the seek index (a hint)
    watermark = os.path.join(wal_dir, "WATERMARK")  # read first: where the log may end
    assert set(fs.opened) <= {target.path, os.path.join(wal_dir, "active.wal"), index,
                              watermark}
    # the same for an LSN in a middle segment: only that one and the newest are read
    mid = segs[50]
    fs = CountingFs()
    it = lsnwal.replay(wal_dir, from_lsn=mid.first_lsn + 3, until_lsn=mid.last_lsn, fs=fs)
    got = list(it)
    assert [r.lsn for r in got] == list(range(mid.first_lsn + 3, mid.last_lsn + 1))
    assert {p for p in fs.opened if "archive" in p} <= {mid.path, segs[-1].path, index}


def test_replay_seeks_inside_a_large_segment(wal_dir: Path) -> None:
    """from_lsn near the end of a 6 MiB archived segment reads only its last index block."""
    cfg = lsnwal.WalConfig(segment_max_bytes=8 << 20)
    big = [b"%08d" % i + b"z" * 1000 for i in range(6000)]
    with lsnwal.open(wal_dir, cfg) as wal:
        lsns = wal.append_batch(big)
        wal.rotate()
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
    (seg,) = [s for s in lsnwal.collect_all_segments(wal_dir) if s.state == "archive"]
    assert seg.size_bytes > 6_000_000
    fs = CountingFs()
    x = lsns[-10]
    got = list(lsnwal.replay(wal_dir, from_lsn=x, fs=fs))
    assert [(r.lsn, r.payload) for r in got] == list(zip(lsns[-10:], big[-10:], strict=True))
    # index blocks hold about one write buffer (1 MiB) of records at most
    assert fs.read_bytes[seg.path] < seg.size_bytes // 3, fs.read_bytes


# --------------------------------------------------------------------------- restore


def test_restore_by_lsn_then_continue_writing(hist: History, tmp_path: Path) -> None:
    """restore() copies exactly the records up to the target; the copy continues at target + 1."""
    before = hashes(hist.path)
    target = tmp_path / "restored"
    res = lsnwal.restore(hist.path, target, until_lsn=200)
    assert hashes(hist.path) == before, "restore changed its source"
    assert (res.records, res.first_lsn, res.last_lsn) == (200, 1, 200)
    assert rows(list(lsnwal.replay(target))) == rows(hist.all[:200])
    assert lsnwal.verify(target).ok
    with lsnwal.open(target, lsnwal.WalConfig(segment_max_bytes=SMALL)) as wal:
        assert wal.current_lsn == 201
        assert wal.last_lsn == 200
        assert wal.checkpoint_lsn == 60  # the CHECKPOINT record came along
        assert wal.append(b"new life") == 201
        wal.append_batch([b"a", b"b"])
        wal.sync()
    got = list(lsnwal.replay(target))
    assert rows(got[:200]) == rows(hist.all[:200])
    assert [(r.lsn, r.payload) for r in got[200:]] == [(201, b"new life"), (202, b"a"), (203, b"b")]
    assert hashes(hist.path) == before
    assert rows(list(lsnwal.replay(hist.path))) == rows(hist.all)


def test_restore_by_time_and_mark(hist: History, tmp_path: Path) -> None:
    """restore() accepts time and mark targets, inclusive and exclusive, like replay."""
    before = hashes(hist.path)
    cases: list[tuple[dict[str, object], list[lsnwal.Record]]] = [
        ({"until_time": hist.t_between}, hist.all[: hist.phase1_last]),
        ({"until_time": hist.t_between, "inclusive": False}, hist.all[: hist.phase1_last - 1]),
        ({"until_mark": "before-migration"}, hist.all[: hist.mark_lsn]),
        ({"until_mark": "before-migration", "inclusive": False}, hist.all[: hist.mark_lsn - 1]),
        ({"until_lsn": 150, "inclusive": False}, hist.all[:149]),
    ]
    for n, (kw, expect) in enumerate(cases):
        target = tmp_path / f"r{n}"
        res = lsnwal.restore(hist.path, target, **kw)  # type: ignore[arg-type]
        assert res.records == len(expect) and res.last_lsn == expect[-1].lsn
        assert rows(list(lsnwal.replay(target))) == rows(expect)
        with lsnwal.open(target) as wal:
            assert wal.current_lsn == expect[-1].lsn + 1
            assert wal.append(b"next") == expect[-1].lsn + 1
    assert lsnwal.list_marks(tmp_path / "r2") == [
        ("before-migration", hist.mark_lsn, hist.all[hist.mark_lsn - 1].timestamp)
    ]
    assert hashes(hist.path) == before


def test_restore_everything_by_default(hist: History, tmp_path: Path) -> None:
    """Without a target, restore copies the whole log."""
    res = lsnwal.restore(hist.path, tmp_path / "all")
    assert res.records == len(hist.all)
    assert rows(list(lsnwal.replay(tmp_path / "all"))) == rows(hist.all)


def test_restore_refuses_non_empty_target(hist: History, tmp_path: Path) -> None:
    """A target directory that holds anything is refused and left as it was."""
    target = tmp_path / "busy"
    target.mkdir()
    (target / "precious.txt").write_bytes(b"do not touch")
    with pytest.raises(FileExistsError):
        lsnwal.restore(hist.path, target, until_lsn=10)
    assert sorted(os.listdir(target)) == ["precious.txt"]
    assert (target / "precious.txt").read_bytes() == b"do not touch"
    # restoring over an existing WAL is refused too
    with pytest.raises(FileExistsError):
        lsnwal.restore(hist.path, hist.path, until_lsn=10)
    # an existing empty directory is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    assert lsnwal.restore(hist.path, empty, until_lsn=10).records == 10


def test_restore_with_unreachable_target_creates_nothing(hist: History, tmp_path: Path) -> None:
    """A restore whose target cannot be met raises RecoveryTargetError and leaves no directory."""
    last = hist.all[-1].lsn
    kws: list[dict[str, object]] = [
        {"until_lsn": last + 1},
        {"until_mark": "nope"},
        {"until_time": hist.all[0].timestamp - 5},
    ]
    for n, kw in enumerate(kws):
        target = tmp_path / f"t{n}"
        with pytest.raises(lsnwal.RecoveryTargetError):
            lsnwal.restore(hist.path, target, **kw)  # type: ignore[arg-type]
        assert not target.exists() or os.listdir(target) == []
        # the same target can be used once the mistake is fixed
        assert lsnwal.restore(hist.path, target, until_lsn=5).records == 5


def test_restore_from_a_pruned_source(hist: History, tmp_path: Path) -> None:
    """A source whose oldest segments were pruned restores from its oldest retained LSN."""
    oldest = _prune_oldest(hist.path)
    res = lsnwal.restore(hist.path, tmp_path / "r", until_lsn=280)
    assert (res.first_lsn, res.last_lsn) == (oldest, 280)
    assert rows(list(lsnwal.replay(tmp_path / "r"))) == rows(hist.all[oldest - 1 : 280])
    with lsnwal.open(tmp_path / "r") as wal:
        assert wal.append(b"x") == 281
    assert lsnwal.verify(tmp_path / "r").ok


def test_replay_and_restore_with_relocated_archive(tmp_path: Path) -> None:
    """With archive_dir elsewhere, replay and restore need (and use) the config."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, archive_dir=str(tmp_path / "far-archive"))
    src = tmp_path / "wal"
    with lsnwal.open(src, cfg) as wal:
        lsns = wal.append_batch([payload(i) for i in range(200)])
        wal.mark("m")
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
    assert os.listdir(tmp_path / "far-archive")
    got = list(lsnwal.replay(src, config=cfg, until_mark="m", inclusive=False))
    assert [(r.lsn, r.payload) for r in got] == [
        (lsn, payload(i)) for i, lsn in enumerate(lsns)
    ]
    res = lsnwal.restore(src, tmp_path / "r", config=cfg, until_lsn=lsns[-1])
    assert res.records == 200
    assert [r.payload for r in lsnwal.replay(tmp_path / "r")] == [payload(i) for i in range(200)]
