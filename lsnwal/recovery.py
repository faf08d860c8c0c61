"""Recovery: collect segments, order them by header, check continuity, find the log's end.

Owns the read-only analysis of a WAL directory (``analyze``) that ``open()``,
``replay``, ``verify`` and ``collect_all_segments`` share; ``repair.apply_cuts``
carries out what it decides. Rules kept here:

* Segments are ordered by the first LSN in their **header**; names are checked
  against headers. A gap or overlap names both neighbouring files. The same
  segment found in the archive and in ``pending/`` (a crash between copy and
  delete) is counted once — unless both names are one directory entry (aliased
  directories), which is refused instead of deleting the only copy.
* Every record of ``pending/`` and the active segment is read (they decide where
  the log ends); of the archive only the newest segment's header and seal. At
  ``open()`` (``check_archive``) the archive listing is compared with the seek
  index; on any difference every archived header and seal (no record) is read
  and the chain checked, so a missing or extra archived segment is an error.
* ``WATERMARK`` (read before any segment) gives W, the last LSN an fsync was
  acknowledged for. Damage outside the archive is classified, never guessed:
  - ``torn`` — with W: the damage lies past the end of record W (every byte
    there was unsynced, so any mix of zeros, garbage, old bytes and whole later
    records is possible). Without W: nothing valid with a higher LSN follows
    anywhere (no later record in the file, no later segment header). In
    ``tolerate_tail`` the log is cut there, the cut bytes and every later live
    segment are kept as ``*.broken``.
  - ``corrupt`` — anything else: ``WalCorruptionError`` with file, offset and
    last good LSN, unless the mode is ``stop_at_corruption``. ``strict`` refuses
    any damage.
  - junk after a complete, valid seal is trimmed (kept as ``.broken``), never
    sealed again, and does not end the log.
* W above the end of what was found means durable records are missing:
  corruption, never a silent restart at reused LSNs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from . import scanner
from .config import WalConfig
from .errors import WalCorruptionError, WalError
from .fs import FileSystem
from .layout import unlink_loses
from .names import ACTIVE_NAME, WalPaths
from .repair import apply_cuts
from .seekindex import read_index
from .segment import ScanEnd
from .segscan import (
    Seg,
    SegmentInfo,
    list_archive,
    list_dir,
    load_archived,
    same_bytes,
    same_records,
    scan_live,
)
from .watermark import WATERMARK_NAME, Watermark, read_watermark

log = logging.getLogger("lsnwal")


@dataclass
class Analysis:
    """What recovery found: archive, live segments, where the log ends, what to cut."""

    archive: list[Seg]
    live: list[Seg]  # pending + active kept, in LSN order
    cut: tuple[Seg, int] | None = None  # segment and offset where the log was cut
    cut_reason: str = ""
    #: whole sealed segments followed by junk: (segment, end of its trailer)
    trims: list[tuple[Seg, int]] = field(default_factory=list)
    #: the durable watermark published in WATERMARK (None: no readable file)
    durable_lsn: int | None = None
    #: LSNs published as durable but not found (only kept in stop_at_corruption mode)
    missing_durable: tuple[int, int] | None = None
    set_aside: list[Seg] = field(default_factory=list)
    duplicates: list[Seg] = field(default_factory=list)
    next_lsn: int = 1
    last_ts: float = 0.0
    checkpoint_lsn: int = 0
    archive_last_lsn: int = 0

    def report(self) -> list[str]:
        """Human-readable lines about what recovery dropped or fixed."""
        out = []
        if self.cut is not None:
            seg, off = self.cut
            out.append(
                f"cut {seg.path} at offset {off} after LSN {seg.last_lsn} ({self.cut_reason})"
            )
        out += [f"trimmed {s.path} at offset {off}: bytes after its seal"
                for s, off in self.trims]
        out += [f"set aside {s.path} (after the cut)" for s in self.set_aside]
        if self.missing_durable is not None:
            lo, hi = self.missing_durable
            out.append(f"LSNs {lo}..{hi} were reported durable but are missing")
        out += [f"dropped duplicate {s.path} (the same segment is kept elsewhere)"
                for s in self.duplicates]
        return out


def _continues(fs: FileSystem, seg: Seg, last_good: int) -> bool:
    """True when a valid record with an LSN above ``last_good`` follows the damage in ``seg``."""
    offset = seg.end.offset
    fd = fs.open_read(seg.path)
    try:
        tail = fs.pread(fd, seg.size - offset, offset) if seg.size > offset else b""
    finally:
        fs.close(fd)
    if not tail or scanner.is_zero(tail, 0):
        return False
    return scanner.find_continuation(tail, 0, last_good) is not None


def analyze(
    fs: FileSystem,
    paths: WalPaths,
    config: WalConfig,
    *,
    full_archive: bool = False,
    archive: list[Seg] | None = None,
    check_archive: bool = False,
) -> Analysis:
    """Find the log's segments and its end without changing anything on disk.

    ``archive`` (for seeks) replaces the listing of the archive directory with
    the newest archived segments only; continuity to the live segments is still
    checked against the newest of them.
    """
    mode = config.recovery_mode
    # Read before any segment: the value never leads the disk, so a writer moving on
    # while we scan can only make it conservative.
    wm = read_watermark(paths.root, fs)
    durable = wm.synced_lsn if wm is not None else None
    if archive is None:
        archive = list_archive(fs, paths)
    # The same first LSN twice in the archive (e.g. plain and compressed) is one segment.
    by_lsn: dict[int, Seg] = {}
    for s in archive:
        assert s.name_lsn is not None
        if s.name_lsn in by_lsn:
            raise WalCorruptionError(
                f"two archived segments start at LSN {s.name_lsn}: {by_lsn[s.name_lsn].path} "
                f"and {s.path}",
                path=s.path,
            )
        by_lsn[s.name_lsn] = s
    an = Analysis(archive=archive, live=[], durable_lsn=durable)
    to_load = archive if full_archive else archive[-1:]
    for s in to_load:
        load_archived(fs, s)
    if archive:
        tail = archive[-1]
        an.archive_last_lsn = tail.last_lsn
        an.next_lsn = tail.last_lsn + 1
        an.last_ts = tail.last_ts
        an.checkpoint_lsn = tail.checkpoint_lsn
    if check_archive and not full_archive:
        full_archive = not _index_agrees(fs, paths, archive)
        for s in archive[:-1] if full_archive else ():
            load_archived(fs, s)
    if full_archive:
        prev: Seg | None = None
        for s in archive:
            if prev is not None and s.first_lsn != prev.last_lsn + 1:
                _continuity_error(prev, s)
            prev = s

    pending = list_dir(fs, paths.pending, "pending")
    live: list[Seg] = []
    for s in pending:
        scan_live(fs, s)
        live.append(s)
    live.sort(key=lambda s: s.first_lsn)
    if fs.exists(paths.active):
        act = Seg(paths.active, "active", None)
        scan_live(fs, act)
        if act.header is None:
            # An active file without a valid header holds nothing we wrote durably:
            # crash right after its creation. It sorts last.
            # With nothing else left (all pruned after a checkpoint) it starts after the
            # published checkpoint, not at LSN 1.
            act.name_lsn = (live[-1].last_lsn + 1) if live else max(
                an.next_lsn, (wm.checkpoint_lsn + 1) if wm is not None and not archive else 1)
        live.append(act)

    expected: int | None = an.next_lsn if archive else None
    prev_seg: Seg | None = archive[-1] if archive else None
    kept: list[Seg] = []
    for i, s in enumerate(live):
        if s.header is not None and s.name_lsn is not None and s.state == "pending" and \
                s.header.first_lsn != s.name_lsn:
            raise WalCorruptionError(
                f"file name says first LSN {s.name_lsn} but the header says "
                f"{s.header.first_lsn}", path=s.path, offset=0)
        if (
            s.state == "active"
            and s.header is not None
            and prev_seg is not None
            and prev_seg.state == "pending"
            and s.first_lsn == prev_seg.first_lsn
            and not unlink_loses(s.path, prev_seg.path)
            and same_bytes(fs, s.path, prev_seg.path)
        ):
            # The rename active.wal -> pending/ reached the new directory but the old
            # name survived too (a file system that does not journal a rename as one
            # unit): the same segment twice, counted once.
            an.duplicates.append(s)
            continue
        if expected is not None and s.header is not None and s.first_lsn < expected:
            dup = by_lsn.get(s.first_lsn)
            if dup is not None and s.state == "pending":
                if unlink_loses(s.path, dup.path):
                    raise WalError(f"{s.path} is listed in pending/ and in the archive: the "
                                   "two directories are one (refusing to touch it)")
                load_archived(fs, dup)
                if dup.last_lsn == s.last_lsn and s.end.verdict in (scanner.SEALED, scanner.END):
                    if not same_records(fs, s.path, s.data_end, dup):
                        raise WalCorruptionError(
                            f"{s.path} and {dup.path} hold the same LSNs with different "
                            "content", path=s.path, offset=0, lsn=s.first_lsn - 1)
                    an.duplicates.append(s)
                    continue
        if expected is not None and s.header is not None and s.first_lsn != expected:
            assert prev_seg is not None
            # A gap or an overlap. After a live segment that ends past the durable
            # watermark it is what a power loss leaves (that file lost its unsynced
            # tail and seal while this one kept its header, or this file holds old
            # bytes): a torn tail. Without a watermark this header is valid data after
            # the break, and after an archived segment nothing was unsynced: corruption.
            torn = prev_seg.state != "archive" and _torn(prev_seg.last_lsn, durable, True)
            if mode == "strict" or (mode == "tolerate_tail" and not torn):
                _continuity_error(prev_seg, s, durable)
            an.set_aside.extend(live[i:])
            an.cut_reason = f"{'torn' if torn else 'corrupt'}: {s.path} does not continue " \
                f"the log after LSN {prev_seg.last_lsn}"
            break
        if s.end.verdict == scanner.DAMAGED and s.end.seal is not None:
            # A whole sealed segment followed by junk: trim the junk, keep the seal (a
            # second seal would make the segment unreadable).
            if mode == "strict":
                raise WalCorruptionError(
                    f"{s.end.reason} (in a {s.state} segment, recovery_mode='strict')",
                    path=s.path, offset=s.end.offset, lsn=s.last_lsn)
            an.trims.append((s, s.end.offset))
            s.end = ScanEnd(scanner.SEALED, s.end.seal.data_end, seal=s.end.seal,
                            last_lsn=s.end.last_lsn)
        elif s.end.verdict == scanner.DAMAGED:
            last_good = s.last_lsn if s.header is not None else max(0, (s.name_lsn or 1) - 1)
            later = durable is None and (
                any(t.header is not None for t in live[i + 1 :]) or _continues(fs, s, last_good))
            torn = _torn(last_good, durable, later)
            if mode == "strict" or (not torn and mode == "tolerate_tail"):
                raise WalCorruptionError(
                    f"{s.end.reason} ({_verdict(torn, last_good, durable)} in a {s.state} "
                    f"segment, recovery_mode={mode!r})",
                    path=s.path, offset=s.end.offset, lsn=last_good)
            an.cut_reason = f"{'torn' if torn else 'corrupt'}: {s.end.reason}"
            if s.header is None:
                an.set_aside.extend(live[i:])
            else:
                an.cut = (s, s.end.offset)
                kept.append(s)
                an.set_aside.extend(live[i + 1 :])
            break
        kept.append(s)
        expected = s.last_lsn + 1
        prev_seg = s
    an.live = kept
    for s in kept:
        an.next_lsn = max(an.next_lsn, s.last_lsn + 1, s.first_lsn)
        an.last_ts = max(an.last_ts, s.last_ts)
        an.checkpoint_lsn = max(an.checkpoint_lsn, s.checkpoint_lsn)
    if wm is not None:
        _check_durable(an, wm, paths, mode)
    return an


def _index_agrees(fs: FileSystem, paths: WalPaths, archive: list[Seg]) -> bool:
    """True when the seek index lists exactly the archived segments found by name.

    The index is rewritten from the listing at every open and appended to as
    segments are archived, so a segment missing from the middle of the archive,
    or one that appeared there, shows as a difference without opening a file.
    Any difference (also a merely stale index after a crash) makes ``open()``
    check the chain by headers and seals, never by reading records.
    """
    entries = read_index(fs, paths.root)
    return entries is not None and [lsn for lsn, _c in entries] == [s.name_lsn for s in archive]


def _torn(last_good: int, durable: int | None, later_data: bool) -> bool:
    """May damage right after LSN ``last_good`` be cut as a torn tail?

    With a durable watermark: only if it lies past the last durable record (nothing
    at or below ``durable`` can be lost). Without one: only if no valid data with a
    higher LSN exists anywhere (the damage is the end of the log).
    """
    if durable is not None:
        return last_good >= durable
    return not later_data


def _verdict(torn: bool, last_good: int, durable: int | None) -> str:
    if torn:
        return "torn tail"
    if durable is not None:
        return f"corruption at or before durable LSN {durable}"
    return "corruption: valid data with higher LSNs follows"


def _check_durable(an: Analysis, wm: Watermark, paths: WalPaths, mode: str) -> None:
    """Every LSN the watermark calls durable must still be in the log (or checkpointed).

    The watermark never leads the disk, so records found ending below it means
    acknowledged records are missing: corruption, never a silent restart at a
    reused LSN. A log with no record left at all (every segment pruned after a
    checkpoint) continues after the watermark.
    """
    end = an.next_lsn - 1
    if wm.synced_lsn <= end:
        return
    nothing_left = not an.archive and all(s.count == 0 for s in an.live)
    if nothing_left and wm.synced_lsn <= wm.checkpoint_lsn:
        an.next_lsn = wm.synced_lsn + 1
        an.checkpoint_lsn = max(an.checkpoint_lsn, wm.checkpoint_lsn)
        return
    if mode != "stop_at_corruption":
        raise WalCorruptionError(
            f"LSNs up to {wm.synced_lsn} were reported durable but the log ends at LSN "
            f"{end} (recovery_mode={mode!r})",
            path=os.path.join(paths.root, WATERMARK_NAME), lsn=end)
    an.missing_durable = (end + 1, wm.synced_lsn)


def _continuity_error(prev: Seg, seg: Seg, durable: int | None = None) -> None:
    what = "gap" if seg.first_lsn > prev.last_lsn + 1 else "overlap"
    raise WalCorruptionError(
        f"LSN {what} between segments: {prev.path} ends at LSN {prev.last_lsn}, "
        f"{seg.path} starts at LSN {seg.first_lsn}"
        + (f" (durable up to LSN {durable})" if durable is not None else ""),
        path=seg.path,
        offset=0,
        lsn=prev.last_lsn,
    )


def collect_all_segments(
    path: str | os.PathLike[str], config: WalConfig | None = None, *, fs: FileSystem | None = None
) -> list[SegmentInfo]:
    """Every segment of the WAL (archive, pending, active) ordered by header first LSN.

    Reads every archived segment's header and seal and every record of the
    pending and active segments through ``WalReader`` (safe next to a live
    writer); raises ``WalCorruptionError`` on a gap (naming both files) or on
    damage. Changes nothing on disk.
    """
    from .reader import WalReader  # the live-safe read side (a writer may be running)

    return WalReader(path, config, fs=fs).segments()


__all__ = [
    "ACTIVE_NAME", "Analysis", "Seg", "SegmentInfo", "analyze", "apply_cuts",
    "collect_all_segments", "list_archive", "load_archived", "same_records",
]
