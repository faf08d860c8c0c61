"""Group commit for every kind of committer, honest acknowledgements, and no file per commit.

Owns two families:

* **Group commit, honestly.** 16 threads committing with ``sync()``, with
  ``sync_async().wait()``, 200 asyncio tasks awaiting handles, and all of them
  at once, on a slow fsync, with one big segment and with 4 KiB segments that
  rotate under the committers. ``stats().commits_per_fsync`` must show sharing,
  and a recording backend proves every acknowledgement (and every reading of
  ``synced_lsn``) was covered by fsyncs that had returned before it, over a
  contiguous LSN prefix, byte for byte (invariants 2 and 3).
* **A commit never costs a file.** Lone commits of each kind (4,000; 10,000
  under ``LSNWAL_STRESS=1``) leave one segment file at the default size, and
  with 4 KiB segments (1,000 / 10,000 commits of 100 and 700 bytes) exactly the
  files size rotation needs: every segment but the last was full.

Rules: no timing assertions; every thread runs under a guard join that fails
(never skips) if something hangs.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from _commit_helpers import (
    Monitor,
    Recorder,
    RecordingBackend,
    check_honest,
    data_records,
    payload,
    run_threads,
    stress_enabled,
)
from _fault_fs import FailAt, NullBackend, RecordingFs

import lsnwal
from lsnwal.testing import SlowSyncBackend

THREADS = 16
PER_THREAD = 12
TASKS = 200
LONE_COMMITS = 10_000 if stress_enabled() else 4_000
SEGMENT_SIZES = {"one-segment": 64 * 1024 * 1024, "4KiB": 4096}


def _open(wal_dir: Path, seg: int, rec: Recorder) -> lsnwal.AsyncWalWriter:
    backend = RecordingBackend(rec, SlowSyncBackend(delay_s=0.004))
    return lsnwal.open(wal_dir, lsnwal.WalConfig(segment_max_bytes=seg),
                       sync_backend=backend, fs=RecordingFs(rec, backend))


def _thread_committer(wal: lsnwal.AsyncWalWriter, rec: Recorder, written: dict[int, bytes],
                      how: str) -> Callable[[int], None]:
    mu = threading.Lock()

    def work(t: int) -> None:
        for i in range(PER_THREAD):
            p = payload(f"{how}{t}", i)
            lsn = wal.append(p)
            with mu:
                written[lsn] = p
            if how == "sync" or (how == "mixed" and t % 2 == 0):
                got = wal.sync()
                rec.ack(got, "sync()")
                assert got >= lsn, f"sync() returned {got} below its own record {lsn}"
            else:
                h = wal.sync_async()
                assert h.target_lsn >= lsn
                assert h.wait(60), "handle.wait() timed out"
                rec.ack(h.target_lsn, "handle.wait()")

    return work


def _asyncio_committers(wal: lsnwal.AsyncWalWriter, rec: Recorder, written: dict[int, bytes],
                        tasks: int) -> None:
    async def one(k: int) -> None:
        for i in range(2):
            p = payload(f"task{k}", i)
            lsn = wal.append(p)
            written[lsn] = p
            h = wal.sync_async()
            got = await asyncio.wait_for(h, 60)
            assert got >= lsn
            rec.ack(got, "await handle")

    async def main() -> None:
        await asyncio.gather(*(one(k) for k in range(tasks)))

    asyncio.run(main())


@pytest.mark.parametrize("seg", list(SEGMENT_SIZES), ids=list(SEGMENT_SIZES))
@pytest.mark.parametrize("how", ["sync", "wait", "await", "mixed"])
def test_group_commit_is_shared_and_every_ack_is_honest(wal_dir: Path, how: str, seg: str) -> None:
    """Concurrent committers of one kind (or all kinds) share fsyncs and are never told early."""
    rec = Recorder()
    wal = _open(wal_dir, SEGMENT_SIZES[seg], rec)
    written: dict[int, bytes] = {}
    try:
        with Monitor(wal, rec):
            if how == "await":
                _asyncio_committers(wal, rec, written, TASKS)
            elif how == "mixed":
                loop_thread = threading.Thread(
                    target=_asyncio_committers, args=(wal, rec, written, TASKS // 2),
                    name="test-asyncio",
                )
                loop_thread.start()
                run_threads(THREADS, _thread_committer(wal, rec, written, how))
                loop_thread.join(60)
                assert not loop_thread.is_alive(), "asyncio committers are stuck"
            else:
                run_threads(THREADS, _thread_committer(wal, rec, written, how))
        stats = wal.stats()
    finally:
        wal.close()
    commits = len([a for a in rec.acks if a.what not in ("synced_lsn", "WATERMARK")])
    assert commits == len(written)
    assert stats.commits_per_fsync > 1.0, f"no group commit: {stats}"
    file_fsyncs = len([f for f in rec.file_syncs if f.ok])
    assert file_fsyncs < commits, f"{file_fsyncs} fsyncs for {commits} commits: none shared"
    assert check_honest(rec, written) > commits
    assert data_records(wal_dir) == written


# --------------------------------------------------------------------------- no file per commit


def _segment_files(wal_dir: Path) -> list[str]:
    """Segment files in archive/, pending/ and the active place, as recovery finds them."""
    return [s.path for s in lsnwal.collect_all_segments(wal_dir, lsnwal.WalConfig())]


def _lone_commits(wal: lsnwal.AsyncWalWriter, how: str, n: int, size: int) -> dict[int, bytes]:
    written: dict[int, bytes] = {}
    for i in range(n):
        p = payload(how, i, size)
        lsn = wal.append(p)
        written[lsn] = p
        if how == "sync":
            assert wal.sync() >= lsn
        else:
            h = wal.sync_async()
            assert h.wait(60) and h.target_lsn >= lsn
    return written


@pytest.mark.parametrize("how", ["sync", "wait"])
def test_lone_commits_at_the_default_size_leave_one_segment_file(wal_dir: Path, how: str) -> None:
    """Thousands of lone commits with the default config create no segment file but one."""
    fs = RecordingFs()
    with lsnwal.open(wal_dir, sync_backend=NullBackend(), fs=fs) as wal:
        before = fs.counts.get("create", 0)
        written = _lone_commits(wal, how, LONE_COMMITS, 100)
        created = fs.counts.get("create", 0) - before
        assert wal.stats().rotations == 0
    files = _segment_files(wal_dir)
    assert len(files) == 1, f"{LONE_COMMITS} commits left {len(files)} segment files: {files}"
    assert created <= 2, f"{created} files were created during {LONE_COMMITS} lone commits"
    assert data_records(wal_dir) == written


def _assert_rotated_only_when_full(wal_dir: Path, cfg: lsnwal.WalConfig) -> int:
    """Every segment but the newest was full: the next record would not have fitted."""
    segs = lsnwal.collect_all_segments(wal_dir, cfg)
    records = {r.lsn: r for r in lsnwal.replay(wal_dir, config=cfg)}
    for seg, nxt in itertools.pairwise(segs):
        assert seg.size_bytes <= cfg.segment_max_bytes, seg
        held = sum(28 + len(records[lsn].payload) for lsn in range(seg.first_lsn,
                                                                    seg.last_lsn + 1))
        following = 28 + len(records[nxt.first_lsn].payload)
        # 48 header bytes + a seal of at most 256 bytes: had the next record fitted, the
        # segment was rotated for something other than size.
        assert 48 + held + following + 256 > cfg.segment_max_bytes, (
            f"{seg.path} rotated with {held} bytes of records although the next "
            f"{following} would have fitted in {cfg.segment_max_bytes}"
        )
    return len(segs)


@pytest.mark.parametrize("size", [100, 700])
@pytest.mark.parametrize("how", ["sync", "wait"])
def test_lone_commits_with_small_segments_follow_the_size_arithmetic(
    wal_dir: Path, how: str, size: int
) -> None:
    """With 4 KiB segments the file count is what size rotation needs, never one per commit."""
    cfg = lsnwal.WalConfig(segment_max_bytes=4096)
    n = 10_000 if stress_enabled() else 1_000
    with lsnwal.open(wal_dir, cfg, sync_backend=NullBackend()) as wal:
        written = _lone_commits(wal, how, n, size)
        rotations = wal.stats().rotations
    count = _assert_rotated_only_when_full(wal_dir, cfg)
    assert count == rotations + 1
    per_segment = (4096 - 48 - 256) // (28 + size)
    assert count <= -(-n // per_segment), f"{count} segments for {n} records of {size} bytes"
    assert data_records(wal_dir, config=cfg) == written


# ----------------------------------------------------------------- fail-stop, whoever fsyncs


def _failing_committers(wal: lsnwal.AsyncWalWriter, rec: Recorder, written: dict[int, bytes],
                        how: str, loose: list[lsnwal.SyncHandle]) -> list[BaseException]:
    """Commit of one kind on 4 threads (or 40 tasks) until lsnwal refuses; return the refusals."""
    ends: list[BaseException] = []
    mu = threading.Lock()

    def step(tag: str, i: int) -> int:
        p = payload(tag, i)
        lsn = wal.append(p)
        with mu:
            written[lsn] = p
        return lsn

    def thread_body(t: int) -> None:
        try:
            for i in range(10_000):
                lsn = step(f"f{t}", i)
                if how == "sync":
                    rec.ack(wal.sync(), "sync()")
                    continue
                h = wal.sync_async()
                if how == "wait":
                    assert h.wait(60)
                    rec.ack(h.target_lsn, "wait()")
                else:  # "loose": handles nobody waits on (checked after the failure)
                    assert h.target_lsn >= lsn
                    loose.append(h)
        except lsnwal.WalError as exc:
            ends.append(exc)

    async def task(k: int) -> None:
        try:
            for i in range(10_000):
                step(f"a{k}", i)
                rec.ack(await asyncio.wait_for(wal.sync_async(), 60), "await")
        except lsnwal.WalError as exc:
            ends.append(exc)

    async def tasks() -> None:
        await asyncio.gather(*(task(k) for k in range(40)))

    if how == "await":
        asyncio.run(tasks())
    else:
        run_threads(4, thread_body)
    return ends


@pytest.mark.parametrize("how", ["sync", "wait", "await", "loose"])
def test_a_failed_fsync_fail_stops_whoever_runs_it(tmp_path: Path, how: str) -> None:
    """The k-th file or dir fsync fails under one committer kind: each gets WalSyncError."""
    roles: set[str] = set()
    for what in ("file", "dir"):
        for nth in (1, 2, 3):
            rec = Recorder()
            failing = FailAt(SlowSyncBackend(delay_s=0.002), what, 10**9)
            backend = RecordingBackend(rec, failing)
            wal_dir = tmp_path / f"{what}{nth}"
            wal = lsnwal.open(wal_dir, lsnwal.WalConfig(segment_max_bytes=4096),
                              sync_backend=backend, fs=RecordingFs(rec, backend))
            failing.nth = failing.calls + nth
            written: dict[int, bytes] = {}
            loose: list[lsnwal.SyncHandle] = []
            ends = _failing_committers(wal, rec, written, how, loose)
            assert failing.failed, f"{what} fsync {nth} never happened"
            roles.add(failing.failed[0][2])
            err = wal.failure
            assert isinstance(err, lsnwal.WalSyncError) and isinstance(err.cause, OSError)
            assert ends and all(isinstance(e, lsnwal.WalSyncError) for e in ends), ends
            frozen = wal.synced_lsn
            rec.sample(frozen)
            for call in (wal.sync, wal.sync_async, functools.partial(wal.append, b"late")):
                with pytest.raises(lsnwal.WalSyncError):
                    call()
            assert wal.synced_lsn == frozen, "synced_lsn moved after the failure"
            for h in loose:  # past the frozen LSN: failed; at or below: done either way
                assert _raises_sync_error(h) if h.target_lsn > frozen else h.done()
            wal.close()  # never raises for the earlier failure
            check_honest(rec, written)
            told = max((a.lsn for a in rec.acks), default=0)
            got = data_records(wal_dir)
            assert all(got[lsn] == written[lsn] for lsn in range(1, told + 1))
    if how == "await":
        assert "MainThread" not in roles, "an awaiting event loop ran a blocking fsync itself"


def _raises_sync_error(h: lsnwal.SyncHandle) -> bool:
    """True if waiting on ``h`` raises ``WalSyncError`` (a handle past the frozen LSN must)."""
    try:
        h.wait(60)
    except lsnwal.WalSyncError:
        return True
    return False
