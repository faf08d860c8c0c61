"""The zstd-compressed archive (issue 4, item 2).

Archived segments become ``.zwal`` files of independent zstd frames with a
block table in the seal: replay returns the same records as from a plain
archive, a replay that starts mid-segment decompresses only the frames it
needs, and every frame has a CRC over its compressed bytes that ``verify``
checks without decompressing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
import zstandard

import lsnwal
import lsnwal.compress as compress_mod
import lsnwal.segment as segment_mod
from lsnwal import format as fmt
from lsnwal.fs import OsFileSystem
from lsnwal.segment import read_seal
from lsnwal.testing import crash_at

SMALL = 4096
ZSTD = "zstd"


def json_corpus(n: int, seed: int = 4) -> list[bytes]:
    """``n`` JSON documents shaped like application change records (seeded)."""
    rng = random.Random(seed)
    users = [f"user-{rng.randrange(10**6):06d}" for _ in range(200)]
    out = []
    for i in range(n):
        doc = {
            "op": rng.choice(["insert", "update", "delete"]),
            "table": rng.choice(["orders", "customers", "invoices", "shipments"]),
            "id": 100000 + i,
            "user": rng.choice(users),
            "ts": 1700000000 + i * 0.25,
            "fields": {
                "status": rng.choice(["new", "paid", "shipped", "cancelled"]),
                "amount": round(rng.uniform(1, 5000), 2),
                "currency": rng.choice(["EUR", "USD", "GBP"]),
                "note": " ".join(rng.choice(["fast", "gift", "fragile", "priority", "bulk"])
                                 for _ in range(rng.randrange(0, 6))),
            },
        }
        out.append(json.dumps(doc, sort_keys=True).encode())
    return out


def write_all(path: Path, cfg: lsnwal.WalConfig, payloads: list[bytes]) -> dict[int, bytes]:
    """Write ``payloads`` and leave every segment archived; return them by LSN."""
    with lsnwal.open(path, cfg) as wal:
        out = {}
        for p in payloads:
            out[wal.append(p)] = p
        assert wal.sync_async().wait(30)
        assert wal.wait_archived(30)
    return out


def archive_files(path: Path) -> list[Path]:
    """Files in ``archive/``, by name."""
    return sorted((path / "archive").iterdir())


def seal_of(path: Path) -> fmt.Seal:
    """The seal (footer with the block table) of one segment file."""
    fs = OsFileSystem()
    fd = fs.open_read(str(path))
    try:
        seal = read_seal(fs, fd, fs.fsize(fd))
    finally:
        fs.close(fd)
    assert seal is not None
    return seal


def test_zstd_archive_holds_zwal_files_with_identical_records(tmp_path: Path) -> None:
    """A compressed archive holds only .zwal files and replays the same records as a plain one."""
    corpus = json_corpus(1500)
    plain = write_all(tmp_path / "plain", lsnwal.WalConfig(segment_max_bytes=64 << 10), corpus)
    zcfg = lsnwal.WalConfig(segment_max_bytes=64 << 10, compression=ZSTD)
    packed = write_all(tmp_path / "z", zcfg, corpus)
    assert plain == packed
    files = archive_files(tmp_path / "z")
    assert len(files) >= 5
    assert all(f.name.endswith(".zwal") for f in files)
    assert os.listdir(tmp_path / "z" / "pending") == []
    infos = [s for s in lsnwal.collect_all_segments(tmp_path / "z") if s.state == "archive"]
    assert all(s.compressed for s in infos)
    got = list(lsnwal.replay(tmp_path / "z"))
    assert [(r.lsn, r.kind, r.payload) for r in got] == [
        (r.lsn, r.kind, r.payload) for r in lsnwal.replay(tmp_path / "plain")
    ]
    assert {r.lsn: r.payload for r in got} == packed
    report = lsnwal.verify(tmp_path / "z")
    assert report.ok, report.problems
    assert report.records == len(corpus)


def test_compression_ratio_on_json(tmp_path: Path) -> None:
    """zstd makes a JSON-like archive smaller than the plain one (ratio > 1)."""
    corpus = json_corpus(3000)
    cfg = lsnwal.WalConfig(segment_max_bytes=256 << 10)
    write_all(tmp_path / "plain", cfg, corpus)
    write_all(tmp_path / "z", cfg.replace(compression=ZSTD), corpus)
    plain_bytes = sum(f.stat().st_size for f in archive_files(tmp_path / "plain"))
    z_bytes = sum(f.stat().st_size for f in archive_files(tmp_path / "z"))
    ratio = plain_bytes / z_bytes
    print(f"compression ratio on {len(corpus)} JSON records: {ratio:.2f}")
    assert ratio > 1.0


def test_stats_report_compressed_sizes(tmp_path: Path) -> None:
    """archive_bytes in stats() counts the compressed files as stored."""
    cfg = lsnwal.WalConfig(segment_max_bytes=64 << 10, compression=ZSTD)
    with lsnwal.open(tmp_path / "z", cfg) as wal:
        for p in json_corpus(800):
            wal.append(p)
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
        st = wal.stats()
        files = archive_files(tmp_path / "z")
        assert st.archive_segments == len(files)
        assert st.archive_bytes == sum(f.stat().st_size for f in files)


def test_compression_level_is_used(tmp_path: Path) -> None:
    """Every configured level produces a valid archive with the same records."""
    corpus = json_corpus(400)
    results = []
    for level in (1, 19):
        cfg = lsnwal.WalConfig(segment_max_bytes=64 << 10, compression=ZSTD,
                               compression_level=level)
        write_all(tmp_path / f"l{level}", cfg, corpus)
        results.append([r.payload for r in lsnwal.replay(tmp_path / f"l{level}")])
    assert results[0] == results[1] == corpus


class _Counter:
    """Wraps ``decompress_block`` and remembers the offset of every frame it decompressed."""

    def __init__(self) -> None:
        self.offsets: list[int] = []

    def __call__(self, stored: bytes, block: fmt.Block) -> bytes:
        self.offsets.append(block.offset)
        return compress_mod.decompress_block(stored, block)


@pytest.fixture(scope="module")
def big_zwal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, bytes], Path]:
    """One large compressed segment of several frames (about 6 MiB of JSON-like records)."""
    path = tmp_path_factory.mktemp("big") / "wal"
    corpus = json_corpus(30000, seed=9)
    cfg = lsnwal.WalConfig(segment_max_bytes=16 << 20, compression=ZSTD)
    with lsnwal.open(path, cfg) as wal:
        lsns = wal.append_batch(corpus)
        wal.rotate()
        assert wal.sync_async().wait(30)
        assert wal.wait_archived(30)
    (zfile,) = archive_files(path)
    return path, dict(zip(lsns, corpus, strict=True)), zfile


def test_replay_from_mid_segment_decompresses_only_needed_frames(
    big_zwal: tuple[Path, dict[int, bytes], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """replay(from_lsn=X) in a large compressed segment decompresses only the frames from X on."""
    path, expected, zfile = big_zwal
    blocks = seal_of(zfile).blocks
    assert len(blocks) >= 4, "the segment should hold several frames"
    counter = _Counter()
    monkeypatch.setattr(segment_mod, "decompress_block", counter)
    got = [(r.lsn, r.payload) for r in lsnwal.replay(path)]
    assert got == list(expected.items())
    assert len(counter.offsets) == len(blocks)

    last = blocks[-1]
    x = last.first_lsn + 7
    counter.offsets.clear()
    got = [(r.lsn, r.payload) for r in lsnwal.replay(path, from_lsn=x)]
    assert got == [(k, v) for k, v in expected.items() if k >= x]
    assert counter.offsets == [last.offset]

    mid = blocks[len(blocks) // 2]
    counter.offsets.clear()
    x = mid.first_lsn + 3
    got = [(r.lsn, r.payload) for r in lsnwal.replay(path, from_lsn=x, until_lsn=x + 5)]
    assert got == [(k, expected[k]) for k in range(x, x + 6)]
    assert counter.offsets == [mid.offset]


def test_pitr_on_compressed_archive(big_zwal: tuple[Path, dict[int, bytes], Path]) -> None:
    """until_lsn and until_time work on a compressed archive exactly as on a plain one."""
    path, expected, _ = big_zwal
    lsns = list(expected)
    target = lsns[len(lsns) // 3]
    got = [(r.lsn, r.payload) for r in lsnwal.replay(path, until_lsn=target, inclusive=False)]
    assert got == [(k, expected[k]) for k in lsns if k < target]
    all_recs = list(lsnwal.replay(path))
    t = all_recs[-100].timestamp
    got_t = [r.lsn for r in lsnwal.replay(path, until_time=t)]
    assert got_t == [r.lsn for r in all_recs if r.timestamp <= t]


def test_verify_finds_flipped_byte_in_frame_without_decompressing(
    tmp_path: Path, big_zwal: tuple[Path, dict[int, bytes], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flipped byte inside a compressed frame fails its frame CRC; zstd never sees that frame."""
    src, _, _ = big_zwal
    path = tmp_path / "wal"
    shutil.copytree(src, path)
    (zfile,) = archive_files(path)
    blocks = seal_of(zfile).blocks
    victim = blocks[1]
    data = bytearray(zfile.read_bytes())
    data[victim.offset + victim.stored_len // 2] ^= 0x40
    zfile.write_bytes(bytes(data))

    fed: list[int] = []
    real_dctx = zstandard.ZstdDecompressor

    class CountingDctx:
        """A ZstdDecompressor that records the size of everything it is asked to decompress."""

        def __init__(self) -> None:
            self._inner = real_dctx()

        def decompress(self, stored: bytes, **kw: int) -> bytes:
            fed.append(len(stored))
            return self._inner.decompress(stored, **kw)

    monkeypatch.setattr(compress_mod.zstandard, "ZstdDecompressor", CountingDctx)
    report = lsnwal.verify(path)
    assert not report.ok
    (problem,) = report.problems
    assert problem.file == str(zfile)
    assert problem.offset == victim.offset
    assert problem.lsn == victim.first_lsn - 1
    assert "checksum" in problem.message
    assert fed == [blocks[0].stored_len], "only the frame before the damage was decompressed"
    with pytest.raises(lsnwal.WalCorruptionError) as exc:
        list(lsnwal.replay(path))
    assert exc.value.path == str(zfile)
    assert exc.value.offset == victim.offset


def test_verify_reports_damaged_block_table(tmp_path: Path) -> None:
    """Damage to a compressed segment's seal (its block table) is reported, not raised."""
    cfg = lsnwal.WalConfig(segment_max_bytes=64 << 10, compression=ZSTD)
    write_all(tmp_path / "z", cfg, json_corpus(1500))
    files = archive_files(tmp_path / "z")
    victim = files[1]
    seal = seal_of(victim)
    data = bytearray(victim.read_bytes())
    data[seal.data_end + fmt.RECORD_HEADER_SIZE + 3] ^= 0x01  # inside the seal payload
    victim.write_bytes(bytes(data))
    report = lsnwal.verify(tmp_path / "z")
    assert not report.ok
    assert any(p.file == str(victim) for p in report.problems)


def test_decompress_block_checks_crc_and_length() -> None:
    """decompress_block raises ValueError for a bad CRC, garbage, or a wrong raw length."""
    raw = b"record bytes " * 100
    stored = zstandard.ZstdCompressor(level=3).compress(raw)
    block = fmt.Block(1, 0.0, 48, len(stored), len(raw), fmt.crc32c(stored))
    assert compress_mod.decompress_block(stored, block) == raw
    bad = bytearray(stored)
    bad[len(bad) // 2] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        compress_mod.decompress_block(bytes(bad), block)
    junk = b"\x00" * len(stored)
    with pytest.raises(ValueError):
        compress_mod.decompress_block(junk, fmt.Block(1, 0.0, 48, len(junk), len(raw),
                                                      fmt.crc32c(junk)))
    with pytest.raises(ValueError):
        compress_mod.decompress_block(stored, fmt.Block(1, 0.0, 48, len(stored), len(raw) + 1,
                                                        fmt.crc32c(stored)))


def test_pruning_a_compressed_archive(tmp_path: Path) -> None:
    """Retention works the same on .zwal files: oldest first, never past the checkpoint."""
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, compression=ZSTD, archive_max_segments=4)
    path = tmp_path / "z"
    with lsnwal.open(path, cfg) as wal:
        expected = {wal.append(p): p for p in json_corpus(600)}
        assert wal.sync_async().wait(10)
        assert wal.wait_archived(10)
        before = [s for s in lsnwal.collect_all_segments(path) if s.state == "archive"]
        cp = before[6].first_lsn + 1
        wal.checkpoint(cp)
        wal.sync()
        assert wal.wait_archived(10)
        after = [s for s in lsnwal.collect_all_segments(path) if s.state == "archive"]
        assert after[0] == before[6]
        assert wal.stats().archive_bytes == sum(s.size_bytes for s in after)
    got = {r.lsn: r.payload for r in lsnwal.replay(path) if r.kind is lsnwal.RecordKind.DATA}
    assert got == {k: v for k, v in expected.items() if k >= before[6].first_lsn}
    assert lsnwal.verify(path).ok


def test_crash_between_compressed_copy_and_pending_delete(tmp_path: Path) -> None:
    """A .zwal archived while its plain copy is still in pending/ is one segment; open cleans up."""
    path = tmp_path / "z"
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, compression=ZSTD)
    corpus = json_corpus(300)
    with lsnwal.open(path, cfg, failpoint=crash_at("after_archive_move")) as wal:
        expected = {wal.append(p): p for p in corpus}
        assert wal.sync_async().wait(10)
        wal.wait_archived(10)
    zwals = [f.name for f in archive_files(path)]
    pending = sorted(os.listdir(path / "pending"))
    assert len(zwals) == 1 and zwals[0].endswith(".zwal")
    assert zwals[0].replace(".zwal", ".wal") in pending  # the same segment, twice
    infos = lsnwal.collect_all_segments(path)
    firsts = [s.first_lsn for s in infos]
    assert len(firsts) == len(set(firsts))
    assert {r.lsn: r.payload for r in lsnwal.replay(path)} == expected
    report = lsnwal.verify(path)
    assert report.ok, report.problems
    assert report.records == len(expected)
    with lsnwal.open(path, cfg) as wal:
        assert wal.current_lsn == max(expected) + 1
        assert wal.wait_archived(10)
    assert os.listdir(path / "pending") == []
    assert all(f.name.endswith(".zwal") for f in archive_files(path))
    assert {r.lsn: r.payload for r in lsnwal.replay(path)} == expected


