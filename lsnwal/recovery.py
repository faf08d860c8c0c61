"""Recovery: collect segments, order them by header, check continuity, find the log's end.

Owns the read-only analysis of a WAL directory (``analyze``) that ``open()``,
``replay``, ``verify`` and ``collect_all_segments`` share, and the writes that
``open()`` then applies (``apply_cuts``). Rules kept here:

* Segments are ordered by the first LSN in their **header**; names are checked
  against headers. A gap or overlap names both neighbouring files. The same
  segment found in the archive and in ``pending/`` (a crash between copy and
  delete) is recognised and counted once.
* Every record of ``pending/`` and the active segment is read (they decide where
  the log ends); of the archive only the newest segment's header and seal
  (archived segments were checked when sealed, so open does not slow down as the
  archive grows — ``verify``/``replay`` read the rest).
* Damage outside the archive is classified, never guessed:
  - ``torn``: nothing valid follows it (an incomplete record, a zero-filled or
    garbage tail) — what a crash leaves after the last fsync. In
    ``tolerate_tail`` mode the log is cut there, the cut bytes and every later
    non-archived segment are kept as ``*.broken`` files, and the cut is reported.
    This loses nothing acknowledged: acknowledgement is contiguous and covers
    only fsynced data, which a crash does not tear.
  - ``corrupt``: valid records follow the damage (a flipped byte mid-segment) —
    ``WalCorruptionError`` with file, offset and last good LSN, unless the mode
    is ``stop_at_corruption``. ``strict`` refuses any damage, torn tails too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from . import format as fmt
from .config import WalConfig
from .errors import WalCorruptionError, WalError
from .fs import FileSystem, SyncBackend
from .layout import unlink_loses
from .names import ACTIVE_NAME, BROKEN_SUFFIX, WalPaths, parse_segment_name
from .segment import ScanEnd, plain_chunks, read_header, read_seal
from .watermark import WATERMARK_NAME, Watermark, read_watermark

log = logging.getLogger("lsnwal")

_DATA = int(fmt.RecordKind.DATA)
_CHECKPOINT = int(fmt.RecordKind.CHECKPOINT)
_MARK = int(fmt.RecordKind.MARK)


@dataclass(frozen=True)
class SegmentInfo:
    """One segment as found on disk."""

    path: str
    state: str  # "archive", "pending" or "active"
    first_lsn: int
    last_lsn: int  # first_lsn - 1 when the segment holds no record
    size_bytes: int
    compressed: bool


_NOT_SCANNED = ScanEnd()


class Seg:
    """Working state of one segment during analysis.

    A plain class whose defaults live on the class, so that listing an archive
    of thousands of segments costs one small object each (replay's seek path).
    Lists are replaced, never mutated, until a segment is scanned.
    """

    compressed: bool = False
    size: int = 0
    header: fmt.SegmentHeader | None = None
    header_error: str = ""
    seal: fmt.Seal | None = None
    end: ScanEnd = _NOT_SCANNED
    # summary of the records kept (filled for non-archived segments)
    last_lsn: int = 0
    count: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    checkpoint_lsn: int = 0
    marks: list[tuple[str, int, float]] = []  # replaced, never mutated, before use
    blocks: list[fmt.Block] = []  # replaced, never mutated, before use
    data_end: int = fmt.HEADER_SIZE

    def __init__(
        self, path: str, state: str, name_lsn: int | None, compressed: bool = False
    ) -> None:
        self.path = path
        self.state = state
        self.name_lsn = name_lsn
        if compressed:
            self.compressed = True

    def __repr__(self) -> str:
        return f"Seg({self.path!r}, {self.state}, first_lsn={self.first_lsn})"

    @property
    def first_lsn(self) -> int:
        """First LSN from the header (or the name when the header is unreadable)."""
        if self.header is not None:
            return self.header.first_lsn
        return self.name_lsn or 0

    def info(self) -> SegmentInfo:
        """The public description."""
        return SegmentInfo(
            self.path, self.state, self.first_lsn, self.last_lsn, self.size, self.compressed
        )

    def rebuilt_seal(self) -> fmt.Seal:
        """A seal describing the records kept (for segments whose seal was cut off)."""
        blocks = list(self.blocks)
        return fmt.Seal(
            self.last_lsn, self.count, self.first_ts, self.last_ts, self.checkpoint_lsn,
            self.data_end, tuple(blocks), tuple(self.marks),
        )


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


def _list(fs: FileSystem, directory: str, state: str) -> list[Seg]:
    if not fs.isdir(directory):
        return []
    names = fs.listdir(directory)
    names.sort()  # 20-digit zero-padded names: string order is LSN order
    prefix = directory.rstrip("/") + "/"
    out = []
    for name in names:
        parsed = parse_segment_name(name)
        if parsed is not None:
            out.append(Seg(prefix + name, state, parsed[0], parsed[1]))
    return out


def list_archive(fs: FileSystem, paths: WalPaths) -> list[Seg]:
    """Archived segments by name (no file opened)."""
    return _list(fs, paths.archive, "archive")


def load_archived(fs: FileSystem, seg: Seg) -> Seg:
    """Read an archived segment's header and seal (its records are not read)."""
    fd = fs.open_read(seg.path)
    try:
        seg.size = fs.fsize(fd)
        try:
            seg.header = read_header(fs, fd)
        except fmt.HeaderError as exc:
            raise WalCorruptionError(
                f"bad segment header: {exc}", path=seg.path, offset=0
            ) from None
        if seg.name_lsn is not None and seg.header.first_lsn != seg.name_lsn:
            raise WalCorruptionError(
                f"file name says first LSN {seg.name_lsn} but the header says "
                f"{seg.header.first_lsn}",
                path=seg.path,
                offset=0,
            )
        seg.compressed = seg.header.compressed
        seg.seal = read_seal(fs, fd, seg.size)
        if seg.seal is None:
            raise WalCorruptionError(
                "archived segment has no valid seal (footer)", path=seg.path, offset=seg.size
            )
        seg.last_lsn = seg.seal.last_lsn
        seg.last_ts = seg.seal.last_ts
        seg.checkpoint_lsn = seg.seal.checkpoint_lsn
        seg.data_end = seg.seal.data_end
    finally:
        fs.close(fd)
    return seg


def same_records(fs: FileSystem, plain_path: str, data_end: int, archived: Seg) -> bool:
    """True if the plain segment's records (up to ``data_end``) are byte for byte ``archived``'s.

    ``archived`` must be loaded. A compressed copy is compared frame by frame after
    decompression. Used only for a segment found twice (rare: a crash mid-archive).
    """
    from .compress import decompress_block

    seal = archived.seal
    if seal is None or sum(b.raw_len for b in seal.blocks) != data_end - fmt.HEADER_SIZE:
        return False
    if not archived.compressed and seal.data_end != data_end:
        return False
    fd, afd = fs.open_read(plain_path), fs.open_read(archived.path)
    try:
        pos = fmt.HEADER_SIZE
        for b in seal.blocks:  # blocks cover the record bytes [HEADER_SIZE, data_end) in order
            try:
                theirs = (decompress_block(fs.pread(afd, b.stored_len, b.offset), b)
                          if archived.compressed else fs.pread(afd, b.raw_len, pos))
            except ValueError:
                return False
            if fs.pread(fd, b.raw_len, pos) != theirs:
                return False
            pos += b.raw_len
        return True
    finally:
        fs.close(fd)
        fs.close(afd)


def _scan_live(fs: FileSystem, seg: Seg) -> None:
    """Read every record of a pending/active segment; fill its summary and ``end``."""
    fd = fs.open_read(seg.path)
    try:
        seg.size = fs.fsize(fd)
        try:
            seg.header = read_header(fs, fd)
        except fmt.UnsupportedFormatError as exc:  # a newer format, not a torn tail: refuse
            raise WalCorruptionError(
                f"bad segment header: {exc}", path=seg.path, offset=0) from None
        except fmt.HeaderError as exc:
            seg.header_error = str(exc)
            seg.end = ScanEnd(fmt.DAMAGED, 0, f"bad segment header: {exc}",
                              truncated=seg.size < fmt.HEADER_SIZE)
            return
        h = seg.header
        if h.compressed:
            seg.header_error = "compressed segment outside the archive"
            seg.end = ScanEnd(fmt.DAMAGED, 0, seg.header_error)
            return
        seg.marks, seg.blocks = [], []
        seg.last_lsn = h.first_lsn - 1
        seg.checkpoint_lsn = h.checkpoint_lsn
        seg.last_ts = h.created
        end = ScanEnd()
        block_off = fmt.HEADER_SIZE
        block_lsn = h.first_lsn
        block_ts = h.created
        prev_ts = h.created
        interval = fmt.INDEX_INTERVAL_BYTES
        count = 0
        hsize = fmt.RECORD_HEADER_SIZE
        for base, data, recs in plain_chunks(fs, fd, seg.size, h.first_lsn, end):
            # Summaries per ~1 MiB chunk, not per record: this loop is open()'s hot path.
            if count == 0:
                seg.first_ts = recs[0][3]
            off0 = base + recs[0][0]
            if off0 - block_off >= interval:
                seg.blocks.append(fmt.Block(block_lsn, block_ts, block_off, off0 - block_off,
                                            off0 - block_off))
                block_off, block_lsn, block_ts = off0, recs[0][1], prev_ts
            count += len(recs)
            prev_ts = recs[-1][3]
            for _rel, lsn, kind, ts, ln in [r for r in recs if r[2] != _DATA]:
                p = _rel + hsize
                if kind == _CHECKPOINT:
                    cp = fmt.CHECKPOINT_PREFIX.unpack_from(data, p)[0]
                    seg.checkpoint_lsn = max(seg.checkpoint_lsn, cp)
                elif kind == _MARK:
                    seg.marks.append((bytes(data[p : p + ln]).decode("utf-8", "replace"), lsn,
                                      ts))
        seg.end = end
        seg.count = count
        if count:
            seg.last_lsn = h.first_lsn + count - 1
            seg.last_ts = prev_ts
        data_end = end.offset if end.verdict != fmt.END else seg.size
        if end.seal is not None:  # sealed, or sealed and followed by junk
            data_end = end.seal.data_end
        if data_end > block_off:
            seg.blocks.append(fmt.Block(block_lsn, block_ts, block_off, data_end - block_off,
                                        data_end - block_off))
        seg.data_end = data_end
        seg.seal = end.seal
    finally:
        fs.close(fd)


def _continues(fs: FileSystem, seg: Seg, last_good: int) -> bool:
    """True when a valid record with an LSN above ``last_good`` follows the damage in ``seg``."""
    offset = seg.end.offset
    fd = fs.open_read(seg.path)
    try:
        tail = fs.pread(fd, seg.size - offset, offset) if seg.size > offset else b""
    finally:
        fs.close(fd)
    if not tail or fmt.is_zero(tail, 0):
        return False
    return fmt.find_continuation(tail, 0, last_good) is not None


def analyze(
    fs: FileSystem,
    paths: WalPaths,
    config: WalConfig,
    *,
    full_archive: bool = False,
    archive: list[Seg] | None = None,
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
    if full_archive:
        prev: Seg | None = None
        for s in archive:
            if prev is not None and s.first_lsn != prev.last_lsn + 1:
                _continuity_error(prev, s)
            prev = s

    pending = _list(fs, paths.pending, "pending")
    live: list[Seg] = []
    for s in pending:
        _scan_live(fs, s)
        live.append(s)
    live.sort(key=lambda s: s.first_lsn)
    if fs.exists(paths.active):
        act = Seg(paths.active, "active", None)
        _scan_live(fs, act)
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
            and _same_bytes(fs, s.path, prev_seg.path)
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
                if dup.last_lsn == s.last_lsn and s.end.verdict in (fmt.SEALED, fmt.END):
                    if not same_records(fs, s.path, s.data_end, dup):
                        raise WalCorruptionError(
                            f"{s.path} and {dup.path} hold the same LSNs with different "
                            "content", path=s.path, offset=0, lsn=s.first_lsn - 1)
                    an.duplicates.append(s)
                    continue
        if expected is not None and s.header is not None and s.first_lsn != expected:
            assert prev_seg is not None
            # A gap or an overlap. Past the durable watermark it is what a power loss
            # leaves (the earlier file lost its unsynced tail and seal while this one
            # kept its header, or this file holds old bytes): a torn tail. Without a
            # watermark this header is valid data after the break: corruption.
            torn = _torn(prev_seg.last_lsn, durable, later_data=True)
            if mode == "strict" or (mode == "tolerate_tail" and not torn):
                _continuity_error(prev_seg, s, durable)
            an.set_aside.extend(live[i:])
            an.cut_reason = f"{'torn' if torn else 'corrupt'}: {s.path} does not continue " \
                f"the log after LSN {prev_seg.last_lsn}"
            break
        if s.end.verdict == fmt.DAMAGED and s.end.seal is not None:
            # A whole sealed segment followed by junk: trim the junk, keep the seal (a
            # second seal would make the segment unreadable).
            if mode == "strict":
                raise WalCorruptionError(
                    f"{s.end.reason} (in a {s.state} segment, recovery_mode='strict')",
                    path=s.path, offset=s.end.offset, lsn=s.last_lsn)
            an.trims.append((s, s.end.offset))
            s.end = ScanEnd(fmt.SEALED, s.end.seal.data_end, seal=s.end.seal,
                            last_lsn=s.end.last_lsn)
        elif s.end.verdict == fmt.DAMAGED:
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


def _same_bytes(fs: FileSystem, a: str, b: str) -> bool:
    """True when two files hold exactly the same bytes."""
    fa, fb = fs.open_read(a), fs.open_read(b)
    try:
        size = fs.fsize(fa)
        if size != fs.fsize(fb):
            return False
        off = 0
        while off < size:
            n = min(1 << 20, size - off)
            if fs.pread(fa, n, off) != fs.pread(fb, n, off):
                return False
            off += n
        return True
    finally:
        fs.close(fa)
        fs.close(fb)


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


def collect_all_segments(
    path: str | os.PathLike[str], config: WalConfig | None = None, *, fs: FileSystem | None = None
) -> list[SegmentInfo]:
    """Every segment of the WAL (archive, pending, active) ordered by header first LSN.

    Reads every archived segment's header and seal and every record of the
    pending and active segments; raises ``WalCorruptionError`` on a gap or an
    overlap (naming both files) or on damage the recovery mode does not allow.
    Changes nothing on disk.
    """
    from .fs import OsFileSystem

    fs = fs or OsFileSystem()
    cfg = config or WalConfig()
    paths = WalPaths.of(path, cfg)
    if not fs.isdir(paths.root):
        raise FileNotFoundError(f"no WAL directory at {paths.root}")
    an = analyze(fs, paths, cfg, full_archive=True)
    return [s.info() for s in an.archive] + [s.info() for s in an.live]


__all__ = ["ACTIVE_NAME", "Analysis", "SegmentInfo", "analyze", "collect_all_segments"]
