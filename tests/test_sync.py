"""Tests of the FIFO sync thread: contiguity, honest acks, fail-stop, backpressure, group commit.

Fault injection goes through the swappable ``SyncBackend`` (``lsnwal.testing``):
a backend that blocks its first fsync holds segments back, one that raises
simulates a failing disk. Waits are event based; the few bounded joins only
check that something does *not* happen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gc
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import lsnwal
from lsnwal.spares import SPARE_PREFIX, SPARE_SUFFIX
from lsnwal.testing import (
    BlockingSyncBackend,
    CountingSyncBackend,
    FailingSyncBackend,
    SlowSyncBackend,
)

SMALL = lsnwal.WalConfig(segment_max_bytes=4096)
WAIT_S = 10.0  # generous upper bound for anything that must happen


def _payload(i: int, size: int = 100) -> bytes:
    """A payload that names its index (so a misplaced record shows up)."""
    head = f"rec-{i}:".encode()
    return head + bytes((i + k) % 251 for k in range(max(0, size - len(head))))


def _lsnwal_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("lsnwal")}


def _records(wal_dir: Path) -> dict[int, bytes]:
    """Every DATA record in the (closed) WAL directory, by LSN."""
    return {r.lsn: r.payload for r in lsnwal.replay(wal_dir) if r.kind == lsnwal.RecordKind.DATA}


def _listing(wal_dir: Path) -> set[str]:
    """Segment files and directories (not the spare files a background thread pre-creates)."""
    return {
        str(p.relative_to(wal_dir))
        for p in wal_dir.rglob("*")
        if not (p.name.startswith(SPARE_PREFIX) and p.name.endswith(SPARE_SUFFIX))
    }


def _fill_segments(wal: lsnwal.AsyncWalWriter, written: dict[int, bytes], rotations: int) -> None:
    """Append until the active segment has rotated ``rotations`` more times."""
    start = wal.stats().rotations
    i = len(written)
    while wal.stats().rotations < start + rotations:
        p = _payload(i, 300)
        written[wal.append(p)] = p
        i += 1


@pytest.fixture
def blocking() -> Iterator[BlockingSyncBackend]:
    """A backend whose first file fsync blocks until released (released at teardown)."""
    backend = BlockingSyncBackend(timeout_s=30.0)
    try:
        yield backend
    finally:
        backend.release()


class _RaisingBackend:
    """A backend whose file fsync raises ``exc_factory()`` (a non-OSError bug, say)."""

    def __init__(self, exc_factory: Callable[[], BaseException]) -> None:
        self.exc_factory = exc_factory
        self.inner = lsnwal.OsSyncBackend()
        self.calls = 0

    def sync_file(self, fd: int) -> None:
        self.calls += 1
        raise self.exc_factory()

    def sync_dir(self, fd: int) -> None:
        self.inner.sync_dir(fd)


# --------------------------------------------------------------------------- contiguity


def test_blocked_segment_holds_back_later_segments_and_blocking_sync(
    wal_dir: Path, blocking: BlockingSyncBackend
) -> None:
    """While the oldest pending segment's fsync blocks, nothing later is published or acked."""
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=blocking)
    try:
        written: dict[int, bytes] = {}
        log: list[tuple[int, int]] = []  # (handle target, synced_lsn seen inside the callback)
        log_mu = threading.Lock()

        def on_done(h: lsnwal.SyncHandle) -> None:
            with log_mu:
                log.append((h.target_lsn, wal.synced_lsn))

        samples: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.0005):
                samples.append(wal.synced_lsn)
            samples.append(wal.synced_lsn)

        watcher = threading.Thread(target=watch, name="test-watcher")
        watcher.start()

        written[wal.append(b"first")] = b"first"
        wal.rotate()  # the first unit is a rotated segment
        h_first = wal.sync_async()
        assert blocking.entered.wait(WAIT_S)
        blocked_last = h_first.target_lsn  # the blocked segment holds LSNs 1..blocked_last
        handles = [h_first]
        for _ in range(3):  # more segments queue up behind the blocked one
            _fill_segments(wal, written, 1)
            handles.append(wal.sync_async())
        for _ in range(3):  # and commits that arrive while the thread is busy
            p = _payload(len(written))
            written[wal.append(p)] = p
            handles.append(wal.sync_async())
        for h in handles:
            h.add_done_callback(on_done)
        assert wal.stats().pending_segments >= 4

        last_before_sync = wal.last_lsn
        sync_result: list[int] = []
        syncer = threading.Thread(target=lambda: sync_result.append(wal.sync()), name="t-sync")
        syncer.start()
        syncer.join(0.3)
        assert syncer.is_alive(), "sync() returned while the oldest segment was unsynced"
        assert wal.synced_lsn < 1 <= blocked_last
        assert not any(h.done() for h in handles)
        assert not any(h.wait(timeout=0) for h in handles)
        assert log == []

        blocking.release()
        syncer.join(WAIT_S)
        assert not syncer.is_alive()
        for h in handles:
            assert h.wait(WAIT_S)
            assert h.result() == h.target_lsn
        # Callbacks run after the handles are marked done (as with concurrent.futures),
        # by the thread that completed them: give them a moment (a guard, not a speed test).
        deadline = time.monotonic() + WAIT_S
        while len(log) < len(handles) and time.monotonic() < deadline:
            time.sleep(0.001)
        stop.set()
        watcher.join(WAIT_S)

        assert sync_result and sync_result[0] >= last_before_sync
        assert wal.synced_lsn >= last_before_sync
        targets = [t for t, _ in log]
        assert sorted(targets) == sorted(h.target_lsn for h in handles)
        assert targets == sorted(targets), "handles completed out of FIFO order"
        assert all(t <= seen for t, seen in log), "a callback ran before its LSN was durable"
        seen = [s for _, s in log]
        assert seen == sorted(seen)
        assert samples == sorted(samples), "synced_lsn decreased"
        assert wal.stats().pending_segments == 0
    finally:
        wal.close()
    assert _records(wal_dir) == written


