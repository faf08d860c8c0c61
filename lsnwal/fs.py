"""The file-system seam: every file operation lsnwal performs goes through here.

``FileSystem`` is the small interface (open, write, read, fsync, directory fsync,
rename, unlink, list, truncate, lock); ``OsFileSystem`` implements it with ``os``
calls, ``lsnwal.testing.SimFileSystem`` in memory with a crash model. Durability
calls go through a ``SyncBackend`` so that tests and users can swap fsync alone
(a backend raising ``OSError`` simulates a failing disk).

Platforms (``sync_backend_for`` picks the backend, ``check_platform`` refuses):

* **Linux**: ``fdatasync`` for files, ``fsync`` for directories, ``flock``.
* **macOS**: ``fsync`` only reaches the drive's cache there, so files and
  directories are flushed with ``fcntl(F_FULLFSYNC)`` (what SQLite and
  PostgreSQL do); a file system that refuses it (some network and FUSE file
  systems) gets ``fsync`` and one logged warning. Locks are ``flock``.
* **Other POSIX systems**: ``fdatasync`` where Python has it, else ``fsync``
  (untested).
* **Windows** is not supported: ``import lsnwal`` works, and opening or reading a
  WAL raises ``UnsupportedPlatformError`` (a ``WalError``) instead of an
  ``ImportError`` deep inside. WSL 2 is Linux.

Rules kept here: writes are complete or raise (short writes are retried);
``rename`` never replaces an existing file; a lock is taken without waiting; a
sync that fails for any reason other than "not supported here" raises (never a
silent fallback after an I/O error).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .errors import UnsupportedPlatformError

try:
    import fcntl
except ImportError:  # Windows: reported by check_platform(), not at import time
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("lsnwal")

#: A failpoint hook: called with a failpoint name (``before_X`` / ``after_X``).
FailpointHook = Callable[[str], None]

#: macOS's ``F_FULLFSYNC`` (``fcntl.F_FULLFSYNC`` there; 51 in <sys/fcntl.h>).
F_FULLFSYNC: int = getattr(fcntl, "F_FULLFSYNC", 51)
#: errors meaning "this file system cannot do F_FULLFSYNC" (anything else is a failure)
_NOT_SUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.ENOTTY, errno.EOPNOTSUPP})


def check_platform(platform: str | None = None, *, have_fcntl: bool | None = None) -> None:
    """Raise ``UnsupportedPlatformError`` unless lsnwal supports ``platform`` (default: here)."""
    plat = sys.platform if platform is None else platform
    has = (fcntl is not None) if have_fcntl is None else have_fcntl
    if plat.startswith(("win32", "cygwin", "msys")) or not has:
        raise UnsupportedPlatformError(
            f"lsnwal does not support this platform ({plat}): it needs POSIX fsync and flock "
            "semantics. Supported: Linux and macOS (on Windows, use WSL 2)."
        )


@runtime_checkable
class SyncBackend(Protocol):
    """How lsnwal makes data durable: swap it to simulate or instrument fsync."""

    def sync_file(self, fd: int) -> None:
        """Make a file's data (and size) durable."""

    def sync_dir(self, fd: int) -> None:
        """Make a directory's entries durable."""


