"""Instruments for the commit-path tests: a recorder of fsyncs, renames and acknowledgements.

Owns ``Recorder`` (one ordered log of events with a global sequence number),
``RecordingBackend`` (a ``SyncBackend`` that, before each file fsync, reads which
complete records the file holds and, once the fsync returned, logs them as
durable), ``RecordingFs`` (``OsFileSystem`` that logs creates and renames and can
inject failures into any operation), the two checkers ``check_honest`` and
``check_rename_order``, and small shared helpers (payloads, descriptor counts,
a tmpfs mount).

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

import errno
import itertools
import os
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import crc32c

import lsnwal
from lsnwal.fs import OsFileSystem, OsSyncBackend, SyncBackend

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


def fd_path(fd: int) -> str:
    """The path a descriptor refers to (as the kernel knows it now)."""
    return os.readlink(f"/proc/self/fd/{fd}")


# --------------------------------------------------------------------------- the recorder


@dataclass(frozen=True)
class FileSync:
    """A file fsync that returned: which records of which segment it made durable."""

    start: int
    end: int
    ino: int
    first_lsn: int | None  # None: the file is not a segment (e.g. a watermark)
    covered: dict[int, bytes]  # LSN -> payload of every complete DATA record read before
    ok: bool


@dataclass(frozen=True)
class DirSync:
    """A directory fsync: its path and when it started and returned."""

    start: int
    end: int
    path: str
    ok: bool


@dataclass(frozen=True)
class NsEvent:
    """A create or rename that returned at ``seq`` (directories as real paths)."""

    seq: int
    kind: str
    ino: int
    src_dir: str | None
    dst_dir: str
    desc: str


@dataclass(frozen=True)
class Ack:
    """A caller was told that every LSN up to ``lsn`` is durable (logged after it returned)."""

    seq: int
    lsn: int
    what: str


@dataclass
class _ScanState:
    header: bytes
    first_lsn: int
    pos: int


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
    _scans: dict[tuple[int, int], _ScanState] = field(default_factory=dict)

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
        """Read the complete DATA records the file behind ``fd`` holds past what was durable.

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
                state = self._scans.get(key)
            pos = state.pos if state is not None and state.header == head else len(head)
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
                if kind == int(lsnwal.RecordKind.DATA):
                    found[lsn] = body
                pos += _REC_HEADER.size + length
                if kind == _SEAL_KIND:
                    break
            return key, head, first, found, pos
        finally:
            os.close(rfd)

    def commit_scan(self, key: tuple[int, int], head: bytes, first: int, pos: int) -> None:
        """Remember how far a file is durable (called only after its fsync succeeded)."""
        with self._mu:
            state = self._scans.get(key)
            if state is None or state.header != head:
                self._scans[key] = _ScanState(head, first, pos)
            else:
                state.pos = max(state.pos, pos)


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
                rec.commit_scan(key, head, first, pos)
        finally:
            end = rec.tick()
            with rec._mu:
                rec.file_syncs.append(FileSync(start, end, key[1], first, covered, ok))

    def sync_dir(self, fd: int) -> None:
        """Fsync a directory through the inner backend and log when it started and ended."""
        rec = self.rec
        path = os.path.realpath(fd_path(fd))
        start = rec.tick()
        ok = False
        try:
            self.inner.sync_dir(fd)
            ok = True
        finally:
            end = rec.tick()
            with rec._mu:
                rec.dir_syncs.append(DirSync(start, end, path, ok))


# --------------------------------------------------------------------------- fault injection


class Injected(OSError):
    """An ``OSError`` raised by ``RecordingFs`` or ``FailAt`` on purpose."""


