"""Damage anywhere in a multi-segment WAL: never silent loss, never a reused LSN.

A torn tail is only ever the end of the log. Every byte flip and every
truncation of every file of a WAL with archived, pending and active segments
(every record acknowledged) must end in one of two ways: every record back byte
for byte (and the next append gets the next LSN), or an lsnwal error: open
raises, or (damage in an old archived segment, which open does not read) verify
reports it. With a durable watermark (``WATERMARK``) that covers every record
this is exact. Without one recovery falls back to "damage is torn only if no
valid data with a higher LSN exists anywhere", so only the newest file may lose
its tail (a byte-exact prefix survives), and damage anywhere else is an error.

``make test`` checks a sample of offsets per file (structure boundaries, the
header, the seal and trailer, a seeded random spread; the count is asserted);
``LSNWAL_STRESS=1`` checks every offset of every file.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
from _walstate import (
    SMALL,
    build_template,
    check_no_loss,
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
from lsnwal.seekindex import INDEX_NAME

STRESS = os.environ.get("LSNWAL_STRESS") == "1"
#: the full enumeration runs for many minutes under LSNWAL_STRESS=1
LONG = pytest.mark.timeout(14400 if STRESS else 300)
WRITTEN = payloads()
SAMPLE_PER_FILE = 14


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed WAL: archived segments, three pending segments and an active one."""
    root = tmp_path_factory.mktemp("damage") / "wal"
    build_template(root, WRITTEN)
    return root


def sample_offsets(data: bytes, rng: random.Random) -> list[int]:
    """Offsets worth damaging in a segment image: header, first record, seal, trailer, spread."""
    size = len(data)
    picks = {0, 8, 16, fmt.HEADER_SIZE - 1, fmt.HEADER_SIZE, fmt.HEADER_SIZE + 4,
             fmt.HEADER_SIZE + 8, size - 1, size - fmt.TRAILER_SIZE}
    seal_at = fmt.decode_trailer(data[-fmt.TRAILER_SIZE:])
    if seal_at is not None:
        picks |= {seal_at, seal_at + 4, seal_at + fmt.RECORD_HEADER_SIZE}
    picks = {p for p in picks if 0 <= p < size}
    spread = sorted(set(range(size)) - picks)
    picks |= set(rng.sample(spread, min(len(spread), max(0, SAMPLE_PER_FILE - len(picks)))))
    return sorted(picks)


def damage(path: Path, kind: str, offset: int) -> None:
    """Flip every bit of the byte at ``offset``, or truncate the file to ``offset`` bytes."""
    data = bytearray(path.read_bytes())
    if kind == "flip":
        data[offset] ^= 0xFF
    else:
        del data[offset:]
    path.write_bytes(bytes(data))


@LONG
@pytest.mark.parametrize("watermark", ["all-acknowledged", "none"])
@pytest.mark.parametrize("kind", ["flip", "truncate"])
def test_damage_anywhere_is_all_records_or_an_error(
    template: Path, tmp_path: Path, kind: str, watermark: str
) -> None:
    """Each flip/truncation of each file ends with every record byte for byte or an lsnwal
    error (without a watermark the active file may lose a tail, keeping a byte-exact prefix)."""
    rng = random.Random(f"{kind}-{watermark}")
    files = segment_files(template)
    assert len(files) >= 6  # archive x2+, pending x3, active
    cases = endings = 0
    seen: dict[str, int] = {"": 0, "open": 0, "verify": 0}
    for f in files:
        data = f.read_bytes()
        offsets = range(len(data)) if STRESS else sample_offsets(data, rng)
        for off in offsets:
            root = copy_of(template, tmp_path / "case")
            target = root / f.relative_to(template)
            damage(target, kind, off)
            set_watermark(root, len(WRITTEN) if watermark != "none" else None)
            label = f"{kind} {f.relative_to(template)}@{off} watermark={watermark}"
            got = outcome(root)
            if watermark == "none" and target.name == "active.wal":
                check_prefix(got, WRITTEN, label)
            else:
                check_no_loss(got, WRITTEN, label)
            seen[got.error] += 1
            cases += 1
            shutil.rmtree(root)
        endings += 1
    assert cases >= (len(files) * 10 if not STRESS else sum(p.stat().st_size for p in files))
    # Both endings occur: the check is not vacuous either way.
    assert seen["open"] > 0 and seen["verify"] > 0 and endings == len(files)


