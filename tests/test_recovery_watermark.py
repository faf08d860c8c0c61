"""Unsynced pages written back out of order: recovery cuts past the durable watermark only.

After a power loss the bytes past the last fsync of the newest segments may be
any mix of old bytes, zeros, garbage and complete later records. ``WATERMARK``
says which LSN the last acknowledged fsync covered (W). Every pattern applied
past the end of record W opens and keeps records 1..W byte for byte (plus any
later records that survived whole and in order), keeping what it cut as
``.broken`` evidence; the same pattern at or before record W is corruption,
reported by open (``WalCorruptionError``, nothing changed) and by ``verify``.

The patterns are enumerated over windows (start at every record boundary past or
before W, and inside records; lengths 1, a record header, 512, a 4 KiB page and
"to the end"), four fillings (zeros, garbage, old bytes of another segment,
truncation), and W placed in the active segment, at the end of the newest
pending segment and inside it (the active file then lies wholly past W).
"""

from __future__ import annotations

import os
import random
import shutil
import struct
from pathlib import Path

import pytest
from _walstate import (
    SMALL,
    build_template,
    check_prefix,
    copy_of,
    outcome,
    payloads,
    segment_files,
    set_watermark,
    tree_hash,
)

import lsnwal
from lsnwal import format as fmt