class FullFsyncBackend:
    """macOS durability: ``fcntl(fd, F_FULLFSYNC)`` flushes the drive's cache too.

    ``fcntl_call`` and ``fsync`` are injectable so that this backend's logic is
    tested on any platform. When the file system answers "not supported", the
    backend falls back to ``fsync`` (and warns once); any other error raises.
    """

    def __init__(
        self,
        *,
        fcntl_call: Callable[[int, int, int], object] | None = None,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        if fcntl_call is None:
            check_platform()
            fcntl_call = fcntl.fcntl
        self._fcntl = fcntl_call
        self._fsync = fsync
        self.fallbacks = 0  # syncs that had to use plain fsync

    def _full(self, fd: int) -> None:
        try:
            self._fcntl(fd, F_FULLFSYNC, 0)
        except OSError as exc:
            if exc.errno not in _NOT_SUPPORTED:
                raise
            if not self.fallbacks:
                log.warning(
                    "lsnwal: F_FULLFSYNC is not supported here; using fsync, which may keep "
                    "data in the drive's cache", extra={"event": "fullfsync_fallback",
                                                        "errno": exc.errno})
            self.fallbacks += 1
            self._fsync(fd)

    def sync_file(self, fd: int) -> None:
        """Flush the file's data, size and the drive's write cache."""
        self._full(fd)

    def sync_dir(self, fd: int) -> None:
        """Flush the directory's entries and the drive's write cache."""
        self._full(fd)


class PosixSyncBackend:
    """Linux and other POSIX: ``fdatasync`` (else ``fsync``) for files, ``fsync`` for dirs."""

    def __init__(self) -> None:
        self._file: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)

    def sync_file(self, fd: int) -> None:
        """fdatasync the file (data and the size needed to read it back)."""
        self._file(fd)

    def sync_dir(self, fd: int) -> None:
        """fsync the directory so that created, renamed and removed names persist."""
        os.fsync(fd)


def sync_backend_for(platform: str | None = None) -> SyncBackend:
    """The durable backend for ``platform`` (default: this one)."""
    plat = sys.platform if platform is None else platform
    check_platform(plat)
    if plat == "darwin":
        return FullFsyncBackend()
    return PosixSyncBackend()


class OsSyncBackend:
    """The default backend: the right durable sync for this platform (see the module doc)."""

    def __init__(self) -> None:
        self._impl = sync_backend_for()

    def sync_file(self, fd: int) -> None:
        """Make the file's data and size durable (fdatasync; F_FULLFSYNC on macOS)."""
        self._impl.sync_file(fd)

    def sync_dir(self, fd: int) -> None:
        """Make created, renamed and removed names durable (fsync; F_FULLFSYNC on macOS)."""
        self._impl.sync_dir(fd)


class FileSystem(Protocol):
    """The operations lsnwal needs from a file system."""

    def create(self, path: str) -> int:
        """Create a new file for writing (fails if it exists); return a descriptor."""

    def open_write(self, path: str) -> int:
        """Open an existing file for writing at its end; return a descriptor."""

    def open_read(self, path: str) -> int:
        """Open an existing file for reading; return a descriptor."""

    def open_dir(self, path: str) -> int:
        """Open a directory so that it can be fsynced; return a descriptor."""

    def close(self, fd: int) -> None:
        """Close a descriptor."""

    def dup(self, fd: int) -> int:
        """Duplicate a descriptor (same open file)."""

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Append all of ``data`` at the descriptor's position."""

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``."""

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset`` (the descriptor's position is unchanged)."""

    def fsize(self, fd: int) -> int:
        """Size of an open file."""

    def truncate(self, fd: int, size: int) -> None:
        """Cut an open file to ``size`` bytes."""

    def rename(self, src: str, dst: str) -> None:
        """Rename without replacing: raise ``FileExistsError`` if ``dst`` exists."""

    def unlink(self, path: str) -> None:
        """Remove a file."""

    def listdir(self, path: str) -> list[str]:
        """Names in a directory (unsorted)."""

    def makedirs(self, path: str) -> bool:
        """Create a directory and missing parents; return True if anything was created."""

    def exists(self, path: str) -> bool:
        """True if the path exists."""

    def isdir(self, path: str) -> bool:
        """True if the path is a directory."""

    def size(self, path: str) -> int:
        """Size of a file by path."""

    def mtime(self, path: str) -> float:
        """Modification time of a file by path."""

    def same_device(self, a: str, b: str) -> bool:
        """True when two existing directories are on one file system (rename works)."""

    def lock(self, path: str) -> int:
        """Take an exclusive lock on ``path`` without waiting; raise BlockingIOError if held."""

    def unlock(self, handle: int) -> None:
        """Release a lock taken with ``lock``."""

    def sync_backend(self) -> SyncBackend:
        """The backend that really syncs this file system."""