@pytest.mark.parametrize("mode", ["tolerate_tail", "strict"])
def test_bad_seal_of_an_older_pending_segment_is_corruption(
    template: Path, tmp_path: Path, mode: str
) -> None:
    """A bad seal of a pending segment that is not the newest is WalCorruptionError naming the
    file, not a torn tail that sets the later segments aside; verify reports it too."""
    root = copy_of(template, tmp_path / "wal")
    older = sorted((root / "pending").glob("*.wal"))[0]
    data = bytearray(older.read_bytes())
    data[-1] ^= 0xFF  # the trailer magic
    older.write_bytes(bytes(data))
    set_watermark(root, None)
    report = lsnwal.verify(root)
    assert not report.ok and any(p.file == str(older) for p in report.problems)
    with pytest.raises(lsnwal.WalCorruptionError) as info:
        lsnwal.open(root, SMALL.replace(recovery_mode=mode))
    assert info.value.path == str(older) and info.value.lsn is not None
    assert not list(root.rglob("*.broken"))  # nothing was set aside


def test_stop_at_corruption_still_cuts_there(template: Path, tmp_path: Path) -> None:
    """In stop_at_corruption mode the same damage is cut (kept as evidence), by request."""
    root = copy_of(template, tmp_path / "wal")
    older = sorted((root / "pending").glob("*.wal"))[0]
    damage(older, "truncate", older.stat().st_size - 5)
    with lsnwal.open(root, SMALL.replace(recovery_mode="stop_at_corruption")) as wal:
        assert wal.last_lsn < len(WRITTEN)
        assert wal.recovery_report
    assert list(root.rglob("*.broken"))


# --------------------------------------------------------------------------- archive chain at open


@pytest.mark.parametrize("which", ["second", "middle", "second-newest"])
def test_open_detects_a_missing_archived_segment(
    template: Path, tmp_path: Path, which: str
) -> None:
    """A segment missing from the archive is WalCorruptionError at open naming both neighbours
    (found by comparing names with the seek index, then headers and seals), nothing changed."""
    root = copy_of(template, tmp_path / "wal")
    segs = sorted((root / "archive").glob("*.wal"))
    assert len(segs) >= 3
    i = {"second": 1, "middle": len(segs) // 2, "second-newest": len(segs) - 2}[which]
    i = max(1, min(i, len(segs) - 2))
    segs[i].unlink()
    before = tree_hash(root)
    with pytest.raises(lsnwal.WalCorruptionError) as info:
        lsnwal.open(root, SMALL)
    assert "gap" in str(info.value)
    assert str(segs[i - 1]) in str(info.value) and str(segs[i + 1]) in str(info.value)
    assert tree_hash(root) == before


def test_open_detects_an_extra_archived_segment(template: Path, tmp_path: Path) -> None:
    """A foreign archived segment whose LSNs overlap its neighbours is an error at open."""
    root = copy_of(template, tmp_path / "wal")
    other = tmp_path / "other"
    build_template(other, payloads(126, seed=99))  # other sizes: other segment boundaries
    mine = {p.name for p in (root / "archive").glob("*.wal")}
    extra = next(p for p in sorted((other / "archive").glob("*.wal"))[1:] if p.name not in mine)
    shutil.copy(extra, root / "archive" / extra.name)
    with pytest.raises(lsnwal.WalCorruptionError, match="overlap"):
        lsnwal.open(root, SMALL)


def test_a_stale_or_missing_index_only_costs_a_seal_check(template: Path, tmp_path: Path) -> None:
    """Without the seek index (or with a stale one) an intact archive opens, and the index is
    written again."""
    for damage_index in ("missing", "stale"):
        root = copy_of(template, tmp_path / damage_index)
        index = root / INDEX_NAME
        if damage_index == "missing":
            index.unlink()
        else:
            index.write_bytes(index.read_bytes()[:-8])
        with lsnwal.open(root, SMALL) as wal:
            assert wal.last_lsn == len(WRITTEN)
        assert index.exists()
        assert [r.payload for r in lsnwal.replay(root, config=SMALL)] == WRITTEN
