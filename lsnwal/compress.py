"""Seekable zstd segments: a sealed plain segment re-framed as independent zstd frames.

Owns the conversion plain -> compressed and the decompression of one block.
Layout (``docs/format.md``): the same 48-byte header with ``FLAG_ZSTD`` set,
then one zstd frame per block (about ``ZSTD_FRAME_BYTES`` of whole records),
then an uncompressed SEAL record whose block table gives, for every frame, its
first LSN and time, file offset, compressed and raw length, and the CRC32C of
the compressed bytes — so ``verify`` can check a compressed segment without
decompressing it, and a replay that starts mid-segment decompresses only the
frames it needs. Records inside a frame keep their own CRCs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import zstandard

from . import format as fmt
from . import scanner


def frame_groups(blocks: tuple[fmt.Block, ...], target: int) -> Iterator[list[fmt.Block]]:
    """Group consecutive index blocks into runs of about ``target`` raw bytes."""
    group: list[fmt.Block] = []
    size = 0
    for b in blocks:
        group.append(b)
        size += b.raw_len
        if size >= target:
            yield group
            group, size = [], 0
    if group:
        yield group


def compress_segment(
    header: fmt.SegmentHeader,
    seal: fmt.Seal,
    read: Callable[[int, int], bytes],
    level: int,
    frame_bytes: int = fmt.ZSTD_FRAME_BYTES,
) -> Iterator[bytes]:
    """Yield the bytes of the compressed form of a sealed plain segment, piece by piece.

    ``read(offset, length)`` reads from the plain segment. Every record is
    re-checked (CRC — one per index block when the seal records it —, LSN
    sequence) before it is compressed, so damage is never archived silently:
    ``ValueError`` is raised instead.
    """
    yield fmt.encode_segment_header(
        header.first_lsn, header.created, header.checkpoint_lsn, fmt.FLAG_ZSTD
    )
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=True)
    offset = fmt.HEADER_SIZE
    blocks: list[fmt.Block] = []
    expected = header.first_lsn
    for group in frame_groups(seal.blocks, frame_bytes):
        start = group[0].offset
        raw_len = sum(b.raw_len for b in group)
        raw = read(start, raw_len)
        if len(raw) != raw_len:
            raise ValueError(f"segment shorter than its index at offset {start}")
        scan = scanner.RecordScanner(raw, 0, expected, start,
                                 checked=fmt.blocks_intact(raw, group, start))
        for _ in scan:
            pass
        if scan.verdict != scanner.END:
            raise ValueError(f"damaged record at offset {start + scan.pos}: {scan.reason}")
        assert scan.expected_lsn is not None
        expected = scan.expected_lsn
        stored = cctx.compress(raw)
        blocks.append(
            fmt.Block(group[0].first_lsn, group[0].first_ts, offset, len(stored), raw_len,
                      fmt.crc32c(stored))
        )
        yield stored
        offset += len(stored)
    if expected != seal.last_lsn + 1:
        raise ValueError("segment index does not cover every record")
    new_seal = fmt.Seal(
        seal.last_lsn, seal.record_count, seal.first_ts, seal.last_ts, seal.checkpoint_lsn,
        offset, tuple(blocks), seal.marks,
    )
    yield fmt.encode_seal(new_seal)


def decompress_block(stored: bytes, block: fmt.Block) -> bytes:
    """Check a frame's CRC and decompress it; raise ``ValueError`` when damaged."""
    if fmt.crc32c(stored) != block.crc:
        raise ValueError("compressed frame checksum mismatch")
    try:
        # The frame header's content size decides the allocation: check it first, so
        # a frame claiming terabytes is refused instead of raising MemoryError.
        if zstandard.frame_content_size(stored) != block.raw_len:
            raise ValueError("zstd frame does not declare the block's raw length")
        raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=block.raw_len)
    except zstandard.ZstdError as exc:
        raise ValueError(f"zstd frame cannot be decompressed: {exc}") from None
    if len(raw) != block.raw_len:
        raise ValueError("decompressed frame has the wrong length")
    return raw
