"""The segment-sync manager: one FIFO fsync thread and the one durability watermark.

Owns ``synced_lsn``, the queue of rotated segments, the sync handles and the
WAL's failure state. Rules it keeps:

* **FIFO, contiguous.** Segments are synced strictly in the order they were
  rotated; ``synced_lsn`` only moves forward, and only to the last LSN of a
  segment whose predecessors are all synced (``publish`` from the blocking
  ``sync()`` path is allowed only when the queue is empty — see wal.py).
* **Durability sequence per batch** (crash windows in comments below): fsync
  each segment file, then fsync ``pending/`` once so the renames persist, then
  advance ``synced_lsn`` and wake exactly the waiters now covered.
* **Fail-stop.** The first ``OSError`` (or any unexpected exception) fails the
  WAL: ``synced_lsn`` freezes, every waiter and later call gets ``WalSyncError``.
  A failed fsync is never retried: after one, the kernel may have dropped the
  dirty pages, so a later success would prove nothing.
* **Event-driven.** The thread sleeps on a condition when idle; waiters sleep
  on a lock of their own; asyncio waiters are resolved with one
  ``call_soon_threadsafe`` per event loop per batch. No polling anywhere.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from .errors import WalSyncError
from .fs import FailpointHook, FileSystem, SyncBackend
from .writer import SealedSegment

log = logging.getLogger("lsnwal")

_LATENCY_WINDOW = 4096


class SyncHandle:
    """A durability request for ``target_lsn``; wait on it, await it, or add callbacks."""

    __slots__ = ("_callbacks", "_error", "_mgr", "_waiters", "done_flag", "target_lsn")

    def __init__(self, mgr: SegmentSyncManager | None, target_lsn: int) -> None:
        self.target_lsn = target_lsn
        self._mgr = mgr
        self.done_flag = mgr is None
        self._error: WalSyncError | None = None
        self._waiters: list[Any] | None = None
        self._callbacks: list[Callable[[SyncHandle], None]] | None = None

    def done(self) -> bool:
        """True once the target is durable or the WAL has failed."""
        return self.done_flag

    def wait(self, timeout: float | None = None) -> bool:
        """Block until durable: True; False on timeout; ``WalSyncError`` if the WAL failed."""
        if not self.done_flag:
            mgr = self._mgr
            assert mgr is not None
            with mgr.cv:
                if not self.done_flag:
                    waiter = threading.Lock()
                    waiter.acquire()
                    if self._waiters is None:
                        self._waiters = []
                    self._waiters.append(waiter)
                else:
                    waiter = None
            if waiter is not None:
                wait_s = -1.0  # None or inf: no limit (inf would overflow the lock's timeout)
                if timeout is not None and timeout < threading.TIMEOUT_MAX:
                    wait_s = max(0.0, timeout)
                got = waiter.acquire(True, wait_s)
                if not got:
                    with mgr.cv:
                        if not self.done_flag:
                            assert self._waiters is not None
                            self._waiters.remove(waiter)
                            return False
        if self._error is not None:
            raise self._error
        return True

    def result(self) -> int:
        """Block until durable and return ``target_lsn`` (or raise ``WalSyncError``)."""
        self.wait()
        return self.target_lsn

    def add_done_callback(self, fn: Callable[[SyncHandle], None]) -> None:
        """Call ``fn(handle)`` once done: at once if already done, else from the thread that
        completes it (usually the sync thread), after the manager's lock is released."""
        if not self.done_flag:
            mgr = self._mgr
            assert mgr is not None
            with mgr.cv:
                if not self.done_flag:
                    if self._callbacks is None:
                        self._callbacks = []
                    self._callbacks.append(fn)
                    return
        fn(self)

    def __await__(self) -> Generator[Any, None, int]:
        """Await durability without blocking the event loop."""
        if not self.done_flag:
            mgr = self._mgr
            assert mgr is not None
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            if mgr.register_future(self, loop, fut):
                yield from fut.__await__()
        if self._error is not None:
            raise self._error
        return self.target_lsn

    def __repr__(self) -> str:
        state = "failed" if self._error else ("done" if self.done_flag else "waiting")
        return f"SyncHandle(target_lsn={self.target_lsn}, {state})"