def test_blocking_sync_with_empty_queue_fsyncs_in_place(wal_dir: Path) -> None:
    """sync() with nothing pending costs one fsync of the active file and no rotation."""
    backend = CountingSyncBackend()
    with lsnwal.open(wal_dir, SMALL, sync_backend=backend) as wal:
        wal.append(b"a")
        wal.sync_async().wait(WAIT_S)  # nothing pending afterwards
        for round_ in range(3):
            lsns = wal.append_batch([b"x", b"y"])
            before = wal.stats()
            files_before = backend.file_syncs
            assert wal.sync() == lsns[-1]
            after = wal.stats()
            assert after.fsyncs == before.fsyncs + 1, round_
            assert backend.file_syncs == files_before + 1
            assert after.rotations == before.rotations
            assert after.synced_lsn == lsns[-1]
            assert after.pending_segments == 0
        # nothing new: sync() is free and still honest
        before = wal.stats()
        assert wal.sync() == wal.last_lsn
        assert wal.stats().fsyncs == before.fsyncs


def test_sync_returns_at_least_the_last_appended_lsn(wal_dir: Path) -> None:
    """sync() from many threads returns a durable LSN covering the caller's own appends."""
    errors: list[str] = []
    with lsnwal.open(wal_dir, SMALL, sync_backend=SlowSyncBackend(delay_s=0.002)) as wal:

        def worker(tid: int) -> None:
            for i in range(20):
                lsn = wal.append(_payload(tid * 1000 + i))
                got = wal.sync()
                if not (lsn <= got <= wal.synced_lsn):
                    errors.append(f"lsn={lsn} sync()={got} synced={wal.synced_lsn}")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S * 3)
        assert errors == []
        assert wal.synced_lsn == wal.last_lsn == 160


# --------------------------------------------------------------------------- honest ack


