"""Tests of ``await handle``: resolved from the sync thread, never blocking the event loop.

Each test runs its own event loop with ``asyncio.run``. The sync backend is slowed
down so that awaits stay pending long enough to watch the loop meanwhile.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from pathlib import Path

import pytest

import lsnwal
from lsnwal.testing import BlockingSyncBackend, FailingSyncBackend, SlowSyncBackend

SMALL = lsnwal.WalConfig(segment_max_bytes=4096)


def _thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_thousand_tasks_await_durability_while_the_loop_keeps_running(wal_dir: Path) -> None:
    """1000 tasks append and await their handles; the loop ticks meanwhile, no thread per task."""
    n_tasks = 1000
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=SlowSyncBackend(delay_s=0.02))
    baseline = _thread_names()
    acked: dict[int, bytes] = {}
    new_threads: set[str] = set()
    ticks_while_pending = 0

    async def main() -> None:
        nonlocal ticks_while_pending
        pending = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks_while_pending
            while not stop.is_set():
                await asyncio.sleep(0.001)
                if pending:
                    ticks_while_pending += 1
                new_threads.update(_thread_names() - baseline)

        async def commit(i: int) -> None:
            nonlocal pending
            payload = f"task-{i}".encode() * (1 + i % 7)
            await asyncio.sleep(0)  # let the tasks interleave
            lsn = wal.append(payload)
            handle = wal.sync_async()
            assert not handle.done() or handle.target_lsn <= wal.synced_lsn
            pending += 1
            try:
                got = await handle
            finally:
                pending -= 1
            assert got == handle.target_lsn >= lsn
            assert wal.synced_lsn >= lsn
            acked[lsn] = payload

        tick = asyncio.create_task(ticker())
        await asyncio.wait_for(asyncio.gather(*(commit(i) for i in range(n_tasks))), 60)
        stop.set()
        await tick

    try:
        asyncio.run(main())
        assert len(acked) == n_tasks
        assert wal.synced_lsn == wal.last_lsn == n_tasks
        assert ticks_while_pending >= 10, "the event loop stalled while tasks awaited"
        assert not new_threads, f"threads started per awaiting task: {sorted(new_threads)}"
        st = wal.stats()
        assert st.commits >= n_tasks
        assert st.fsyncs < n_tasks  # the awaits share fsyncs
    finally:
        wal.close()
    got = {r.lsn: r.payload for r in lsnwal.replay(wal_dir)}
    assert all(got[lsn] == p for lsn, p in acked.items())


def test_await_runs_on_the_loop_not_in_a_worker(wal_dir: Path) -> None:
    """An await blocked on a held fsync leaves the loop free and resumes on the loop thread."""
    backend = BlockingSyncBackend(timeout_s=30.0)
    try:
        with lsnwal.open(wal_dir, SMALL, sync_backend=backend) as wal:

            async def main() -> None:
                loop_thread = threading.current_thread()
                wal.append(b"x")
                handle = wal.sync_async()
                task = asyncio.ensure_future(_await(handle))
                await asyncio.get_running_loop().run_in_executor(None, backend.entered.wait, 10.0)
                ticks = 0
                for _ in range(20):  # the loop keeps running while the fsync is held
                    await asyncio.sleep(0.001)
                    ticks += 1
                assert not task.done()
                assert wal.synced_lsn == 0
                backend.release()
                lsn, thread = await asyncio.wait_for(task, 10)
                assert lsn == handle.target_lsn <= wal.synced_lsn
                assert thread is loop_thread
                assert ticks == 20

            async def _await(handle: lsnwal.SyncHandle) -> tuple[int, threading.Thread]:
                lsn = await handle
                return lsn, threading.current_thread()

            asyncio.run(main())
    finally:
        backend.release()


def test_awaiting_a_failed_wal_raises(wal_dir: Path) -> None:
    """Every await of a handle outstanding at an fsync failure raises WalSyncError."""
    failing = FailingSyncBackend(fail_on_call=1, err=errno.EIO)
    gate = BlockingSyncBackend(inner=failing, timeout_s=30.0)  # holds the failing fsync
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=gate)
    handles: list[lsnwal.SyncHandle] = []
    try:

        async def main() -> list[BaseException | int]:
            all_waiting = asyncio.Event()

            async def commit(i: int) -> int:
                wal.append(f"r{i}".encode())
                handle = wal.sync_async()
                handles.append(handle)
                if len(handles) == 50:
                    all_waiting.set()
                return await handle

            gathered = asyncio.gather(*(commit(i) for i in range(50)), return_exceptions=True)
            await asyncio.wait_for(all_waiting.wait(), 30)
            assert not any(h.done() for h in handles)
            gate.release()  # now the held fsync fails with EIO
            return list(await asyncio.wait_for(gathered, 30))

        results = asyncio.run(main())
        assert len(results) == 50
        assert all(isinstance(r, lsnwal.WalSyncError) for r in results), results
        assert all(isinstance(r.__cause__, OSError) for r in results)  # type: ignore[union-attr]
        assert wal.synced_lsn == 0
        assert isinstance(wal.failure, lsnwal.WalSyncError)

        async def later() -> None:
            for handle in handles:  # awaiting again, on another loop, raises again
                with pytest.raises(lsnwal.WalSyncError):
                    await handle
            with pytest.raises(lsnwal.WalSyncError):
                wal.sync_async()

        asyncio.run(asyncio.wait_for(later(), 30))
    finally:
        gate.release()
        wal.close()
    with lsnwal.open(wal_dir, SMALL) as again:
        assert again.last_lsn == 50


def test_awaiting_a_done_handle_returns_at_once(wal_dir: Path) -> None:
    """Awaiting a handle whose LSN is already durable returns its target without waiting."""
    with lsnwal.open(wal_dir, SMALL) as wal:
        wal.append(b"a")
        assert wal.sync() == 1
        handle = wal.sync_async()
        assert handle.done()

        async def main() -> int:
            return await handle

        assert asyncio.run(main()) == 1
