"""The shipper: uploads archived segments to an object store, off the commit path.

Owns the ``lsnwal-ship`` thread and the shipping counters (connecting and
checking the store when a WAL opens is ``lsnwal.store.connect``). Rules:

* Only sealed segments that the archiver has made durable in ``archive/`` are
  shipped, oldest first, each **once** with a create-only put
  (``If-None-Match: *``) carrying its CRC32C, which the store checks; its LSN
  range, time range, checkpoint and marks go into the object metadata.
* ``put`` answers "exists" (412): the stored CRC32C (or, if the store keeps
  none, the stored bytes) is compared with ours. Identical is success (a retry
  after a crash or a lost answer). Different stops shipping with
  ``StoreConflictError`` and the ``ship_conflict`` flag — never an overwrite
  (invariant 12). The local segment stays.
* A store unreachable when the WAL opens does not stop the open: this thread
  connects later (capability check and lease included), with back-off; a
  store that then fails the check or is leased stops shipping visibly.
* Transient errors (connection refused, timeouts, 5xx, throttling) are retried
  with exponential back-off (0.1 s doubling to ``archive_ship_retry_max_s``)
  for as long as it takes; nothing is lost and commits never wait, because the
  archiver keeps every unshipped segment locally. Auth, permission and lease
  errors stop shipping visibly (stats, log) and leave commits alone.
* The archiver deletes a local segment (by local retention, or because the
  archive is off) only after ``is_shipped`` says the store acknowledged it.
* Fencing: the lease is re-read before the first upload after an idle spell
  and then at most once a second while uploads stream; a lost lease stops
  shipping (another writer took the prefix over). A writer that lost it may
  still land what it uploads within that second — under its own timeline's
  names, create-only, so nothing is overwritten.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .config import WalConfig
from .names import segment_name
from .store import retention as store_retention
from .store.base import StoreConflictError, StoreError, StoreTransientError, crc32c
from .store.connect import ShipTarget, connect, object_metadata
from .store.retention import StoreCandidate
from .store.timeline import save_state
from .store.url import segment_key, timeline_dir, tip_key

__all__ = ["ShipTarget", "Shipper", "connect", "object_metadata"]

log = logging.getLogger("lsnwal")

RETRY_FIRST_S = 0.1
STORE_RETENTION_INTERVAL_S = 60.0  # store retention runs when idle, at most this often
LEASE_CHECK_S = 1.0  # fencing: the lease is re-read before an upload at most this often
SHIPPED_NAME = "SHIPPED"  # hint: first LSN of the newest segment the store acknowledged


@dataclass
class _Item:
    path: str
    first_lsn: int
    last_lsn: int
    size: int
    queued_at: float
    verify: bool = False  # listed in the store but never acknowledged to us: compare only
    prev: str | None = None  # name of the segment before it (lets a reader seek without LIST)


class Shipper:
    """A thread that ships archived segments to the store (see the module rules)."""

    def __init__(
        self,
        target: ShipTarget | None,
        config: WalConfig,
        existing: Iterable[tuple[str, int, int | None, int]],
        on_progress: Callable[[], None],
        checkpoint: Callable[[], int] = lambda: 0,
        reconnect: Callable[[], ShipTarget] | None = None,
    ) -> None:
        # ``target`` is None when the store was unreachable at open: the thread then
        # connects (capability check and lease included) with back-off before shipping.
        self._target = target
        self._reconnect = reconnect
        self._checkpoint = checkpoint
        self._retention_at = 0.0
        self.store_pruned = 0
        self._config = config
        self._on_progress = on_progress
        self._cv = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Item] = collections.deque()
        self._shipped: set[int] = set()  # first LSNs the store acknowledged (this run)
        self._reconciled = False
        self._stopping = False
        self.error: StoreError | None = None
        self.conflict = False
        self.last_error: str | None = None
        self.objects_shipped = 0
        self.bytes_shipped = 0
        self.retries = 0
        self.shipped_lsn = 0
        self._lease_checked = -LEASE_CHECK_S
        now = time.time()
        self._initial = sorted(
            (_Item(p, first, last if last is not None else first, size, now)
             for p, first, last, size in existing), key=lambda i: i.first_lsn)
        for a, b in zip(self._initial, self._initial[1:], strict=False):
            b.prev = os.path.basename(a.path)
        self._last_name = os.path.basename(self._initial[-1].path) if self._initial else None
        self._tip_etag: str | None = None
        self._tip_at = 0.0
        self._thread = threading.Thread(target=self._run, name="lsnwal-ship", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ inputs

    def submit(self, segs: Iterable[tuple[str, int, int, int]]) -> None:
        """Queue archived segments ``(path, first_lsn, last_lsn, size)`` for shipping."""
        now = time.time()
        with self._cv:
            for p, f, last, s in segs:
                self._queue.append(_Item(p, f, last, s, now, prev=self._last_name))
                self._last_name = os.path.basename(p)
            self._cv.notify_all()

    def is_shipped(self, first_lsn: int) -> bool:
        """True once the store acknowledged the segment starting at ``first_lsn``."""
        with self._cv:
            return first_lsn in self._shipped

    @property
    def target(self) -> ShipTarget:
        """The checked store connection (only used once connected)."""
        assert self._target is not None
        return self._target

    # ------------------------------------------------------------------ thread

    def _connect(self) -> None:
        """Connect to a store that was unreachable at open (retried until it answers)."""
        assert self._reconnect is not None
        reconnect = self._reconnect
        target = self._with_retry(reconnect)
        try:
            save_state(target.wal_root, target.url, target.state)
        except OSError as exc:
            target.close()
            raise StoreError(f"cannot record the shipping state: {exc}") from None
        self._target = target
        log.info("lsnwal: connected to %s (timeline %d)", target.store.location,
                 target.state.timeline)

    def _run(self) -> None:
        try:
            if self._target is None:
                self._connect()
            self._reconcile()
        except StoreTransientError:
            return  # closing while the store is unreachable: next open reconciles again
        except StoreError as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(StoreError(f"cannot read the local archive for shipping: {exc}"))
        while True:
            with self._cv:
                idle = not self._queue
                if idle:
                    self._lease_checked = -LEASE_CHECK_S  # the first upload after idling checks
            if idle and self.error is None and \
                    time.monotonic() - self._retention_at > STORE_RETENTION_INTERVAL_S:
                self._retention_at = time.monotonic()
                try:
                    self.apply_retention()
                except StoreError as exc:  # retention waits for the next round; shipping goes on
                    self.last_error = str(exc)
                    log.warning("lsnwal: store retention in %s failed: %s",
                                self.target.store.location, exc)
            with self._cv:
                self._cv.wait_for(lambda: bool(self._queue) or self._stopping)
                if self._stopping and (not self._queue or self.error is not None):
                    return
                if self.error is not None:
                    self._cv.wait_for(lambda: self._stopping)
                    return
                item = self._queue[0]
            delay = RETRY_FIRST_S
            while True:
                try:
                    if time.monotonic() - self._lease_checked > LEASE_CHECK_S:
                        self.target.lease.check()
                        self._lease_checked = time.monotonic()
                    self._ship(item)
                    break
                except StoreTransientError as exc:
                    self.last_error = str(exc)
                    self.retries += 1
                    log.warning("lsnwal: shipping %s will be retried in %.1fs: %s",
                                os.path.basename(item.path), delay, exc)
                    with self._cv:
                        if self._cv.wait_for(lambda: self._stopping, delay):
                            return  # closing: the segment stays local and ships next time
                    delay = min(delay * 2, self._config.archive_ship_retry_max_s)
                except StoreError as exc:
                    self._fail(exc)
                    break
                except OSError as exc:
                    self._fail(StoreError(f"cannot read {item.path} for shipping: {exc}"))
                    break
            if self.error is None:
                with self._cv:
                    self._queue.popleft()
                    self._shipped.add(item.first_lsn)
                    self.shipped_lsn = max(self.shipped_lsn, item.last_lsn)
                    self._cv.notify_all()
                self._write_hint(item.first_lsn)
                with self._cv:
                    idle_now = not self._queue
                if idle_now or time.monotonic() - self._tip_at > LEASE_CHECK_S:
                    self._write_tip(os.path.basename(item.path))
                self._on_progress()

    def _fail(self, exc: StoreError) -> None:
        self.error = exc
        self.last_error = str(exc)
        self.conflict = self.conflict or isinstance(exc, StoreConflictError)
        where = self._target.store.location if self._target is not None else "the store"
        log.error("lsnwal: shipping to %s stopped: %s (segments stay in the local archive; "
                  "commits go on)", where, exc)
        with self._cv:
            self._cv.notify_all()

    def _reconcile(self) -> None:
        """Sort local archived segments into shipped and to-ship (one LIST from the oldest).

        A segment at or below the ``SHIPPED`` hint was acknowledged to us. One the
        store lists but we never saw acknowledged (a crash right after the put, or
        someone else's object) is compared by checksum, as after a 412.
        """
        items = sorted(self._initial, key=lambda i: i.first_lsn)
        present: set[str] = set()
        hint = self._read_hint()
        tdir = timeline_dir(self.target.prefix, self.target.state.timeline)
        if items:
            after = tdir + segment_name(max(0, items[0].first_lsn - 1))
            present = {o.key for o in self._with_retry(
                lambda: list(self.target.store.list(tdir, start_after=after)))}
        todo = []
        for it in items:
            if tdir + os.path.basename(it.path) not in present:
                todo.append(it)
            elif it.first_lsn <= hint:
                with self._cv:
                    self._shipped.add(it.first_lsn)
                    self.shipped_lsn = max(self.shipped_lsn, it.last_lsn)
            else:
                it.verify = True
                todo.append(it)
        with self._cv:
            self._queue.extendleft(reversed(todo))
            self._reconciled = True
            self._cv.notify_all()
        self._on_progress()

    def _with_retry(self, fn: Callable[[], Any]) -> Any:
        delay = RETRY_FIRST_S
        while True:
            try:
                return fn()
            except StoreTransientError as exc:
                self.last_error = str(exc)
                self.retries += 1
                with self._cv:
                    if self._cv.wait_for(lambda: self._stopping, delay):
                        raise
                delay = min(delay * 2, self._config.archive_ship_retry_max_s)

    def _read_hint(self) -> int:
        try:
            with open(os.path.join(self.target.wal_root, SHIPPED_NAME), encoding="ascii") as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _write_tip(self, name: str) -> None:
        """Point ``tip/tl-N`` at the newest shipped segment (a hint for readers' seeks)."""
        t = self.target
        key = tip_key(t.prefix, t.state.timeline)
        self._tip_at = time.monotonic()
        for _ in range(2):
            try:
                self._tip_etag = t.store.put_if_match(key, name.encode("ascii"), self._tip_etag)
                return
            except StoreConflictError:
                info = t.store.head(key)
                self._tip_etag = None if info is None else info.etag
            except StoreError as exc:  # a hint: readers list without it
                log.debug("lsnwal: tip hint not written: %s", exc)
                return

    def _write_hint(self, first_lsn: int) -> None:
        """Remember the newest acknowledged segment (a hint: no fsync; lost = re-verified)."""
        path = os.path.join(self.target.wal_root, SHIPPED_NAME)
        try:
            with open(path + ".tmp", "w", encoding="ascii") as f:
                f.write(str(first_lsn))
            os.replace(path + ".tmp", path)
        except OSError as exc:
            log.warning("lsnwal: cannot write %s: %s", path, exc)

    def _compare(self, key: str, path: str, data: bytes, crc: int) -> None:
        """``key`` exists: return if it holds ``data`` (by CRC32C, or bytes), else raise."""
        t = self.target
        info = t.store.head(key)
        if info is not None and info.size == len(data) and (
            info.crc32c == crc if info.crc32c is not None else t.store.get(key) == data
        ):
            return  # the same bytes are already there: a retry after a crash or lost answer
        raise StoreConflictError(
            f"object {key} in {t.store.location} already exists with DIFFERENT content than "
            f"{path}; refusing to overwrite history. Shipping stopped: another writer "
            "or an earlier history uses this prefix (restore from it to start a new timeline, "
            "or ship to another prefix)")

    def _ship(self, item: _Item) -> None:
        """Upload one segment create-only; compare on "exists" (see the module rules)."""
        with open(item.path, "rb") as f:
            data = f.read()
        crc = crc32c(data)
        t = self.target
        key = segment_key(t.prefix, t.state.timeline, os.path.basename(item.path))
        if item.verify:
            self._compare(key, item.path, data, crc)
            return
        if t.store.put_if_absent(key, data, crc,
                                 object_metadata(data, t.state.timeline, item.prev)):
            self.objects_shipped += 1
            self.bytes_shipped += len(data)
            return
        self._compare(key, item.path, data, crc)

    def apply_retention(self) -> list[StoreCandidate]:
        """Apply store retention now (a no-op without ``store_max_*``); return what went."""
        if not self._reconciled:
            return []
        t = self.target
        gone = store_retention.apply(t.store, t.prefix, t.state.timeline, self._config,
                                     min(self._checkpoint(), self.shipped_lsn))
        self.store_pruned += len(gone)
        return gone

    # ------------------------------------------------------------------ outputs

    def stats(self) -> dict[str, Any]:
        """The shipping counters, as the ``ship_*`` fields of ``WalStats``."""
        now = time.time()
        with self._cv:
            pending = list(self._queue) + ([] if self._reconciled else list(self._initial))
        return {
            "ship_timeline": 0 if self._target is None else self._target.state.timeline,
            "ship_lag_lsns": sum(i.last_lsn - i.first_lsn + 1 for i in pending),
            "ship_lag_bytes": sum(i.size for i in pending),
            "ship_lag_s": max((now - i.queued_at for i in pending), default=0.0),
            "ship_objects": self.objects_shipped,
            "ship_bytes": self.bytes_shipped,
            "ship_retries": self.retries,
            "ship_error": self.last_error if self.error is None else str(self.error),
            "ship_stopped": self.error is not None,
            "ship_conflict": self.conflict,
            "store_pruned": self.store_pruned,
        }

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is shipped (False on timeout or if stopped)."""
        with self._cv:
            self._cv.wait_for(
                lambda: (self._reconciled and not self._queue) or self.error is not None, timeout)
            return self._reconciled and not self._queue and self.error is None

    def stop(self) -> None:
        """Ship what is queued for up to ``archive_ship_close_timeout_s``, then stop."""
        self.drain(self._config.archive_ship_close_timeout_s)
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(self._config.archive_ship_close_timeout_s)
        if not self._thread.is_alive() and self._target is not None:
            self._target.close()
