"""Instruments for the commit-path tests: a recorder of fsyncs, renames and acknowledgements.

Owns ``Recorder`` (one ordered log of events with a global sequence number),
``RecordingBackend`` (a ``SyncBackend`` that, before each file fsync, reads which
complete records the file holds and, once the fsync returned, logs them as
durable), the two checkers ``check_honest`` and ``check_rename_order``, and small
shared helpers (payloads, descriptor counts, committer threads, a monitor of
``synced_lsn``). File-system fault injection lives in ``_fault_fs.py``.

Rules kept here:

* Nothing here trusts lsnwal's own reader: records are found in the bytes of a
  file with a parser of the on-disk format written for these tests (header,
  then ``crc | length | lsn | ts | kind | flags | reserved`` + payload, CRC32C
  over header bytes 4..28 and the payload). A zero-filled or torn tail simply
  ends the scan.
* Ordering is conservative in the direction that cannot hide a bug: a file's
  content is read *before* its fsync starts and counts as durable only from the
  moment the fsync *returned*; a directory fsync counts for a rename only if it
  *started* after the rename returned; an acknowledgement is logged *after* the
  call that gave it returned.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import crc32c

import lsnwal
from lsnwal.fs import OsSyncBackend, SyncBackend

_SEG_HEADER = struct.Struct("<8sHHIQdQII")  # magic .. first_lsn .. crc (48 bytes)
_REC_HEADER = struct.Struct("<IIQdBBH")  # crc, length, lsn, ts, kind, flags, reserved
_MAGIC = b"\x89LSNWAL\n"
_SEAL_KIND = 0x53
_MAX_SANE_RECORD = 64 * 1024 * 1024


def payload(tag: str, i: int, size: int = 100) -> bytes:
    """A deterministic payload that names its writer and index (so a swap shows up)."""
    head = f"{tag}-{i}:".encode()
    body = bytes((i * 31 + k * 7) % 251 for k in range(max(0, size - len(head))))
    return (head + body)[: max(size, len(head))]


def stress_enabled() -> bool:
    """True under ``make stress`` (``LSNWAL_STRESS=1``): run the long forms."""
    return os.environ.get("LSNWAL_STRESS") == "1"


def open_fds() -> set[int]:
    """The descriptors open in this process now."""
    return {int(n) for n in os.listdir("/proc/self/fd")}


# --------------------------------------------------------------------------- the recorder


class FileSync(NamedTuple):
    """A file fsync: when it started/ended, and the records (LSN -> payload) read
    complete before it started (``first_lsn`` None: the file is not a segment)."""

    start: int
    end: int
    ino: int
    first_lsn: int | None
    covered: dict[int, bytes]
    ok: bool


class DirSync(NamedTuple):
    """A directory fsync: its real path and when it started and ended."""

    start: int
    end: int
    path: str
    ok: bool


class NsEvent(NamedTuple):
    """A create or rename that returned at ``seq`` (directories as real paths)."""

    seq: int
    kind: str
    ino: int
    src_dir: str | None
    dst_dir: str
    desc: str


class Ack(NamedTuple):
    """A caller was told every LSN up to ``lsn`` is durable (logged after it returned)."""

    seq: int
    lsn: int
    what: str


@dataclass
class Recorder:
    """One ordered log of syncs, namespace events and acknowledgements."""

    file_syncs: list[FileSync] = field(default_factory=list)
    dir_syncs: list[DirSync] = field(default_factory=list)
    ns_events: list[NsEvent] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    samples: list[tuple[int, int]] = field(default_factory=list)  # monitor: (seq, synced)
    _seq: int = 0
    _mu: threading.Lock = field(default_factory=threading.Lock)
    _scans: dict[tuple[int, int], tuple[bytes, int]] = field(default_factory=dict)

    def tick(self) -> int:
        """The next sequence number."""
        with self._mu:
            self._seq += 1
            return self._seq

    def ack(self, lsn: int, what: str) -> None:
        """Log that a caller was just told ``lsn`` is durable."""
        with self._mu:
            self._seq += 1
            self.acks.append(Ack(self._seq, lsn, what))

    def sample(self, synced: int) -> None:
        """Log one reading of ``synced_lsn`` by the monitor thread."""
        with self._mu:
            self._seq += 1
            self.samples.append((self._seq, synced))
            self.acks.append(Ack(self._seq, synced, "synced_lsn"))

    def ns(self, kind: str, ino: int, src: str | None, dst: str, desc: str) -> None:
        """Log a create/rename that has returned."""
        with self._mu:
            self._seq += 1
            src_dir = os.path.realpath(os.path.dirname(src)) if src else None
            dst_dir = os.path.realpath(os.path.dirname(dst))
            self.ns_events.append(NsEvent(self._seq, kind, ino, src_dir, dst_dir, desc))

    def scan(
        self, fd: int
    ) -> tuple[tuple[int, int], bytes, int | None, dict[int, bytes], int]:
        """Read the complete records the file behind ``fd`` holds past what was durable.

        Returns (file key, header bytes, first LSN or None if not a segment, records
        found by LSN, offset where the scan stopped).
        """
        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(rfd)
            key = (st.st_dev, st.st_ino)
            head = os.pread(rfd, _SEG_HEADER.size, 0)
            if len(head) < _SEG_HEADER.size or not head.startswith(_MAGIC):
                return key, head, None, {}, 0
            if crc32c.crc32c(head[:-4]) != struct.unpack_from("<I", head, 44)[0]:
                return key, head, None, {}, 0
            first = int(_SEG_HEADER.unpack(head)[4])
            with self._mu:
                seen_head, seen_pos = self._scans.get(key, (b"", 0))
            pos = seen_pos if seen_head == head else len(head)
            found: dict[int, bytes] = {}
            while True:
                rh = os.pread(rfd, _REC_HEADER.size, pos)
                if len(rh) < _REC_HEADER.size:
                    break
                crc, length, lsn, _ts, kind, _fl, _res = _REC_HEADER.unpack(rh)
                if length > _MAX_SANE_RECORD:
                    break
                body = os.pread(rfd, length, pos + _REC_HEADER.size)
                if len(body) < length or crc32c.crc32c(rh[4:] + body) != crc:
                    break
                if kind != _SEAL_KIND:  # DATA, CHECKPOINT and MARK records all take LSNs
                    found[lsn] = body
                pos += _REC_HEADER.size + length
                if kind == _SEAL_KIND:
                    break
            return key, head, first, found, pos
        finally:
            os.close(rfd)

    def commit_scan(self, key: tuple[int, int], head: bytes, pos: int) -> None:
        """Remember how far a file is durable (called only after its fsync succeeded)."""
        with self._mu:
            seen_head, seen_pos = self._scans.get(key, (b"", 0))
            self._scans[key] = (head, max(pos, seen_pos) if seen_head == head else pos)


class RecordingBackend:
    """A ``SyncBackend`` wrapper that logs what every fsync made durable (see module doc)."""

    def __init__(self, rec: Recorder, inner: SyncBackend | None = None) -> None:
        self.rec = rec
        self.inner: SyncBackend = inner or OsSyncBackend()

    def sync_file(self, fd: int) -> None:
        """Read the file's records, fsync it through the inner backend, log the result."""
        rec = self.rec
        start = rec.tick()
        key, head, first, covered, pos = rec.scan(fd)
        ok = False
        try:
            self.inner.sync_file(fd)
            ok = True
            if first is not None:
                rec.commit_scan(key, head, pos)
        finally:
            end = rec.tick()
            with rec._mu:
                rec.file_syncs.append(FileSync(start, end, key[1], first, covered, ok))

    def sync_dir(self, fd: int) -> None:
        """Fsync a directory through the inner backend and log when it started and ended."""
        rec = self.rec
        path = os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))
        start = rec.tick()
        ok = False
        try:
            self.inner.sync_dir(fd)
            ok = True
        finally:
            end = rec.tick()
            with rec._mu:
                rec.dir_syncs.append(DirSync(start, end, path, ok))


