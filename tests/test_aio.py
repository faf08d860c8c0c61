"""``lsnwal.open_async`` / ``AsyncWal``: open and close off the event loop, awaitable twins.

A gate backend makes every fsync wait until a task on the event loop opens the
gate: if a call ran on the loop, the gate task could never run and the fsync
would fail, so these tests fail instead of passing by luck.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from pathlib import Path

import pytest

import lsnwal
from lsnwal.testing import CountingSyncBackend, FailingSyncBackend, SlowSyncBackend

SMALL = lsnwal.WalConfig(segment_max_bytes=4096)


class GateBackend:
    """Every sync waits until ``gate`` is set (ETIMEDOUT after 10 s: the loop was blocked)."""

    def __init__(self) -> None:
        self.inner = lsnwal.OsSyncBackend()
        self.gate = threading.Event()
        self.waited = threading.Event()

    def _wait(self) -> None:
        if not self.gate.is_set():
            self.waited.set()
        if not self.gate.wait(10.0):
            raise OSError(errno.ETIMEDOUT, "the event loop never opened the gate")

    def sync_file(self, fd: int) -> None:
        """Wait for the gate, then fdatasync."""
        self._wait()
        self.inner.sync_file(fd)

    def sync_dir(self, fd: int) -> None:
        """Wait for the gate, then fsync the directory."""
        self._wait()
        self.inner.sync_dir(fd)


async def _open_gate_when_waited(backend: GateBackend) -> None:
    """Runs on the loop: opens the gate once a sync waits (proof the loop was free)."""
    while not backend.waited.is_set():
        await asyncio.sleep(0.001)
    backend.gate.set()


def test_async_with_appends_syncs_and_closes(wal_dir: Path) -> None:
    """``async with`` opens, ``await wal.sync()`` makes records durable, exit closes."""
    payloads = [bytes([i]) * (i + 1) for i in range(50)] + [b"\xff\x00"]

    async def main() -> lsnwal.AsyncWal:
        async with lsnwal.open_async(wal_dir, SMALL) as wal:
            assert not wal.closed and wal.last_lsn == 0 and wal.current_lsn == 1
            lsns = [wal.append(p) for p in payloads[:-1]]
            lsns += list(wal.append_batch(payloads[-1:]))
            assert lsns == list(range(1, len(payloads) + 1))
            durable = await wal.sync()
            assert durable >= lsns[-1] and wal.synced_lsn >= lsns[-1]
        return wal

    wal = asyncio.run(main())
    assert wal.closed
    assert [r.payload for r in lsnwal.replay(wal_dir)] == payloads


def test_await_form_and_writer_before_open(wal_dir: Path) -> None:
    """``await open_async(...)`` gives an open WAL; before that, using it is WalClosedError."""

    async def main() -> None:
        pending = lsnwal.open_async(wal_dir)
        assert pending.closed and "not opened" in repr(pending)
        with pytest.raises(lsnwal.WalClosedError):
            pending.append(b"x")
        wal = await pending
        assert wal is pending and wal.writer.path == str(wal_dir)
        assert wal.append(b"x") == 1
        await wal.close()
        await wal.close()  # idempotent
        assert wal.closed
        with pytest.raises(lsnwal.WalClosedError):
            wal.append(b"y")

    asyncio.run(main())
    assert [r.payload for r in lsnwal.replay(wal_dir)] == [b"x"]


def test_open_and_close_run_off_the_event_loop(wal_dir: Path) -> None:
    """Opening and closing fsync in a worker thread: the loop stays free to open the gate."""
    backend = GateBackend()

    async def main() -> None:
        gate = asyncio.create_task(_open_gate_when_waited(backend))
        wal = await lsnwal.open_async(wal_dir, sync_backend=backend)
        await gate
        assert backend.gate.is_set()
        wal.append(b"last")
        backend.gate.clear()
        backend.waited.clear()
        gate = asyncio.create_task(_open_gate_when_waited(backend))
        await wal.close()  # the final sync waits for the gate
        await gate

    asyncio.run(main())
    assert [r.payload for r in lsnwal.replay(wal_dir)] == [b"last"]


def test_sync_and_checkpoint_await_without_blocking_the_loop(wal_dir: Path) -> None:
    """``await wal.sync()`` and ``await wal.checkpoint()`` let the loop run while fsync waits."""

    async def main() -> None:
        backend = GateBackend()
        backend.gate.set()
        async with lsnwal.open_async(wal_dir, sync_backend=backend) as wal:
            lsn = wal.append(b"a")
            backend.gate.clear()
            gate = asyncio.create_task(_open_gate_when_waited(backend))
            assert await wal.sync() >= lsn
            await gate
            backend.gate.clear()
            backend.waited.clear()
            gate = asyncio.create_task(_open_gate_when_waited(backend))
            record_lsn = await wal.checkpoint(lsn, b"snapshot")
            await gate
            assert record_lsn == lsn + 1
            assert wal.checkpoint_lsn == lsn and wal.synced_lsn >= record_lsn
            backend.gate.set()

    asyncio.run(main())
    recs = list(lsnwal.replay(wal_dir))
    assert [(r.kind, r.payload) for r in recs] == [
        (lsnwal.RecordKind.DATA, b"a"), (lsnwal.RecordKind.CHECKPOINT, b"snapshot")]


def test_many_tasks_share_fsyncs(wal_dir: Path) -> None:
    """200 tasks appending and awaiting ``wal.sync()`` are served by far fewer fsyncs."""
    counting = CountingSyncBackend(SlowSyncBackend(delay_s=0.005))
    n = 200

    async def main() -> lsnwal.WalStats:
        async with lsnwal.open_async(wal_dir, sync_backend=counting) as wal:

            async def commit(i: int) -> int:
                lsn = wal.append(i.to_bytes(4, "big"))
                durable = await wal.sync()
                assert durable >= lsn
                return lsn

            lsns = await asyncio.gather(*(commit(i) for i in range(n)))
            assert sorted(lsns) == list(range(1, n + 1))
            return wal.stats()

    stats = asyncio.run(main())
    assert stats.commits >= n
    assert stats.fsyncs < n  # group commit: one fsync serves every waiting task
    got = {r.lsn: r.payload for r in lsnwal.replay(wal_dir)}
    assert len(got) == n


def test_sync_failure_reaches_the_awaiter_and_close_still_releases(wal_dir: Path) -> None:
    """A failed fsync raises WalSyncError from ``await wal.sync()``; close does not raise."""

    async def main() -> None:
        wal = await lsnwal.open_async(wal_dir, sync_backend=FailingSyncBackend())
        wal.append(b"x")
        with pytest.raises(lsnwal.WalSyncError):
            await wal.sync()
        assert wal.failure is not None
        with pytest.raises(lsnwal.WalSyncError):
            await wal.checkpoint(1)
        await wal.close()

    asyncio.run(main())
    with lsnwal.open(wal_dir) as wal:  # the lock was released
        assert wal.last_lsn <= 1


def test_open_modes_pass_through(tmp_path: Path) -> None:
    """``create_if_missing`` and ``error_if_exists`` reach the open run in the worker thread."""

    async def main() -> None:
        with pytest.raises(lsnwal.WalError, match="create_if_missing=False"):
            await lsnwal.open_async(tmp_path / "nope", create_if_missing=False)
        async with lsnwal.open_async(tmp_path / "wal"):
            pass
        with pytest.raises(lsnwal.WalError, match="already exists"):
            async with lsnwal.open_async(tmp_path / "wal", error_if_exists=True):
                pass  # pragma: no cover - never reached

    asyncio.run(main())
    assert not (tmp_path / "nope").exists()


def test_marks_archive_and_prune_twins(wal_dir: Path) -> None:
    """``mark``, ``await wait_archived()`` and ``await prune()`` behave like the blocking calls."""
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, archive_max_segments=1)

    async def main() -> None:
        async with lsnwal.open_async(wal_dir, cfg) as wal:
            for _ in range(40):
                wal.append(b"x" * 500)
            m = wal.mark("before")
            last = wal.append(b"after")
            await wal.checkpoint(last)
            assert await wal.wait_archived(timeout=10.0)
            planned = await wal.prune(dry_run=True)
            assert all(c.last_lsn <= last for c in planned)
            await wal.prune()
            assert await wal.wait_archived(timeout=10.0)
            assert wal.stats().archive_segments <= 1
            assert (m, last) == (41, 42)

    asyncio.run(main())


def test_verify_and_restore_twins_run_off_the_loop(tmp_path: Path) -> None:
    """``verify_async`` and ``restore_async`` give the blocking calls' results, in a worker."""
    with lsnwal.open(tmp_path / "src", SMALL) as wal:
        wal.append_batch([b"%03d" % i * 30 for i in range(100)])
        m = wal.mark("m")
        wal.append(b"after")

    async def main() -> tuple[lsnwal.VerifyReport, lsnwal.RestoreResult, set[str]]:
        loop_thread = threading.current_thread().name
        seen: set[str] = set()

        class Spy(lsnwal.OsFileSystem):
            def pread(self, fd: int, size: int, offset: int) -> bytes:
                seen.add(threading.current_thread().name)
                return super().pread(fd, size, offset)

        report = await lsnwal.verify_async(tmp_path / "src", fs=Spy())
        result = await lsnwal.restore_async(tmp_path / "src", tmp_path / "dst", until_mark="m")
        assert loop_thread not in seen
        return report, result, seen

    report, result, seen = asyncio.run(main())
    assert seen and report.ok and report.records == 102
    assert (result.records, result.last_lsn) == (m, m)
    assert [r.lsn for r in lsnwal.replay(tmp_path / "dst")][-1] == m


def test_writer_names_are_one_class() -> None:
    """``WalWriter`` is the writer's name and ``AsyncWalWriter`` stays as its alias."""
    assert lsnwal.WalWriter is lsnwal.AsyncWalWriter
    assert lsnwal.open_async.__module__ == "lsnwal.aio"