def test_handles_complete_only_when_their_lsn_is_durable(wal_dir: Path) -> None:
    """wait(), result(), callbacks and await see target_lsn <= synced_lsn, never earlier."""
    violations: list[str] = []
    called: list[int] = []
    with lsnwal.open(wal_dir, SMALL, sync_backend=SlowSyncBackend(delay_s=0.003)) as wal:

        def check(h: lsnwal.SyncHandle) -> None:
            called.append(h.target_lsn)
            if h.target_lsn > wal.synced_lsn:
                violations.append(f"callback {h.target_lsn} > synced {wal.synced_lsn}")

        def worker(tid: int) -> None:
            for i in range(25):
                wal.append(_payload(tid * 100 + i))
                h = wal.sync_async()
                h.add_done_callback(check)
                if i % 3 == 0:
                    ok = h.wait()
                elif i % 3 == 1:
                    ok = h.result() == h.target_lsn
                else:
                    ok = h.wait(timeout=WAIT_S)
                if not ok or not h.done() or h.target_lsn > wal.synced_lsn:
                    violations.append(f"handle {h!r} returned early (synced {wal.synced_lsn})")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S * 3)

        async def awaiter() -> None:
            for i in range(10):
                wal.append(_payload(10_000 + i))
                h = wal.sync_async()
                got = await h
                if got != h.target_lsn or h.target_lsn > wal.synced_lsn:
                    violations.append(f"await {h!r} returned early")

        asyncio.run(awaiter())
    assert violations == []
    assert len(called) == 150


def test_wait_times_out_false_while_not_durable(
    wal_dir: Path, blocking: BlockingSyncBackend
) -> None:
    """wait(timeout) returns False (not True, not an error) while the fsync is blocked."""
    with lsnwal.open(wal_dir, SMALL, sync_backend=blocking) as wal:
        wal.append(b"x")
        h = wal.sync_async()
        assert blocking.entered.wait(WAIT_S)
        assert h.wait(timeout=0.05) is False
        assert not h.done()
        assert wal.synced_lsn == 0
        blocking.release()
        assert h.wait(WAIT_S) is True
        assert wal.synced_lsn >= h.target_lsn
        # a handle for an LSN that is already durable is done at once
        h2 = wal.sync_async()
        assert h2.done() and h2.wait(timeout=0) and h2.result() == h.target_lsn


# --------------------------------------------------------------------------- fail-stop


def _assert_fail_stopped(
    wal: lsnwal.AsyncWalWriter, frozen: int, cause_type: type[BaseException]
) -> None:
    """Every entry point raises WalSyncError at once and nothing is appended."""
    failure = wal.failure
    assert isinstance(failure, lsnwal.WalSyncError)
    assert isinstance(failure.__cause__, cause_type)
    last = wal.last_lsn
    with pytest.raises(lsnwal.WalSyncError):
        wal.append(b"after failure")
    with pytest.raises(lsnwal.WalSyncError):
        wal.append_batch([b"a", b"b"])
    with pytest.raises(lsnwal.WalSyncError):
        wal.sync()
    with pytest.raises(lsnwal.WalSyncError):
        wal.sync_async()
    with pytest.raises(lsnwal.WalSyncError):
        wal.checkpoint(0)
    assert wal.last_lsn == last
    assert wal.synced_lsn == frozen
    assert wal.stats().failed


def test_eio_on_nth_fsync_fail_stops_the_wal(wal_dir: Path) -> None:
    """EIO on the 2nd file fsync: waiters fail, synced_lsn freezes, no retry, reopen recovers."""
    gate = BlockingSyncBackend(timeout_s=30.0)
    backend = FailingSyncBackend(inner=gate, fail_on_call=2, err=errno.EIO)
    written: dict[int, bytes] = {}
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=backend)
    try:
        written[wal.append(b"ok")] = b"ok"
        h_ok = wal.sync_async()  # fsync call 1: blocks in the gate, then succeeds
        assert gate.entered.wait(WAIT_S)
        handles = []
        for _ in range(2):
            _fill_segments(wal, written, 1)
            handles.append(wal.sync_async())
        for i in range(3):
            p = _payload(5000 + i)
            written[wal.append(p)] = p
            handles.append(wal.sync_async())
        gate.release()  # call 1 succeeds, call 2 (the next batch) raises EIO

        assert h_ok.wait(WAIT_S)
        frozen = h_ok.target_lsn
        for h in handles:
            with pytest.raises(lsnwal.WalSyncError) as info:
                h.wait(WAIT_S)
            assert isinstance(info.value.__cause__, OSError)
            assert info.value.__cause__.errno == errno.EIO
            with pytest.raises(lsnwal.WalSyncError):
                h.result()
            assert h.done()

            async def await_it(handle: lsnwal.SyncHandle = h) -> int:
                return await handle

            with pytest.raises(lsnwal.WalSyncError):
                asyncio.run(await_it())
        assert wal.synced_lsn == frozen
        assert wal.failure is not None and wal.failure.cause is not None
        assert wal.failure.__cause__.errno == errno.EIO  # type: ignore[union-attr]
        _assert_fail_stopped(wal, frozen, OSError)

        calls = backend.calls
        assert calls == 2
        assert not threading.Event().wait(0.2)  # give a retry loop a chance to show itself
        assert backend.calls == calls, "a failed fsync was retried"
    finally:
        wal.close()  # must not raise because of the earlier failure
    assert backend.calls == 2
    assert wal.closed
    with pytest.raises(lsnwal.WalClosedError):
        wal.append(b"closed")

    # the lock is released: the same process can reopen; everything written is there
    with lsnwal.open(wal_dir, SMALL) as again:
        assert again.last_lsn == max(written)
        assert again.synced_lsn >= frozen
    got = _records(wal_dir)
    assert all(got[lsn] == written[lsn] for lsn in written if lsn <= frozen)
    assert got == written
    assert lsnwal.verify(wal_dir).ok


