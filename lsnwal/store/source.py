"""Reading a WAL from a store: a read-only ``FileSystem`` view over one timeline's objects.

Owns ``StoreFileSystem`` and ``read_source``. ``replay``, ``restore``,
``verify`` and ``list_marks`` accept an ``s3://`` (or ``file://``) URL by
swapping their file system for this view — the records still go through the
one codec (``lsnwal.format``), which checks every CRC while streaming; there is
no second parser. Rules:

* The view looks like a WAL directory whose ``archive/`` holds the segments
  of one timeline (the newest, or ``?timeline=N``); one LIST names them, with
  their sizes. No LOCK is taken; the only object ever written is a restore's
  hold (``PREFIX/holds/``), which store retention respects.
* ``pread`` is served from ranged GETs: a read near an object's end fetches
  its last 64 KiB once (trailer, seal and index in one suffix GET); a small
  read fetches 64 KiB; streaming reads fetch what is asked and prefetch the
  next range in the background; once a reader goes on to the next segment,
  the following segments are fetched ahead too — all within ``prefetch_bytes``.
  So a seek by LSN costs a few small GETs, whatever the archive's size.
* Every GET is retried with back-off on transient errors; counters
  (``gets``, ``bytes_read``) tell what a read cost.
"""

from __future__ import annotations

import bisect
import collections
import errno
import os
import threading
import time
import weakref
from typing import Any

from ..fs import FileSystem, OsFileSystem, OsSyncBackend, SyncBackend
from ..names import parse_segment_name, segment_name
from .base import ObjectStore, StoreError, StoreTransientError
from .retention import Hold
from .timeline import timelines, write_restored_marker
from .url import StoreUrl, is_store_url, open_store, parse_url, timeline_dir, tip_key

TAIL_BYTES = 64 * 1024
SMALL_FETCH = 64 * 1024
CACHE_BYTES = 64 * 1024 * 1024
GET_ATTEMPTS = 6
READ_AHEAD_SEGMENTS = 4


def _ro(path: str) -> OSError:
    return OSError(errno.EROFS, "a store source is read-only", path)


