"""Fault injection (issue 5, DESIGN invariants 3, 4, 7): failing fsync, full disk, EIO, slow fsync.

Each fault is injected while records are being committed; the test then checks
that the WAL fail-stops (``WalSyncError`` for the caller, every waiter and every
later call; ``synced_lsn`` frozen; a failed fsync never retried), that nothing
was acknowledged that is not on disk, and that reopening the directory recovers
every acknowledged record byte for byte and accepts new writes.

fsync EIO and the slow fsync run on the real file system through the
``SyncBackend`` seam. ENOSPC runs on a genuinely full 4 MiB tmpfs when the
tests run as root (CI does), and always on ``SimFileSystem(capacity_bytes=...)``.
EIO on write uses ``SimFileSystem.fail_next("write")``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import lsnwal
from lsnwal.testing import FailingSyncBackend, SimFileSystem, SlowSyncBackend

SMALL = lsnwal.WalConfig(segment_max_bytes=4096)


def _payload(i: int, size: int = 200) -> bytes:
    head = f"rec-{i}:".encode()
    return (head + bytes((i * 7 + k) % 251 for k in range(size)))[:size]


def _check_recovered(
    path: str | Path,
    cfg: lsnwal.WalConfig,
    expected: dict[int, bytes],
    acked: int,
    *,
    fs: lsnwal.FileSystem | None = None,
) -> None:
    """Reopen: every acknowledged LSN byte for byte, no stranger, contiguous, writable, verified."""
    with lsnwal.open(path, cfg, fs=fs) as wal:
        last = wal.last_lsn
        assert last >= acked, f"reopen found last_lsn={last} below acknowledged {acked}"
        post = b"written after reopening"
        post_lsn = wal.append(post)
        assert post_lsn == last + 1
        assert wal.sync() >= post_lsn
    records = list(lsnwal.replay(path, config=cfg, fs=fs))
    lsns = [r.lsn for r in records]
    assert lsns == list(range(1, post_lsn + 1)), "LSNs are not 1..last contiguous"
    for r in records[:-1]:
        assert r.payload == expected[r.lsn], f"LSN {r.lsn} differs from what was written"
    assert records[-1].payload == post
    report = lsnwal.verify(path, config=cfg, fs=fs)
    assert report.ok, report.problems


def _assert_fail_stopped(wal: lsnwal.AsyncWalWriter, err: lsnwal.WalSyncError) -> None:
    """Every later call raises the WAL's failure at once; close() does not."""
    assert wal.failure is not None and wal.failure is err
    calls: list[Callable[[], object]] = [
        lambda: wal.append(b"x"),
        lambda: wal.append_batch([b"y", b"z"]),
        wal.sync,
        wal.sync_async,
        lambda: wal.checkpoint(0),
        lambda: wal.mark("after-failure"),
    ]
    for call in calls:
        with pytest.raises(lsnwal.WalSyncError) as later:
            call()
        assert later.value is err
    wal.close()  # never raises because of the earlier failure
    assert wal.closed


# --------------------------------------------------------------------------- fsync EIO


class _Recording:
    """A sync backend wrapper that logs every call as (kind, fd, succeeded)."""

    def __init__(self, inner: lsnwal.SyncBackend) -> None:
        self.inner = inner
        self.log: list[tuple[str, int, bool]] = []

    def _call(self, kind: str, fd: int, fn: Callable[[int], None]) -> None:
        try:
            fn(fd)
        except OSError:
            self.log.append((kind, fd, False))
            raise
        self.log.append((kind, fd, True))

    def sync_file(self, fd: int) -> None:
        """Sync a file through the inner backend and log it."""
        self._call("file", fd, self.inner.sync_file)

    def sync_dir(self, fd: int) -> None:
        """Sync a directory through the inner backend and log it."""
        self._call("dir", fd, self.inner.sync_dir)


