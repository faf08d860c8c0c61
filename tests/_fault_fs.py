"""File-system fault injection for the commit-path tests: fail any operation on cue, log writes.

Owns ``RecordingFs`` (``OsFileSystem`` that logs creates and renames into a
``Recorder`` — and each published ``WATERMARK`` as an acknowledgement —, logs
every write/pwrite/truncate with its file's inode, and fails
the n-th call of an operation before, after, or halfway through it), ``FailAt``
(a ``SyncBackend`` failing from its n-th sync on, remembering which file and
thread hit it), ``NullBackend`` and ``mount_tmpfs``.

Rules kept here: an injected failure is an ``OSError`` (``Injected``) with the
errno asked for; a ``partial`` write really writes its first half, as a full
disk does before the retry fails; every failure, injected or real, is logged in
``mutations`` in the order it happened, so "nothing written after" can be
checked by position.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from _commit_helpers import Recorder

from lsnwal.fs import OsFileSystem, OsSyncBackend, SyncBackend


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
        try:
            do(data)
        except OSError:  # a real failure (a full disk): logged as one, then raised
            self._log_mut(fd, op, False)
            raise
        self._log_mut(fd, op, True)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` (logged), or fail as planned."""
        self._write_op("write", fd, data, lambda d: OsFileSystem.write(self, fd, d))

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write at ``offset`` (logged), or fail as planned.

        A write of the published watermark (``WATERMARK``: magic ``LSWM``, the
        synced LSN at byte 16) is logged as an acknowledgement *before* it is
        written: from then on other processes may be told that LSN is durable.
        """
        if (self.rec is not None and offset == 0 and len(data) == 64
                and bytes(data[:4]) == b"LSWM"
                and os.readlink(f"/proc/self/fd/{fd}").endswith("/WATERMARK")):
            self.rec.ack(struct.unpack_from("<Q", data, 16)[0], "WATERMARK")
        self._write_op("pwrite", fd, data, lambda d: OsFileSystem.pwrite(self, fd, d, offset))

    def truncate(self, fd: int, size: int) -> None:
        """Truncate (logged), or fail as planned."""
        due = self._due("truncate")
        if due is not None:
            self._raise("truncate", due[1], self._log_mut(fd, "truncate", False))
        try:
            super().truncate(fd, size)
        except OSError:
            self._log_mut(fd, "truncate", False)
            raise
        self._log_mut(fd, "truncate", True)

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
