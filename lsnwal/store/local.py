"""``LocalStore``: the object-store seam on a local (or mounted) directory, ``file://`` URLs.

Owns the directory layout of a file-based store: an object is a file whose
path is its key; its metadata sits in ``.lsnwal-meta/<key>.json``. Rules:

* Create-if-absent is ``link(tmp, key)`` — atomic and never replacing (EEXIST
  means the key exists); the temporary file is fsynced first and the
  directory after, so an acknowledged object survives a power loss.
* The CRC32C given to a put is checked against the bytes before anything is
  linked (a mismatch stores nothing), like an S3 store checks it.
* Compare-and-swap (the lease) runs under an ``flock`` on the store's LOCK
  file; the ETag is derived from the content (CRC32C and size).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterator, Mapping

from .base import (
    ObjectInfo,
    StoreConflictError,
    StoreError,
    StoreIntegrityError,
    StoreNotFoundError,
    crc32c,
)

META_DIR = ".lsnwal-meta"
_TMP_MARK = ".lsnwal-tmp-"


def _etag(crc: int, size: int) -> str:
    return f"{crc:08x}-{size}"


class LocalStore:
    """An ``ObjectStore`` in a directory (for one machine, NFS, or tests)."""

    def __init__(self, base: str) -> None:
        self.base = os.path.abspath(base)
        self.location = "file://" + self.base
        if not os.path.isdir(self.base):
            raise StoreNotFoundError(f"store directory {self.base} does not exist")

    # -------------------------------------------------------------- helpers

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) \
                or parts[0] == META_DIR:
            raise StoreError(f"invalid object key {key!r}")
        return os.path.join(self.base, *parts)

    def _meta_path(self, key: str) -> str:
        return os.path.join(self.base, META_DIR, *key.split("/")) + ".json"

    @staticmethod
    def _fsync_dir(path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_tmp(self, directory: str, data: bytes) -> str:
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f"{_TMP_MARK}{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    # -------------------------------------------------------------- the seam

    def put_if_absent(
        self, key: str, data: bytes, crc: int, metadata: Mapping[str, str] | None = None
    ) -> bool:
        """Create ``key`` unless it exists (link of an fsynced temporary file)."""
        path = self._path(key)
        if crc32c(data) != crc:
            raise StoreIntegrityError(f"CRC32C mismatch for {self.location}/{key}: not stored")
        directory = os.path.dirname(path)
        tmp = self._write_tmp(directory, data)
        try:
            os.link(tmp, path)  # atomic create-if-absent: never replaces
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        if metadata:
            mpath = self._meta_path(key)
            mtmp = self._write_tmp(os.path.dirname(mpath), json.dumps(dict(metadata)).encode())
            os.replace(mtmp, mpath)
        self._fsync_dir(directory)
        return True

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        """Compare-and-swap ``key`` under the store's LOCK file."""
        import fcntl  # POSIX only; imported here so that lsnwal imports everywhere

        path = self._path(key)
        os.makedirs(os.path.join(self.base, META_DIR), exist_ok=True)
        lock = os.open(os.path.join(self.base, META_DIR, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            info = self.head(key)
            current = None if info is None else info.etag
            if current != etag:
                raise StoreConflictError(
                    f"{self.location}/{key} changed (expected {etag}, found {current})")
            tmp = self._write_tmp(os.path.dirname(path), data)
            os.replace(tmp, path)
            self._fsync_dir(os.path.dirname(path))
            return _etag(crc32c(data), len(data))
        finally:
            os.close(lock)

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of ``key``; a negative ``start`` reads a suffix."""
        try:
            with open(self._path(key), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if start < 0:
                    start = max(0, size + start)
                stop = size if end is None else min(end, size)
                f.seek(start)
                return f.read(max(0, stop - start))
        except FileNotFoundError:
            raise StoreError(f"no object {self.location}/{key}") from None

    def head(self, key: str) -> ObjectInfo | None:
        """Size, content ETag, CRC32C and metadata (None if absent)."""
        try:
            with open(self._path(key), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        meta: dict[str, str] = {}
        with contextlib.suppress(FileNotFoundError, ValueError), \
                open(self._meta_path(key), "rb") as m:
            meta = json.loads(m.read())
        crc = crc32c(data)
        return ObjectInfo(key, len(data), _etag(crc, len(data)), crc, meta)

    def list(
        self, prefix: str, start_after: str = "", limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """Keys under ``prefix`` after ``start_after``, sorted (a walk of the directory)."""
        keys: list[tuple[str, int]] = []
        for dirpath, dirnames, filenames in os.walk(self.base):
            rel = os.path.relpath(dirpath, self.base)
            if rel == ".":
                dirnames[:] = [d for d in dirnames if d != META_DIR]
                rel = ""
            for name in filenames:
                if name.startswith(_TMP_MARK):
                    continue
                key = f"{rel}/{name}" if rel else name
                key = key.replace(os.sep, "/")
                if key.startswith(prefix) and key > start_after:
                    with contextlib.suppress(FileNotFoundError):
                        keys.append((key, os.path.getsize(os.path.join(dirpath, name))))
        for key, size in sorted(keys)[:limit]:
            yield ObjectInfo(key, size)

    def delete(self, key: str) -> None:
        """Remove ``key`` and its metadata."""
        for p in (self._path(key), self._meta_path(key)):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        self._fsync_dir(os.path.dirname(self._path(key)))

    def close(self) -> None:
        """Nothing to release."""