def _commit(wal: lsnwal.AsyncWalWriter, how: str) -> int:
    """Make everything appended durable in one of the three ways a caller can."""
    if how == "sync":
        return wal.sync()
    handle = wal.sync_async()
    if how == "await":

        async def waiter() -> int:
            return await handle

        return asyncio.run(waiter())
    assert handle.wait(30)
    return handle.target_lsn


@pytest.mark.parametrize("how", ["sync", "sync_async", "await"])
@pytest.mark.parametrize("what", ["file", "dir"])
def test_fsync_eio_fail_stops_without_false_ack_and_reopen_recovers(
    wal_dir: Path, how: str, what: str
) -> None:
    """A file or directory fsync EIO fails the commit, freezes synced_lsn, loses nothing acked."""
    backend = FailingSyncBackend(fail_on_call=10**9, what=what)  # armed below
    calls = _Recording(backend)
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=calls)
    expected: dict[int, bytes] = {}
    acked = 0
    for i in range(60):
        p = _payload(i, 150 + i * 13 % 300)
        expected[wal.append(p)] = p
        if i % 6 == 5:
            acked = max(acked, _commit(wal, how))
    assert acked == wal.synced_lsn > 0
    # A record bigger than what is left of the segment: it rotates the active segment
    # (so a directory fsync is due, whoever runs it) and the commit needs a file fsync.
    # The failure is armed first: the sync thread may take the rotated segment at once.
    backend.fail_on_call = backend.calls + 1
    p = _payload(999, 4000)
    expected[wal.append(p)] = p
    target = wal.last_lsn
    with pytest.raises(lsnwal.WalSyncError) as failed:
        _commit(wal, how)
    err = failed.value
    assert isinstance(err.cause, OSError) and err.cause.errno == errno.EIO
    assert "fail-stopped" in str(err)
    assert wal.synced_lsn == acked < target, "a failed fsync advanced synced_lsn"
    _assert_fail_stopped(wal, err)
    failed_call = next(i for i, c in enumerate(calls.log) if not c[2])
    kind, fd, _ = calls.log[failed_call]
    assert (kind, fd, True) not in calls.log[failed_call:], "the failed fsync was retried"
    _check_recovered(wal_dir, SMALL, expected, acked)


def test_fsync_eio_fails_every_outstanding_handle(wal_dir: Path) -> None:
    """Handles waiting when the fsync fails raise WalSyncError (wait/result/await), never True."""
    backend = FailingSyncBackend(fail_on_call=10**9)
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=backend)
    expected = {wal.append(_payload(i)): _payload(i) for i in range(5)}
    acked = wal.sync()
    backend.fail_on_call = backend.calls + 1
    handles: list[lsnwal.SyncHandle] = []
    for i in range(5, 12):
        expected[wal.append(_payload(i))] = _payload(i)
        try:
            handles.append(wal.sync_async())
        except lsnwal.WalSyncError:
            break  # the sync thread already failed: nothing more is handed out
    assert handles, "no handle was handed out before the failure"
    for h in handles:
        with pytest.raises(lsnwal.WalSyncError):
            h.wait(30)
        with pytest.raises(lsnwal.WalSyncError):
            h.result()
        assert h.done()

    async def await_all() -> None:
        for h in handles:
            with pytest.raises(lsnwal.WalSyncError):
                await h

    asyncio.run(await_all())
    assert wal.synced_lsn == acked
    wal.close()
    _check_recovered(wal_dir, SMALL, expected, acked)


# --------------------------------------------------------------------------- ENOSPC


def _fill_until_error(
    wal: lsnwal.AsyncWalWriter, expected: dict[int, bytes], limit: int
) -> tuple[int, lsnwal.WalError]:
    """Append and commit until lsnwal raises; return (highest acknowledged LSN, the error)."""
    acked = 0
    for i in range(limit):
        p = _payload(i, 1500)
        try:
            lsn = wal.current_lsn
            expected[lsn] = p
            assert wal.append(p) == lsn
            if i % 5 == 4:
                acked = max(acked, _commit(wal, ("sync", "sync_async")[i % 2]))
        except lsnwal.WalError as exc:
            return acked, exc
    raise AssertionError(f"no error after {limit} records: the disk never filled")