def test_non_oserror_in_the_sync_thread_fails_the_wal(wal_dir: Path) -> None:
    """A backend raising RuntimeError fails the WAL instead of killing the thread silently."""
    backend = _RaisingBackend(lambda: RuntimeError("bug in a backend"))
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=backend)
    try:
        wal.append(b"a")
        h = wal.sync_async()
        with pytest.raises(lsnwal.WalSyncError) as info:
            h.wait(WAIT_S)
        assert isinstance(info.value.__cause__, RuntimeError)
        _assert_fail_stopped(wal, 0, RuntimeError)
        assert backend.calls == 1
    finally:
        wal.close()
    with lsnwal.open(wal_dir, SMALL) as again:
        assert again.last_lsn == 1


@pytest.mark.parametrize("exc", [OSError(errno.EIO, "injected"), RuntimeError("bug")])
def test_failed_in_place_sync_fail_stops_the_wal(wal_dir: Path, exc: BaseException) -> None:
    """A failing fsync on sync()'s in-place path raises WalSyncError and fail-stops the WAL."""
    backend = _RaisingBackend(lambda: exc)
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=backend)
    try:
        lsns = wal.append_batch([b"one", b"two", b"three"])
        with pytest.raises(lsnwal.WalSyncError) as info:
            wal.sync()
        assert info.value.__cause__ is exc
        assert wal.stats().rotations == 0  # it was the in-place path
        _assert_fail_stopped(wal, 0, type(exc))
        assert backend.calls == 1
    finally:
        wal.close()
    assert backend.calls == 1
    with lsnwal.open(wal_dir, SMALL) as again:
        assert again.last_lsn == lsns[-1]
    assert _records(wal_dir) == {1: b"one", 2: b"two", 3: b"three"}


def test_failed_directory_fsync_fail_stops_the_wal(wal_dir: Path) -> None:
    """A failing fsync of pending/ (the rename's directory) is fail-stop too, nothing acked."""
    backend = FailingSyncBackend(fail_on_call=10**9, what="dir")
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=backend)
    try:
        wal.append(b"a")
        wal.sync()  # in place: no directory fsync
        backend.fail_on_call = backend.calls + 1
        wal.append(b"b")
        wal.rotate()
        h = wal.sync_async()  # the rotated segment: file fsync, then pending/ fsync fails
        with pytest.raises(lsnwal.WalSyncError):
            h.wait(WAIT_S)
        assert wal.synced_lsn == 1
        _assert_fail_stopped(wal, 1, OSError)
    finally:
        wal.close()
    with lsnwal.open(wal_dir, SMALL) as again:
        assert again.last_lsn == 2
    assert _records(wal_dir) == {1: b"a", 2: b"b"}


# --------------------------------------------------------------------------- backpressure


