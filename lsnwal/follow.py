"""Follow mode: ``WalReader.follow`` / ``follow_async`` and the cheap wait between looks.

Owns tailing a live WAL. A follower remembers the next LSN it owes and where
that LSN sits (segment first LSN and file offset), so each look reads only new
bytes; it finds a segment again by LSN after rotation, archiving (plain or
compressed) and a writer restart. Rules kept here:

* **Exactly once, in order.** Records are yielded by LSN, each once; the next
  look starts at the LSN after the last one yielded.
* **Durable only by default.** The limit of a look is the ``synced_lsn`` read
  from ``WATERMARK`` *before* the look, so a yielded record is never above the
  published watermark.
* **Never a silent jump.** When retention pruned the segment holding the next
  LSN, the follower raises ``LsnUnavailableError`` (from the chain walk).
* **Cheap waiting.** On Linux an inotify watch (through ``ctypes``: no new
  dependency) on the WAL directory and ``WATERMARK`` wakes the follower when the
  writer writes records or publishes with a system call. The writer may publish
  with a store into a shared memory map, which raises no event: so when the
  next record owed is written but not yet published, the follower polls with a
  back-off from 1 ms (the publish follows the fsync closely). Without inotify
  it always polls with that back-off, up to ``poll_max_s``. Either way it looks
  at least every ``poll_max_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import select
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from . import format as fmt
from .errors import WalError
from .watermark import WATERMARK_NAME

if TYPE_CHECKING:
    from .reader import WalReader

_H = fmt.RECORD_HEADER_SIZE
_DATA = int(fmt.RecordKind.DATA)
#: at most this many records are gathered per look (bounds memory and latency)
LOOK_MAX_RECORDS = 65536
_BACKOFF_MIN_S = 0.001

# inotify(7) constants
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_DIR_EVENTS = _IN_CREATE | _IN_MOVED_TO | _IN_MOVED_FROM | _IN_DELETE


class Waiter:
    """Blocks until the WAL directory or its watermark changes, or a timeout passes."""

    def __init__(self, root: str, durable_only: bool, poll_max_s: float) -> None:
        self.root = root
        self.poll_max_s = poll_max_s
        self._backoff = _BACKOFF_MIN_S
        self._libc: ctypes.CDLL | None = None
        self.fd = -1
        # Writes to active.wal wake us in both modes: a writer that publishes its watermark
        # with a store into a shared map (no system call, so no inotify event) still
        # writes its records with write(2) first; the follower then polls briefly for the
        # publish that follows the fsync (see Follower.written_beyond).
        self._dir_mask = _DIR_EVENTS | _IN_MODIFY
        if sys.platform.startswith("linux") and os.environ.get("LSNWAL_NO_INOTIFY") != "1":
            self._open_inotify()

    def _open_inotify(self) -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        self._libc, self.fd = libc, fd
        if not self._watch(self.root, self._dir_mask):
            self.close()
            return
        self.arm()  # before the first look: a publish right after it still wakes us

    def _watch(self, path: str, mask: int) -> bool:
        assert self._libc is not None
        return int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)) >= 0

    @property
    def uses_inotify(self) -> bool:
        """True when wake-ups come from the kernel (else: bounded back-off polling)."""
        return self.fd >= 0

    def arm(self) -> None:
        """Watch ``WATERMARK`` itself (its writes do not change the directory).

        Added again before every wait: one cheap syscall that finds the file once it
        exists and follows it if a new writer replaced it (same inode: no new watch).
        """
        if self.fd >= 0:
            self._watch(os.path.join(self.root, WATERMARK_NAME),
                        _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_DELETE_SELF)

    def drain(self) -> None:
        """Forget the events read so far (one look answers all of them)."""
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            while os.read(self.fd, 65536):
                pass

    def wait(self, short: bool = False) -> None:
        """Block until something changed (inotify) or for the next back-off step.

        ``short``: a change is known to be on its way (records written, not yet
        published as durable): sleep the next back-off step instead of waiting
        for an event that a memory-mapped publish does not raise.
        """
        if self.fd >= 0 and not short:
            self.arm()
            select.select([self.fd], [], [], self.poll_max_s)
            self.drain()
            return
        time.sleep(self.next_backoff())

    def next_backoff(self) -> float:
        """The next sleep of the polling fallback (doubling up to ``poll_max_s``)."""
        delay = self._backoff
        self._backoff = min(self.poll_max_s, self._backoff * 2)
        return delay

    def reset(self) -> None:
        """Records came: the next wait starts from the shortest back-off again."""
        self._backoff = _BACKOFF_MIN_S

    def close(self) -> None:
        """Close the inotify descriptor (idempotent)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