def _assert_enospc(err: lsnwal.WalError) -> None:
    assert isinstance(err, lsnwal.WalSyncError), f"ENOSPC surfaced as {err!r}"
    assert isinstance(err.cause, OSError) and err.cause.errno == errno.ENOSPC, err.cause
    assert "No space left on device" in str(err) and "reopen" in str(err)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A freshly mounted 4 MiB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("ENOSPC on a real full file system needs root to mount a 4 MiB tmpfs; "
                    "test_enospc_on_simulated_full_disk covers it on SimFileSystem")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True, text=True, check=False)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); "
                    "test_enospc_on_simulated_full_disk covers ENOSPC on SimFileSystem")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_enospc_on_full_tmpfs_fail_stops_and_recovers_after_space_is_freed(
    small_tmpfs: Path,
) -> None:
    """A genuinely full disk gives a clear WalError, loses nothing acked, and writing resumes."""
    ballast = small_tmpfs / "ballast"
    ballast.write_bytes(b"\xaa" * (512 * 1024))
    wal_dir = small_tmpfs / "wal"
    cfg = lsnwal.WalConfig(segment_max_bytes=64 * 1024)  # archive on, no pruning: it fills
    wal = lsnwal.open(wal_dir, cfg)
    expected: dict[int, bytes] = {}
    try:
        acked, err = _fill_until_error(wal, expected, 10_000)
        _assert_enospc(err)
        assert acked > 0 and wal.synced_lsn >= acked
        assert os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize < 64 * 1024
        assert isinstance(err, lsnwal.WalSyncError)
        _assert_fail_stopped(wal, err)
    finally:
        wal.close()
    ballast.unlink()  # free space, then reopen: recovery cuts the torn tail and goes on
    _check_recovered(wal_dir, cfg, expected, acked)


def test_enospc_on_simulated_full_disk(tmp_path: Path) -> None:
    """SimFileSystem at capacity: clear WalError, nothing acked lost even after a crash, resumes."""
    fs = SimFileSystem(capacity_bytes=160 * 1024)
    fs.write_file("/ballast", b"\xaa" * (40 * 1024))
    cfg = lsnwal.WalConfig(segment_max_bytes=16 * 1024)
    wal = lsnwal.open("/wal", cfg, fs=fs)
    expected: dict[int, bytes] = {}
    try:
        acked, err = _fill_until_error(wal, expected, 10_000)
        _assert_enospc(err)
        assert acked > 0 and wal.synced_lsn >= acked
        assert isinstance(err, lsnwal.WalSyncError)
        _assert_fail_stopped(wal, err)
    finally:
        wal.close()
    crashed = fs.crash()  # power loss right after the failure: unsynced bytes are gone
    crashed.unlink("/ballast")
    _check_recovered("/wal", cfg, expected, acked, fs=crashed)


# --------------------------------------------------------------------------- EIO on write


@pytest.mark.parametrize("where", ["sync", "sync_async", "append"])
def test_write_eio_fail_stops_and_crash_recovery_keeps_acked(where: str) -> None:
    """EIO from write() (flush in sync, seal in rotation, full buffer) fail-stops the WAL."""
    fs = SimFileSystem()
    cfg = lsnwal.WalConfig(segment_max_bytes=8192, write_buffer_bytes=1000)
    wal = lsnwal.open("/wal", cfg, fs=fs)
    expected: dict[int, bytes] = {}
    acked = 0
    for i in range(40):
        p = _payload(i, 120)
        expected[wal.append(p)] = p
        if i % 8 == 7:
            acked = max(acked, _commit(wal, "sync" if i % 16 == 7 else "sync_async"))
    acked = max(acked, wal.sync())
    fs.fail_next("write")
    with pytest.raises(lsnwal.WalSyncError) as failed:
        if where == "append":
            for i in range(40, 60):  # fills the 1000-byte buffer: the flush write fails
                p = _payload(i, 120)
                expected[wal.current_lsn] = p
                wal.append(p)
        else:
            expected[wal.append(_payload(40, 120))] = _payload(40, 120)
            _commit(wal, where)
    err = failed.value
    assert isinstance(err.cause, OSError) and err.cause.errno == errno.EIO
    assert wal.synced_lsn == acked
    _assert_fail_stopped(wal, err)
    _check_recovered("/wal", cfg, expected, acked, fs=fs.crash())