class OsFileSystem:
    """``FileSystem`` on the real operating system (``UnsupportedPlatformError`` on Windows)."""

    def __init__(self) -> None:
        check_platform()

    def create(self, path: str) -> int:
        """Create a new file for writing (fails if it exists)."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)

    def open_write(self, path: str) -> int:
        """Open an existing file for appending."""
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        os.lseek(fd, 0, os.SEEK_END)
        return fd

    def open_read(self, path: str) -> int:
        """Open an existing file read-only."""
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def open_dir(self, path: str) -> int:
        """Open a directory read-only (for fsync)."""
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        """Close a descriptor."""
        os.close(fd)

    def dup(self, fd: int) -> int:
        """Duplicate a descriptor."""
        return os.dup(fd)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Write everything, retrying short writes."""
        n = os.write(fd, data)
        if n == len(data):
            return
        with memoryview(data) as mv:
            while n < len(mv):
                w = os.write(fd, mv[n:])
                if w <= 0:  # pragma: no cover - os.write raises instead
                    raise OSError(errno.EIO, "write made no progress")
                n += w

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` (short only at end of file)."""
        out = os.pread(fd, size, offset)
        if len(out) == size or not out:
            return out
        parts = [out]
        got = len(out)
        while got < size:
            more = os.pread(fd, size - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write everything at ``offset``, retrying short writes."""
        n = os.pwrite(fd, data, offset)
        if n == len(data):
            return
        with memoryview(data) as mv:
            while n < len(mv):
                w = os.pwrite(fd, mv[n:], offset + n)
                if w <= 0:  # pragma: no cover - os.pwrite raises instead
                    raise OSError(errno.EIO, "pwrite made no progress")
                n += w

    def fsize(self, fd: int) -> int:
        """Size of an open file."""
        return os.fstat(fd).st_size

    def truncate(self, fd: int, size: int) -> None:
        """Cut an open file to ``size`` bytes and move its position there."""
        os.ftruncate(fd, size)
        os.lseek(fd, size, os.SEEK_SET)

    def rename(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst``; never replace an existing ``dst``.

        We hold the WAL's LOCK, so no other lsnwal writer creates names here; the
        existence check guards against our own bugs and foreign files.
        """
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "refusing to replace an existing file", dst)
        os.rename(src, dst)

    def unlink(self, path: str) -> None:
        """Remove a file."""
        os.unlink(path)

    def listdir(self, path: str) -> list[str]:
        """Names in a directory."""
        return os.listdir(path)

    def makedirs(self, path: str) -> bool:
        """Create a directory and missing parents."""
        if os.path.isdir(path):
            return False
        os.makedirs(path, exist_ok=True)
        return True

    def exists(self, path: str) -> bool:
        """True if the path exists."""
        return os.path.lexists(path)

    def isdir(self, path: str) -> bool:
        """True if the path is a directory."""
        return os.path.isdir(path)

    def size(self, path: str) -> int:
        """Size of a file."""
        return os.stat(path).st_size

    def mtime(self, path: str) -> float:
        """Modification time of a file."""
        return os.stat(path).st_mtime

    def same_device(self, a: str, b: str) -> bool:
        """True when ``a`` and ``b`` live on the same file system."""
        return os.stat(a).st_dev == os.stat(b).st_dev

    def lock(self, path: str) -> int:
        """Open (or create) ``path`` and take an exclusive, non-blocking flock on it."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        return fd

    def unlock(self, handle: int) -> None:
        """Release the flock and close its descriptor."""
        try:
            fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            os.close(handle)

    def sync_backend(self) -> SyncBackend:
        """The real fsync backend."""
        return OsSyncBackend()


def sync_dir_at(fs: FileSystem, backend: SyncBackend, path: str) -> None:
    """Open the directory ``path``, make its entries durable through ``backend``, close it."""
    fd = fs.open_dir(path)
    try:
        backend.sync_dir(fd)
    finally:
        fs.close(fd)
