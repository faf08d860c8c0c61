"""The commit path: one FIFO of sync units, one durability watermark, group commit.

``SegmentSyncManager`` owns ``synced_lsn``, the FIFO of *sync units*, the
registry of ``SyncHandle``s, the WAL's failure state and the background sync
thread. A unit is either "fsync the active file (descriptor ``fd``) up to
``last_lsn``" (in place, ``seg is None``) or "fsync this rotated segment in
``pending/``" (``seg``; the unit owns its descriptor and closes it). Rules kept:

* **A commit never costs a file.** ``sync()``/``sync_async()`` add (or extend)
  an in-place unit; only size (or age) rotation makes segment units.
* **One FIFO, contiguous.** Units are taken in order, a whole queue at a time
  (one *round*); ``synced_lsn`` moves only to the last LSN of a round whose files
  were all fsynced, so it never passes a segment still waiting (invariant 2).
* **Group commit, whoever leads.** Exactly one thread at a time is the *leader*
  and processes rounds: a committer blocked in ``sync()`` or ``handle.wait()``
  when nobody leads (so a lone committer pays no hand-off), else the background
  thread (handles nobody blocks on, asyncio awaiters, rotated segments). One
  fsync serves every unit of a round; several units of one file cost one fsync.
  Followers sleep on a lock of their own and are released in one pass.
* **Durability sequence of a round** (crash windows): fsync each file — a crash
  before it loses only unacknowledged bytes, recovery cuts them; then, if any
  rename happened since the last directory fsync (rotation: ``active.wal`` ->
  ``pending/``, spare -> ``active.wal``), fsync ``pending/`` and the WAL
  directory — a crash before it may leave a file under its old name, which
  recovery reads as well; then pwrite the published watermark; then advance
  ``synced_lsn`` and wake the covered waiters (invariants 3 and 5).
* **Fail-stop.** The first error (any exception) on the commit path fails the
  WAL: ``synced_lsn`` freezes, every waiter and later call gets ``WalSyncError``.
  A failed fsync is never retried (the kernel may have dropped the pages).
* **Nobody waits forever.** ``stop()`` (close, garbage collection) drains the
  queue, then fails every handle still open with ``WalClosedError``; a dying
  sync thread fails the WAL.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from .errors import WalClosedError, WalError, WalSyncError
from .fs import FailpointHook, FileSystem, SyncBackend
from .handle import SyncHandle, Waiter, thread_waiter
from .stats import SyncCounters
from .watermark import WatermarkWriter
from .writer import SealedSegment

log = logging.getLogger("lsnwal")

#: longest a committer waits for the other threads of its convoy before it leads
GATHER_S = 0.002
_Loops = dict[asyncio.AbstractEventLoop, list["asyncio.Future[None]"]]


class Unit:
    """One entry of the FIFO: fsync ``fd`` so that LSNs up to ``last_lsn`` are durable."""

    __slots__ = ("fd", "futs", "last_lsn", "seg")

    def __init__(self, fd: int, last_lsn: int, seg: SealedSegment | None) -> None:
        self.fd = fd
        self.last_lsn = last_lsn
        self.seg = seg
        self.futs: dict[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None


def _resolve_futures(futs: list[asyncio.Future[None]]) -> None:
    for f in futs:
        if not f.done():
            f.set_result(None)


class SegmentSyncManager:
    """The FIFO of sync units, the leader protocol and the background sync thread."""

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
        watermark: WatermarkWriter | None = None,
        checkpoint_lsn: int = 0,
    ) -> None:
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)  # the background thread sleeps here
        self._room = threading.Condition(self.lock)  # backpressure waiters
        self._renamed = threading.Condition(self.lock)  # a rotation finished its renames
        self._fs = fs
        self._backend = backend
        self._dir_fds = [fd for fd in (pending_dir_fd, root_dir_fd) if fd >= 0]
        self._on_synced = on_synced
        self._fp = failpoint
        self._wm = watermark
        self._queue: collections.deque[Unit] = collections.deque()
        self._inflight: list[Unit] = []
        self._leader = False
        self._blocked = 0  # threads asleep in wait_handle
        #: group-commit gathering: threads the last round released, and how many of them
        #: have come back with a new commit since (see ``_gathering_locked``)
        self._convoy = 0
        self._arrived = 0
        self._released = 0
        self.synced_lsn = initial_synced_lsn
        #: highest LSN covered by a queued, in-flight or finished unit
        self.requested_lsn = initial_synced_lsn
        self.failure: WalSyncError | None = None
        self._handles: collections.deque[SyncHandle] = collections.deque()
        self._stopping = False
        self.pending_segments = 0
        self.pending_bytes = 0
        self._renames_busy = 0
        self._renames_done = 0
        self._renames_synced = 0
        self._checkpoints: collections.deque[tuple[int, int]] = collections.deque()
        self._durable_checkpoint = checkpoint_lsn
        self.counters = SyncCounters()
        self._due: list[tuple[Callable[[SyncHandle], None], SyncHandle]] = []
        #: monotonic time at which the age rotation is due (None: no age limit pending)
        self.age_deadline: float | None = None
        self.age_callback: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producers

    def request(self, fd: int, target: int, wake_thread: bool) -> SyncHandle:
        """A handle for ``target`` (called under the writer lock, so targets only grow).

        ``wake_thread`` asks the background thread to run the unit (``sync_async``);
        a committer that will block leads itself instead.
        """
        h = SyncHandle(self, target)
        with self.lock:
            if self.failure is not None:
                raise self.failure
            if target <= self.synced_lsn:
                h.done_flag = True
                self.counters.commits += 1
                return h
            h._unit = self._cover_locked(fd, target)
            # FIFO of handles in target order: every producer holds the writer lock
            assert not self._handles or self._handles[-1].target_lsn <= target
            self._handles.append(h)
            if wake_thread and not self._leader:
                self.cv.notify()
        return h

    def sync_or_handle(self, fd: int, target: int) -> SyncHandle | list[Unit] | None:
        """The blocking ``sync()``'s entry (under the writer lock, like ``request``).

        None: ``target`` is durable already. A list: nobody was leading, so the caller
        now leads and must pass this round (every queued unit, one of them covering
        ``target``) to ``lead_round``: no handle, no hand-off to another thread. A
        handle: someone leads; wait on it (``wait_handle``).
        """
        with self.lock:
            if self.failure is not None:
                raise self.failure
            if target <= self.synced_lsn:
                self.counters.commits += 1
                return None
            unit = self._cover_locked(fd, target)
            self._arrived += 1
            if self._leader or self._gathering_locked():
                h = SyncHandle(self, target)
                h._unit = unit
                # FIFO of handles in target order: every producer holds the writer lock
                assert not self._handles or self._handles[-1].target_lsn <= target
                self._handles.append(h)
                return h
            self._leader = True
            batch = list(self._queue)
            self._queue.clear()
            self._inflight = batch
            self.counters.commits += 1
            return batch

    def lead_round(self, batch: list[Unit], target: int) -> None:
        """Run the round ``sync_or_handle`` gave the caller, then lead on if needed."""
        self._lead(target, batch)
        if self.failure is not None:
            raise self.failure

    def _gathering_locked(self) -> bool:
        """True while threads the last round released are still coming back.

        Without this, the first released thread to commit again would start the next
        fsync alone and the others would queue behind it: rounds of 1, then n-1. The
        last of them to arrive leads instead (event-driven); one that waits longer
        than ``GATHER_S`` for the others leads anyway (a thread may not come back).
        """
        return self._convoy > 1 and self._arrived < self._convoy

    def _cover_locked(self, fd: int, target: int) -> Unit:
        """The unit that makes ``target`` durable: extend the newest queued in-place unit
        of the same file, or queue a new one, unless one queued or in flight covers it."""
        if target > self.requested_lsn:
            self.requested_lsn = target
            q = self._queue
            if q and q[-1].seg is None and q[-1].fd == fd:
                unit = q[-1]
                unit.last_lsn = target
                return unit
            unit = Unit(fd, target, None)
            q.append(unit)
            return unit
        for u in self._inflight:
            if u.last_lsn >= target:
                return u
        for u in self._queue:
            if u.last_lsn >= target:
                return u
        raise AssertionError("every target <= requested_lsn is covered")  # pragma: no cover

    def begin_rename(self) -> None:
        """A rotation is about to rename files (leaders wait before they publish)."""
        with self.lock:
            if self.failure is not None:
                raise self.failure
            self._renames_busy += 1

    def end_rename(self, seg: SealedSegment | None) -> None:
        """The rotation's renames are done; queue its sealed segment (None: it failed)."""
        with self.lock:
            self._renames_busy -= 1
            self._renames_done += 1
            self._renamed.notify_all()
            if seg is None:
                return
            if self.failure is not None:
                with contextlib.suppress(OSError):
                    self._fs.close(seg.fd)
                return
            self._queue.append(Unit(seg.fd, seg.last_lsn, seg))
            self.pending_segments += 1
            self.pending_bytes += seg.size_bytes
            if seg.last_lsn > self.requested_lsn:
                self.requested_lsn = seg.last_lsn
            if not self._leader:
                self.cv.notify()

    def note_checkpoint(self, record_lsn: int, checkpoint_lsn: int) -> None:
        """A CHECKPOINT record was appended; publish its LSN once the record is durable."""
        with self.lock:
            self._checkpoints.append((record_lsn, checkpoint_lsn))

    def notify_age(self) -> None:
        """The age deadline changed: let the background thread recompute its sleep."""
        with self.lock:
            self.cv.notify()

    # ------------------------------------------------------------------ waiting

    def wait_handle(self, h: SyncHandle, timeout: float | None) -> bool:
        """Block until ``h`` is done (True) or ``timeout`` passes (False); lead if free."""
        if timeout is not None and timeout >= threading.TIMEOUT_MAX:
            timeout = None  # inf (or anything a lock cannot wait for): no limit
        deadline = None if timeout is None else time.monotonic() + timeout
        w = thread_waiter()
        lock = self.lock
        while True:
            with lock:
                if h.done_flag:
                    return True
                lead = not self._leader and bool(self._queue)
                if lead and self._gathering_locked():
                    lead = False
                    gather = True
                else:
                    gather = False
                if lead:
                    self._leader = True
                else:
                    if h._waiters is None:
                        h._waiters = [w]
                    else:
                        h._waiters.append(w)
                    self._blocked += 1
            if lead:
                self._lead(h.target_lsn)
                continue
            if gather:
                # Wait for the rest of the convoy (the last arrival leads), but no longer
                # than GATHER_S: then lead ourselves if still nobody does.
                if w.lock.acquire(True, GATHER_S):
                    continue
                with lock:
                    if h._waiters is not None and w in h._waiters:
                        h._waiters.remove(w)
                        self._blocked -= 1
                        self._convoy = 0  # stop gathering: someone did not come back
                        continue
                w.lock.acquire()
                continue
            if deadline is None:
                w.lock.acquire()
                continue
            remaining = deadline - time.monotonic()
            if remaining > 0 and w.lock.acquire(True, remaining):
                continue
            with lock:
                if h._waiters is not None and w in h._waiters:
                    h._waiters.remove(w)
                    self._blocked -= 1
                    return h.done_flag
            w.lock.acquire()  # released by a waker meanwhile: take it back (held when idle)

    def add_callback(self, h: SyncHandle, fn: Callable[[SyncHandle], None]) -> bool:
        """Register ``fn`` to run when ``h`` is done; False if it is done already."""
        with self.lock:
            if h.done_flag:
                return False
            if h._callbacks is None:
                h._callbacks = []
            h._callbacks.append(fn)
            return True

    def group_future(
        self, h: SyncHandle, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[None] | None:
        """The future shared by every handle of ``h``'s unit on ``loop`` (None if done)."""
        with self.lock:
            if h.done_flag:
                return None
            unit = h._unit
            assert unit is not None
            futs = unit.futs
            if futs is None:
                futs = unit.futs = {}
            fut = futs.get(loop)
            if fut is None or fut.done():
                fut = futs[loop] = loop.create_future()
            return fut

    def has_room(self, max_segments: int, max_bytes: int) -> bool:
        """True while the backpressure limits are not reached."""
        return self.pending_segments < max_segments and self.pending_bytes < max_bytes

    def wait_for_room(self, max_segments: int, max_bytes: int, timeout: float | None) -> bool:
        """Block until there is room (True) or ``timeout`` passes (False)."""
        if timeout is not None and timeout >= threading.TIMEOUT_MAX:
            timeout = None  # inf: wait forever
        with self.lock:
            return self._room.wait_for(
                lambda: self.failure is not None
                or self._stopping
                or self.has_room(max_segments, max_bytes),
                timeout,
            )

    # ------------------------------------------------------------------ leading

    def _lead(self, own_target: int | None, batch: list[Unit] | None = None) -> None:
        """Process rounds as the leader: until ``synced_lsn`` reaches ``own_target`` (a
        committer), or until the queue is empty (the background thread, ``None``).

        ``batch`` is a round already taken from the queue by the caller.
        """
        lock = self.lock
        try:
            while True:
                if batch is None:
                    with lock:
                        if self.failure is not None or not self._queue:
                            self._step_down_locked()
                            return
                        batch = list(self._queue)
                        self._queue.clear()
                        self._inflight = batch
                self._round(batch)
                batch = None
                if own_target is not None and self.synced_lsn >= own_target:
                    with lock:
                        self._step_down_locked()
                    return
        except BaseException as exc:  # fail-stop: never retry, never die silently
            self.fail(exc, "fsync")
            with lock:
                self._step_down_locked()
                batch, self._inflight = self._inflight, []
            for u in batch:
                if u.seg is not None:
                    with contextlib.suppress(OSError):
                        self._fs.close(u.fd)
        finally:
            if self._due:
                self._run_due()

    def _step_down_locked(self) -> None:
        """Stop leading. Units that arrived meanwhile get a new leader; a stopping
        background thread that slept while we led is woken to see the queue empty."""
        self._leader = False
        if self._queue:
            self._hand_over_locked()
        elif self._stopping:
            self.cv.notify()

    def _hand_over_locked(self) -> None:
        """Units arrived during our round: wake a blocked committer to lead, else the thread."""
        if self._blocked:
            for h in self._handles:
                if h._waiters:
                    w: Waiter = h._waiters.pop(0)
                    self._blocked -= 1
                    w.lock.release()
                    return
        self.cv.notify()

    def _round(self, batch: list[Unit]) -> None:
        fp, backend, counters = self._fp, self._backend, self.counters
        # One fsync per file, however many units of it the round holds.
        fds = [batch[0].fd] if len(batch) == 1 else list(dict.fromkeys(u.fd for u in batch))
        for fd in fds:
            # Crash before this fsync: the file may be torn past its last fsync; nothing
            # there was acknowledged, recovery cuts it (keeping the bytes as evidence).
            if fp is not None:
                fp("before_file_fsync")
            t0 = time.perf_counter()
            backend.sync_file(fd)
            counters.note_fsync(time.perf_counter() - t0)
            if fp is not None:
                fp("after_file_fsync")
        last = batch[-1].last_lsn
        segments = [u.seg for u in batch if u.seg is not None]
        loops: _Loops = {}
        lock = self.lock
        while True:
            lock.acquire()
            if self.failure is not None:  # another thread failed the WAL: synced_lsn stays
                self._inflight = []
                lock.release()
                return
            if self._renames_busy:
                self._renamed.wait()
                lock.release()
                continue
            done = self._renames_done
            if done != self._renames_synced:
                lock.release()
                # Invariant 5: a rotation renamed files (active.wal -> pending/, a spare
                # -> active.wal) that may hold LSNs <= last; both directories become
                # durable first. Crash before this: a file may be found under its old name.
                for dfd in self._dir_fds:
                    if fp is not None:
                        fp("before_dir_fsync")
                    backend.sync_dir(dfd)
                    counters.dir_fsyncs += 1
                    if fp is not None:
                        fp("after_dir_fsync")
                self._renames_synced = done
                continue
            break
        try:
            # Still holding the lock: no rename can start before this round is published.
            if self._wm is not None:
                cp = self._durable_checkpoint
                cps = self._checkpoints
                while cps and cps[0][0] <= last:
                    cp = max(cp, cps.popleft()[1])
                self._durable_checkpoint = cp
                # Published after the fsyncs, before anyone is told: it may lag, never lead.
                self._wm.publish(last, cp)
            # Hand over to the archiver (a queue put) before waking waiters, so that a
            # caller whose sync returned finds these segments covered by wait_archived().
            self._on_synced(segments, last)
            self._inflight = []
            counters.rounds += 1
            if segments:
                self.pending_segments -= len(segments)
                self.pending_bytes -= sum(s.size_bytes for s in segments)
                self._room.notify_all()
            if last > self.synced_lsn:
                self.synced_lsn = last
            handles = self._handles
            self._released = 0
            while handles and handles[0].target_lsn <= last:
                self._finish(handles.popleft(), None)
            self._convoy, self._arrived = self._released, 0
            for u in batch:
                if u.futs:
                    for loop, fut in u.futs.items():
                        loops.setdefault(loop, []).append(fut)
        finally:
            lock.release()
        for loop, futs in loops.items():
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody to wake
                loop.call_soon_threadsafe(_resolve_futures, futs)
        for s in segments:
            with contextlib.suppress(OSError):
                self._fs.close(s.fd)

    def _finish(self, h: SyncHandle, error: WalError | None) -> None:
        h.error = error
        h.done_flag = True
        if error is None:
            self.counters.commits += 1
        ws = h._waiters
        if ws:
            self._blocked -= len(ws)
            self._released += len(ws)
            for w in ws:
                w.lock.release()
            h._waiters = None
        if h._callbacks:
            for cb in h._callbacks:
                self._due.append((cb, h))  # run later, without the lock
            h._callbacks = None

    def _run_due(self) -> None:
        """Run the user callbacks ``_finish`` collected, now that the lock is released."""
        if not self._due:
            return
        with self.lock:
            due, self._due = self._due, []
        for cb, h in due:
            try:
                cb(h)
            except Exception:  # a user callback must not kill the commit path
                log.exception("lsnwal: a SyncHandle callback raised")

    # ------------------------------------------------------------------ failing

    def _fail_all_locked(self, err: WalError) -> None:
        loops: _Loops = {}
        units = {id(u): u for u in (*self._inflight, *self._queue)}
        while self._handles:
            h = self._handles.popleft()
            if h._unit is not None:
                units[id(h._unit)] = h._unit
            self._finish(h, err)
        for u in units.values():
            if u.futs:
                for loop, fut in u.futs.items():
                    loops.setdefault(loop, []).append(fut)
        for u in self._queue:
            if u.seg is not None:
                with contextlib.suppress(OSError):
                    self._fs.close(u.fd)
        self._queue.clear()
        for loop, futs in loops.items():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve_futures, futs)
        self.cv.notify_all()
        self._room.notify_all()
        self._renamed.notify_all()

    def fail(self, cause: BaseException, what: str) -> WalSyncError:
        """Enter the failed state (idempotent); return the WAL's failure."""
        with self.lock:
            if self.failure is None:
                err = WalSyncError(
                    f"{what} failed: {cause!r}; the WAL is fail-stopped at synced_lsn="
                    f"{self.synced_lsn} (reopen the directory to recover)",
                    cause,
                )
                self.failure = err
                log.error("lsnwal: %s", err, extra={"lsnwal_event": "failed",
                                                    "synced_lsn": self.synced_lsn})
                self._fail_all_locked(err)
            failure = self.failure
        if threading.current_thread() is self._thread:
            self._run_due()
        elif self._due:
            # The caller may hold the WAL's writer lock (a failed write or rotation);
            # a callback that calls back into the WAL must not deadlock on it.
            threading.Thread(target=self._run_due, name="lsnwal-callbacks", daemon=True).start()
        return failure

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            while True:
                age = False
                with self.lock:
                    while True:
                        if self.failure is not None:
                            return
                        if self._queue and not self._leader:
                            self._leader = True
                            break
                        if self._stopping and not self._queue and not self._leader:
                            return
                        due = self.age_deadline
                        if due is not None and not self._stopping:
                            wait = due - time.monotonic()
                            if wait <= 0:
                                age = True
                                break
                            self.cv.wait(wait)
                        else:
                            self.cv.wait()
                if age:
                    self.age_deadline = None
                    if self.age_callback is not None:
                        self.age_callback()  # rotates under the writer lock (never waits)
                    continue
                self._lead(None)
        except BaseException as exc:  # a dying sync thread fails the WAL: nobody waits forever
            self.fail(exc, "the sync thread")

    def stop(self, timeout: float | None = None) -> None:
        """Drain the queue, stop the thread, fail what is still open (idempotent)."""
        with self.lock:
            self._stopping = True
            self.cv.notify_all()
            self._room.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with self.lock:
            if self._handles or self._queue:
                self._fail_all_locked(self.failure or WalClosedError(
                    "the WAL was closed before this commit became durable"))
        self._run_due()

    @property
    def alive(self) -> bool:
        """True while the sync thread runs."""
        return self._thread.is_alive()
