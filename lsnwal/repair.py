"""Repair at open: the only writes recovery makes, after ``analyze`` decided them.

Owns cutting a torn tail (the cut bytes first go to ``<segment>.broken`` and are
fsynced, then the segment is truncated and fsynced), trimming junk after a valid
seal the same way, renaming set-aside segments to ``<name>.broken``, deleting
duplicates whose other copy ``analyze`` proved to be another file, and the
directory fsyncs that make all of it durable. Evidence is never overwritten:
a second cut of the same file goes to ``.broken.1``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from .fs import FileSystem, SyncBackend
from .names import BROKEN_SUFFIX

if TYPE_CHECKING:
    from .recovery import Analysis

log = logging.getLogger("lsnwal")


def apply_cuts(fs: FileSystem, an: Analysis, backend: SyncBackend | None = None) -> None:
    """Carry out what ``analyze`` decided: cut the torn tail, set aside later files.

    The cut bytes are kept in ``<segment>.broken`` (fsynced before the segment is
    truncated), so the evidence survives; set-aside segments are renamed to
    ``<name>.broken``. Duplicates are deleted (the other copy is durable).
    """
    backend = backend if backend is not None else fs.sync_backend()
    touched_dirs: set[str] = set()
    todo = [(an.cut, "recovery_cut", an.cut_reason)] if an.cut is not None else []
    todo += [(t, "recovery_trim", "bytes after the seal") for t in an.trims]
    for (seg, off), event, reason in todo:
        cut_bytes, broken = _cut_file(fs, backend, seg.path, off)
        touched_dirs.add(os.path.dirname(seg.path))
        log.warning("lsnwal recovery: cut %s at offset %d after LSN %d (%s)", seg.path, off,
                    seg.last_lsn, reason, extra={
                        "event": event, "path": seg.path, "offset": off,
                        "cut_bytes": cut_bytes, "broken_path": broken,
                        "next_lsn": an.next_lsn, "reason": reason})
    for s in an.set_aside:
        touched_dirs.add(os.path.dirname(s.path))
        if s.state == "active" and s.size == 0:
            fs.unlink(s.path)  # created just before the crash: no bytes, no evidence
            continue
        aside = _free_name(fs, s.path + BROKEN_SUFFIX)
        fs.rename(s.path, aside)
        log.warning("lsnwal recovery: set aside %s", s.path, extra={
            "event": "recovery_set_aside", "path": s.path, "broken_path": aside,
            "first_lsn": s.first_lsn})
    for s in an.duplicates:
        fs.unlink(s.path)  # analyze checked that the other copy is another file
        touched_dirs.add(os.path.dirname(s.path))
    for d in sorted(touched_dirs):
        dfd = fs.open_dir(d)
        try:
            backend.sync_dir(dfd)
        finally:
            fs.close(dfd)


def _cut_file(fs: FileSystem, backend: SyncBackend, path: str, off: int) -> tuple[int, str]:
    """Truncate ``path`` at ``off``, keeping the cut bytes in ``<path>.broken`` first.

    Returns how many bytes were cut and the evidence file's path.
    """
    fd = fs.open_write(path)
    try:
        size = fs.fsize(fd)
        rfd = fs.open_read(path)
        try:
            cut_bytes = fs.pread(rfd, size - off, off)
        finally:
            fs.close(rfd)
        broken = _free_name(fs, path + BROKEN_SUFFIX)
        bfd = fs.create(broken)
        try:
            fs.write(bfd, cut_bytes)
            backend.sync_file(bfd)
        finally:
            fs.close(bfd)
        fs.truncate(fd, off)
        backend.sync_file(fd)
    finally:
        fs.close(fd)
    return len(cut_bytes), broken


def _free_name(fs: FileSystem, path: str) -> str:
    if not fs.exists(path):
        return path
    n = 1
    while fs.exists(f"{path}.{n}"):
        n += 1
    return f"{path}.{n}"
