"""Invariant 13 by enumeration: a writer's move, compression or pruning injected before every
single file-system call a reader makes, and the reader still sees a consistent log.

``MovingFs`` is the real file system that performs one writer step (archive the
oldest pending segment by rename; replace it by a compressed copy; prune the
oldest archived segment) just before the k-th call a reader makes through the
seam — for every k of an undisturbed run. Every variant must read the same
records byte for byte (or, after a prune, an exact prefix and then
``LsnUnavailableError``), and ``verify`` must find no problem.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import lsnwal
from lsnwal.fs import OsFileSystem
from lsnwal.names import parse_segment_name, segment_name

STRESS = os.environ.get("LSNWAL_STRESS") == "1"  # as conftest.stress_enabled()


class MovingFs(OsFileSystem):
    """Runs ``step`` once, just before the ``at``-th call made through the seam."""

    def __init__(self, at: int, step: Callable[[], None] | None) -> None:
        self.at, self.step, self.calls = at, step, 0

    def _tick(self) -> None:
        if self.calls == self.at and self.step is not None:
            self.step()
        self.calls += 1

    def open_read(self, path: str) -> int:
        """Open, after maybe moving a segment first."""
        self._tick()
        return super().open_read(path)

    def listdir(self, path: str) -> list[str]:
        """List, after maybe moving a segment first."""
        self._tick()
        return super().listdir(path)

    def exists(self, path: str) -> bool:
        """Look, after maybe moving a segment first."""
        self._tick()
        return super().exists(path)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Read, after maybe moving a segment first."""
        self._tick()
        return super().pread(fd, size, offset)


