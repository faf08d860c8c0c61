"""Invariant 9: one writer per directory, in this process and across processes."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lsnwal

LOCKED_EXIT = 73  # distinctive exit code of the child when it gets WalLockedError
OPENED_EXIT = 0

CHILD = textwrap.dedent(
    """
    import sys
    import lsnwal
    try:
        wal = lsnwal.open(sys.argv[1])
    except lsnwal.WalLockedError:
        sys.exit({locked})
    wal.append(b"from the child")
    wal.close()
    sys.exit({opened})
    """
).format(locked=LOCKED_EXIT, opened=OPENED_EXIT)


def run_child(path: Path) -> subprocess.CompletedProcess[str]:
    """Run a second Python process that tries to open the WAL at ``path``."""
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=60
    )


def test_second_open_in_same_process_is_refused(wal_dir: Path) -> None:
    """A second open() of an open directory raises WalLockedError and leaves the first intact."""
    with lsnwal.open(wal_dir) as wal:
        wal.append(b"one")
        with pytest.raises(lsnwal.WalLockedError) as info:
            lsnwal.open(wal_dir)
        assert str(wal_dir) in str(info.value)
        with pytest.raises(lsnwal.WalLockedError):
            lsnwal.AsyncWalWriter.open_or_create(wal_dir)
        assert isinstance(info.value, lsnwal.WalError)
        # the first writer is unaffected
        assert wal.append(b"two") == 2
        assert wal.sync() >= 2
    assert [r.payload for r in lsnwal.replay(wal_dir)] == [b"one", b"two"]


def test_lock_is_per_directory(tmp_path: Path) -> None:
    """Two different WAL directories can be open at the same time."""
    with lsnwal.open(tmp_path / "a") as a, lsnwal.open(tmp_path / "b") as b:
        assert a.append(b"a") == 1
        assert b.append(b"b") == 1


def test_second_process_is_refused(wal_dir: Path) -> None:
    """Another process opening the directory gets WalLockedError (its distinctive exit code)."""
    with lsnwal.open(wal_dir) as wal:
        wal.append(b"parent")
        wal.sync()
        proc = run_child(wal_dir)
        assert proc.returncode == LOCKED_EXIT, proc.stderr
        assert wal.append(b"parent again") == 2
    assert [r.payload for r in lsnwal.replay(wal_dir)] == [b"parent", b"parent again"]


def test_second_process_may_open_after_close(wal_dir: Path) -> None:
    """Once the writer has closed, another process opens the directory and continues the LSNs."""
    with lsnwal.open(wal_dir) as wal:
        wal.append(b"parent")
    proc = run_child(wal_dir)
    assert proc.returncode == OPENED_EXIT, proc.stderr
    assert [(r.lsn, r.payload) for r in lsnwal.replay(wal_dir)] == [
        (1, b"parent"),
        (2, b"from the child"),
    ]


def test_reopen_after_close_in_same_process(wal_dir: Path) -> None:
    """After close() (also after a refused second open) the directory can be reopened."""
    wal = lsnwal.open(wal_dir)
    with pytest.raises(lsnwal.WalLockedError):
        lsnwal.open(wal_dir)
    wal.close()
    for expected in (1, 2, 3):
        with lsnwal.open(wal_dir) as again:
            assert again.append(b"x") == expected


def test_refused_open_changes_nothing(wal_dir: Path) -> None:
    """A refused open does not create, delete or modify any file of the directory."""
    with lsnwal.open(wal_dir) as wal:
        wal.append(b"data")
        wal.sync()
        assert wal.wait_archived(timeout=10)

        def listing() -> dict[str, bytes]:
            return {
                str(p.relative_to(wal_dir)): p.read_bytes()
                for p in sorted(wal_dir.rglob("*"))
                if p.is_file() and not p.name.startswith("spare-")
            }

        before = listing()
        with pytest.raises(lsnwal.WalLockedError):
            lsnwal.open(wal_dir)
        assert listing() == before


HOLDER = textwrap.dedent(
    """
    import os
    import sys
    import lsnwal
    wal = lsnwal.open(sys.argv[1])
    wal.append(b"held")
    wal.sync()
    print("locked", flush=True)
    sys.stdin.readline()  # hold the lock until the parent says so
    if sys.argv[2] == "kill":
        os._exit(0)  # no close(): the kernel drops the flock with the process
    wal.close()
    """
)


@pytest.mark.parametrize("ending", ["close", "kill"])
def test_lock_held_by_another_process(wal_dir: Path, ending: str) -> None:
    """While another process holds the WAL open() fails; once it exits (even uncleanly) it works."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(wal_dir), ending],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        try:
            assert child.stdout.readline().strip() == "locked"
            with pytest.raises(lsnwal.WalLockedError):
                lsnwal.open(wal_dir)
        finally:
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.wait(timeout=60) == 0
    with lsnwal.open(wal_dir) as wal:
        assert wal.last_lsn == 1
        assert wal.append(b"parent") == 2
    assert [r.payload for r in lsnwal.replay(wal_dir)] == [b"held", b"parent"]


def test_lock_released_when_wal_is_garbage_collected(wal_dir: Path) -> None:
    """A WAL dropped without close() releases its lock when collected; its records survive."""
    wal = lsnwal.open(wal_dir)
    wal.append(b"a")
    wal.sync_async().wait(timeout=30)
    wal.append(b"b")
    del wal
    gc.collect()
    with lsnwal.open(wal_dir) as again:
        assert again.last_lsn == 2
    assert [r.payload for r in lsnwal.replay(wal_dir)] == [b"a", b"b"]
