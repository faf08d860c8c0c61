"""The ``lsnwal demo`` behind ``make run``, end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lsnwal
from lsnwal import demo
from lsnwal.cli import main


def test_demo_runs_end_to_end_and_every_check_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo commits, kills a child with SIGKILL, recovers, restores, and every check passes."""
    work = tmp_path / "demo"
    rc = main(["demo", "--dir", str(work)])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "[FAIL]" not in out
    assert re.search(r"^all \d+ checks passed in [\d.]+ s", out, re.M)
    for line in (
        "awaiting wal.sync_async()",
        "calling the blocking wal.sync()",
        "commits per fsync",
        "[ok] child killed by SIGKILL mid-stream (exit status -9)",
        "acknowledged child transactions recovered",
        "[ok] snapshot + replay equals a full replay from LSN 1",
        "[ok] restored state equals the state at the mark",
    ):
        assert line in out, line
    assert re.search(r"[\d,]+ commits/s", out)
    # The three ways of computing the state at the mark print the same digest.
    pitr = out.split("\n7. point-in-time restore")[1]
    digests = re.findall(r"transactions, digest ([0-9a-f]{16})$", pitr, re.M)
    assert len(digests) == 3 and len(set(digests)) == 1
    # What the demo left behind is a sound WAL with the mark, and a restored WAL ending at it.
    assert lsnwal.verify(work / "wal").ok
    (name, mark_lsn, _), = lsnwal.list_marks(work / "wal")
    assert name == demo.MARK_NAME
    assert [r.lsn for r in lsnwal.replay(work / "restored-wal")][-1] == mark_lsn


def test_demo_refuses_to_wipe_a_directory_it_did_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-empty --dir without the demo's marker file is left alone, with a one-line error."""
    precious = tmp_path / "precious.txt"
    precious.write_text("do not delete")
    rc = main(["demo", "--dir", str(tmp_path)])
    _, err = capsys.readouterr()
    assert rc == 1
    assert len(err.strip().splitlines()) == 1
    assert "refusing to wipe" in err
    assert precious.read_text() == "do not delete"


def test_demo_directory_is_wiped_when_it_is_the_demos_own(tmp_path: Path) -> None:
    """A directory holding the demo's marker is wiped and made afresh (so `make run` repeats)."""
    work = tmp_path / "demo"
    work.mkdir()
    (work / demo.MARKER).write_text("")
    (work / "old-run.txt").write_text("stale")
    root = demo._prepare(str(work))
    assert root == str(work)
    assert sorted(p.name for p in work.iterdir()) == [demo.MARKER]


def test_rebuild_uses_the_checkpoint_snapshot(tmp_path: Path) -> None:
    """rebuild starts from the CHECKPOINT snapshot, so records it covers are not replayed again."""
    path = tmp_path / "wal"
    with lsnwal.open(path) as wal:
        store = demo.Store(wal)
        store.open_accounts()
        rng = demo.random.Random(1)
        for n in range(10):
            store.transfer(f"x{n}", rng)
        covered = wal.last_lsn
        # A snapshot that differs from a replay: proves the snapshot is what is used.
        snap = dict(store.data, marker=7)
        wal.checkpoint(covered, demo.json.dumps({"lsn": covered, "data": snap}).encode())
        for n in range(5):
            store.transfer(f"y{n}", rng)
        wal.sync()
        cp = wal.checkpoint_lsn
    got = demo.rebuild(str(path), cp)
    assert got.snapshot_lsn == covered
    assert got.replayed == 5
    assert got.data["marker"] == 7
    assert {k: v for k, v in got.data.items() if k != "marker"} == demo.full_replay(str(path))
