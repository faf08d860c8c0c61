"""The archive's seek index: replay seeks without listing, and never trusts a bad index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lsnwal
from lsnwal.fs import OsFileSystem
from lsnwal.seekindex import INDEX_MAGIC, INDEX_NAME, read_index

SEG = 4096


class CountingFS(OsFileSystem):
    """The real file system, counting directory listings per path."""

    def __init__(self) -> None:
        self.listed: list[str] = []

    def listdir(self, path: str) -> list[str]:
        """List and remember which directory was listed."""
        self.listed.append(os.path.abspath(path))
        return super().listdir(path)


def _payload(i: int) -> bytes:
    return b"rec-%06d-" % i + bytes((i * 7 + k) % 256 for k in range(60))


def _build(d: Path, n: int = 2000, compression: str | None = None) -> lsnwal.WalConfig:
    cfg = lsnwal.WalConfig(segment_max_bytes=SEG, compression=compression)  # type: ignore[arg-type]
    with lsnwal.open(d, cfg) as wal:
        for start in range(0, n, 100):
            wal.append_batch([_payload(i) for i in range(start, min(n, start + 100))])
            wal.sync_async().wait(10)
        wal.wait_archived(10)
    return cfg


def _replay(d: Path, cfg: lsnwal.WalConfig, from_lsn: int,
            fs: OsFileSystem | None = None) -> list[tuple[int, bytes]]:
    return [(r.lsn, r.payload) for r in lsnwal.replay(d, config=cfg, from_lsn=from_lsn, fs=fs)]


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_seek_with_index_equals_seek_by_listing(tmp_path: Path, compression: str | None) -> None:
    """replay(from_lsn) returns the same records with the index as after deleting it."""
    d = tmp_path / "wal"
    cfg = _build(d, compression=compression)
    entries = read_index(OsFileSystem(), str(d))
    assert entries is not None and len(entries) > 20
    assert all(c is (compression == "zstd") for _, c in entries)
    probes = [1, 2, 777, entries[-1][0], entries[-1][0] + 3, 1999, 2000]
    with_index = {x: _replay(d, cfg, x) for x in probes}
    os.unlink(d / INDEX_NAME)
    for x in probes:
        got = _replay(d, cfg, x)
        assert got == with_index[x]
        assert got == [(i + 1, _payload(i)) for i in range(x - 1, 2000)]


def test_seek_does_not_list_the_archive(tmp_path: Path) -> None:
    """With a good index, a seek into the newest archived segment lists pending/ but never
    archive/; without the index it lists archive/."""
    d = tmp_path / "wal"
    cfg = _build(d)
    archive = os.path.abspath(d / "archive")
    newest = [s for s in lsnwal.collect_all_segments(d, cfg) if s.state == "archive"][-1]
    x = (newest.first_lsn + newest.last_lsn) // 2  # in the archive, near its end
    fs = CountingFS()
    assert _replay(d, cfg, x, fs=fs)[0] == (x, _payload(x - 1))
    assert archive not in fs.listed
    os.unlink(d / INDEX_NAME)
    fs = CountingFS()
    assert _replay(d, cfg, x, fs=fs)[0] == (x, _payload(x - 1))
    assert archive in fs.listed


@pytest.mark.parametrize(
    "damage", ["short", "bad-magic", "unordered", "missing-segment", "empty", "hole"]
)
def test_a_bad_index_is_never_trusted(tmp_path: Path, damage: str) -> None:
    """A stale, damaged or lying index falls back to the listing: results stay exact."""
    d = tmp_path / "wal"
    cfg = _build(d)
    index = d / INDEX_NAME
    raw = index.read_bytes()
    if damage == "short":  # the newest archived segments are not indexed yet
        index.write_bytes(raw[: len(raw) - 3 * 8])
    elif damage == "bad-magic":
        index.write_bytes(b"X" + raw[1:])
    elif damage == "unordered":
        body = raw[len(INDEX_MAGIC):]
        index.write_bytes(INDEX_MAGIC + body[8:16] + body[:8] + body[16:])
    elif damage == "missing-segment":  # an entry whose file is gone
        index.write_bytes(raw + (10**9 << 1).to_bytes(8, "little"))
    elif damage == "hole":  # entries missing in the middle: followed by name
        body = raw[len(INDEX_MAGIC):]
        index.write_bytes(INDEX_MAGIC + body[:40] + body[80:])
    else:
        index.write_bytes(INDEX_MAGIC)
    for x in (1, 100, 300, 1000, 1950, 2000):
        assert _replay(d, cfg, x) == [(i + 1, _payload(i)) for i in range(x - 1, 2000)]


def test_index_follows_pruning_and_reopen(tmp_path: Path) -> None:
    """After pruning the index starts at the oldest kept segment; a pruned LSN is refused."""
    d = tmp_path / "wal"
    cfg = lsnwal.WalConfig(segment_max_bytes=SEG, archive_max_segments=5)
    with lsnwal.open(d, cfg) as wal:
        for start in range(0, 2000, 100):
            wal.append_batch([_payload(i) for i in range(start, start + 100)])
            wal.sync_async().wait(10)
        wal.checkpoint(1500)
        wal.sync()
        wal.prune()
        wal.wait_archived(10)
    entries = read_index(OsFileSystem(), str(d))
    assert entries is not None
    names = sorted(p.name for p in (d / "archive").iterdir())
    assert [lsn for lsn, _ in entries] == [int(n[:20]) for n in names]
    oldest = entries[0][0]
    assert oldest > 1
    with pytest.raises(lsnwal.LsnUnavailableError):
        list(lsnwal.replay(d, config=cfg, from_lsn=oldest - 1))
    got = _replay(d, cfg, oldest)
    assert got[0] == (oldest, _payload(oldest - 1))
    assert got[-1][0] == 2001  # the CHECKPOINT record follows the data
