"""Helpers for the recovery defect-class tests: build a multi-segment WAL, damage it, judge it.

A template WAL has archived segments, several pending segments (archived ones
moved back, as a crash before archiving leaves them) and an active segment, and
every record in it was acknowledged (closed cleanly). ``outcome`` opens a damaged
copy, appends one record, verifies and replays everything, and says which of the
allowed endings happened; the tests assert which endings each case may have.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import lsnwal
from lsnwal import WalConfig, WalError
from lsnwal.fs import OsFileSystem, OsSyncBackend
from lsnwal.seekindex import write_index
from lsnwal.spares import SPARE_PREFIX, SPARE_SUFFIX
from lsnwal.watermark import WATERMARK_NAME, Watermark, encode_watermark

SMALL = WalConfig(segment_max_bytes=4096)
AFTER = b"appended after recovery"


class NoSync(OsSyncBackend):
    """Skips fsync: crash safety is not what these tests check, and fsync is slow."""

    def sync_file(self, fd: int) -> None:
        """Do nothing."""

    def sync_dir(self, fd: int) -> None:
        """Do nothing."""


def payloads(n: int = 160, seed: int = 7) -> list[bytes]:
    """``n`` deterministic payloads of 60..260 bytes (a few 4 KiB segments' worth)."""
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(60, 260)) for _ in range(n)]


def build_template(root: Path, written: list[bytes], in_active: int = 6,
                   to_pending: int = 3) -> None:
    """A closed WAL of ``written``: archive, ``to_pending`` pending segments, an active one."""
    with lsnwal.open(root, SMALL, sync_backend=NoSync()) as wal:
        wal.append_batch(written[:-in_active])
        wal.sync()
        assert wal.wait_archived(timeout=30)
        wal.append_batch(written[-in_active:])
    archived = sorted((root / "archive").glob("*.wal"))
    assert len(archived) >= to_pending + 2
    for src in archived[-to_pending:]:
        os.rename(src, root / "pending" / src.name)
    # As if they had never been archived: the seek index lists what the archive holds.
    write_index(OsFileSystem(), str(root), [(int(p.name[:20]), False)
                                            for p in archived[:-to_pending]])


def copy_of(template: Path, dest: Path) -> Path:
    """A private copy of a template WAL directory."""
    shutil.copytree(template, dest, symlinks=True)
    return dest


def set_watermark(root: Path, synced_lsn: int | None, checkpoint_lsn: int = 0) -> None:
    """Write ``WATERMARK`` as the writer publishes it (None: remove the file)."""
    path = root / WATERMARK_NAME
    if synced_lsn is None:
        path.unlink(missing_ok=True)
        return
    path.write_bytes(encode_watermark(Watermark(synced_lsn, checkpoint_lsn, 1, 1, 1.0, 1.0)))


def segment_files(root: Path) -> list[Path]:
    """Archived, pending and active segment files, in LSN order."""
    return [*sorted((root / "archive").glob("*.wal")), *sorted((root / "pending").glob("*.wal")),
            root / "active.wal"]


def tree_hash(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file below ``root`` (empty spare files and ``skip`` left out)."""
    out: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if (name.startswith(SPARE_PREFIX) and name.endswith(SPARE_SUFFIX)) or rel in skip:
                continue
            out[rel] = hashlib.sha256(Path(dirpath, name).read_bytes()).hexdigest()
    return out


@dataclass
class Outcome:
    """How a damaged WAL ended: ``error`` (where an lsnwal error surfaced) or the records."""

    error: str = ""  # "", "open" (open raised) or "verify" (verify reports damage)
    last_lsn: int = 0  # last LSN open() recovered
    payloads: list[bytes] | None = None  # replayed payloads, LSN 1 first, AFTER included


def outcome(root: Path, config: WalConfig = SMALL) -> Outcome:
    """Open ``root`` (append ``AFTER``, close), verify, replay; an lsnwal error or a verify
    problem is an ending (damage in an old archived segment is found by verify and
    replay, never by open, which reads only the newest archived seal)."""
    try:
        with lsnwal.open(root, config, sync_backend=NoSync()) as wal:
            last = wal.last_lsn
            assert wal.append(AFTER) == last + 1, "the next LSN is not last_lsn + 1"
    except WalError:
        return Outcome("open")
    if not lsnwal.verify(root, config=config).ok:
        return Outcome("verify", last)  # the damage is reported (replay would raise)
    recs = list(lsnwal.replay(root, config=config))
    assert [r.lsn for r in recs] == list(range(1, len(recs) + 1)), "replay LSNs not 1, 2, ..."
    return Outcome("", last, [r.payload for r in recs])


def check_no_loss(got: Outcome, written: list[bytes], label: str) -> None:
    """Either an lsnwal error, or every written record byte for byte and AFTER right after."""
    if got.error:
        return
    assert got.last_lsn == len(written), f"{label}: silent loss (last_lsn {got.last_lsn})"
    assert got.payloads == [*written, AFTER], f"{label}: records differ"


def check_prefix(got: Outcome, written: list[bytes], label: str) -> None:
    """Either an lsnwal error, or a byte-exact prefix of the records and AFTER right after."""
    if got.error:
        return
    assert got.payloads is not None
    k = got.last_lsn
    assert k <= len(written) and got.payloads == [*written[:k], AFTER], f"{label}: not a prefix"
