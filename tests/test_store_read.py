"""Reading a WAL from a store: restore on an empty machine, seeks by ranged reads, damage found.

The store copy is made by shipping (SeaweedFS, or a ``file://`` directory
where a test can flip bytes in an object). Every comparison is record by
record, byte for byte, against the same operation on the local directory.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from _faultstore import FaultStore
from _seaweed import ACCESS_KEY, SECRET_KEY

import lsnwal
from lsnwal.store import LocalStore, open_store, parse_url
from lsnwal.store.source import StoreFileSystem, read_source
from lsnwal.store.url import timeline_dir


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test server's credentials in the usual AWS environment variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


def ship_wal(path: Path, url: str, store: Any, n: int, seg: int = 4096,
             compression: str | None = None) -> None:
    """A WAL of ``n`` records (a mark every 97, a checkpoint every 150) shipped to ``url``."""
    cfg = lsnwal.WalConfig(segment_max_bytes=seg, archive_url=url, archive_store=store,
                           compression=compression)  # type: ignore[arg-type]
    rng = random.Random(n)
    with lsnwal.open(path, cfg) as wal:
        for i in range(n):
            wal.append(rng.randbytes(rng.randint(10, 300)))
            if i % 97 == 0:
                wal.mark(f"m{i}")
            if i % 150 == 0:
                wal.checkpoint(wal.last_lsn, payload=b"cp")
        wal.rotate()  # seal the tail: it ships too
        wal.sync()
        wal.wait_archived(30)
        assert wal._archiver.wait_shipped(60)


def recs(it: Any) -> list[tuple[int, int, float, bytes]]:
    """Records as comparable tuples."""
    return [(r.lsn, int(r.kind), r.timestamp, r.payload) for r in it]


@pytest.fixture(scope="module")
def shipped(seaweed: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One WAL of 600 records shipped to SeaweedFS (shared by the read tests of this module)."""
    path = tmp_path_factory.mktemp("src") / "wal"
    url = seaweed.url()
    ship_wal(path, url, seaweed.client(), 600, seg=16384)
    return url, path


def test_restore_on_an_empty_machine_is_byte_identical(
    shipped: tuple[str, Path], tmp_path: Path, s3_env: None
) -> None:
    """For LSN, time and mark targets, restoring from the store equals restoring locally.

    The normal run restores to 3 targets; ``LSNWAL_STRESS=1`` to all 8.
    """
    url, local = shipped
    all_recs = recs(lsnwal.replay(local))
    rng = random.Random(5)
    picks = [*rng.sample(all_recs, 2), all_recs[0], all_recs[-1]]
    marks = lsnwal.list_marks(local)
    assert lsnwal.list_marks(url) == marks
    targets: list[dict[str, Any]] = [{"until_lsn": p[0]} for p in picks]
    targets += [{"until_time": p[2], "inclusive": False} for p in picks[:2]]
    targets += [{"until_mark": marks[3][0]}, {"until_mark": marks[-1][0], "inclusive": False}]
    if os.environ.get("LSNWAL_STRESS") != "1":
        targets = targets[::3]  # one LSN, one time, one mark target in the normal run
    for i, target in enumerate(targets):
        a, b = tmp_path / f"s{i}", tmp_path / f"l{i}"
        ra = lsnwal.restore(url, a, **target)
        rb = lsnwal.restore(local, b, **target)
        assert (ra.records, ra.first_lsn, ra.last_lsn) == (rb.records, rb.first_lsn, rb.last_lsn)
        assert recs(lsnwal.replay(a)) == recs(lsnwal.replay(b)), target
        with lsnwal.open(a) as wal:  # the restored WAL continues right after the target
            assert wal.current_lsn == (ra.last_lsn or 0) + 1