def test_pending_duplicate_differing_from_zwal_is_an_error(tmp_path: Path) -> None:
    """A pending copy that differs from its archived .zwal is reported, never silently dropped."""
    path = tmp_path / "z"
    cfg = lsnwal.WalConfig(segment_max_bytes=SMALL, compression=ZSTD)
    with lsnwal.open(path, cfg, failpoint=crash_at("after_archive_move")) as wal:
        for p in json_corpus(300):
            wal.append(p)
        assert wal.sync_async().wait(10)
        wal.wait_archived(10)
    (dup,) = [p for p in sorted((path / "pending").iterdir()) if p.name.endswith(".wal")
              and (path / "archive" / p.name.replace(".wal", ".zwal")).exists()]
    data = bytearray(dup.read_bytes())
    data[fmt.HEADER_SIZE + fmt.RECORD_HEADER_SIZE + 2] ^= 0x20  # first record's payload
    # keep the record CRC valid so only a content comparison can tell
    ln = fmt.U32.unpack_from(data, fmt.HEADER_SIZE + 4)[0]
    rec = fmt.HEADER_SIZE
    crc = fmt.crc32c(bytes(data[rec + fmt.RECORD_HEADER_SIZE : rec + fmt.RECORD_HEADER_SIZE + ln]),
                     fmt.crc32c(bytes(data[rec + 4 : rec + fmt.RECORD_HEADER_SIZE])))
    fmt.U32.pack_into(data, rec, crc)
    dup.write_bytes(bytes(data))
    before = dup.read_bytes()
    report = lsnwal.verify(path)
    assert not report.ok
    assert any("different content" in p.message for p in report.problems)
    with pytest.raises(lsnwal.WalCorruptionError):
        lsnwal.open(path, cfg)
    assert dup.read_bytes() == before, "the evidence must stay"