def test_sync_async_backpressure_timeout_appends_nothing(
    wal_dir: Path, blocking: BlockingSyncBackend
) -> None:
    """With max_pending_segments=1 reached, sync_async(timeout) raises BackpressureTimeout."""
    cfg = SMALL.replace(max_pending_segments=1)
    with lsnwal.open(wal_dir, cfg, sync_backend=blocking) as wal:
        wal.append(b"first")
        h1 = wal.sync_async()  # its fsync blocks
        assert blocking.entered.wait(WAIT_S)
        wal.rotate()  # one rotated segment waits behind it: the limit is reached
        assert wal.stats().pending_segments == 1
        lsn2 = wal.append(b"second")
        before = (wal.last_lsn, wal.current_lsn, wal.stats().rotations, _listing(wal_dir))
        assert wal.stats().backpressure_wait_s == 0
        with pytest.raises(lsnwal.BackpressureTimeout):
            wal.sync_async(timeout=0.2)
        assert isinstance(lsnwal.BackpressureTimeout("x"), TimeoutError)
        after = (wal.last_lsn, wal.current_lsn, wal.stats().rotations, _listing(wal_dir))
        assert after == before
        assert wal.stats().backpressure_wait_s > 0
        assert not h1.done()

        blocking.release()
        assert h1.wait(WAIT_S)
        h2 = wal.sync_async(timeout=WAIT_S)
        assert h2.target_lsn == lsn2
        assert h2.wait(WAIT_S)
        assert wal.synced_lsn == lsn2
    assert _records(wal_dir) == {1: b"first", 2: b"second"}


def test_size_rotation_in_append_backpressure_timeout_appends_nothing(
    wal_dir: Path, blocking: BlockingSyncBackend
) -> None:
    """An append that must rotate a full segment waits backpressure_timeout_s, then raises."""
    cfg = SMALL.replace(max_pending_segments=1, backpressure_timeout_s=0.2)
    written: dict[int, bytes] = {}
    with lsnwal.open(wal_dir, cfg, sync_backend=blocking) as wal:
        written[wal.append(b"first")] = b"first"
        h1 = wal.sync_async()
        assert blocking.entered.wait(WAIT_S)
        raised = False
        for i in range(200):
            p = _payload(i, 300)
            before = (wal.last_lsn, wal.current_lsn, wal.stats().rotations, _listing(wal_dir))
            try:
                written[wal.append(p)] = p
            except lsnwal.BackpressureTimeout:
                raised = True
                after = (wal.last_lsn, wal.current_lsn, wal.stats().rotations, _listing(wal_dir))
                assert after == before
                break
        assert raised, "a full segment rotated past max_pending_segments=1"
        assert wal.stats().backpressure_wait_s >= 0.2 * 0.9
        with pytest.raises(lsnwal.BackpressureTimeout):
            wal.append_batch([_payload(1, 300)] * 3)
        assert wal.last_lsn == max(written)

        blocking.release()
        assert h1.wait(WAIT_S)
        p = _payload(999, 300)
        written[wal.append(p)] = p  # rotates now that there is room
        wal.sync()
        assert wal.synced_lsn == max(written)
    assert _records(wal_dir) == written


# --------------------------------------------------------------------------- group commit


def test_group_commit_shares_fsyncs(wal_dir: Path) -> None:
    """32 threads x 50 commits share fsyncs and rotations; every acked LSN is durable."""
    n_threads, per_thread = 32, 50
    acked: dict[int, bytes] = {}
    errors: list[BaseException] = []
    mu = threading.Lock()
    start = threading.Barrier(n_threads)
    with lsnwal.open(wal_dir, lsnwal.WalConfig()) as wal:

        def worker(tid: int) -> None:
            try:
                start.wait(WAIT_S)
                for i in range(per_thread):
                    p = _payload(tid * per_thread + i, 100)
                    lsn = wal.append(p)
                    h = wal.sync_async()
                    assert h.target_lsn >= lsn
                    assert h.wait(WAIT_S * 3)
                    assert wal.synced_lsn >= lsn
                    with mu:
                        acked[lsn] = p
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        total = n_threads * per_thread
        assert len(acked) == total
        st = wal.stats()
        print(
            f"\ngroup commit: commits={st.commits} fsyncs={st.fsyncs} rotations={st.rotations} "
            f"commits_per_fsync={st.commits_per_fsync:.1f}"
        )
        assert st.commits >= total
        assert st.commits_per_fsync > 1
        assert st.fsyncs < total
        assert st.rotations < total
        assert st.synced_lsn == wal.last_lsn == total
    got = _records(wal_dir)
    assert all(got[lsn] == p for lsn, p in acked.items())