class StoreFileSystem:
    """A read-only ``FileSystem`` whose ``<root>/archive/`` is one timeline of a store."""

    def __init__(self, store: ObjectStore, url: StoreUrl, *, client_timeline: int | None = None,
                 prefetch_bytes: int = 8 * 1024 * 1024, seek: int | None = None) -> None:
        self.store = store
        self.sparse = False
        self.url = url
        self.prefix = url.prefix
        self._lock = threading.Lock()
        self._objects: dict[str, int] | None = None
        self._order: list[str] = []
        tl = client_timeline or url.timeline
        if tl is None:  # the newest timeline that holds segments (a one-key LIST each)
            for n in sorted(timelines(store, url.prefix), reverse=True):
                if n == 1 or self._retry(
                        lambda n=n: list(store.list(timeline_dir(url.prefix, n), limit=1))):
                    tl = n
                    break
        assert tl is not None
        self.timeline = tl
        self.root = "/" + "/".join(p for p in (url.scheme, url.bucket.strip("/"), url.prefix,
                                               f"tl-{tl:08d}") if p)
        self.archive = self.root + "/archive"
        self.prefetch_bytes = prefetch_bytes
        self.gets = 0
        self.bytes_read = 0
        self._fds: dict[int, str] = {}
        self._next_fd = 1000
        # cache: (name, start) -> bytes, evicted oldest first beyond CACHE_BYTES
        self._cache: collections.OrderedDict[tuple[str, int], bytes] = collections.OrderedDict()
        self._cached = 0
        self._inflight: dict[tuple[str, int], threading.Event] = {}
        self._inflight_bytes = 0
        self._last_started: str | None = None  # the segment whose start was read last
        self.hold: Hold | None = None
        if seek is not None:
            self._sparse_listing(seek)

    def _sparse_listing(self, lsn: int) -> None:
        """For a seek: list only the segment holding ``lsn`` and the newest ones.

        The tip hint names the newest shipped segment (one GET, then a LIST of what
        came after it); a one-key LIST after ``lsn``'s name finds the next segment,
        whose ``lsnwal-prev-name`` metadata names the one holding ``lsn``. Segments
        between are found by name as the reader reaches them (one HEAD each). Any
        missing piece falls back to the full listing.
        """
        tdir = timeline_dir(self.prefix, self.timeline)
        try:
            tip = self._retry(lambda: self.store.get(tip_key(self.prefix, self.timeline)))
        except StoreError:
            return
        if not tip or parse_segment_name(tip.decode("ascii", "replace")) is None:
            return
        tail = {o.key[len(tdir):]: o.size for o in self._retry(
            lambda: list(self.store.list(tdir, start_after=(tdir + tip.decode())[:-1])))}
        tail = {n: sz for n, sz in tail.items() if "/" not in n and parse_segment_name(n)}
        if not tail:
            return
        after = self._retry(lambda: list(self.store.list(
            tdir, start_after=tdir + segment_name(lsn), limit=1)))
        objs = dict(tail)
        if after and "/" not in after[0].key[len(tdir):]:
            nxt = after[0].key[len(tdir):]
            parsed = parse_segment_name(nxt)
            if parsed is None:
                return
            holder = nxt
            if parsed[0] > lsn:
                info = self._retry(lambda: self.store.head(after[0].key))
                prev = (info.metadata if info else {}).get("lsnwal-prev-name")
                if not prev or parse_segment_name(prev) is None:
                    return  # the first segment, or shipped without the hint: list it all
                holder = prev
            if holder not in objs:
                info = self._retry(lambda: self.store.head(tdir + holder))
                if info is None:
                    return
                objs[holder] = info.size
        self._objects = objs
        self._order = sorted(objs)
        self.sparse = True

    def _size(self, name: str) -> int | None:
        """Size of a segment: from the listing, or (sparse view) one HEAD, remembered."""
        objs = self._listing()
        if name in objs:
            return objs[name]
        if not self.sparse or parse_segment_name(name) is None:
            return None
        info = self._retry(lambda: self.store.head(self._key(name)))
        if info is None:
            return None
        with self._lock:
            objs[name] = info.size
            bisect.insort(self._order, name)
        return int(info.size)

    # -------------------------------------------------------------- listing

    def _listing(self) -> dict[str, int]:
        if self._objects is None:
            tdir = timeline_dir(self.prefix, self.timeline)
            objs = {}
            for o in self._retry(lambda: list(self.store.list(tdir))):
                name = o.key[len(tdir):]
                if "/" not in name and parse_segment_name(name) is not None:
                    objs[name] = o.size
            self._objects = objs
            self._order = sorted(objs)
        return self._objects

    def _name(self, path: str) -> str | None:
        d, name = os.path.split(path)
        return name if d == self.archive else None

    def _key(self, name: str) -> str:
        return timeline_dir(self.prefix, self.timeline) + name

    # -------------------------------------------------------------- fetching

    def _retry(self, fn: Any) -> Any:
        delay = 0.1
        for attempt in range(GET_ATTEMPTS):
            try:
                return fn()
            except StoreTransientError:
                if attempt == GET_ATTEMPTS - 1:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _fetch(self, name: str, start: int, end: int) -> bytes:
        data: bytes = self._retry(lambda: self.store.get(self._key(name), start, end))
        with self._lock:
            self.gets += 1
            self.bytes_read += len(data)
            self._cache[(name, start)] = data
            self._cached += len(data)
            while self._cached > CACHE_BYTES and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached -= len(old)
        return data

    def _lookup(self, name: str, start: int, end: int) -> bytes | None:
        with self._lock:
            for (n, s), data in reversed(self._cache.items()):
                if n == name and s <= start and end <= s + len(data):
                    return data[start - s : end - s]
        return None

    def _wait_inflight(self, name: str, start: int, end: int) -> None:
        with self._lock:
            events = [ev for (n, s), ev in self._inflight.items() if n == name and s <= start < end]
        for ev in events:
            ev.wait()

    def _prefetch(self, name: str, start: int, end: int) -> None:
        with self._lock:
            if (name, start) in self._inflight or self._inflight_bytes + (end - start) > \
                    self.prefetch_bytes:
                return
            ev = threading.Event()
            self._inflight[(name, start)] = ev
            self._inflight_bytes += end - start

        def run() -> None:
            try:
                self._fetch(name, start, end)
            except StoreError:
                pass  # the reader fetches it itself (and reports the error) if it needs it
            finally:
                with self._lock:
                    self._inflight.pop((name, start), None)
                    self._inflight_bytes -= end - start
                ev.set()

        threading.Thread(target=run, name="lsnwal-prefetch", daemon=True).start()

    def _read(self, name: str, size: int, offset: int) -> bytes:
        total = self._size(name) or 0
        end = min(total, offset + size)
        if offset >= end:
            return b""
        hit = self._lookup(name, offset, end)
        if hit is None:
            self._wait_inflight(name, offset, end)
            hit = self._lookup(name, offset, end)
        if hit is None:
            if offset >= total - TAIL_BYTES:
                lo = max(0, total - TAIL_BYTES)
                data = self._fetch(name, lo, total)
                hit = data[offset - lo : end - lo]
            else:
                stop = min(total, max(end, offset + SMALL_FETCH))
                data = self._fetch(name, offset, stop)
                hit = data[: end - offset]
        if size >= SMALL_FETCH and end < total:  # streaming: keep the next range coming
            self._prefetch(name, end, min(total, end + size))
        if offset == 0:
            self._read_ahead_segments(name)
        return hit

    def _read_ahead_segments(self, name: str) -> None:
        """A reader that moved on to the next segment streams: fetch the following ones.

        A seek reads one segment (no read-ahead); the second segment in a row
        starts fetching up to ``READ_AHEAD_SEGMENTS`` next ones in the background.
        """
        prev, self._last_started = self._last_started, name
        if self.sparse:
            return  # the segments ahead are not listed: found by name when reached
        i = self._order.index(name)
        if prev is None or i == 0 or self._order[i - 1] != prev:
            return
        sizes = self._listing()
        for nxt in self._order[i + 1 : i + 1 + READ_AHEAD_SEGMENTS]:
            self._prefetch(nxt, 0, min(sizes[nxt], 1 << 20))

    # -------------------------------------------------------------- FileSystem (read side)

    def isdir(self, path: str) -> bool:
        """The root and its ``archive/`` exist; nothing else does."""
        return path in (self.root, self.archive)

    def listdir(self, path: str) -> list[str]:
        """Segment names of the timeline (one LIST)."""
        if path == self.archive:
            return list(self._listing())
        if path == self.root:
            return ["archive"]
        raise FileNotFoundError(errno.ENOENT, "no such directory in the store view", path)

    def exists(self, path: str) -> bool:
        """True for the root, ``archive/`` and listed segments."""
        name = self._name(path)
        return self.isdir(path) or (name is not None and self._size(name) is not None)

    def size(self, path: str) -> int:
        """Size of a listed segment."""
        name = self._name(path)
        size = None if name is None else self._size(name)
        if size is None:
            raise FileNotFoundError(errno.ENOENT, "not in the store", path)
        return size

    def mtime(self, path: str) -> float:
        """Not tracked for objects (0.0)."""
        return 0.0

    def open_read(self, path: str) -> int:
        """A descriptor for a listed segment."""
        name = self._name(path)
        if name is None or self._size(name) is None:
            raise FileNotFoundError(errno.ENOENT, "not in the store", path)
        with self._lock:
            fd = self._next_fd
            self._next_fd += 1
            self._fds[fd] = name
        return fd

    def fsize(self, fd: int) -> int:
        """The object's size (from the listing)."""
        return self._size(self._fds[fd]) or 0

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Bytes from the object, through the range cache (see the module rules)."""
        return self._read(self._fds[fd], size, offset)

    def close(self, fd: int) -> None:
        """Forget a descriptor."""
        with self._lock:
            self._fds.pop(fd, None)

    def dup(self, fd: int) -> int:
        """Another descriptor for the same object."""
        with self._lock:
            new = self._next_fd
            self._next_fd += 1
            self._fds[new] = self._fds[fd]
        return new

    # writes are refused: the view is read-only
    def create(self, path: str) -> int:
        """Refused (read-only)."""
        raise _ro(path)

    def open_write(self, path: str) -> int:
        """Refused (read-only)."""
        raise _ro(path)

    def open_dir(self, path: str) -> int:
        """Refused (read-only)."""
        raise _ro(path)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Refused (read-only)."""
        raise _ro(str(fd))

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Refused (read-only)."""
        raise _ro(str(fd))

    def truncate(self, fd: int, size: int) -> None:
        """Refused (read-only)."""
        raise _ro(str(fd))

    def rename(self, src: str, dst: str) -> None:
        """Refused (read-only)."""
        raise _ro(src)

    def unlink(self, path: str) -> None:
        """Refused (read-only)."""
        raise _ro(path)

    def makedirs(self, path: str) -> bool:
        """Refused (read-only)."""
        raise _ro(path)

    def same_device(self, a: str, b: str) -> bool:
        """Never (nothing is moved in a store view)."""
        return False

    def lock(self, path: str) -> int:
        """Refused (read-only)."""
        raise _ro(path)

    def unlock(self, handle: int) -> None:
        """Nothing to release."""

    def sync_backend(self) -> SyncBackend:
        """Unused by readers; the OS backend for type completeness."""
        return OsSyncBackend()


def read_source(
    path: str | os.PathLike[str], fs: FileSystem | None, client: Any = None, *,
    hold: bool = False, seek: int | None = None,
) -> tuple[str | os.PathLike[str], FileSystem]:
    """``(path, fs)`` to read from: a store URL becomes its ``StoreFileSystem`` view.

    ``hold=True`` (a restore) places a hold that store retention respects until
    ``note_restored`` (or the view's end) removes it. ``seek`` (a replay's
    ``from_lsn``) lists only what a seek needs.
    """
    if not is_store_url(path):
        return path, fs or OsFileSystem()
    url = parse_url(path)
    store = open_store(url, client)
    held = Hold(store, url.prefix) if hold else None  # before listing: nothing goes from here
    view = StoreFileSystem(store, url, seek=seek)
    if held is not None:
        view.hold = held
        weakref.finalize(view, held.release)
    return view.root, view


def note_restored(source_fs: FileSystem, target: str, last_lsn: int | None) -> None:
    """After a restore from a store: record the history the new WAL continues; drop the hold."""
    if isinstance(source_fs, StoreFileSystem):
        write_restored_marker(target, str(source_fs.url), source_fs.timeline, last_lsn)
        if source_fs.hold is not None:
            source_fs.hold.release()
