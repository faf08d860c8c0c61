"""``SyncHandle``: one durability request, and the ways to wait for it.

A handle is created by ``sync_async()`` (and, internally, by ``sync()``) for a
target LSN. It is *done* when the target is at or below ``synced_lsn`` (success)
or when the WAL failed or closed before that (its ``error`` is then set). Rules
kept here:

* **Honest.** ``wait``, ``result`` and ``await`` report success only when the
  commit path marked the handle done without an error, which it does only after
  ``synced_lsn`` reached the target (invariant 3).
* **No polling.** A blocked thread sleeps on a lock of its own (one reusable lock
  per thread, never a shared ``Condition`` that wakes everyone); the commit path
  releases exactly the threads it covers. A blocked thread may instead be asked
  to *lead*: run the next fsync itself (see ``sync.py``).
* **asyncio.** ``await handle`` waits on a future shared by every handle of the
  same sync unit on the same event loop, resolved with one ``call_soon_threadsafe``
  per loop per fsync round. Cancelling one awaiting task never fails the others:
  a task that finds the shared future cancelled by somebody else's cancellation
  simply waits again on a fresh one.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from .errors import WalError

if TYPE_CHECKING:
    from .sync import SegmentSyncManager, Unit

_tls = threading.local()
_HAS_CANCELLING = sys.version_info >= (3, 11)


class Waiter:
    """A blocked thread: the lock it sleeps on (held while idle, released to wake it)."""

    __slots__ = ("lock",)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()


def thread_waiter() -> Waiter:
    """The calling thread's reusable ``Waiter`` (its lock is held whenever it is idle)."""
    w: Waiter | None = getattr(_tls, "waiter", None)
    if w is None:
        w = _tls.waiter = Waiter()
    return w


class SyncHandle:
    """A durability request for ``target_lsn``; wait on it, await it, or add callbacks."""

    __slots__ = ("_callbacks", "_mgr", "_unit", "_waiters", "done_flag", "error", "target_lsn")

    def __init__(self, mgr: SegmentSyncManager | None, target_lsn: int) -> None:
        self.target_lsn = target_lsn
        self._mgr = mgr
        #: True once the target is durable or the WAL failed/closed (then ``error`` is set)
        self.done_flag = mgr is None
        self.error: WalError | None = None
        self._unit: Unit | None = None
        self._waiters: list[Waiter] | None = None
        self._callbacks: list[Callable[[SyncHandle], None]] | None = None

    def done(self) -> bool:
        """True once the target is durable or the WAL has failed or closed."""
        return self.done_flag

    def wait(self, timeout: float | None = None) -> bool:
        """Block until durable: True; False on timeout; raises the WAL's error if it failed.

        The waiting thread may run the fsync itself when no other fsync is in
        flight, so a lone committer pays no hand-off to another thread.
        """
        if not self.done_flag:
            mgr = self._mgr
            assert mgr is not None
            if not mgr.wait_handle(self, timeout):
                return False
        if self.error is not None:
            raise self.error
        return True

    def result(self) -> int:
        """Block until durable and return ``target_lsn`` (or raise the WAL's error)."""
        self.wait()
        return self.target_lsn

    def add_done_callback(self, fn: Callable[[SyncHandle], None]) -> None:
        """Call ``fn(handle)`` once done: at once if already done, else from the thread that
        completes it, after the commit path's lock is released."""
        if not self.done_flag:
            mgr = self._mgr
            assert mgr is not None
            if mgr.add_callback(self, fn):
                return
        fn(self)

    def __await__(self) -> Generator[Any, None, int]:
        """Await durability without blocking the event loop."""
        if not self.done_flag:
            mgr = self._mgr
            assert mgr is not None
            loop = asyncio.get_running_loop()
            while not self.done_flag:
                fut = mgr.group_future(self, loop)
                if fut is None:
                    break
                if not _HAS_CANCELLING:  # pragma: no cover - Python 3.10: one shield per task
                    yield from asyncio.shield(fut).__await__()
                    continue
                try:
                    yield from fut.__await__()
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if fut.cancelled() and task is not None and not task.cancelling():  # type: ignore[attr-defined,unused-ignore]
                        continue  # another task's cancellation cancelled the shared future
                    raise
        if self.error is not None:
            raise self.error
        return self.target_lsn

    def __repr__(self) -> str:
        state = "failed" if self.error else ("done" if self.done_flag else "waiting")
        return f"SyncHandle(target_lsn={self.target_lsn}, {state})"