def test_commits_during_one_fsync_share_one_fsync_and_no_file(
    wal_dir: Path, blocking: BlockingSyncBackend
) -> None:
    """Ten commits arriving while an fsync blocks share one more fsync; none rotates a file."""
    with lsnwal.open(wal_dir, SMALL, sync_backend=blocking) as wal:
        files = _listing(wal_dir)
        wal.append(b"first")
        h1 = wal.sync_async()
        assert blocking.entered.wait(WAIT_S)
        h_again = wal.sync_async()  # the same LSN is already covered by the unit in flight
        assert h_again.target_lsn == h1.target_lsn
        handles = []
        for i in range(10):
            wal.append(_payload(i))
            handles.append(wal.sync_async())
        assert not any(h.done() for h in handles)  # appends never wait for the fsync
        blocking.release()
        for h in [h1, h_again, *handles]:
            assert h.wait(WAIT_S)
        s = wal.stats()
        assert s.fsyncs == 2, "the ten commits should have shared one fsync"
        assert (s.rotations, s.dir_fsyncs) == (0, 0)
        assert _listing(wal_dir) == files, "a commit created or renamed a file"
        # a handle for an LSN that is already durable neither rotates nor fsyncs
        before = wal.stats()
        h_done = wal.sync_async()
        assert h_done.done()
        after = wal.stats()
        assert (after.rotations, after.fsyncs) == (before.rotations, before.fsyncs)


# --------------------------------------------------------------------------- lifecycle


def test_close_drains_and_joins_threads(wal_dir: Path) -> None:
    """close() resolves outstanding handles, joins the WAL's threads and releases the lock."""
    before = _lsnwal_threads()
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=SlowSyncBackend(delay_s=0.01))
    assert _lsnwal_threads() - before, "expected the WAL to run a sync thread"
    written: dict[int, bytes] = {}
    handles = []
    for i in range(5):
        _fill_segments(wal, written, 1)
        p = _payload(10_000 + i)
        written[wal.append(p)] = p
        handles.append(wal.sync_async())
    wal.close()
    assert all(h.done() and h.wait(0) for h in handles)
    assert wal.synced_lsn == max(written)
    assert not (_lsnwal_threads() - before), "a lsnwal thread outlived close()"
    wal.close()  # idempotent
    with pytest.raises(lsnwal.WalClosedError):
        wal.sync_async()
    with lsnwal.open(wal_dir, SMALL) as again:  # lock released
        assert again.last_lsn == max(written)
    assert _records(wal_dir) == written


def test_abandoned_wal_is_collected_and_releases_its_lock(wal_dir: Path) -> None:
    """A WAL dropped without close() is garbage-collected, its thread stops, its lock goes."""
    before = _lsnwal_threads()
    wal = lsnwal.open(wal_dir, SMALL)
    threads = _lsnwal_threads() - before
    wal.append(b"a")
    wal.sync_async().wait(WAIT_S)
    wal.append(b"b")
    h = wal.sync_async()
    assert h.wait(WAIT_S)
    ref = weakref.ref(wal)
    del wal
    gc.collect()
    assert ref() is None, "something keeps an abandoned WAL alive"
    for t in threads:
        t.join(WAIT_S)
        assert not t.is_alive(), f"{t.name} outlived its garbage-collected WAL"
    with lsnwal.open(wal_dir, SMALL) as again:
        assert again.last_lsn == 2
        assert again.synced_lsn == 2