# --------------------------------------------------------------------------- slow fsync


def test_slow_fsync_only_adds_latency(wal_dir: Path) -> None:
    """With a 20 ms fsync every commit (threads, asyncio, sync()) succeeds, just slower."""
    delay = 0.02
    wal = lsnwal.open(wal_dir, SMALL, sync_backend=SlowSyncBackend(delay_s=delay))
    expected: dict[int, bytes] = {}
    latencies: list[float] = []
    errors: list[BaseException] = []
    mu = threading.Lock()

    def committer(t: int) -> None:
        try:
            for i in range(12):
                p = _payload(t * 1000 + i, 100)
                t0 = time.perf_counter()
                lsn = wal.append(p)
                if i % 3 == 2:
                    assert wal.sync() >= lsn
                else:
                    h = wal.sync_async()
                    assert h.wait(30) and h.target_lsn >= lsn and wal.synced_lsn >= lsn
                with mu:
                    expected[lsn] = p
                    latencies.append(time.perf_counter() - t0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    async def async_committers() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        async def one(t: int) -> None:
            for i in range(6):
                p = _payload(50_000 + t * 100 + i, 80)
                lsn = wal.append(p)
                t0 = time.perf_counter()
                assert await wal.sync_async() >= lsn
                with mu:
                    expected[lsn] = p
                    latencies.append(time.perf_counter() - t0)

        tick = asyncio.create_task(ticker())
        await asyncio.gather(*(one(t) for t in range(4)))
        done.set()
        await tick
        return ticks

    threads = [threading.Thread(target=committer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    ticks = asyncio.run(async_committers())
    for th in threads:
        th.join(60)
    assert not errors, errors
    stats = wal.stats()
    wal.close()
    assert len(latencies) == 4 * 12 + 4 * 6
    assert min(latencies) >= delay * 0.95, "a commit returned before an fsync could finish"
    assert ticks > 10, "the event loop was blocked while awaiting handles"
    assert stats.failed is False and stats.fsyncs <= stats.commits
    _check_recovered(wal_dir, SMALL, expected, max(expected))


# --------------------------------------------------------------------------- archiving


def test_archive_failure_keeps_segments_in_pending_and_commits_going() -> None:
    """A failed archive rename stops archiving, not commits; the next open archives the segment."""
    fs = SimFileSystem()
    wal = lsnwal.open("/wal", SMALL, fs=fs)
    expected = {wal.append(_payload(i)): _payload(i) for i in range(3)}
    wal.rotate()
    assert wal.sync_async().wait(30)  # a rotated, synced segment: the archiver's next job
    fs.fail_next("rename")
    assert wal.wait_archived(30)
    assert fs.listdir("/wal/pending"), "the segment should have stayed in pending/"
    for i in range(3, 30):  # commits go on (rotations rename again: the fault was one-shot)
        expected[wal.append(_payload(i))] = _payload(i)
        acked = _commit(wal, ("sync", "sync_async")[i % 2])
    assert wal.failure is None and acked == wal.last_lsn
    wal.close()
    crashed = fs.crash()
    with lsnwal.open("/wal", SMALL, fs=crashed) as again:
        assert again.wait_archived(30)
    assert not crashed.listdir("/wal/pending"), "the next open did not archive pending/"
    _check_recovered("/wal", SMALL, expected, acked, fs=crashed)
