"""``verify`` and the segment summaries of the read side (``collect_all_segments``, CLI).

Owns the whole-log check and the per-segment descriptions built by walking the
live-safe chain (``chain.py``). Rules kept here:

* ``verify`` never raises for damage: every problem (file, offset, last good
  LSN, message) goes into the report; it goes on past damage where the next
  segment can be found.
* Only what is really on disk is a problem (invariant 13). A segment pruned by
  retention while it is being checked is skipped, not reported; damage in the
  file being written is read again before it counts (a write may be in flight).
  A torn tail at the end of the log (what a crash leaves; ``open()`` cuts it) is
  a warning.
* Every CRC is checked by the one scanner; no record object is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import format as fmt
from . import scanner
from .config import WalConfig
from .errors import LsnUnavailableError, WalCorruptionError
from .fs import FileSystem
from .identity import is_wal_dir
from .names import parse_segment_name
from .recovery import Analysis, Seg, SegmentInfo, load_archived, same_records
from .segment import read_seal
from .segread import Loc, SegEnd

if TYPE_CHECKING:
    from .reader import WalReader

_RESTARTS = 100  # pruning may overtake a slow check: go on from the oldest retained segment
_CHECKPOINT = int(fmt.RecordKind.CHECKPOINT)
_MARK = int(fmt.RecordKind.MARK)
_H = fmt.RECORD_HEADER_SIZE


@dataclass(frozen=True)
class Problem:
    """One thing ``verify`` found wrong."""

    file: str
    offset: int | None
    lsn: int | None
    message: str


@dataclass
class VerifyReport:
    """The result of ``verify``: ``ok`` is False when any problem was found."""

    ok: bool = True
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    segments: int = 0
    records: int = 0
    first_lsn: int | None = None
    last_lsn: int | None = None

    def add(self, file: str, offset: int | None, lsn: int | None, message: str) -> None:
        """Record a problem."""
        self.ok = False
        self.problems.append(Problem(file, offset, lsn, message))


def verify(
    path: str | os.PathLike[str], *, config: WalConfig | None = None, fs: FileSystem | None = None
) -> VerifyReport:
    """Check the whole WAL read-only: headers, seals, every CRC, LSN continuity.

    Safe next to a live writer. Never raises for damage it finds: every problem
    goes into the report. A torn tail outside the archive is a warning.
    """
    from .reader import WalReader
    from .store.source import read_source

    path, fs = read_source(path, fs)  # a store URL reads through a store view
    try:
        reader = WalReader(path, config, fs=fs)
    except FileNotFoundError:
        report = VerifyReport()
        report.add(os.path.abspath(os.fspath(path)), None, None, "no WAL directory here")
        return report
    if not is_wal_dir(reader.paths.root, reader.fs):
        report = VerifyReport()
        report.add(reader.paths.root, None, None, "not an lsnwal directory (no LSNWAL identity "
                   "file, active.wal, pending/ or archive/)")
        return report
    return verify_reader(reader)


def verify_reader(reader: WalReader) -> VerifyReport:
    """``verify`` for an open reader."""
    report = VerifyReport()

    def found(path: str, offset: int | None, lsn: int | None, msg: str) -> None:
        report.add(path, offset, lsn, msg)

    _duplicates(reader, report)
    # Read before the scan: every LSN up to it was durable before we looked, so the scan
    # must find it (a live writer can only publish more while we read, never less).
    durable = reader.synced_lsn
    start: int | None = None
    counted = False
    for _ in range(_RESTARTS):
        ends: list[SegEnd] = []
        entered: list[Loc] = []
        try:
            for loc, chunk in reader.chain.walk(start, report=found, ends=ends,
                                                build=scanner.BUILD_COUNT):
                if chunk is None:
                    entered.append(loc)
                    counted = False
                    continue
                if not counted:  # segments holding records, as collect_all_segments shows
                    report.segments += 1
                    counted = True
                report.records += chunk.count
                if report.first_lsn is None:
                    report.first_lsn = chunk.last_lsn - chunk.count + 1
                report.last_lsn = chunk.last_lsn
        except LsnUnavailableError:
            # Retention removed segments ahead of us: they were the oldest; go on
            # from what is retained now (what we already counted stays counted).
            firsts = reader.chain.listing()
            nxt = (report.last_lsn or 0) + 1
            start = max(nxt, firsts[0]) if firsts else None
            if start is None:
                break
            continue
        except WalCorruptionError as exc:
            report.add(exc.path or reader.paths.root, exc.offset, exc.lsn, exc.reason)
        _check_ends(entered, ends, report)
        visited = [(loc.path, loc.header.first_lsn, end.last_lsn)
                   for loc, end in zip(entered, ends, strict=False)]
        problem = reader.chain.overlap(visited)
        if problem is not None:
            report.add(problem.path or reader.paths.root, 0, problem.lsn, problem.reason)
        break
    if report.ok and (report.last_lsn or 0) < durable:
        report.add(os.path.join(reader.paths.root, "WATERMARK"), None, durable,
                   f"the writer published LSN {durable} as durable but the log ends at LSN "
                   f"{report.last_lsn or 0}: acknowledged records are missing")
    return report


def _check_ends(entered: list[Loc], ends: list[SegEnd], report: VerifyReport) -> None:
    for loc, end in zip(entered, ends, strict=False):
        if loc.state == "archive" and end.seal is not None and \
                end.count != end.seal.record_count and not end.damaged:
            report.add(loc.path, None, None,
                       f"seal counts {end.seal.record_count} records, found {end.count}")
    if ends and entered and ends[-1].torn:
        report.warnings.append(f"torn tail in {entered[len(ends) - 1].path} at offset "
                               f"{ends[-1].offset}: {ends[-1].torn} (open() cuts it)")


def _duplicates(reader: WalReader, report: VerifyReport) -> None:
    """The same first LSN in pending/ and archive/: the same records, or a problem."""
    fs, paths = reader.fs, reader.paths
    pending = {}
    for name in _names(fs, paths.pending):
        parsed = parse_segment_name(name)
        if parsed is not None:
            pending[parsed[0]] = os.path.join(paths.pending, name)
    for name in _names(fs, paths.archive):
        parsed = parse_segment_name(name)
        if parsed is None or parsed[0] not in pending:
            continue
        dup = pending[parsed[0]]
        try:
            seg = load_archived(fs, Seg(os.path.join(paths.archive, name), "archive",
                                        parsed[0], parsed[1]))
            fd = fs.open_read(dup)
            try:
                seal = read_seal(fs, fd, fs.fsize(fd))
            finally:
                fs.close(fd)
            same = seal is not None and same_records(fs, dup, seal.data_end, seg)
        except FileNotFoundError:
            continue  # archived (or pruned) while we looked: a move, not a duplicate
        except WalCorruptionError:
            continue  # the walk reports damage of the archived copy itself
        if same:
            report.warnings.append(f"duplicate {dup} (the same segment is archived)")
        else:
            report.add(dup, 0, parsed[0] - 1,
                       f"{dup} and {seg.path} hold the same LSNs with different content")


def _names(fs: FileSystem, directory: str) -> list[str]:
    try:
        return fs.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


# --------------------------------------------------------------------------- summaries


def analysis(reader: WalReader) -> Analysis:
    """The chain as ``recovery.Analysis`` (archive: headers and seals; live: records read)."""
    segs: list[Seg] = []
    ends: list[SegEnd] = []
    cur: Seg | None = None
    for loc, chunk in reader.chain.walk(seals_only=True, ends=ends):
        if chunk is None:
            parsed = parse_segment_name(os.path.basename(loc.path))
            cur = Seg(loc.path, loc.state, loc.header.first_lsn,
                      loc.header.compressed or (parsed is not None and parsed[1]))
            cur.header = loc.header
            cur.size = reader.fs.fsize(loc.fd)
            cur.last_lsn = loc.header.first_lsn - 1
            cur.last_ts = loc.header.created
            cur.checkpoint_lsn = loc.header.checkpoint_lsn
            cur.marks = []
            segs.append(cur)
            continue
        assert cur is not None
        data, recs = chunk.data, chunk.recs
        if cur.count == 0:
            cur.first_ts = recs[0][3]
        cur.count += len(recs)
        cur.last_lsn, cur.last_ts = recs[-1][1], recs[-1][3]
        for rel, lsn, kind, ts, ln in recs:
            if kind == _CHECKPOINT:
                cp = fmt.CHECKPOINT_PREFIX.unpack_from(data, rel + _H)[0]
                cur.checkpoint_lsn = max(cur.checkpoint_lsn, cp)
            elif kind == _MARK:
                cur.marks.append((bytes(data[rel + _H : rel + _H + ln]).decode(
                    "utf-8", "replace"), lsn, ts))
    for seg, end in zip(segs, ends, strict=False):
        if end.seal is not None:
            seg.seal = end.seal
            seg.last_lsn = end.seal.last_lsn
            seg.count = end.seal.record_count
            seg.first_ts, seg.last_ts = end.seal.first_ts, end.seal.last_ts
            seg.checkpoint_lsn = max(seg.checkpoint_lsn, end.seal.checkpoint_lsn)
            seg.data_end = end.seal.data_end
    # Live segments: recovery's own summary (index blocks, seal, data end), so that what
    # the CLI plans (e.g. a prune's byte budget) is exactly what open() will write. Read
    # by name: a segment that moved meanwhile keeps the summary the walk made.
    segs = [_recovery_summary(reader, s) if s.state != "archive" else s for s in segs]
    arch = [s for s in segs if s.state == "archive"]
    live = [s for s in segs if s.state != "archive"]
    if segs and ends and len(ends) == len(segs) and ends[-1].torn and live:
        an_cut: tuple[Seg, int] | None = (segs[-1], ends[-1].offset)
    else:
        an_cut = None
    an = Analysis(archive=arch, live=live, cut=an_cut,
                  cut_reason=f"torn: {ends[-1].torn}" if an_cut is not None else "")
    for s in [*arch, *live]:
        an.next_lsn = max(an.next_lsn, s.last_lsn + 1, s.first_lsn)
        an.last_ts = max(an.last_ts, s.last_ts)
        an.checkpoint_lsn = max(an.checkpoint_lsn, s.checkpoint_lsn)
    if arch:
        an.archive_last_lsn = arch[-1].last_lsn
    return an


def _recovery_summary(reader: WalReader, seg: Seg) -> Seg:
    """``seg`` as recovery summarises it (``recovery.scan_live``), or ``seg`` if it moved."""
    from .segscan import scan_live

    fresh = Seg(seg.path, seg.state, seg.name_lsn, seg.compressed)
    try:
        scan_live(reader.fs, fresh)
    except (OSError, WalCorruptionError):
        return seg
    if fresh.header is None or fresh.header.first_lsn != seg.first_lsn or \
            fresh.last_lsn < seg.last_lsn:
        return seg  # the name now holds another segment, or less than we read
    return fresh


def segment_infos(reader: WalReader) -> list[SegmentInfo]:
    """Every segment of the chain as ``SegmentInfo``, in LSN order."""
    an = analysis(reader)
    segs = sorted([*an.archive, *an.live], key=lambda s: s.first_lsn)
    problem = reader.chain.overlap([(s.path, s.first_lsn, s.last_lsn) for s in segs])
    if problem is not None:
        raise problem
    return [s.info() for s in segs]
