"""Open modes and the identity file: what may be opened or created as a WAL directory.

Owns the decision ``lsnwal.open`` makes before it takes the LOCK (modelled on
plyvel / RocksDB's ``create_if_missing`` and ``error_if_exists``) and the small
identity file ``LSNWAL`` that tells tools a directory is a WAL::

    {"format": "lsnwal-identity", "version": 1, "wal_id": "<32 hex digits>",
     "created": 1733100000.123}

Rules kept here:

* **A typo never starts an empty log.** A directory that exists, is not empty
  and is not a WAL is refused with ``WalError``; so is a missing or empty one
  when ``create_if_missing=False``, and an existing WAL when
  ``error_if_exists=True``.
* **A WAL is recognised** by its identity file, or (WALs written before the
  file existed) by ``active.wal`` or a segment-named file in ``pending/`` or
  ``archive/`` (a bare ``archive/`` folder is not enough: plenty of
  directories have one); such a WAL gets its identity file on its next open.
* **The identity is written durably and never replaced:** a unique temporary
  file, fsynced, renamed into place without replacing, then the directory
  fsynced. Two processes creating one WAL at once end with one identity (the
  loser's rename fails and it keeps the winner's). A crash leaves either no
  identity (the directory is still recognised as new) or the whole file;
  stray temporary files are removed on the next open.
* ``wal_id`` is random (``uuid4``) and stable for the life of the directory, so
  tools and object-store timelines can tell two WALs apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass

from .errors import WalError
from .fs import FileSystem, OsFileSystem, SyncBackend, sync_dir_at
from .names import ACTIVE_NAME, LOCK_NAME, parse_segment_name

IDENTITY_NAME = "LSNWAL"
IDENTITY_FORMAT = "lsnwal-identity"
IDENTITY_VERSION = 1
_TMP_PREFIX = IDENTITY_NAME + "."
_TMP_SUFFIX = ".tmp"
_MAX_IDENTITY_BYTES = 4096
#: subdirectories whose segment files mark a WAL written before the identity file existed
LEGACY_DIRS = ("pending", "archive")
#: names that may sit in a directory that is still "empty" for lsnwal's purposes
_HARMLESS = frozenset({LOCK_NAME})


@dataclass(frozen=True)
class Identity:
    """The content of a WAL directory's identity file."""

    version: int
    wal_id: str
    created: float

    def encode(self) -> bytes:
        """The file's bytes (one JSON object and a newline)."""
        doc = {"format": IDENTITY_FORMAT, "version": self.version, "wal_id": self.wal_id,
               "created": self.created}
        return (json.dumps(doc, sort_keys=True) + "\n").encode("ascii")

    @classmethod
    def decode(cls, data: bytes, path: str) -> Identity:
        """Parse an identity file; ``WalError`` naming ``path`` if it is not one."""
        try:
            doc = json.loads(data.decode("ascii"))
            if not isinstance(doc, dict) or doc.get("format") != IDENTITY_FORMAT:
                raise ValueError("not an lsnwal identity document")
            version, wal_id, created = doc["version"], doc["wal_id"], doc["created"]
            if not isinstance(version, int) or not isinstance(wal_id, str):
                raise ValueError("bad field types")
            if not isinstance(created, (int, float)):
                raise ValueError("bad field types")
        except (UnicodeDecodeError, ValueError, KeyError) as exc:
            raise WalError(f"{path} is not a valid lsnwal identity file ({exc})") from None
        if version > IDENTITY_VERSION:
            raise WalError(
                f"{path} has identity version {version}; this lsnwal reads up to "
                f"{IDENTITY_VERSION} (upgrade lsnwal)"
            )
        return cls(version, wal_id, float(created))

    @classmethod
    def new(cls) -> Identity:
        """A fresh identity with a random ``wal_id``."""
        return cls(IDENTITY_VERSION, uuid.uuid4().hex, time.time())


def _entries(fs: FileSystem, root: str) -> list[str]:
    return [n for n in fs.listdir(root)
            if not (n.startswith(_TMP_PREFIX) and n.endswith(_TMP_SUFFIX))]


