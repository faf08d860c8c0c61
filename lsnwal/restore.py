"""Writing a restored WAL: the records of a replay copied into a new directory.

Owns the target side of ``lsnwal.restore``. Records keep their LSNs, kinds and
timestamps; segments are written through the same ``SegmentWriter`` as a live
WAL, each sealed, fsynced and left in ``pending/`` (the first ``open`` archives
them). The new active segment starts at the last restored LSN + 1, so the
restored WAL continues there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from . import format as fmt
from .config import WalConfig
from .fs import FileSystem, SyncBackend
from .identity import prepare_wal_dir
from .names import WalPaths
from .writer import SegmentWriter


@dataclass(frozen=True)
class RestoreResult:
    """What ``restore`` wrote."""

    target: str
    records: int
    first_lsn: int | None
    last_lsn: int | None


def write_restored(fs: FileSystem, target: str, records: Iterator[fmt.Record]) -> RestoreResult:
    """Write ``records`` as a new WAL at ``target``; return a ``RestoreResult``."""

    cfg = WalConfig()
    paths = WalPaths.of(target, cfg)
    backend = fs.sync_backend()
    parent = os.path.dirname(paths.root)
    prepare_wal_dir(fs, paths.root, error_if_exists=True, backend=backend)  # identity file
    fs.makedirs(paths.pending)
    fs.makedirs(paths.archive)
    lock = fs.lock(paths.lock)
    try:
        first = next(records, None)
        start = first.lsn if first is not None else 1
        w = SegmentWriter(fs, paths, next_lsn=start, last_ts=0.0, checkpoint_lsn=0,
                          segment_max_bytes=cfg.segment_max_bytes,
                          write_buffer_bytes=cfg.write_buffer_bytes or 1 << 20)
        count = 0
        last = None
        rec = first
        while rec is not None:
            stored = rec.payload
            if rec.kind is fmt.RecordKind.CHECKPOINT:
                stored = fmt.encode_checkpoint_payload(rec.checkpoint_lsn or 0, rec.payload)
            if not w.fits(len(stored)):
                _seal(fs, backend, w)
            w.append_at(int(rec.kind), stored, rec.timestamp)
            count += 1
            last = rec.lsn
            rec = next(records, None)
        if count:
            _seal(fs, backend, w)
        backend.sync_file(w.fd)
        w.close()
        for d in (paths.pending, paths.archive, paths.root, parent):
            dfd = fs.open_dir(d)
            try:
                backend.sync_dir(dfd)
            finally:
                fs.close(dfd)
    finally:
        fs.unlock(lock)
    return RestoreResult(paths.root, count, start if count else None, last)


def _seal(fs: FileSystem, backend: SyncBackend, w: SegmentWriter) -> None:
    sealed = w.rotate()
    try:
        backend.sync_file(sealed.fd)
    finally:
        fs.close(sealed.fd)