STRESS = os.environ.get("LSNWAL_STRESS") == "1"
#: the full enumeration runs for many minutes under LSNWAL_STRESS=1
LONG = pytest.mark.timeout(14400 if STRESS else 300)
WRITTEN = payloads()
FILLS = ("zeros", "garbage", "old", "truncate")
LENGTHS = (1, fmt.RECORD_HEADER_SIZE, 512, 4096, None)  # None: to the end of the file


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed WAL: archived segments, three pending segments and an active one."""
    root = tmp_path_factory.mktemp("watermark") / "wal"
    build_template(root, WRITTEN)
    return root


def records(path: Path) -> list[tuple[int, int, int]]:
    """``(offset, lsn, end)`` of each user record, read from the headers directly."""
    data = path.read_bytes()
    off, out = fmt.HEADER_SIZE, []
    while off + fmt.RECORD_HEADER_SIZE <= len(data) and data[off + 24] != fmt.SEAL_KIND:
        length, lsn = struct.unpack_from("<IQ", data, off + 4)
        out.append((off, lsn, off + fmt.RECORD_HEADER_SIZE + length))
        off = out[-1][2]
    return out


def apply(path: Path, start: int, length: int | None, fill: str, old: bytes,
          rng: random.Random) -> bool:
    """Apply one pattern to ``path`` from ``start``; False when it changes nothing."""
    data = bytearray(path.read_bytes())
    if start >= len(data):
        return False
    end = len(data) if length is None else min(len(data), start + length)
    if fill == "truncate":
        del data[start:]
    else:
        n = end - start
        new = {"zeros": bytes(n), "garbage": rng.randbytes(n),
               "old": old[start:end].ljust(n, b"\x00")}[fill]
        if new == data[start:end]:
            return False
        data[start:end] = new
    path.write_bytes(bytes(data))
    return True


def placements(root: Path) -> dict[str, tuple[int, list[Path]]]:
    """Where W goes: ``name -> (W, files holding records past W, W's file first)``."""
    newest = sorted((root / "pending").glob("*.wal"))[-1]
    active = root / "active.wal"
    in_pending = records(newest)
    return {
        "in-active": (records(active)[2][1], [active]),
        "end-of-newest-pending": (in_pending[-1][1], [newest, active]),
        "inside-newest-pending": (in_pending[len(in_pending) // 2][1], [newest, active]),
    }


def starts(path: Path, w: int, past: bool, rng: random.Random) -> list[int]:
    """Window starts in ``path``: record boundaries and inner offsets past (or up to) W."""
    recs = records(path)
    w_end = max([e for _o, lsn, e in recs if lsn <= w], default=0)
    if past:
        cands = {max(w_end, 0)} | {o for o, _l, _e in recs if o >= w_end}
        cands |= {o + 9 for o, _l, _e in recs if o >= w_end}
        if not w_end:  # the whole file lies past W: its header too
            cands |= {0, 10, fmt.HEADER_SIZE - 1}
        size = path.stat().st_size
        cands |= {size - 1, size - fmt.TRAILER_SIZE}
        cands = {c for c in cands if c >= w_end and c < size}
    else:
        cands = {o for o, lsn, _e in recs if lsn <= w} | {o + 9 for o, lsn, _e in recs if lsn <= w}
        cands |= {w_end - 1, 0, 20}
    picked = sorted(cands)
    return picked if STRESS else sorted(rng.sample(picked, min(len(picked), 6)))


@LONG
@pytest.mark.parametrize("where", ["in-active", "end-of-newest-pending", "inside-newest-pending"])
def test_any_pattern_past_the_watermark_keeps_every_acknowledged_record(
    template: Path, tmp_path: Path, where: str
) -> None:
    """Zeros, garbage, old bytes or a cut anywhere past record W open and keep 1..W (and only a
    byte-exact prefix beyond), with the cut bytes kept as .broken evidence."""
    rng = random.Random(where)
    w, files = placements(template)[where]
    old = segment_files(template)[0].read_bytes()  # another segment's bytes: "old content"
    cases = 0
    for f in files:
        for start in starts(f, w, True, rng):
            for length in LENGTHS:
                for fill in FILLS:
                    if fill == "truncate" and length is not None:
                        continue
                    root = copy_of(template, tmp_path / "case")
                    target = root / f.relative_to(template)
                    if not apply(target, start, length, fill, old, rng):
                        shutil.rmtree(root)
                        continue
                    set_watermark(root, w)
                    label = f"{where} W={w} {fill} {f.name}@{start}+{length}"
                    got = outcome(root)
                    assert not got.error, f"{label}: {got.error} failed"
                    check_prefix(got, WRITTEN, label)
                    assert got.last_lsn >= w, f"{label}: lost acknowledged records"
                    if got.last_lsn < len(WRITTEN) and fill != "truncate":
                        assert list(root.rglob("*.broken")), f"{label}: no evidence kept"
                    shutil.rmtree(root)
                    cases += 1
    assert cases >= 40


@LONG
@pytest.mark.parametrize("where", ["in-active", "end-of-newest-pending", "inside-newest-pending"])
def test_the_same_pattern_at_or_before_the_watermark_is_reported(
    template: Path, tmp_path: Path, where: str
) -> None:
    """A pattern that touches record W or an earlier one is WalCorruptionError at open (nothing
    changed on disk) and a problem in verify."""
    rng = random.Random(where + "-before")
    w, files = placements(template)[where]
    old = segment_files(template)[0].read_bytes()
    f = files[0]
    cases = 0
    for start in starts(f, w, False, rng):
        for length in (1, fmt.RECORD_HEADER_SIZE, None):
            for fill in FILLS:
                if fill == "truncate" and length is not None:
                    continue
                root = copy_of(template, tmp_path / "case")
                if not apply(root / f.relative_to(template), start, length, fill, old, rng):
                    shutil.rmtree(root)
                    continue
                set_watermark(root, w)
                label = f"{where} W={w} {fill} {f.name}@{start}+{length}"
                before = tree_hash(root)
                assert not lsnwal.verify(root, config=SMALL).ok, label
                with pytest.raises(lsnwal.WalCorruptionError):
                    lsnwal.open(root, SMALL)
                assert tree_hash(root) == before, f"{label}: a refused open changed files"
                shutil.rmtree(root)
                cases += 1
    assert cases >= 20


def test_watermark_past_the_end_of_the_log_is_an_error(template: Path, tmp_path: Path) -> None:
    """Records that were published durable but are missing (the active file lost) are
    WalCorruptionError, never a silent restart that reuses their LSNs."""
    root = copy_of(template, tmp_path / "wal")
    (root / "active.wal").unlink()
    set_watermark(root, len(WRITTEN))
    with pytest.raises(lsnwal.WalCorruptionError, match="reported durable"):
        lsnwal.open(root, SMALL)
    assert not lsnwal.verify(root, config=SMALL).ok


def test_everything_pruned_continues_after_the_watermark(tmp_path: Path) -> None:
    """With every segment checkpointed and gone and the active header lost, open continues after
    the watermark instead of handing out LSN 1 again."""
    root = tmp_path / "wal"
    with lsnwal.open(root, SMALL) as wal:
        wal.append_batch([b"x"] * 5)
    for seg in segment_files(root):
        seg.unlink()
    (root / "active.wal").write_bytes(b"\x89LSN")  # a torn header
    set_watermark(root, 5, checkpoint_lsn=5)
    with lsnwal.open(root, SMALL) as wal:
        assert wal.append(b"next") == 6
