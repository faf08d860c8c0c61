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
    cuts = list(an.trims) + ([an.cut] if an.cut is not None else [])
    for seg, off in cuts:
        _cut_file(fs, backend, seg.path, off)
        touched_dirs.add(os.path.dirname(seg.path))
    for line in an.report()[: len(cuts)]:
        log.warning("lsnwal recovery: %s", line)
    for s in an.set_aside:
        touched_dirs.add(os.path.dirname(s.path))
        if s.state == "active" and s.size == 0:
            fs.unlink(s.path)  # created just before the crash: no bytes, no evidence
            continue
        fs.rename(s.path, _free_name(fs, s.path + BROKEN_SUFFIX))
        log.warning("lsnwal recovery: set aside %s", s.path)
    for s in an.duplicates:
        fs.unlink(s.path)  # analyze checked that the other copy is another file
        touched_dirs.add(os.path.dirname(s.path))
    for d in sorted(touched_dirs):
        dfd = fs.open_dir(d)
        try:
            backend.sync_dir(dfd)
        finally:
            fs.close(dfd)


def _cut_file(fs: FileSystem, backend: SyncBackend, path: str, off: int) -> None:
    """Truncate ``path`` at ``off``, keeping the cut bytes in ``<path>.broken`` first."""
    fd = fs.open_write(path)
    try:
        size = fs.fsize(fd)
        rfd = fs.open_read(path)
        try:
            cut_bytes = fs.pread(rfd, size - off, off)
        finally:
            fs.close(rfd)
        bfd = fs.create(_free_name(fs, path + BROKEN_SUFFIX))
        try:
            fs.write(bfd, cut_bytes)
            backend.sync_file(bfd)
        finally:
            fs.close(bfd)
        fs.truncate(fd, off)
        backend.sync_file(fd)
    finally:
        fs.close(fd)


def _free_name(fs: FileSystem, path: str) -> str:
    if not fs.exists(path):
        return path
    n = 1
    while fs.exists(f"{path}.{n}"):
        n += 1
    return f"{path}.{n}"