def test_replay_and_verify_from_the_store(shipped: tuple[str, Path], s3_env: None) -> None:
    """Replays from every 200th LSN, with kinds, and verify give what the local WAL gives."""
    url, local = shipped
    last = lsnwal.verify(local).last_lsn
    assert last is not None
    for start in range(1, last, 200):
        until = min(start + 120, last)
        assert recs(lsnwal.replay(url, from_lsn=start, until_lsn=until)) == \
            recs(lsnwal.replay(local, from_lsn=start, until_lsn=until))
    kinds = [lsnwal.RecordKind.MARK, lsnwal.RecordKind.CHECKPOINT]
    assert recs(lsnwal.replay(url, kinds=kinds)) == recs(lsnwal.replay(local, kinds=kinds))
    report = lsnwal.verify(url)
    assert report.ok and report.records == lsnwal.verify(local).records
    with pytest.raises(lsnwal.RecoveryTargetError):
        list(lsnwal.replay(url, until_mark="no-such-mark"))
    with pytest.raises(lsnwal.LsnUnavailableError):
        list(lsnwal.replay(url, from_lsn=last + 5))
    with pytest.raises(lsnwal.RecoveryTargetError):
        list(lsnwal.replay(url, from_lsn=last - 3, until_lsn=last + 1))


def test_a_seek_reads_the_same_few_ranges_whatever_the_archive_size(
    seaweed: Any, tmp_path: Path
) -> None:
    """Seeking to one LSN costs the same requests in a 4- and a 40-segment store, few KiB.

    Every LIST, HEAD and GET the reader makes is counted (not timed): no full
    listing, the same handful of small requests whatever the archive's size.
    """
    costs = []
    for n in (100, 1000):
        url = seaweed.url()
        ship_wal(tmp_path / f"w{n}", url, seaweed.client(), n)
        counting = FaultStore(open_store(url, seaweed.client()))
        src, fs = read_source(url, None, counting, seek=40)
        assert isinstance(fs, StoreFileSystem) and fs.sparse
        first = next(iter(lsnwal.replay(src, fs=fs, from_lsn=40)))
        assert first.lsn == 40
        local = next(iter(lsnwal.replay(tmp_path / f"w{n}", from_lsn=40)))
        assert (first.timestamp, first.payload) == (local.timestamp, local.payload)
        tdir = timeline_dir(parse_url(url).prefix, 1)
        segs = len(list(open_store(url, seaweed.client()).list(tdir)))
        costs.append((segs, dict(counting.calls), fs.bytes_read))
    (small_segs, small_calls, _), (big_segs, big_calls, big_bytes) = costs
    assert big_segs >= 5 * small_segs
    assert big_calls == small_calls and sum(big_calls.values()) <= 10
    assert big_bytes <= 4 * 64 * 1024


def test_damage_in_a_stored_object_is_reported(tmp_path: Path) -> None:
    """A flipped byte in a stored segment: verify names it, replay raises, no wrong record."""
    base = tmp_path / "store"
    base.mkdir()
    url = f"file://{base}"
    ship_wal(tmp_path / "w", url, None, 300)
    objs = sorted(p for p in base.rglob("*.wal"))
    victim = objs[len(objs) // 2]
    data = bytearray(victim.read_bytes())
    data[200] ^= 0x40  # inside the records, after the header
    victim.write_bytes(bytes(data))
    report = lsnwal.verify(url)
    assert not report.ok
    assert any(victim.name in p.file for p in report.problems)
    good = recs(lsnwal.replay(tmp_path / "w"))
    got: list[tuple[int, int, float, bytes]] = []
    with pytest.raises(lsnwal.WalCorruptionError):
        for r in lsnwal.replay(url):
            got.append((r.lsn, int(r.kind), r.timestamp, r.payload))
    assert got == good[: len(got)]


def test_compressed_archive_ships_and_reads_back(tmp_path: Path) -> None:
    """A zstd archive ships its .zwal objects as they are and replays to the same records."""
    base = tmp_path / "store"
    base.mkdir()
    url = f"file://{base}"
    ship_wal(tmp_path / "w", url, LocalStore(str(base)), 400, compression="zstd")
    assert any(p.suffix == ".zwal" for p in base.rglob("*"))
    assert recs(lsnwal.replay(url)) == recs(lsnwal.replay(tmp_path / "w"))[
        : len(recs(lsnwal.replay(url)))]
    assert os.listdir(base)