# --------------------------------------------------------------------------- checkers


def check_honest(rec: Recorder, expected: dict[int, bytes], base: int = 0) -> int:
    """Every acknowledgement was covered by fsyncs that returned before it; return their count.

    Covered means: every LSN from ``base + 1`` up to the acknowledged one was read
    complete (and equal to ``expected``) from a file before an fsync of that file
    started, and that fsync returned before the acknowledgement was logged. The
    monitor's readings of ``synced_lsn`` must never decrease.
    """
    syncs = sorted((f for f in rec.file_syncs if f.ok), key=lambda f: f.end)
    covered: dict[int, bytes] = {}
    prefix, i = base, 0
    for a in sorted(rec.acks, key=lambda a: a.seq):
        while i < len(syncs) and syncs[i].end < a.seq:
            for lsn, p in syncs[i].covered.items():
                covered.setdefault(lsn, p)
            i += 1
            while prefix + 1 in covered:
                prefix += 1
        assert a.lsn <= prefix, (
            f"{a.what} reported LSN {a.lsn} durable at event {a.seq}, but fsyncs that had "
            f"returned by then cover only up to LSN {prefix}"
        )
    for lsn, p in covered.items():
        if lsn in expected:
            assert p == expected[lsn], f"the fsynced bytes of LSN {lsn} differ from its payload"
    values = [v for _, v in sorted(rec.samples)]
    for old, new in itertools.pairwise(values):
        assert new >= old, f"synced_lsn went backwards: {old} -> {new}"
    return len(rec.acks)


