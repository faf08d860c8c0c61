"""Open modes (create_if_missing / error_if_exists) and the LSNWAL identity file.

Every directory state is tried with every combination of the two modes, on the
real disk through ``lsnwal.open`` and on the simulated file system through
``prepare_wal_dir``; creating the identity is crashed at every step.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import lsnwal
from lsnwal.identity import (
    IDENTITY_NAME,
    Identity,
    is_wal_dir,
    prepare_wal_dir,
    read_identity,
)
from lsnwal.testing import SimFileSystem, SimState

# Each state: how to build it in a directory ``d`` and whether it is an existing WAL
# ("wal"), a place a WAL may be created ("new") or something to refuse ("foreign").


def _missing(d: Path) -> None:
    pass


def _empty(d: Path) -> None:
    d.mkdir()


def _lock_only(d: Path) -> None:  # a crash right after an old version created LOCK
    d.mkdir()
    (d / "LOCK").write_bytes(b"")


def _foreign_file(d: Path) -> None:
    d.mkdir()
    (d / "data.txt").write_text("not a wal")


def _foreign_dir(d: Path) -> None:
    d.mkdir()
    (d / "photos").mkdir()


def _foreign_archive_dir(d: Path) -> None:  # an "archive" folder is not a WAL
    d.mkdir()
    (d / "archive").mkdir()
    (d / "archive" / "2019.tar").write_bytes(b"old photos")


def _wal(d: Path) -> None:
    with lsnwal.open(d) as wal:
        wal.append(b"x")


def _legacy_wal(d: Path) -> None:  # written before the identity file existed
    _wal(d)
    (d / IDENTITY_NAME).unlink()


def _legacy_archive_only(d: Path) -> None:  # old WAL whose active.wal a crash removed
    with lsnwal.open(d) as wal:
        wal.append(b"x")
        wal.rotate()  # LSN 1 into pending/, then (once synced) the archive
        wal.sync_async().wait()
        assert wal.wait_archived(10.0)
    (d / IDENTITY_NAME).unlink()
    (d / "active.wal").unlink()


STATES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing": (_missing, "new"),
    "empty": (_empty, "new"),
    "lock-only": (_lock_only, "new"),
    "foreign-file": (_foreign_file, "foreign"),
    "foreign-dir": (_foreign_dir, "foreign"),
    "foreign-archive-dir": (_foreign_archive_dir, "foreign"),
    "wal": (_wal, "wal"),
    "legacy-wal": (_legacy_wal, "wal"),
    "legacy-archive-only": (_legacy_archive_only, "wal"),
}
MODES = list(itertools.product([True, False], [True, False]))


def _expected(kind: str, create_if_missing: bool, error_if_exists: bool) -> str:
    if kind == "foreign":
        return "not an lsnwal directory"
    if kind == "wal":
        return "already exists" if error_if_exists else "ok"
    return "ok" if create_if_missing else "create_if_missing=False"


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize(("create_if_missing", "error_if_exists"), MODES)
def test_open_modes_every_directory_state(
    tmp_path: Path, state: str, create_if_missing: bool, error_if_exists: bool
) -> None:
    """``lsnwal.open`` opens, creates or refuses each directory state exactly as documented."""
    d = tmp_path / "wal"
    build, kind = STATES[state]
    build(d)
    before = sorted(os.listdir(d)) if d.is_dir() else None
    want = _expected(kind, create_if_missing, error_if_exists)
    if want != "ok":
        with pytest.raises(lsnwal.WalError, match=want.replace("(", r"\(").replace(")", r"\)")):
            lsnwal.open(d, create_if_missing=create_if_missing, error_if_exists=error_if_exists)
        # a refused open changes nothing, not even creating the directory
        assert (sorted(os.listdir(d)) if d.is_dir() else None) == before
        return
    with lsnwal.open(d, create_if_missing=create_if_missing,
                     error_if_exists=error_if_exists) as wal:
        assert wal.last_lsn == (1 if kind == "wal" else 0)
    ident = read_identity(d)
    assert ident is not None and len(ident.wal_id) == 32
    assert is_wal_dir(d)


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize(("create_if_missing", "error_if_exists"), MODES)
def test_prepare_on_simulated_fs_matches_real(
    tmp_path: Path, state: str, create_if_missing: bool, error_if_exists: bool
) -> None:
    """``prepare_wal_dir`` gives the same verdict on the simulated file system as on disk."""
    build, kind = STATES[state]
    real = tmp_path / "wal"
    build(real)
    sim = SimFileSystem()
    for root, dirs, files in os.walk(real):
        rel = os.path.relpath(root, real)
        base = "/wal" if rel == "." else f"/wal/{rel}"
        sim.makedirs(base)
        for f in files:
            sim.write_file(f"{base}/{f}", Path(root, f).read_bytes())
        for sub in dirs:
            sim.makedirs(f"{base}/{sub}")
    want = _expected(kind, create_if_missing, error_if_exists)
    if want != "ok":
        with pytest.raises(lsnwal.WalError):
            prepare_wal_dir(sim, "/wal", create_if_missing=create_if_missing,
                            error_if_exists=error_if_exists)
        return
    created = prepare_wal_dir(sim, "/wal", create_if_missing=create_if_missing,
                              error_if_exists=error_if_exists)
    assert created == (state == "missing")
    assert read_identity("/wal", sim) is not None


def test_a_file_is_not_a_wal_directory(tmp_path: Path) -> None:
    """A path that is a regular file is refused with a message that says so."""
    f = tmp_path / "wal"
    f.write_text("x")
    with pytest.raises(lsnwal.WalError, match="not a directory"):
        lsnwal.open(f)


def test_identity_is_stable_across_reopens(tmp_path: Path) -> None:
    """The wal_id written at creation is kept by every later open."""
    d = tmp_path / "wal"
    lsnwal.open(d).close()
    first = read_identity(d)
    lsnwal.open(d).close()
    assert read_identity(d) == first
    doc = json.loads((d / IDENTITY_NAME).read_text())
    assert doc["format"] == "lsnwal-identity" and doc["version"] == 1


def test_two_new_wals_get_different_ids(tmp_path: Path) -> None:
    """Each new WAL directory gets its own random wal_id."""
    ids = set()
    for i in range(5):
        lsnwal.open(tmp_path / f"w{i}").close()
        ident = read_identity(tmp_path / f"w{i}")
        assert ident is not None
        ids.add(ident.wal_id)
    assert len(ids) == 5


def test_legacy_wal_gets_identity_and_keeps_records(tmp_path: Path) -> None:
    """A WAL written before the identity file opens, keeps its records and gains an identity."""
    d = tmp_path / "wal"
    with lsnwal.open(d) as wal:
        wal.append_batch([b"a", b"\xff\x00b"])
    (d / IDENTITY_NAME).unlink()
    with lsnwal.open(d) as wal:
        assert wal.last_lsn == 2
    assert read_identity(d) is not None
    assert [r.payload for r in lsnwal.replay(d)] == [b"a", b"\xff\x00b"]


@pytest.mark.parametrize("content", [
    b"", b"garbage", b"\xff\xfe", b"[]", b'{"format": "other"}',
    b'{"format": "lsnwal-identity", "version": "1", "wal_id": "x", "created": 0}',
    b'{"format": "lsnwal-identity", "version": 1, "wal_id": 5, "created": 0}',
    b'{"format": "lsnwal-identity", "version": 1, "wal_id": "x"}',
])
def test_damaged_identity_is_refused(tmp_path: Path, content: bytes) -> None:
    """A damaged identity file stops the open with a WalError naming the file."""
    d = tmp_path / "wal"
    lsnwal.open(d).close()
    (d / IDENTITY_NAME).write_bytes(content)
    with pytest.raises(lsnwal.WalError, match=IDENTITY_NAME):
        lsnwal.open(d)


def test_newer_identity_version_is_refused(tmp_path: Path) -> None:
    """An identity from a newer lsnwal asks for an upgrade instead of guessing."""
    d = tmp_path / "wal"
    lsnwal.open(d).close()
    (d / IDENTITY_NAME).write_bytes(Identity(2, "ab" * 16, 0.0).encode())
    with pytest.raises(lsnwal.WalError, match="upgrade lsnwal"):
        lsnwal.open(d)


def test_verify_refuses_a_directory_that_is_not_a_wal(tmp_path: Path) -> None:
    """``verify`` on a non-empty non-WAL directory and on an empty one is not ok."""
    (tmp_path / "data.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for d in (tmp_path, tmp_path / "empty", tmp_path / "missing"):
        report = lsnwal.verify(d)
        assert not report.ok
        assert report.segments == 0


def test_verify_still_accepts_a_new_wal(tmp_path: Path) -> None:
    """A freshly created WAL (identity, no records) verifies ok."""
    lsnwal.open(tmp_path / "wal").close()
    assert lsnwal.verify(tmp_path / "wal").ok


def test_restore_target_gets_an_identity(tmp_path: Path) -> None:
    """A WAL directory written by ``restore`` carries its own identity file."""
    with lsnwal.open(tmp_path / "src") as wal:
        wal.append(b"x")
    lsnwal.restore(tmp_path / "src", tmp_path / "dst")
    src, dst = read_identity(tmp_path / "src"), read_identity(tmp_path / "dst")
    assert src is not None and dst is not None and src.wal_id != dst.wal_id


def test_loser_of_a_creation_race_keeps_the_winners_identity() -> None:
    """Two creators of one directory end with exactly one identity file, the first one."""
    fs = SimFileSystem()
    prepare_wal_dir(fs, "/wal")
    first = read_identity("/wal", fs)
    from lsnwal.identity import _write_identity

    _write_identity(fs, fs.sync_backend(), "/wal")  # the second creator, a moment late
    assert read_identity("/wal", fs) == first
    assert sorted(fs.listdir("/wal")) == [IDENTITY_NAME]


def test_every_crash_during_creation_reopens_cleanly() -> None:
    """A crash at any step of creating a WAL directory leaves it creatable or identified."""
    states: list[SimState] = []
    fs = SimFileSystem()
    fs.makedirs("/data")
    fs.write_file("/data/keep.txt", b"neighbour")  # durable before we start
    fs.on_op = lambda _op: states.append(fs.checkpoint_state())
    prepare_wal_dir(fs, "/data/wal")
    fs.on_op = None
    final = read_identity("/data/wal", fs)
    assert final is not None
    tried = 0
    for st in states:
        for _v, crashed in SimFileSystem.from_state(st).crash_states():
            tried += 1
            before = read_identity("/data/wal", crashed) if crashed.exists("/data/wal") else None
            assert before in (None, final)  # never a torn or foreign identity
            prepare_wal_dir(crashed, "/data/wal")
            after = read_identity("/data/wal", crashed)
            assert after is not None
            assert before is None or after == before
            assert [n for n in crashed.listdir("/data/wal") if n.endswith(".tmp")] == []
            assert crashed.read_file("/data/keep.txt") == b"neighbour"
    assert tried >= len(states)
