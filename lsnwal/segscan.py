"""Segments as found on disk: listing, archived headers and seals, full scans of live files.

Owns the per-segment reads that recovery, replay, verify and the archiver share:
``Seg`` (the working state of one segment), listing a directory of segments by
name, loading an archived segment's header and seal without reading its records,
scanning every record of a pending or active segment (summary, index blocks,
where and why the scan stopped), and byte comparisons of two copies of one
segment. Rules kept here: names are checked against headers; a header of a newer
format is refused, never taken for damage; nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import format as fmt
from . import scanner
from .errors import WalCorruptionError
from .fs import FileSystem
from .names import WalPaths, parse_segment_name
from .segment import ScanEnd, plain_chunks, read_header, read_seal

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


def list_dir(fs: FileSystem, directory: str, state: str) -> list[Seg]:
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
    return list_dir(fs, paths.archive, "archive")


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


def scan_live(fs: FileSystem, seg: Seg) -> None:
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
            seg.end = ScanEnd(scanner.DAMAGED, 0, f"bad segment header: {exc}",
                              truncated=seg.size < fmt.HEADER_SIZE)
            return
        h = seg.header
        if h.compressed:
            seg.header_error = "compressed segment outside the archive"
            seg.end = ScanEnd(scanner.DAMAGED, 0, seg.header_error)
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
        block_crc = 0  # CRC32C of the current block, from the very bytes whose records were checked
        records_end = fmt.HEADER_SIZE
        for chunk in plain_chunks(fs, fd, seg.size, h.first_lsn, end):
            base, data, recs = chunk.base, chunk.data, chunk.recs
            # Summaries per chunk, not per record: this loop is open()'s hot path.
            if count == 0:
                seg.first_ts = recs[0][3]
            off0 = base + recs[0][0]
            if off0 - block_off >= interval:
                seg.blocks.append(fmt.Block(block_lsn, block_ts, block_off, off0 - block_off,
                                            off0 - block_off, block_crc))
                block_off, block_lsn, block_ts = off0, recs[0][1], prev_ts
                block_crc = 0
            last = recs[-1]
            records_end = base + last[0] + hsize + last[4]
            block_crc = fmt.crc32c(memoryview(data)[recs[0][0] : last[0] + hsize + last[4]],
                                   block_crc)
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
        data_end = end.offset if end.verdict != scanner.END else seg.size
        if end.seal is not None:  # sealed, or sealed and followed by junk
            data_end = end.seal.data_end
        if data_end > block_off:  # (the CRC stays 0, "not recorded", if the records do not
            # end exactly at data_end: readers then check them one by one)
            ends_there = data_end == records_end
            seg.blocks.append(fmt.Block(block_lsn, block_ts, block_off, data_end - block_off,
                                        data_end - block_off, block_crc if ends_there else 0))
        seg.data_end = data_end
        seg.seal = end.seal
    finally:
        fs.close(fd)


def same_bytes(fs: FileSystem, a: str, b: str) -> bool:
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