def test_callback_exception_does_not_kill_the_sync_thread(
    wal_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A done-callback that raises is logged; later commits still complete."""
    with lsnwal.open(wal_dir, SMALL, sync_backend=SlowSyncBackend(delay_s=0.01)) as wal:
        wal.append(b"a")
        h = wal.sync_async()

        def boom(_: lsnwal.SyncHandle) -> None:
            raise ValueError("callback bug")

        h.add_done_callback(boom)
        assert h.wait(WAIT_S)
        for i in range(5):
            wal.append(_payload(i))
            h2 = wal.sync_async()
            h2.add_done_callback(boom)
            assert h2.wait(WAIT_S)
        assert wal.failure is None
        assert wal.synced_lsn == 6
    assert "callback" in caplog.text


def test_callback_may_call_back_into_the_wal(wal_dir: Path) -> None:
    """A done-callback may call stats(), sync_async() and add_done_callback without deadlock."""
    seen: list[tuple[int, int]] = []
    nested_done = threading.Event()
    with lsnwal.open(wal_dir, SMALL, sync_backend=SlowSyncBackend(delay_s=0.005)) as wal:

        def cb(h: lsnwal.SyncHandle) -> None:
            st = wal.stats()
            seen.append((h.target_lsn, st.synced_lsn))
            wal.append(b"from callback")
            wal.sync_async().add_done_callback(lambda _: nested_done.set())

        wal.append(b"a")
        h = wal.sync_async()
        h.add_done_callback(cb)
        assert h.wait(WAIT_S)
        assert nested_done.wait(WAIT_S), "the sync thread deadlocked in a callback"
        assert seen and seen[0][0] <= seen[0][1]
        assert wal.synced_lsn == 2


# --------------------------------------------------------------------------- stats


def test_stats_fields_and_consistency(wal_dir: Path) -> None:
    """stats() has every DESIGN field, ordered latency percentiles, and drains to zero pending."""
    design_fields = {
        "last_lsn",
        "synced_lsn",
        "checkpoint_lsn",
        "records_appended",
        "bytes_appended",
        "rotations",
        "fsyncs",
        "fsync_p50_s",
        "fsync_p99_s",
        "fsync_max_s",
        "commits",
        "commits_per_fsync",
        "pending_segments",
        "pending_bytes",
        "archive_segments",
        "archive_bytes",
        "backpressure_wait_s",
        "dir_fsyncs",
    }
    with lsnwal.open(wal_dir, SMALL, sync_backend=SlowSyncBackend(delay_s=0.001)) as wal:
        st0 = wal.stats()
        assert design_fields <= {f.name for f in dataclasses.fields(st0)}
        assert (st0.last_lsn, st0.synced_lsn, st0.fsyncs, st0.commits) == (0, 0, 0, 0)
        written: dict[int, bytes] = {}
        _fill_segments(wal, written, 3)
        mid = wal.stats()
        assert mid.pending_segments >= 1 or mid.synced_lsn > 0
        handles = [wal.sync_async() for _ in range(3)]
        for h in handles:
            assert h.wait(WAIT_S)
        wal.sync()
        wal.append(b"tail")
        assert wal.sync() == wal.last_lsn
        st = wal.stats()
        assert st.last_lsn == st.synced_lsn == wal.last_lsn == len(written) + 1
        assert st.records_appended == len(written) + 1
        assert st.bytes_appended == sum(map(len, written.values())) + 4
        assert st.pending_segments == 0
        assert st.pending_bytes == 0
        assert st.rotations >= 3
        assert st.fsyncs >= 2
        assert st.dir_fsyncs >= 1
        assert 0 < st.fsync_p50_s <= st.fsync_p99_s <= st.fsync_max_s
        assert st.commits >= 5
        assert st.commits_per_fsync == pytest.approx(st.commits / st.fsyncs)
        assert st.backpressure_wait_s == 0
        assert wal.wait_archived(WAIT_S)
        st = wal.stats()
        assert st.archive_segments >= 3
        assert st.archive_bytes > 0
        assert st.as_dict()["last_lsn"] == st.last_lsn


def test_open_after_os_level_lock_is_refused_then_reopen_works(wal_dir: Path) -> None:
    """A second open while the WAL is open gets WalLockedError; after close it succeeds."""
    with lsnwal.open(wal_dir, SMALL) as wal:
        wal.append(b"x")
        with pytest.raises(lsnwal.WalLockedError):
            lsnwal.open(wal_dir, SMALL)
    with lsnwal.open(wal_dir, SMALL) as again:
        assert again.last_lsn == 1
    assert os.path.isdir(wal_dir)
