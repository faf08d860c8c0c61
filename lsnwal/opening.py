"""Opening a WAL directory: recovery, then the wiring writer -> commit path -> archiver.

``open_parts`` runs with the directory's LOCK held. Step by step (crash windows):

1. create ``pending/`` and ``archive/`` if missing and fsync their parents
   — crash: an empty directory may vanish; the next open makes it again;
2. delete what a crash left that is never data: interrupted archive copies
   (``*.tmp``) and unused spare files;
3. recover (``recovery.analyze`` / ``apply_cuts``): cut a torn tail into a
   ``.broken`` file, set aside what follows real damage, drop duplicates;
4. seal what recovery kept outside the archive, fsync it, move it into
   ``pending/`` — everything found is durable from here on (leftovers are
   fsynced, never trusted), so ``synced_lsn`` starts at the last LSN found;
5. publish that in ``WATERMARK`` and fsync it once (never again on the commit
   path), create the new active segment and fsync the WAL directory;
6. start the archiver, the spare-file pool and the commit path; hand the sealed
   segments of step 4 to the archiver.

``abandon`` releases the parts of a WAL that was garbage-collected unclosed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from . import format as fmt
from . import scanner
from .archive import Archiver
from .config import WalConfig
from .fs import FailpointHook, FileSystem, SyncBackend, sync_dir_at
from .names import TMP_SUFFIX, WalPaths, segment_name
from .recovery import Analysis, analyze, apply_cuts
from .spares import SPARE_PREFIX, SPARE_SUFFIX, SparePool
from .store.connect import ShipTarget
from .sync import SegmentSyncManager
from .watermark import WatermarkWriter
from .writer import SealedSegment, SegmentWriter


@dataclass
class Parts:
    """Everything an open WAL owns besides its lock."""

    root_fd: int
    pending_fd: int
    watermark: WatermarkWriter
    spares: SparePool
    writer: SegmentWriter
    archiver: Archiver
    mgr: SegmentSyncManager
    checkpoint_lsn: int
    start_lsn: int
    recovery_report: list[str]


def open_parts(
    fs: FileSystem,
    backend: SyncBackend,
    paths: WalPaths,
    config: WalConfig,
    failpoint: FailpointHook | None,
    created_root: bool,
    ship_target: ShipTarget | None = None,
) -> Parts:
    """Recover the directory and start its writer, commit path and archiver (LOCK held)."""
    made = [fs.makedirs(paths.pending), fs.makedirs(paths.archive)]
    if created_root or any(made):
        for d in {os.path.dirname(paths.root), paths.root, os.path.dirname(paths.pending),
                  os.path.dirname(paths.archive)}:
            sync_dir_at(fs, backend, d)
    for name in fs.listdir(paths.archive):  # copies interrupted by a crash
        if name.endswith(TMP_SUFFIX):
            fs.unlink(os.path.join(paths.archive, name))
    for name in fs.listdir(paths.root):  # unused spare files of an earlier run
        if name.startswith(SPARE_PREFIX) and name.endswith(SPARE_SUFFIX):
            fs.unlink(os.path.join(paths.root, name))
    an = analyze(fs, paths, config, check_archive=True)
    apply_cuts(fs, an, backend)
    recovered = _seal_recovered(fs, backend, paths, an)
    synced = an.next_lsn - 1
    fds: list[int] = []
    started: list[SparePool | Archiver | SegmentSyncManager] = []
    wm: WatermarkWriter | None = None
    w: SegmentWriter | None = None
    try:
        fds.append(fs.open_dir(paths.root))
        fds.append(fs.open_dir(paths.pending))
        root_fd, pending_fd = fds
        backend.sync_dir(pending_fd)  # the renames of step 4
        wm = WatermarkWriter(fs, paths.root)
        wm.publish(synced, an.checkpoint_lsn)
        # Through the file system's own backend (not a caller's instrumented one): an
        # open-time detail that orders no commit.
        fs.sync_backend().sync_file(wm.fd)
        spares = SparePool(fs, paths.root)
        started.append(spares)
        w = SegmentWriter(
            fs, paths, next_lsn=an.next_lsn, last_ts=an.last_ts,
            checkpoint_lsn=an.checkpoint_lsn, segment_max_bytes=config.segment_max_bytes,
            write_buffer_bytes=config.write_buffer_bytes, failpoint=failpoint, spares=spares,
        )
        backend.sync_dir(root_fd)  # the new active file's (and WATERMARK's) name
        archiver = Archiver(
            fs, backend, paths, config, an.archive, checkpoint_lsn=an.checkpoint_lsn,
            failpoint=failpoint, ship_target=ship_target,
        )
        started.append(archiver)
        archiver.rewrite_index()  # the seek index is a hint: rebuilt at every open
        mgr = SegmentSyncManager(
            fs, backend, pending_fd, initial_synced_lsn=synced, on_synced=archiver.submit,
            failpoint=failpoint, root_dir_fd=root_fd, watermark=wm,
            checkpoint_lsn=an.checkpoint_lsn,
        )
        started.append(mgr)
        if recovered:
            archiver.submit(recovered, synced)
    except BaseException:
        for part in reversed(started):
            part.stop()
        if w is not None:
            with contextlib.suppress(OSError):
                w.close()
        if wm is not None:
            wm.close()
        close_fds(fs, fds)
        raise
    return Parts(root_fd, pending_fd, wm, spares, w, archiver, mgr, an.checkpoint_lsn,
                 an.next_lsn, an.report())


def _seal_recovered(
    fs: FileSystem, backend: SyncBackend, paths: WalPaths, an: Analysis
) -> list[SealedSegment]:
    """Seal, fsync and move into pending/ what recovery kept outside the archive."""
    out: list[SealedSegment] = []
    for seg in an.live:
        if seg.count == 0 and seg.end.verdict != scanner.SEALED:
            fs.unlink(seg.path)  # header-only: nothing to keep, LSNs continue anyway
            continue
        # block CRCs: computed by the scan from the bytes whose records it checked
        seal = seg.rebuilt_seal() if seg.end.verdict != scanner.SEALED else None
        fd = fs.open_write(seg.path)
        try:
            if seal is not None:
                if fs.fsize(fd) != seg.data_end:
                    fs.truncate(fd, seg.data_end)
                fs.write(fd, fmt.encode_seal(seal))
            backend.sync_file(fd)
            size = fs.fsize(fd)
        finally:
            fs.close(fd)
        path = seg.path
        if seg.state == "active":
            path = os.path.join(paths.pending, segment_name(seg.first_lsn))
            fs.rename(seg.path, path)
        out.append(SealedSegment(path, -1, seg.first_lsn, seg.last_lsn, size, seg.last_ts))
    return out


def close_fds(fs: FileSystem, fds: list[int]) -> None:
    """Close descriptors, ignoring errors (they are being released)."""
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                fs.close(fd)


def abandon(parts: Parts, fs: FileSystem, lock_handle: int) -> None:
    """Release the parts of a WAL that was garbage-collected without ``close()``.

    Queued sync units are still run (their descriptors are open until the sync
    thread stops); every handle left open then fails with ``WalClosedError``.
    """
    parts.mgr.stop(timeout=5.0)
    parts.archiver.stop()
    parts.spares.stop()
    if parts.mgr.failure is not None:
        parts.writer.broken = True  # after a failure nothing more is written
    with contextlib.suppress(Exception):
        parts.writer.close()
    parts.watermark.close()
    close_fds(fs, [parts.root_fd, parts.pending_fd])
    with contextlib.suppress(OSError):
        fs.unlock(lock_handle)