class RecordingFs(OsFileSystem):
    """``OsFileSystem`` that logs creates/renames into a ``Recorder`` and can fail on cue.

    ``fail_on(op, nth, mode, err)`` makes the ``nth`` call of ``op`` fail: ``before``
    (nothing done), ``after`` (done, then the error) or ``partial`` (``write`` and
    ``pwrite`` only: the first half written, then the error, as a full disk does).
    ``op`` ``"anywrite"`` counts ``write`` and ``pwrite`` together. Every write,
    pwrite and truncate is logged in ``mutations`` as (file inode, succeeded).
    """

    def __init__(self, rec: Recorder | None = None, backend: SyncBackend | None = None) -> None:
        self.rec = rec
        self.backend = backend
        self.counts: dict[str, int] = {}
        self.mutations: list[tuple[int, str, bool]] = []
        self.failed: list[tuple[str, int]] = []  # (op, inode or -1)
        self._plan: dict[str, tuple[int, str, int]] = {}
        self._mu = threading.Lock()

    def fail_on(self, op: str, nth: int, mode: str = "before", err: int = errno.EIO) -> None:
        """Fail the ``nth`` call of ``op`` (counted from now) as described in the class doc."""
        with self._mu:
            self.counts[op] = 0
            self._plan[op] = (nth, mode, err)

    def _due(self, op: str) -> tuple[str, int] | None:
        with self._mu:
            hit = None
            for name in (op, "anywrite") if op in ("write", "pwrite") else (op,):
                self.counts[name] = self.counts.get(name, 0) + 1
                plan = self._plan.get(name)
                if plan is not None and self.counts[name] == plan[0]:
                    hit = (plan[1], plan[2])
            return hit

    def _raise(self, op: str, err: int, ino: int) -> None:
        with self._mu:
            self.failed.append((op, ino))
        raise Injected(err, f"injected {op} failure ({os.strerror(err)})")

    def _log_mut(self, fd: int, op: str, ok: bool) -> int:
        ino = os.fstat(fd).st_ino
        with self._mu:
            self.mutations.append((ino, op, ok))
        return ino

    def create(self, path: str) -> int:
        """Create a file (logged), or fail as planned."""
        due = self._due("create")
        if due is not None and due[0] == "before":
            self._raise("create", due[1], -1)
        fd = super().create(path)
        if self.rec is not None:
            self.rec.ns("create", os.fstat(fd).st_ino, None, path, f"create {path}")
        if due is not None:
            os.close(fd)
            self._raise("create", due[1], -1)
        return fd

    def rename(self, src: str, dst: str) -> None:
        """Rename (logged), or fail as planned."""
        due = self._due("rename")
        if due is not None and due[0] == "before":
            self._raise("rename", due[1], -1)
        super().rename(src, dst)
        if self.rec is not None:
            self.rec.ns("rename", os.stat(dst).st_ino, src, dst, f"rename {src} -> {dst}")
        if due is not None:
            self._raise("rename", due[1], os.stat(dst).st_ino)

    def _write_op(self, op: str, fd: int, data: bytes | bytearray | memoryview,
                  do: Callable[[bytes | bytearray | memoryview], None]) -> None:
        due = self._due(op)
        if due is not None:
            mode, err = due
            if mode == "partial" and len(data) > 1:
                with memoryview(data) as mv:
                    do(mv[: len(mv) // 2])
            elif mode == "after":
                do(data)
            self._raise(op, err, self._log_mut(fd, op, False))
        do(data)
        self._log_mut(fd, op, True)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` (logged), or fail as planned."""
        self._write_op("write", fd, data, lambda d: OsFileSystem.write(self, fd, d))

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write at ``offset`` (logged), or fail as planned."""
        self._write_op("pwrite", fd, data, lambda d: OsFileSystem.pwrite(self, fd, d, offset))

    def truncate(self, fd: int, size: int) -> None:
        """Truncate (logged), or fail as planned."""
        due = self._due("truncate")
        if due is not None:
            self._raise("truncate", due[1], self._log_mut(fd, "truncate", False))
        super().truncate(fd, size)
        self._log_mut(fd, "truncate", True)

    def open_write(self, path: str) -> int:
        """Open for writing, or fail as planned."""
        due = self._due("open_write")
        if due is not None:
            self._raise("open_write", due[1], -1)
        return super().open_write(path)

    def sync_backend(self) -> SyncBackend:
        """The backend given at construction (default: the real one)."""
        return self.backend if self.backend is not None else OsSyncBackend()


class FailAt:
    """A ``SyncBackend`` whose ``nth`` matching sync raises ``exc`` (and every later one).

    ``what`` is ``"file"``, ``"dir"`` or ``"any"``. The inode and thread of the
    failed call are kept in ``failed`` so that tests can check who hit it and
    that nothing is written to that file afterwards.
    """

    def __init__(self, inner: SyncBackend | None, what: str, nth: int,
                 exc: Callable[[], BaseException] | None = None,
                 fs: RecordingFs | None = None) -> None:
        self.inner: SyncBackend = inner or OsSyncBackend()
        self.fs = fs  # its ``mutations`` log gets a (inode, "sync", False) mark on failure
        self.what, self.nth = what, nth
        self.exc = exc or (lambda: OSError(errno.EIO, "injected fsync failure"))
        self.calls = 0
        self.failed: list[tuple[str, int, str]] = []  # (kind, inode, thread name)
        self._mu = threading.Lock()

    def _call(self, kind: str, fd: int, fn: Callable[[int], None]) -> None:
        if self.what in (kind, "any"):
            with self._mu:
                self.calls += 1
                fail = self.calls >= self.nth
            if fail:
                ino = os.fstat(fd).st_ino
                with self._mu:
                    self.failed.append((kind, ino, threading.current_thread().name))
                if self.fs is not None:
                    self.fs.mutations.append((ino, f"sync_{kind}", False))
                raise self.exc()
        fn(fd)

    def sync_file(self, fd: int) -> None:
        """Sync a file, or fail as planned."""
        self._call("file", fd, self.inner.sync_file)

    def sync_dir(self, fd: int) -> None:
        """Sync a directory, or fail as planned."""
        self._call("dir", fd, self.inner.sync_dir)


class NullBackend:
    """A ``SyncBackend`` that syncs nothing (for tests that count files, not durability)."""

    def sync_file(self, fd: int) -> None:
        """Do nothing."""

    def sync_dir(self, fd: int) -> None:
        """Do nothing."""


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


def check_rename_order(rec: Recorder) -> int:
    """Each create/rename of a file holding LSN x was dir-fsynced before x was first acked.

    The file holding x is the one whose fsync first covered x. Every create and
    rename of that file (same inode) logged before the first acknowledgement of
    x must be followed by an fsync of its destination directory (and, for a
    rename, its source directory) that started after the rename returned and
    returned before that acknowledgement. Returns the number of (event, LSN)
    pairs checked.
    """
    holder: dict[int, int] = {}
    for f in sorted((f for f in rec.file_syncs if f.ok), key=lambda f: f.end):
        for lsn in f.covered:
            holder.setdefault(lsn, f.ino)
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
        need = max(durable_by(e.seq, d) for d in {e.dst_dir, e.src_dir or e.dst_dir})
        by_ino.setdefault(e.ino, []).append((e, need))
    checked = 0
    for lsn, t in first_ack.items():
        ino = holder.get(lsn)
        assert ino is not None, f"LSN {lsn} was acknowledged but no fsync covered it"
        for e, need in by_ino.get(ino, []):
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


def mount_tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``mnt`` (root required: fails loudly otherwise)."""
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, (
        f"cannot mount a tmpfs at {mnt} (uid {os.geteuid()}): {r.stderr.strip()}; "
        "this test needs root, as CI has"
    )
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