class Follower:
    """One ``follow`` iteration: position, limit and waiting (see the module docstring)."""

    def __init__(
        self, reader: WalReader, from_lsn: int | None, durable_only: bool, poll_max_s: float
    ) -> None:
        if from_lsn is not None and (isinstance(from_lsn, bool) or not isinstance(
                from_lsn, int) or from_lsn < 1):
            raise ValueError("from_lsn must be a positive int")
        if not poll_max_s > 0:
            raise ValueError("poll_max_s must be > 0")
        self.reader = reader
        self.next_lsn = from_lsn
        self.durable_only = durable_only
        self.hint: tuple[int, int] | None = None
        self.waiter = Waiter(reader.paths.root, durable_only, poll_max_s)

    def look(self) -> list[fmt.Record]:
        """The records available now (durable ones only, unless asked otherwise)."""
        limit = self.reader.synced_lsn if self.durable_only else None
        nxt = self.next_lsn
        if limit is not None and nxt is not None and nxt > limit:
            return []
        if limit is not None and limit < 1:
            return []
        out: list[fmt.Record] = []
        record, data_kind, make = fmt.Record, fmt.RecordKind.DATA, fmt.make_record
        walk = self.reader.chain.walk(nxt, limit, hint=self.hint)
        try:
            for loc, chunk in walk:
                if chunk is None:
                    continue
                base, data, recs = chunk.base, chunk.data, chunk.recs
                plain = not loc.header.compressed
                for rel, lsn, kind, ts, ln in recs:
                    if nxt is not None and lsn < nxt:
                        continue
                    if limit is not None and lsn > limit:
                        break
                    out.append(record(lsn, data_kind, ts, data[rel + _H : rel + _H + ln])
                               if kind == _DATA
                               else make(lsn, kind, ts, bytes(data[rel + _H : rel + _H + ln])))
                    nxt = lsn + 1
                    self.hint = (loc.header.first_lsn, base + rel + _H + ln if plain else 0)
                if len(out) >= LOOK_MAX_RECORDS:
                    break
        finally:
            walk.close()
        self.next_lsn = nxt
        return out

    def written_beyond(self) -> bool:
        """True when the next record owed is written but not yet published as durable."""
        if not self.durable_only:
            return False
        nxt = self.next_lsn if self.next_lsn is not None else 1
        walk = self.reader.chain.walk(nxt, nxt, hint=self.hint)
        try:
            return any(chunk is not None and chunk.last_lsn >= nxt for _loc, chunk in walk)
        except WalError:
            return False  # the next look reports it
        finally:
            walk.close()

    def run(self) -> Iterator[fmt.Record]:
        """The blocking follow loop."""
        try:
            while not self.reader.closed:
                recs = self.look()
                if recs:
                    self.waiter.reset()
                    yield from recs
                    continue
                self.waiter.wait(short=self.written_beyond())
        finally:
            self.waiter.close()

    async def run_async(self) -> AsyncIterator[fmt.Record]:
        """The asyncio follow loop: waits on the inotify descriptor with ``add_reader``."""
        loop = asyncio.get_running_loop()
        try:
            while not self.reader.closed:
                recs = self.look()
                if recs:
                    self.waiter.reset()
                    for rec in recs:
                        yield rec
                    continue
                await self._wait_async(loop, self.written_beyond())
        finally:
            self.waiter.close()

    async def _wait_async(self, loop: asyncio.AbstractEventLoop, short: bool) -> None:
        w = self.waiter
        if w.fd < 0 or short:
            await asyncio.sleep(w.next_backoff())
            return
        w.arm()
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(w.fd, ready)
        try:
            await asyncio.wait_for(fut, w.poll_max_s)
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            pass
        finally:
            loop.remove_reader(w.fd)
        w.drain()