def payload(i: int) -> bytes:
    """A deterministic payload whose length varies with ``i``."""
    return b"moves-%05d|" % i + bytes([i % 249]) * (40 + i * 11 % 80)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A closed WAL whose newest archived segments are back in pending/ (not archived yet),
    and a zstd copy of the same log whose archive provides the compressed files."""
    base = tmp_path_factory.mktemp("moves")
    for name, comp in (("plain", None), ("zstd", "zstd")):
        cfg = lsnwal.WalConfig(segment_max_bytes=4096, compression=comp)
        with lsnwal.open(base / name, cfg) as wal:
            for i in range(150):
                wal.append(payload(i))
            wal.sync()
            assert wal.wait_archived(10)
    plain = base / "plain"
    for src in sorted((plain / "archive").glob("*.wal"))[-3:]:
        os.rename(src, plain / "pending" / src.name)
    return plain, base / "zstd"


def _steps(root: Path, zstd: Path) -> dict[str, Callable[[], None]]:
    def pending() -> list[Path]:
        return sorted((root / "pending").glob("*.wal"))

    def archive_one() -> None:  # pending/ -> archive/ by rename, as on one file system
        src = pending()[0]
        os.rename(src, root / "archive" / src.name)

    def compress_one() -> None:  # the zstd copy appears, then the pending copy goes
        src = pending()[0]
        parsed = parse_segment_name(src.name)
        assert parsed is not None
        z = segment_name(parsed[0], compressed=True)
        shutil.copy(zstd / "archive" / z, root / "archive" / z)
        os.unlink(src)

    def prune_one() -> None:  # retention removes the oldest archived segment
        os.unlink(sorted((root / "archive").iterdir())[0])

    return {"archive": archive_one, "compress": compress_one, "prune": prune_one}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("step", ["archive", "compress", "prune"])
def test_a_move_before_any_call_leaves_the_view_consistent(
    template: tuple[Path, Path], tmp_path: Path, step: str
) -> None:
    """For every call k (a third of them outside make stress) of a replay and of a verify, a
    writer step just before call k: the
    replay still gives every record byte for byte (a prune: an exact prefix, then
    LsnUnavailableError) and verify reports no problem."""
    plain, zstd = template
    expected = [(r.lsn, r.payload) for r in lsnwal.replay(plain)]
    baseline = MovingFs(-1, None)
    assert [(r.lsn, r.payload) for r in lsnwal.replay(plain, fs=baseline)] == expected
    replay_calls = baseline.calls
    baseline = MovingFs(-1, None)
    assert lsnwal.verify(plain, fs=baseline).ok
    verify_calls = baseline.calls
    assert replay_calls > 20 and verify_calls > 20
    pruned = 0
    every = 1 if STRESS else 3  # every call under make stress, every third one here
    for k in range(0, replay_calls + 1, every):
        root = tmp_path / f"r{k}"
        shutil.copytree(plain, root)
        fs = MovingFs(k, _steps(root, zstd)[step])
        got: list[tuple[int, bytes]] = []
        try:
            got.extend((r.lsn, r.payload) for r in lsnwal.replay(root, fs=fs))
        except lsnwal.LsnUnavailableError:
            assert step == "prune", k
            start = got[0][0] if got else expected[0][0]
            assert got == [e for e in expected if e[0] >= start][: len(got)]  # no jump
        else:
            oldest = expected[0][0] if step != "prune" or fs.calls <= k else got[0][0]
            assert got == [e for e in expected if e[0] >= oldest], (step, k)
            pruned += oldest > expected[0][0]
        shutil.rmtree(root)
    if step == "prune":
        assert pruned > 0  # some interleavings really pruned before the reader got there
    for k in range(0, verify_calls + 1, every):
        root = tmp_path / f"v{k}"
        shutil.copytree(plain, root)
        report = lsnwal.verify(root, fs=MovingFs(k, _steps(root, zstd)[step]))
        assert report.ok, (step, k, report.problems)
        shutil.rmtree(root)


class HidingFs(OsFileSystem):
    """Hides segment ``lsn`` from the next ``budget`` looks at it (listings, opens, exists):
    a listing that races a move may show a file under neither of its names."""

    def __init__(self, lsn: int, budget: int) -> None:
        self.lsn, self.budget, self.hidden = lsn, budget, 0

    def _hide(self, name: str) -> bool:
        parsed = parse_segment_name(os.path.basename(name))
        if parsed is None or parsed[0] != self.lsn or self.hidden >= self.budget:
            return False
        self.hidden += 1
        return True

    def listdir(self, path: str) -> list[str]:
        """List, leaving the hidden segment out while the budget lasts."""
        return [n for n in super().listdir(path) if not self._hide(n)]

    def open_read(self, path: str) -> int:
        """Open, as if the hidden segment were not there while the budget lasts."""
        if self._hide(path):
            raise FileNotFoundError(path)
        return super().open_read(path)

    def exists(self, path: str) -> bool:
        """Look, as if the hidden segment were not there while the budget lasts."""
        return False if self._hide(path) else super().exists(path)

    def mtime(self, path: str) -> float:
        """Now: a segment moves, so its directories keep changing."""
        return time.time()


def _middle(root: Path) -> Path:
    """A segment with others before and after it (pending or archived)."""
    segs = sorted([*(root / "archive").glob("*.wal"), *(root / "pending").glob("*.wal")],
                  key=lambda p: p.name)
    assert len(segs) >= 3
    return segs[len(segs) // 2]


@pytest.mark.parametrize("budget", [1, 3, 6, 12])
def test_a_segment_out_of_sight_for_an_instant_is_not_reported(
    template: tuple[Path, Path], budget: int
) -> None:
    """A middle segment missing from a few looks (listing and opens) is waited for: replay
    gives every record byte for byte, verify finds nothing — never "pruned" or a gap."""
    plain, _zstd = template
    expected = [(r.lsn, r.payload) for r in lsnwal.replay(plain)]
    parsed = parse_segment_name(_middle(plain).name)
    assert parsed is not None
    fs = HidingFs(parsed[0], budget)
    assert [(r.lsn, r.payload) for r in lsnwal.replay(plain, fs=fs)] == expected
    assert fs.hidden == budget  # it was looked for, and out of sight, that many times
    report = lsnwal.verify(plain, fs=HidingFs(parsed[0], budget))
    assert report.ok, report.problems


def test_a_segment_gone_for_good_is_still_a_gap(template: tuple[Path, Path]) -> None:
    """The same segment hidden for good: replay and verify report the gap, naming both files."""
    plain, _zstd = template
    parsed = parse_segment_name(_middle(plain).name)
    assert parsed is not None
    with pytest.raises(lsnwal.WalCorruptionError, match="LSN gap between segments"):
        list(lsnwal.replay(plain, fs=HidingFs(parsed[0], 10**9)))
    report = lsnwal.verify(plain, fs=HidingFs(parsed[0], 10**9))
    assert not report.ok and any("gap" in p.message for p in report.problems)


@pytest.mark.parametrize("budget", [2, 6])
def test_a_start_out_of_sight_for_an_instant_is_not_reported_pruned(
    template: tuple[Path, Path], budget: int
) -> None:
    """replay(from_lsn=...) inside the oldest segment while it is out of sight for a few
    looks: the records from there, byte for byte, not LsnUnavailableError."""
    plain, _zstd = template
    expected = [(r.lsn, r.payload) for r in lsnwal.replay(plain)]
    oldest = expected[0][0]
    fs = HidingFs(oldest, budget)
    got = [(r.lsn, r.payload) for r in lsnwal.replay(plain, from_lsn=oldest + 1, fs=fs)]
    assert got == expected[1:]
    assert fs.hidden == budget


def test_a_quiet_directory_is_believed_at_once(template: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    """When no WAL directory changed for a while nothing can be moving: a missing segment is
    reported after one look (no settling), the same gap as after settling."""
    plain, _zstd = template
    root = tmp_path / "wal"
    shutil.copytree(plain, root)
    parsed = parse_segment_name(_middle(root).name)
    assert parsed is not None
    old = time.time() - 3600
    for d in (root, root / "pending", root / "archive"):
        os.utime(d, (old, old))

    class QuietHidingFs(HidingFs):
        def mtime(self, path: str) -> float:
            return OsFileSystem.mtime(self, path)

    quiet, moving = QuietHidingFs(parsed[0], 10**9), HidingFs(parsed[0], 10**9)
    for fs in (quiet, moving):
        with pytest.raises(lsnwal.WalCorruptionError, match="LSN gap between segments"):
            list(lsnwal.replay(root, fs=fs))
    assert 0 < quiet.hidden < moving.hidden  # settling looked again; a quiet directory did not