def check_rename_order(rec: Recorder, archive_dir: str | Path | None = None) -> int:
    """Each create/rename of a file holding LSN x was dir-fsynced before x was first acked.

    The file holding x is the one whose fsync first covered x. Every create and
    rename of that file (same inode) logged before the first acknowledgement of
    x must be followed by an fsync of its destination directory (and, for a
    rename, its source directory) that started after the rename returned and
    returned before that acknowledgement. One exception: a move into
    ``archive_dir`` of a file whose every record was already fsynced is the
    archiver moving durable history (it runs only after the records were
    published, which this log cannot time more closely than the next reading).
    Returns the number of (event, LSN) pairs checked.
    """
    holder: dict[int, int] = {}
    covered_at: dict[int, int] = {}
    for f in sorted((f for f in rec.file_syncs if f.ok), key=lambda f: f.end):
        for lsn in f.covered:
            holder.setdefault(lsn, f.ino)
            covered_at.setdefault(lsn, f.end)
    held: dict[int, list[int]] = {}
    for lsn, ino in holder.items():
        held.setdefault(ino, []).append(lsn)
    archive = os.path.realpath(archive_dir) if archive_dir is not None else None
    first_ack: dict[int, int] = {}
    top = 0
    for a in sorted(rec.acks, key=lambda a: a.seq):
        for lsn in range(top + 1, a.lsn + 1):
            first_ack[lsn] = a.seq
        top = max(top, a.lsn)
    dsyncs = [d for d in rec.dir_syncs if d.ok]

    def durable_by(seq: int, path: str) -> int:
        ends = [d.end for d in dsyncs if d.path == path and d.start > seq]
        return min(ends, default=1 << 62)

    by_ino: dict[int, list[tuple[NsEvent, int]]] = {}
    for e in rec.ns_events:
        if e.dst_dir == archive and all(covered_at[x] < e.seq for x in held.get(e.ino, [])):
            continue
        need = max(durable_by(e.seq, d) for d in {e.dst_dir, e.src_dir or e.dst_dir})
        by_ino.setdefault(e.ino, []).append((e, need))
    checked = 0
    for lsn, t in first_ack.items():
        holding = holder.get(lsn)
        assert holding is not None, f"LSN {lsn} was acknowledged but no fsync covered it"
        for e, need in by_ino.get(holding, []):
            if e.seq < t:
                checked += 1
                assert need < t, (
                    f"LSN {lsn} was acknowledged at event {t} after '{e.desc}' (event "
                    f"{e.seq}) but before the directories involved were fsynced"
                )
    return checked


# --------------------------------------------------------------------------- runners


class Monitor:
    """A thread that reads ``wal.synced_lsn`` in a loop and logs each reading."""

    def __init__(self, wal: lsnwal.AsyncWalWriter, rec: Recorder) -> None:
        self._wal, self._rec = wal, rec
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-monitor", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._rec.sample(self._wal.synced_lsn)
            self._stop.wait(0.0005)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_threads(n: int, target: Callable[[int], None], guard_s: float = 60.0) -> None:
    """Run ``target(i)`` on ``n`` threads; re-raise the first error; fail if one hangs."""
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), name=f"test-w{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(guard_s)
    assert not any(t.is_alive() for t in threads), "a committer thread is stuck"
    if errors:
        raise errors[0]


def data_records(path: str | Path, **kw: object) -> dict[int, bytes]:
    """Every DATA record of a closed WAL directory, by LSN (LSNs must be contiguous)."""
    recs = list(lsnwal.replay(path, **kw))  # type: ignore[arg-type]
    lsns = [r.lsn for r in recs]
    assert lsns == list(range(lsns[0], lsns[0] + len(lsns))) if lsns else True, "LSN gap"
    return {r.lsn: r.payload for r in recs if r.kind == lsnwal.RecordKind.DATA}