def _resolve_futures(futs: list[asyncio.Future[None]]) -> None:
    for f in futs:
        if not f.done():
            f.set_result(None)


class SyncCounters:
    """Counters the sync path keeps for ``stats()`` (read under the manager's lock)."""

    def __init__(self) -> None:
        self.fsyncs = 0
        self.dir_fsyncs = 0
        self.commits = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=_LATENCY_WINDOW)
        self.fsync_max_s = 0.0

    def note_fsync(self, seconds: float) -> None:
        """Count one file fsync and its latency."""
        self.fsyncs += 1
        self.latencies.append(seconds)
        if seconds > self.fsync_max_s:
            self.fsync_max_s = seconds


class SegmentSyncManager:
    """One background thread that fsyncs rotated segments in FIFO order."""

    def __init__(
        self,
        fs: FileSystem,
        backend: SyncBackend,
        pending_dir_fd: int,
        *,
        initial_synced_lsn: int,
        on_synced: Callable[[list[SealedSegment], int], None],
        failpoint: FailpointHook | None = None,
        name: str = "lsnwal-sync",
        root_dir_fd: int = -1,
        on_durable: Callable[[int], None] | None = None,
    ) -> None:
        self.cv = threading.Condition(threading.Lock())
        #: publishes a new synced_lsn (the WATERMARK file) before any waiter is told
        self.on_durable = on_durable
        self._fs = fs
        self._backend = backend
        self._pending_dir_fd = pending_dir_fd
        self._root_dir_fd = root_dir_fd
        self._on_synced = on_synced
        self._fp = failpoint
        self._queue: collections.deque[SealedSegment] = collections.deque()
        self._inflight = 0
        self.pending_segments = 0
        self.pending_bytes = 0
        self.synced_lsn = initial_synced_lsn
        self.failure: WalSyncError | None = None
        self._handles: collections.deque[SyncHandle] = collections.deque()
        self._stopping = False
        #: set by sync_async while the thread is busy: rotate once it is free
        self.rotation_wanted = False
        self.rotate_callback: Callable[[], None] | None = None
        self.counters = SyncCounters()
        #: user callbacks of finished handles, run by ``_run_due`` outside the lock
        self._due: list[tuple[Callable[[SyncHandle], None], SyncHandle]] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producers

    def enqueue(self, seg: SealedSegment) -> None:
        """Queue a rotated segment (called by the WAL under its writer lock)."""
        with self.cv:
            self._queue.append(seg)
            if not seg.in_place:
                self.pending_segments += 1
                self.pending_bytes += seg.size_bytes
            self.cv.notify_all()

    def idle(self) -> bool:
        """True when no rotated segment waits for or is being fsynced."""
        return not self._queue and self._inflight == 0

    def request(self, target_lsn: int) -> tuple[SyncHandle, bool]:
        """Register a handle for an uncovered ``target_lsn``; True if the caller must queue
        the work now (the thread is idle), False if the thread will rotate when free."""
        return self._register(target_lsn, ask_rotation=True)

    def handle(self, target_lsn: int) -> SyncHandle:
        """A handle for ``target_lsn`` (done at once if already durable)."""
        return self._register(target_lsn, ask_rotation=False)[0]

    def defer_rotation(self) -> None:
        """Ask the (idle) thread to make the rotation itself, as when it is busy."""
        with self.cv:
            self.rotation_wanted = True
            self.cv.notify_all()

    def _register(self, target_lsn: int, ask_rotation: bool) -> tuple[SyncHandle, bool]:
        h = SyncHandle(self, target_lsn)
        with self.cv:
            if self.failure is not None:
                raise self.failure
            if target_lsn <= self.synced_lsn:
                h.done_flag = True
                self.counters.commits += 1
                return h, False
            self._handles.append(h)
            if not ask_rotation:
                return h, False
            if not self._queue and self._inflight == 0:
                return h, True
            self.rotation_wanted = True
            return h, False

    def register_future(
        self, h: SyncHandle, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]
    ) -> bool:
        """Arrange for ``fut`` to complete on ``loop`` when ``h`` is done; False if done."""
        with self.cv:
            if h.done_flag:
                return False
            if h._callbacks is None:
                h._callbacks = []
            h._callbacks.append(_FutureCallback(loop, fut))
            return True

    def has_room(self, max_segments: int, max_bytes: int) -> bool:
        """True while the backpressure limits are not reached."""
        return self.pending_segments < max_segments and self.pending_bytes < max_bytes

    def wait_for_room(self, max_segments: int, max_bytes: int, timeout: float) -> bool:
        """Block until there is room (True) or ``timeout`` passes (False)."""
        with self.cv:
            return self.cv.wait_for(
                lambda: self.failure is not None
                or self._stopping
                or self.has_room(max_segments, max_bytes),
                None if timeout >= threading.TIMEOUT_MAX else timeout,  # inf: wait forever
            )

    # ------------------------------------------------------------------ watermark

    def publish(self, lsn: int) -> None:
        """Advance ``synced_lsn`` to ``lsn`` after the caller made it durable in place.

        Only the blocking ``sync()`` calls this, and only for LSNs it fsynced while
        the queue was empty, so contiguity holds: nothing older is unsynced.
        """
        with self.cv:
            if self.failure is not None:
                raise self.failure
            self.counters.commits += 1
            self._advance_locked(lsn)
        self._run_due()

    def _advance_locked(self, lsn: int) -> None:
        if lsn <= self.synced_lsn:
            return
        self.synced_lsn = lsn
        if self.on_durable is not None:
            try:
                self.on_durable(lsn)
            except OSError as exc:  # the published value may lag; it never leads
                log.warning("lsnwal: could not publish the durable watermark: %r", exc)
        handles = self._handles
        loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        while handles and handles[0].target_lsn <= lsn:
            self._finish(handles.popleft(), None, loops)
        for loop, futs in loops.items():
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody to wake
                loop.call_soon_threadsafe(_resolve_futures, futs)
        self.cv.notify_all()

    def _finish(
        self,
        h: SyncHandle,
        error: WalSyncError | None,
        loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]],
    ) -> None:
        h._error = error
        h.done_flag = True
        if error is None:
            self.counters.commits += 1
        if h._waiters:
            for w in h._waiters:
                w.release()
            h._waiters = None
        if h._callbacks:
            for cb in h._callbacks:
                if isinstance(cb, _FutureCallback):
                    loops.setdefault(cb.loop, []).append(cb.fut)
                else:
                    # Run later, without the lock: a callback may call back into the WAL.
                    self._due.append((cb, h))
            h._callbacks = None

    def _run_due(self) -> None:
        """Run the user callbacks ``_finish`` collected, now that ``cv`` is released."""
        with self.cv:
            due, self._due = self._due, []
        for cb, h in due:
            try:
                cb(h)
            except Exception:  # a user callback must not kill the sync thread
                log.exception("lsnwal: a SyncHandle callback raised")

    def fail(self, cause: BaseException, what: str) -> WalSyncError:
        """Enter the failed state (idempotent); return the WAL's failure."""
        with self.cv:
            if self.failure is None:
                err = WalSyncError(
                    f"{what} failed: {cause!r}; the WAL is fail-stopped at synced_lsn="
                    f"{self.synced_lsn} (reopen the directory to recover)",
                    cause,
                )
                self.failure = err
                log.error("lsnwal: %s", err)
                loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
                while self._handles:
                    self._finish(self._handles.popleft(), err, loops)
                for loop, futs in loops.items():
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(_resolve_futures, futs)
                self.cv.notify_all()
            failure = self.failure
        if threading.current_thread() is self._thread:
            self._run_due()
        else:
            # The caller may hold the WAL's writer lock (a failed write or rotation);
            # a callback that calls back into the WAL must not deadlock on it.
            threading.Thread(target=self._run_due, name="lsnwal-callbacks", daemon=True).start()
        return failure

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        cv = self.cv
        fs = self._fs
        backend = self._backend
        fp = self._fp
        while True:
            with cv:
                while (not self._queue and not self.rotation_wanted and not self._stopping
                       and self.failure is None):
                    cv.wait()
                if self.failure is not None:
                    break
                wanted = self.rotation_wanted and not self._queue
                if wanted:
                    self.rotation_wanted = False
                    self._inflight = 1  # stay "busy" so new commits keep coalescing
                elif self._stopping and not self._queue:
                    break
            if wanted:
                # Every commit that arrived during the last fsync is covered by one
                # rotation now (the WAL rotates under its own lock and enqueues).
                try:
                    if self.rotate_callback is not None:
                        self.rotate_callback()
                except BaseException as exc:
                    self.fail(exc, "segment rotation for group commit")
                    break
                finally:
                    with cv:
                        self._inflight = 0
                continue
            with cv:
                batch = list(self._queue)
                self._queue.clear()
                self._inflight = len(batch)
            try:
                for seg in batch:
                    # Crash before this fsync: the segment may be torn; nothing in it
                    # has been acknowledged, recovery cuts it.
                    if fp is not None:
                        fp("before_file_fsync")
                    t0 = time.perf_counter()
                    backend.sync_file(seg.fd)
                    self.counters.note_fsync(time.perf_counter() - t0)
                    if fp is not None:
                        fp("after_file_fsync")
                # Crash here: data is durable but the renames into pending/ may not be;
                # the segment is then found as active.wal and recovered from there.
                dir_fds = [s.dir_fd for s in batch if s.in_place and s.dir_fd >= 0]
                if any(not s.in_place for s in batch):
                    # Invariant 5: both directories of the rename active.wal -> pending/
                    # (the new name first, then the removal of the old one).
                    dir_fds.append(self._pending_dir_fd)
                    if self._root_dir_fd >= 0:
                        dir_fds.append(self._root_dir_fd)
                for dfd in dict.fromkeys(dir_fds):
                    if fp is not None:
                        fp("before_dir_fsync")
                    backend.sync_dir(dfd)
                    self.counters.dir_fsyncs += 1
                    if fp is not None:
                        fp("after_dir_fsync")
            except BaseException as exc:  # fail-stop: never retry, never die silently
                self.fail(exc, "fsync of pending segment")
                self._close_batch(batch)
                break
            last = batch[-1].last_lsn
            segments = [s for s in batch if not s.in_place]
            # Hand over to the archiver (a queue put) *before* waking waiters, so that a
            # caller whose sync returned finds these segments covered by wait_archived().
            try:
                self._on_synced(segments, last)
            except BaseException as exc:  # pragma: no cover - archiver handoff is a queue put
                self.fail(exc, "handing synced segments to the archiver")
                self._close_batch(batch)
                break
            with cv:
                self._inflight = 0
                self.pending_segments -= len(segments)
                self.pending_bytes -= sum(s.size_bytes for s in segments)
                self._advance_locked(last)
            self._run_due()
            for seg in batch:
                with contextlib.suppress(OSError):
                    fs.close(seg.fd)
        with cv:
            remaining = list(self._queue)
            self._queue.clear()
            self._inflight = 0
        self._close_batch(remaining)

    def _close_batch(self, batch: list[SealedSegment]) -> None:
        for seg in batch:
            with contextlib.suppress(OSError):
                self._fs.close(seg.fd)

    def stop(self, timeout: float | None = None) -> None:
        """Drain the queue, stop the thread and join it (idempotent)."""
        with self.cv:
            self._stopping = True
            self.cv.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the sync thread runs."""
        return self._thread.is_alive()


class _FutureCallback:
    """An asyncio future to resolve on its own loop (batched per loop)."""

    __slots__ = ("fut", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
        self.loop = loop
        self.fut = fut

    def __call__(self, h: SyncHandle) -> None:  # pragma: no cover - batched instead
        self.loop.call_soon_threadsafe(_resolve_futures, [self.fut])