def is_wal_dir(root: str | os.PathLike[str], fs: FileSystem | None = None) -> bool:
    """True if ``root`` is a directory lsnwal wrote (identity file or older layout)."""
    fs = fs or OsFileSystem()
    r = os.fspath(root)
    if not fs.isdir(r):
        return False
    if fs.exists(os.path.join(r, IDENTITY_NAME)) or fs.exists(os.path.join(r, ACTIVE_NAME)):
        return True
    for sub in LEGACY_DIRS:
        d = os.path.join(r, sub)
        if fs.isdir(d) and any(parse_segment_name(n) is not None for n in fs.listdir(d)):
            return True
    return False


def read_identity(
    root: str | os.PathLike[str], fs: FileSystem | None = None
) -> Identity | None:
    """The identity of the WAL at ``root``, or None when it has no identity file."""
    fs = fs or OsFileSystem()
    path = os.path.join(os.fspath(root), IDENTITY_NAME)
    if not fs.exists(path):
        return None
    fd = fs.open_read(path)
    try:
        data = fs.pread(fd, _MAX_IDENTITY_BYTES, 0)
    finally:
        fs.close(fd)
    return Identity.decode(data, path)


def prepare_wal_dir(
    fs: FileSystem,
    root: str | os.PathLike[str],
    *,
    create_if_missing: bool = True,
    error_if_exists: bool = False,
    backend: SyncBackend | None = None,
) -> bool:
    """Apply the open modes to ``root``; create it (with its identity) if allowed.

    Returns True when the directory itself was created. Raises ``WalError`` for
    a non-empty directory that is not a WAL, a missing (or empty) one with
    ``create_if_missing=False`` and an existing WAL with ``error_if_exists=True``.
    """
    r = os.path.abspath(os.fspath(root))
    backend = backend if backend is not None else fs.sync_backend()
    if fs.exists(r) and not fs.isdir(r):
        raise WalError(f"{r} exists and is not a directory")
    if is_wal_dir(r, fs):
        if error_if_exists:
            raise WalError(f"a WAL already exists at {r} (error_if_exists=True)")
        read_identity(r, fs)  # a damaged or newer identity file stops the open here
        if not fs.exists(os.path.join(r, IDENTITY_NAME)):
            _write_identity(fs, backend, r)  # a WAL from before the identity file
        _remove_stray_tmp(fs, r)
        return False
    if fs.isdir(r):
        others = [n for n in _entries(fs, r) if n not in _HARMLESS]
        if others:
            shown = ", ".join(sorted(others)[:3]) + (", ..." if len(others) > 3 else "")
            raise WalError(
                f"{r} is not empty and is not an lsnwal directory (found {shown}); "
                "give an empty or new directory"
            )
    if not create_if_missing:
        raise WalError(f"no WAL at {r} (create_if_missing=False)")
    created = fs.makedirs(r)
    if created:
        sync_dir_at(fs, backend, os.path.dirname(r))
    _write_identity(fs, backend, r)
    _remove_stray_tmp(fs, r)  # after ours is in place: a racing creator's rename then fails
    return created


def _write_identity(fs: FileSystem, backend: SyncBackend, root: str) -> None:
    """Write the identity file durably, never replacing one that appeared meanwhile."""
    tmp = os.path.join(root, f"{_TMP_PREFIX}{uuid.uuid4().hex}{_TMP_SUFFIX}")
    fd = fs.create(tmp)
    try:
        fs.write(fd, Identity.new().encode())
        backend.sync_file(fd)
    finally:
        fs.close(fd)
    final = os.path.join(root, IDENTITY_NAME)
    try:
        fs.rename(tmp, final)
    except FileExistsError:  # another process created this WAL at the same moment
        with contextlib.suppress(FileNotFoundError):
            fs.unlink(tmp)
    except FileNotFoundError:  # an opener of the winner's WAL removed our temporary file
        if not fs.exists(final):
            raise
    sync_dir_at(fs, backend, root)


def _remove_stray_tmp(fs: FileSystem, root: str) -> None:
    for name in fs.listdir(root):
        if name.startswith(_TMP_PREFIX) and name.endswith(_TMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):  # another opener was first
                fs.unlink(os.path.join(root, name))
