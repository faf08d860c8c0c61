"""Reading the log back: ``replay`` (point-in-time), ``restore``, ``verify``, ``list_marks``.

Owns the read side. Everything here is read-only on the source directory and
goes through ``recovery.analyze`` (which segments exist and where the log ends)
and the one record decoder. Rules kept here:

* ``replay`` streams records in LSN order (1 MiB reads; a segment is never loaded
  whole) and stops exactly at its target; a target that cannot be met raises
  ``RecoveryTargetError`` before the first record instead of returning everything.
* Seeking to ``from_lsn`` uses segment names (checked against headers) and the
  per-segment index in the seal; earlier segments are not read.
* Damage found in the archive raises ``WalCorruptionError`` with file, offset and
  last good LSN (``stop_at_corruption`` ends the replay there instead).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from . import format as fmt
from .config import WalConfig
from .errors import LsnUnavailableError, RecoveryTargetError, WalCorruptionError
from .fs import FileSystem, OsFileSystem
from .identity import is_wal_dir
from .names import WalPaths, segment_name
from .recovery import Analysis, Seg, analyze, load_archived
from .restore import RestoreResult, write_restored
from .seekindex import seek_entries
from .segment import (
    Chunk,
    ScanEnd,
    compressed_chunks,
    plain_chunks,
    read_header,
    read_seal,
    seek_offset,
)

_RETRIES = 20  # a live WAL may rotate/archive between our listings: look again


def _time_target(value: float | int | _dt.datetime) -> float:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("until_time must be an aware datetime (or epoch seconds)")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("until_time must be epoch seconds or an aware datetime")
    return float(value)


def _analyze_live(fs: FileSystem, paths: WalPaths, cfg: WalConfig) -> Analysis:
    if not fs.isdir(paths.root):
        raise FileNotFoundError(f"no WAL directory at {paths.root}")
    last_exc: Exception | None = None
    for _ in range(_RETRIES):
        try:
            return analyze(fs, paths, cfg)
        except (FileNotFoundError, WalCorruptionError) as exc:
            last_exc = exc
    assert last_exc is not None
    raise last_exc


def _analyze_seek(
    fs: FileSystem, paths: WalPaths, cfg: WalConfig, from_lsn: int
) -> Analysis | None:
    """Analysis for a replay from ``from_lsn`` without listing the archive, or None.

    The archive's seek index names the segment holding ``from_lsn`` and the ones
    after it. Any doubt returns None, and the caller lists the directory: no
    index, ``from_lsn`` older than the index, a named file missing, the index
    ending before the archive does (the next segment's name exists), or an
    analysis that is not clean (it would have to cut or set aside anything).
    """
    entries = seek_entries(fs, paths.root, from_lsn)
    if not entries:
        return None
    segs = [
        Seg(os.path.join(paths.archive, segment_name(lsn, c)), "archive", lsn, c)
        for lsn, c in entries
    ]
    try:
        # The first segment must be what the index says (header checked against the
        # name); the stream follows the rest of the chain by LSN and looks a segment
        # up by name where the index has a hole (see _stream).
        load_archived(fs, segs[0])
        an = analyze(fs, paths, cfg, archive=segs)
    except (OSError, WalCorruptionError):
        return None
    if an.cut is not None or an.set_aside or an.duplicates:
        return None
    nxt = segs[-1].last_lsn + 1
    if not an.live and any(
        fs.exists(os.path.join(paths.archive, segment_name(nxt, c))) for c in (False, True)
    ):
        return None  # archived segments the index does not know yet
    return an


def _by_name(fs: FileSystem, paths: WalPaths | None, first_lsn: int) -> Seg | None:
    """The archived segment named for ``first_lsn``, if one exists."""
    if paths is None:
        return None
    for compressed in (False, True):
        path = os.path.join(paths.archive, segment_name(first_lsn, compressed))
        if fs.exists(path):
            return Seg(path, "archive", first_lsn, compressed)
    return None


def _segments(an: Analysis) -> list[Seg]:
    return [*an.archive, *an.live]


def _marks(fs: FileSystem, an: Analysis) -> list[tuple[str, int, float]]:
    out: list[tuple[str, int, float]] = []
    for s in an.archive:
        if s.seal is None:
            load_archived(fs, s)
        assert s.seal is not None
        out.extend(s.seal.marks)
    for s in an.live:
        out.extend(s.marks)
    return out


def list_marks(
    path: str | os.PathLike[str], *, config: WalConfig | None = None, fs: FileSystem | None = None
) -> list[tuple[str, int, float]]:
    """Every named restore point as ``(name, lsn, timestamp)``, in LSN order."""
    fs = fs or OsFileSystem()
    cfg = config or WalConfig()
    an = _analyze_live(fs, WalPaths.of(path, cfg), cfg)
    return sorted(_marks(fs, an), key=lambda m: m[1])


def _open_segment(
    fs: FileSystem, seg: Seg, expected: int, paths: WalPaths | None
) -> tuple[int, str, bool, fmt.SegmentHeader]:
    """Open ``seg`` (fd, path, is_live, header), following it if a live writer moved it.

    A replay of a WAL that is being written can find that a pending segment was
    archived, or the active one rotated, since it listed them: the segment that
    starts at ``expected`` is then looked up by name in pending/ and archive/.
    """
    candidates = [(seg.path, seg.state != "archive")]
    if paths is not None and seg.state != "archive":
        candidates += [
            (os.path.join(paths.pending, segment_name(expected)), True),
            (os.path.join(paths.archive, segment_name(expected)), False),
            (os.path.join(paths.archive, segment_name(expected, compressed=True)), False),
        ]
    mismatch: WalCorruptionError | None = None
    for path, live in candidates:
        try:
            fd = fs.open_read(path)
        except FileNotFoundError:
            continue
        try:
            header = read_header(fs, fd)
        except fmt.HeaderError as exc:
            fs.close(fd)
            raise WalCorruptionError(f"bad segment header: {exc}", path=path, offset=0,
                                     lsn=expected - 1) from None
        if header.first_lsn == expected:
            return fd, path, live, header
        fs.close(fd)
        mismatch = mismatch or WalCorruptionError(
            f"segment starts at LSN {header.first_lsn} where {expected} was expected "
            "(missing or extra segment)", path=path, offset=0, lsn=expected - 1)
    if mismatch is not None:
        raise mismatch
    # Listed a moment ago, gone from pending/ and archive/ now: retention pruned it
    # while we were reading (only the oldest segments are ever deleted).
    raise LsnUnavailableError(
        f"segment {seg.path} (first LSN {expected}) was pruned while being replayed; "
        "replay from a retained LSN (e.g. the checkpoint + 1)"
    )


_DATA = int(fmt.RecordKind.DATA)


def _segment_chunks(
    fs: FileSystem,
    seg: Seg,
    expected: int,
    from_lsn: int,
    stop_quietly: bool,
    seen: list[int] | None = None,
    paths: WalPaths | None = None,
) -> Iterator[Chunk]:
    """Decoded chunks of one segment (it must start at ``expected``), from ``from_lsn`` on.

    Chunks wholly before ``from_lsn`` are skipped; ``seen[0]`` is set to the last
    LSN decoded. Damage raises ``WalCorruptionError`` (file, offset, last good LSN)
    unless ``stop_quietly``; damage past a live segment's recovered end is the torn
    tail recovery cuts, not an error.
    """
    fd, path, live, header = _open_segment(fs, seg, expected, paths)
    try:
        size = fs.fsize(fd)
        end = ScanEnd()
        if header.compressed:
            seal = read_seal(fs, fd, size)
            if seal is None:
                raise WalCorruptionError("compressed segment without a valid seal",
                                         path=path, offset=size, lsn=expected - 1)
            chunks = compressed_chunks(fs, fd, seal, expected, end, from_lsn)
        else:
            start, start_lsn = fmt.HEADER_SIZE, expected
            if from_lsn > expected and not live:
                seal = read_seal(fs, fd, size)
                if seal is not None:
                    off, lsn = seek_offset(seal, from_lsn)
                    if lsn > 0:
                        start, start_lsn = off, lsn
            limit = seg.data_end if live and path == seg.path else size
            chunks = plain_chunks(fs, fd, limit, start_lsn, end, start)
        for chunk in chunks:
            last = chunk[2][-1][1]
            if seen is not None:
                seen[0] = last
            if last >= from_lsn:
                yield chunk
        if end.verdict == fmt.DAMAGED and not (live and end.offset >= seg.data_end):
            if stop_quietly:
                return
            last_good = seen[0] if seen is not None else expected - 1
            raise WalCorruptionError(
                end.reason, path=path, offset=end.offset,
                lsn=end.last_lsn if end.last_lsn is not None else last_good)
    finally:
        fs.close(fd)


def _iter_segment(
    fs: FileSystem,
    seg: Seg,
    expected: int,
    from_lsn: int,
    stop_quietly: bool,
    seen: list[int] | None = None,
    paths: WalPaths | None = None,
) -> Iterator[fmt.Record]:
    """Records of one segment with LSN >= ``from_lsn`` (see ``_segment_chunks``)."""
    h = fmt.RECORD_HEADER_SIZE
    record = fmt.Record
    data_kind = fmt.RecordKind.DATA
    make = fmt.make_record
    for _base, data, recs in _segment_chunks(fs, seg, expected, from_lsn, stop_quietly, seen,
                                             paths):
        # One list per chunk; DATA records are built inline (replay's hot path).
        batch = [
            record(lsn, data_kind, ts, data[rel + h : rel + h + ln])
            if kind == _DATA
            else make(lsn, kind, ts, bytes(data[rel + h : rel + h + ln]))
            for rel, lsn, kind, ts, ln in recs
            if lsn >= from_lsn
        ]
        yield from batch


def replay(
    path: str | os.PathLike[str],
    *,
    config: WalConfig | None = None,
    from_lsn: int | None = None,
    until_lsn: int | None = None,
    until_time: float | _dt.datetime | None = None,
    until_mark: str | None = None,
    inclusive: bool = True,
    kinds: Iterable[fmt.RecordKind] | None = None,
    fs: FileSystem | None = None,
) -> Iterator[fmt.Record]:
    """Stream the WAL's records in LSN order, stopping exactly at the target.

    Raises (before yielding) ``LsnUnavailableError`` for a pruned or unwritten
    ``from_lsn`` and ``RecoveryTargetError`` for a target that cannot be met.
    """
    targets = [t is not None for t in (until_lsn, until_time, until_mark)]
    if sum(targets) > 1:
        raise ValueError("give at most one of until_lsn, until_time, until_mark")
    t_target = _time_target(until_time) if until_time is not None else None
    for name, v in (("from_lsn", from_lsn), ("until_lsn", until_lsn)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int")
    kind_set = None if kinds is None else frozenset(fmt.RecordKind(k) for k in kinds)
    fs = fs or OsFileSystem()
    cfg = config or WalConfig()
    paths = WalPaths.of(path, cfg)
    an = None
    if from_lsn is not None and until_mark is None:
        an = _analyze_seek(fs, paths, cfg, from_lsn)
    if an is None:
        an = _analyze_live(fs, paths, cfg)
    return _replay(fs, an, cfg, from_lsn, until_lsn, t_target, until_mark, inclusive, kind_set,
                   paths)


def _replay(
    fs: FileSystem,
    an: Analysis,
    cfg: WalConfig,
    from_lsn: int | None,
    until_lsn: int | None,
    t_target: float | None,
    until_mark: str | None,
    inclusive: bool,
    kinds: frozenset[fmt.RecordKind] | None,
    paths: WalPaths | None = None,
) -> Iterator[fmt.Record]:
    segs = [s for s in _segments(an) if s.state == "archive" or s.count or s.end.seal]
    last_lsn = an.next_lsn - 1
    oldest = segs[0].first_lsn if segs else an.next_lsn
    start = oldest if from_lsn is None else from_lsn
    if start < oldest:
        raise LsnUnavailableError(
            f"LSN {start} is no longer retained (the oldest retained record is {oldest})")
    if start > last_lsn + 1:
        raise LsnUnavailableError(f"LSN {start} was never written (last LSN is {last_lsn})")
    stop_lsn = last_lsn
    if until_mark is not None:
        found = [lsn for name, lsn, _ts in _marks(fs, an) if name == until_mark]
        if not found:
            raise RecoveryTargetError(f"no mark named {until_mark!r} in this WAL")
        until_lsn = min(found)
    if until_lsn is not None:
        if until_lsn > last_lsn:
            raise RecoveryTargetError(
                f"target LSN {until_lsn} is past the end of the log (last LSN {last_lsn})")
        if until_lsn < oldest:
            raise RecoveryTargetError(
                f"target LSN {until_lsn} is before the oldest retained record {oldest}")
        stop_lsn = until_lsn if inclusive else until_lsn - 1
    return _stream(fs, segs, start, stop_lsn, t_target, inclusive, kinds,
                   cfg.recovery_mode == "stop_at_corruption", paths)


def _stream(
    fs: FileSystem,
    segs: list[Seg],
    start: int,
    stop_lsn: int,
    t_target: float | None,
    inclusive: bool,
    kinds: frozenset[fmt.RecordKind] | None,
    stop_quietly: bool,
    paths: WalPaths | None = None,
) -> Iterator[fmt.Record]:
    # Choose the first segment by name/header LSN (names are checked on open).
    i = 0
    for j in range(len(segs) - 1, -1, -1):  # from the newest: seeks near the end are O(1)
        if segs[j].first_lsn <= start:
            i = j
            break
    first_seen = False
    expected = segs[i].first_lsn if segs else start
    j = i
    while j < len(segs):
        if expected > stop_lsn:
            break
        # Follow the chain by LSN: the next listed segment if it starts at `expected`;
        # else the segment of that name (a seek index may have holes or stale entries).
        while j < len(segs) and segs[j].first_lsn < expected and segs[j].state == "archive":
            j += 1
        if j < len(segs) and segs[j].first_lsn == expected:
            seg = segs[j]
            j += 1
        else:
            found = _by_name(fs, paths, expected)
            if found is None:
                if j >= len(segs):
                    break
                seg = segs[j]  # _iter_segment reports the gap with both LSNs
                j += 1
            else:
                seg = found
        seen = [expected - 1]
        for rec in _iter_segment(fs, seg, expected, start, stop_quietly, seen, paths):
            if rec.lsn > stop_lsn:
                return
            if t_target is not None:
                if not first_seen and rec.timestamp > t_target:
                    raise RecoveryTargetError(
                        f"target time {t_target} is before the first record "
                        f"(LSN {rec.lsn} at {rec.timestamp})")
                if rec.timestamp > t_target or (not inclusive and rec.timestamp >= t_target):
                    return
            first_seen = True
            if kinds is None or rec.kind in kinds:
                yield rec
            if rec.lsn >= stop_lsn:  # target reached: read no further (damage may follow)
                return
        expected = seen[0] + 1
    if t_target is not None and not first_seen:  # no record at all to stop after
        raise RecoveryTargetError(f"target time {t_target} cannot be met: no record to replay")


def _seg_last(seg: Seg) -> int:
    return seg.last_lsn if seg.state != "archive" or seg.seal else seg.first_lsn - 1


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

    Never raises for damage it finds: every problem goes into the report. A torn
    tail outside the archive (what a crash leaves; open() cuts it) is a warning.
    """
    fs = fs or OsFileSystem()
    cfg = (config or WalConfig()).replace(recovery_mode="stop_at_corruption")
    paths = WalPaths.of(path, cfg)
    report = VerifyReport()
    if not fs.isdir(paths.root):
        report.add(paths.root, None, None, "no WAL directory here")
        return report
    if not is_wal_dir(paths.root, fs):
        report.add(paths.root, None, None, "not an lsnwal directory (no LSNWAL identity file, "
                   "active.wal, pending/ or archive/)")
        return report
    try:
        an = _analyze_live(fs, paths, cfg)
    except WalCorruptionError as exc:
        report.add(exc.path or paths.root, exc.offset, exc.lsn, exc.reason)
        return report
    report.warnings.extend(an.report())
    if an.cut is not None or an.set_aside or an.missing_durable is not None:
        strict = (config or WalConfig()).replace(recovery_mode="tolerate_tail")
        try:
            analyze(fs, paths, strict)
        except WalCorruptionError as exc:
            report.add(exc.path or paths.root, exc.offset, exc.lsn, exc.reason)
    segs = [s for s in _segments(an) if s.state == "archive" or s.count or s.end.seal]
    report.segments = len(segs)
    expected: int | None = None
    prev: Seg | None = None
    for seg in segs:
        if seg.state == "archive":
            try:
                load_archived(fs, seg)
            except WalCorruptionError as exc:
                report.add(seg.path, exc.offset, exc.lsn, exc.reason)
                expected = None
                continue
        if expected is not None and seg.first_lsn != expected:
            what = "gap" if seg.first_lsn > expected else "overlap"
            report.add(seg.path, 0, expected - 1,
                       f"LSN {what}: {prev.path if prev else '?'} ends at {expected - 1}, "
                       f"this segment starts at {seg.first_lsn}")
        try:
            n = 0
            for _base, _data, recs in _segment_chunks(fs, seg, seg.first_lsn, seg.first_lsn,
                                                      False):
                n += len(recs)  # every CRC was checked by the scanner; no Record needed
                if report.first_lsn is None:
                    report.first_lsn = recs[0][1]
                report.last_lsn = recs[-1][1]
            report.records += n
            if seg.state == "archive" and seg.seal is not None and n != seg.seal.record_count:
                report.add(seg.path, None, None,
                           f"seal counts {seg.seal.record_count} records, found {n}")
        except WalCorruptionError as exc:
            report.add(seg.path, exc.offset, exc.lsn, exc.reason)
        expected = _seg_last(seg) + 1
        prev = seg
    return report


def restore(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    config: WalConfig | None = None,
    until_lsn: int | None = None,
    until_time: float | _dt.datetime | None = None,
    until_mark: str | None = None,
    inclusive: bool = True,
    fs: FileSystem | None = None,
) -> RestoreResult:
    """Build a new WAL directory at ``target`` holding exactly the records up to the target.

    The source is only read. ``target`` must not exist or be empty. Opening the
    restored WAL continues at the target LSN + 1.
    """
    fs = fs or OsFileSystem()
    cfg = config or WalConfig()
    tgt = os.path.abspath(os.fspath(target))
    if fs.exists(tgt) and (not fs.isdir(tgt) or fs.listdir(tgt)):
        raise FileExistsError(f"restore target {tgt} exists and is not an empty directory")
    records = replay(source, config=cfg, until_lsn=until_lsn, until_time=until_time,
                     until_mark=until_mark, inclusive=inclusive, fs=fs)
    # A target that cannot be met may raise only at the first record: fetch it before
    # anything is created, so a failed restore leaves no half-made target behind.
    first = next(records, None)
    return write_restored(fs, tgt, itertools.chain(() if first is None else (first,), records))
