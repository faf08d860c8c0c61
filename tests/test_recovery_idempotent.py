"""Recovery never breaks what it recovers: open() is idempotent.

Zero bytes (or any junk) after a sealed segment's seal must not make ``open()``
seal it a second time. For each kind of trailing junk, zeros or truncation, on
each segment state (an older pending segment, the newest pending one, the
active one), with and without a durable watermark: either ``open()`` refuses
with an lsnwal error and changes nothing, or after it ``verify`` is ok, replay
returns every record it kept byte for byte, and a second ``open()`` changes no
segment file (only the fresh active file's creation time and the watermark's
session fields differ).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _walstate import (
    SMALL,
    NoSync,
    build_template,
    copy_of,
    payloads,
    set_watermark,
    tree_hash,
)

import lsnwal
from lsnwal import WalError
from lsnwal import format as fmt
from lsnwal.watermark import WATERMARK_NAME, read_watermark

WRITTEN = payloads()
VOLATILE = ("active.wal", WATERMARK_NAME)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed WAL: archived segments, three pending segments and an active one."""
    root = tmp_path_factory.mktemp("idem") / "wal"
    build_template(root, WRITTEN)
    return root


def _record(lsn: int) -> bytes:
    buf = bytearray()
    fmt.encode_record(buf, lsn, int(fmt.RecordKind.DATA), 1.0, b"stray")
    return bytes(buf)


def junk_kinds(data: bytes, next_lsn: int) -> dict[str, bytes]:
    """Ways the end of a segment image can look after a crash or a careless copy."""
    seal_at = fmt.decode_trailer(data[-fmt.TRAILER_SIZE:])
    out = {
        "zeros-1": data + bytes(1),
        "zeros-7": data + bytes(7),
        "zeros-28": data + bytes(fmt.RECORD_HEADER_SIZE),
        "zeros-page": data + bytes(4096),
        "garbage": data + bytes(range(100, 200)),
        "stray-record": data + _record(next_lsn),
        "cut-last-byte": data[:-1],
        "cut-half": data[: len(data) // 2],
    }
    if seal_at is not None:
        out["seal-twice"] = data + data[seal_at:]
        out["cut-in-seal"] = data[: seal_at + 10]
        out["cut-at-seal"] = data[:seal_at]
    return out


def target_of(root: Path, state: str) -> Path:
    """The segment file of ``state`` in ``root``."""
    pend = sorted((root / "pending").glob("*.wal"))
    return {"older-pending": pend[0], "newest-pending": pend[-1],
            "active": root / "active.wal"}[state]


def replayed(root: Path) -> list[bytes]:
    """Payloads replayed from ``root`` (LSNs checked to count up from 1)."""
    recs = list(lsnwal.replay(root, config=SMALL))
    assert [r.lsn for r in recs] == list(range(1, len(recs) + 1))
    return [r.payload for r in recs]


def reopen(root: Path) -> int:
    """Open and close ``root``; return the last LSN it recovered."""
    with lsnwal.open(root, SMALL, sync_backend=NoSync()) as wal:
        assert wal.wait_archived(timeout=30)
        return wal.last_lsn


@pytest.mark.parametrize("watermark", ["all-acknowledged", "none"])
@pytest.mark.parametrize("state", ["older-pending", "newest-pending", "active"])
def test_open_is_idempotent_after_any_trailing_junk(
    template: Path, tmp_path: Path, state: str, watermark: str
) -> None:
    """Open either refuses (nothing changed) or leaves a WAL that verifies, replays, and that a
    second open does not change; junk after a valid seal never adds a second seal."""
    src = target_of(template, state)
    data = src.read_bytes()
    next_lsn = len(WRITTEN) + 1
    opened = refused = 0
    for kind, image in junk_kinds(data, next_lsn).items():
        root = copy_of(template, tmp_path / "case")
        target_of(root, state).write_bytes(image)
        set_watermark(root, len(WRITTEN) if watermark != "none" else None)
        label = f"{state} {kind} watermark={watermark}"
        before = tree_hash(root)
        try:
            last = reopen(root)
        except WalError:
            assert tree_hash(root) == before, f"{label}: a refused open changed files"
            refused += 1
            shutil.rmtree(root)
            continue
        opened += 1
        assert lsnwal.verify(root, config=SMALL).ok, label
        got = replayed(root)
        # a whole valid record after the active segment's last one is simply the next record
        assert got == [*WRITTEN, b"stray"][:last], f"{label}: records differ"
        if kind.startswith(("zeros", "garbage", "stray", "seal-twice")) and state != "active":
            assert last == len(WRITTEN), f"{label}: junk after a seal lost records"
        first = tree_hash(root, skip=VOLATILE)
        assert reopen(root) == last, f"{label}: the second open found other records"
        assert tree_hash(root, skip=VOLATILE) == first, f"{label}: the second open changed files"
        assert not any(n.endswith(".broken.1") for n in first), f"{label}: cut twice"
        wm = read_watermark(str(root))
        assert wm is not None and wm.synced_lsn == last, label
        shutil.rmtree(root)
    assert opened >= 4
    if watermark != "none" and state != "active":
        assert refused >= 1  # a cut inside a synced segment is refused, not torn


def test_zeros_after_the_seal_are_trimmed_not_sealed_again(template: Path, tmp_path: Path) -> None:
    """The original defect: zeros after a pending seal; after open the archived copy is exactly
    the sealed segment (one seal) and the zeros are kept as evidence."""
    root = copy_of(template, tmp_path / "wal")
    seg = target_of(root, "older-pending")
    sealed = seg.read_bytes()
    seg.write_bytes(sealed + bytes(4096))
    reopen(root)
    assert (root / "archive" / seg.name).read_bytes() == sealed
    assert Path(str(seg) + ".broken").read_bytes() == bytes(4096)
    assert replayed(root) == WRITTEN
