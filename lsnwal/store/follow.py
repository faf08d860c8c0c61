"""The standby: a local WAL directory kept up to date from a store (``lsnwal follow``).

Owns ``Follower``. It copies the segments of one timeline from the store into
``<replica>/archive/`` as they land, so that a second machine can serve reads
(``replay``, ``open_reader``) or take over (``lsnwal.open`` on the replica,
which then ships on a new timeline). Rules:

* One LIST per poll, starting after the newest local segment (``StartAfter``),
  so an idle poll costs one small request whatever the archive's size.
* A segment is downloaded whole, checked (header, seal, every record CRC
  through the one codec, and the first LSN continuing the previous segment)
  before it is written: ``<name>.tmp``, fsync, rename, fsync ``archive/``. A
  crash leaves either the old or the new set of segments; a ``.tmp`` is
  removed on the next start.
* The replica directory is written only by the follower; ``RESTORED_FROM``
  records where it came from, so a replica opened for writing never ships
  into the history it copied.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from .. import format as fmt
from ..errors import WalCorruptionError
from ..fs import OsFileSystem
from ..names import TMP_SUFFIX, parse_segment_name
from ..seekindex import append_index
from .base import StoreTransientError
from .source import StoreFileSystem
from .timeline import write_restored_marker
from .url import open_store, parse_url


@dataclass(frozen=True)
class FollowStatus:
    """Where a standby stands."""

    timeline: int
    segments: int  # segments held locally
    last_lsn: int  # newest LSN held locally (0: none)
    last_record_ts: float  # time of that record (0.0: none)
    pending: int  # segments listed in the store but not copied yet
    lag_s: float  # age of the newest local record: how far behind the writer it can be
    last_poll: float  # when the store was last listed successfully (epoch seconds)
    error: str | None = None  # the last error (a transient one is retried)


def _check_segment(data: bytes, name: str, expected_first: int | None) -> tuple[int, float]:
    """Decode a downloaded segment fully; return (last LSN, last timestamp) or raise."""
    hdr = fmt.decode_segment_header(data[: fmt.HEADER_SIZE])
    first = parse_segment_name(name)
    if first is None or hdr.first_lsn != first[0]:
        raise WalCorruptionError("name and header disagree", path=name, offset=0)
    if expected_first is not None and hdr.first_lsn != expected_first:
        raise WalCorruptionError(
            f"gap or overlap: expected a segment starting at LSN {expected_first}", path=name,
            offset=0, lsn=expected_first - 1)
    off = fmt.decode_trailer(data[-fmt.TRAILER_SIZE:])
    seal = fmt.decode_seal_at(memoryview(data)[off:], off) if off is not None and \
        fmt.HEADER_SIZE <= off < len(data) else None
    if seal is None:
        raise WalCorruptionError("segment without a valid seal", path=name, offset=len(data))
    # Every record's CRC, through the same code replay uses.
    import lsnwal

    view = _OneSegment(name, data)
    n = sum(1 for _ in lsnwal.replay(view.root, fs=view))
    if n != seal.record_count:
        raise WalCorruptionError(f"seal counts {seal.record_count} records, found {n}", path=name)
    return seal.last_lsn, seal.last_ts


class _OneSegment(StoreFileSystem):
    """A store view holding one downloaded segment (to run the normal decoder over it)."""

    def __init__(self, name: str, data: bytes) -> None:  # no store behind it: no super()
        self.root = "/lsnwal-follow"
        self.archive = self.root + "/archive"
        self._data = data
        self._objects = {name: len(data)}
        self._order = [name]
        self._fds: dict[int, str] = {}
        self._next_fd = 1
        self._lock = threading.Lock()

    def _read(self, name: str, size: int, offset: int) -> bytes:
        return self._data[offset : offset + size]


class Follower:
    """Copies new segments of one timeline from a store into a local WAL directory."""

    def __init__(self, url: str, replica: str | os.PathLike[str], *, client: Any = None) -> None:
        self.url = parse_url(url)
        self.store = open_store(self.url, client)
        self.replica = os.path.abspath(os.fspath(replica))
        self.archive = os.path.join(self.replica, "archive")
        self._view = StoreFileSystem(self.store, self.url)
        self.timeline = self._view.timeline
        self._fs = OsFileSystem()
        for d in (self.replica, self.archive, os.path.join(self.replica, "pending")):
            os.makedirs(d, exist_ok=True)
        for name in os.listdir(self.archive):
            if name.endswith(TMP_SUFFIX):
                os.unlink(os.path.join(self.archive, name))
        self._local = sorted(n for n in os.listdir(self.archive) if parse_segment_name(n))
        self.last_lsn, self.last_ts = 0, 0.0
        if self._local:
            with open(os.path.join(self.archive, self._local[-1]), "rb") as f:
                self.last_lsn, self.last_ts = _check_segment(f.read(), self._local[-1], None)
        self.pending = 0
        self.last_poll = 0.0
        self.error: str | None = None
        write_restored_marker(self.replica, str(self.url), self.timeline, self.last_lsn)

    def poll(self) -> int:
        """List the store once and copy every new segment; return how many were copied."""
        from .url import timeline_dir

        tdir = timeline_dir(self.url.prefix, self.timeline)
        after = tdir + self._local[-1] if self._local else ""
        try:
            new = [o for o in self.store.list(tdir, start_after=after)
                   if "/" not in o.key[len(tdir):] and parse_segment_name(o.key[len(tdir):])]
        except StoreTransientError as exc:
            self.error = str(exc)
            return 0
        self.last_poll = time.time()
        self.pending = len(new)
        copied = 0
        for obj in new:
            name = obj.key[len(tdir):]
            data = self.store.get(obj.key)
            last, last_ts = _check_segment(data, name, self.last_lsn + 1 if self._local else None)
            self._install(name, data)
            self._local.append(name)
            self.last_lsn, self.last_ts = last, last_ts
            self.pending -= 1
            copied += 1
        if copied:
            write_restored_marker(self.replica, str(self.url), self.timeline, self.last_lsn)
        self.error = None
        return copied

    def _install(self, name: str, data: bytes) -> None:
        """Write one segment durably: tmp, fsync, rename, fsync archive/."""
        dst = os.path.join(self.archive, name)
        tmp = dst + TMP_SUFFIX
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, dst)
        fd = os.open(self.archive, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        parsed = parse_segment_name(name)
        assert parsed is not None
        append_index(self._fs, self.replica, [parsed])

    def status(self) -> FollowStatus:
        """Where the standby stands (see ``FollowStatus``)."""
        lag = time.time() - self.last_ts if self.last_ts else 0.0
        return FollowStatus(self.timeline, len(self._local), self.last_lsn, self.last_ts,
                            self.pending, lag, self.last_poll, self.error)

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Poll every ``interval_s`` until ``stop`` is set (transient errors are retried)."""
        while not stop.is_set():
            with contextlib.suppress(StoreTransientError):
                self.poll()
            stop.wait(interval_s)
