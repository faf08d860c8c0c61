"""A rename or a new file is made durable before any record in it is acknowledged.

Owns the family "acknowledged before the rename is durable": with 4 KiB segments
rotating under concurrent committers (``sync()``, ``sync_async().wait()``,
handles nobody waits on, left to the background sync thread), a recording file
system logs every create and rename and a recording backend every file and
directory fsync. For every LSN x that anyone was told is durable (a return
value or a reading of ``synced_lsn``), every create/rename of the file holding x
that happened before that first acknowledgement must have been followed by an
fsync of the directories involved (destination and source) before it. (Moves
into ``archive/`` of segments already fsynced are left out: the archiver moves
durable history after it was published, which the log cannot time exactly.) The
acknowledgements are also checked for honesty (data fsynced first).

It also checks the checkers: hand-built logs with a missing directory fsync or
an early acknowledgement must be rejected, so these tests can fail.

Runs: 6 (threads x seed) combinations in the normal run, 60 under
``LSNWAL_STRESS=1``.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
from _commit_helpers import (
    Ack,
    DirSync,
    FileSync,
    Monitor,
    NsEvent,
    Recorder,
    RecordingBackend,
    check_honest,
    check_rename_order,
    data_records,
    payload,
    run_threads,
    stress_enabled,
)
from _fault_fs import RecordingFs

import lsnwal

CFG = lsnwal.WalConfig(segment_max_bytes=4096)
RUNS = [(t, s) for s in range(12) for t in (1, 2, 4, 8, 16)] if stress_enabled() else [
    (1, 0), (2, 1), (4, 2), (8, 3), (16, 4), (6, 5)
]


def _workload(wal: lsnwal.AsyncWalWriter, rec: Recorder, written: dict[int, bytes],
              seed: int) -> tuple[threading.Lock, list[lsnwal.SyncHandle], object]:
    mu = threading.Lock()
    loose: list[lsnwal.SyncHandle] = []

    def work(t: int) -> None:
        rng = random.Random(seed * 100 + t)
        for i in range(40):
            if rng.random() < 0.25:
                ps = [payload(f"s{seed}t{t}i{i}", k, rng.randint(20, 300)) for k in range(3)]
                lsns = list(wal.append_batch(ps))
            else:
                ps = [payload(f"s{seed}t{t}i{i}", 0, rng.randint(20, 400))]
                lsns = [wal.append(ps[0])]
            with mu:
                written.update(zip(lsns, ps, strict=True))
            r = rng.random()
            if r < 0.35:
                got = wal.sync()
                rec.ack(got, "sync()")
                assert got >= lsns[-1]
            elif r < 0.7:
                h = wal.sync_async()
                assert h.wait(60)
                rec.ack(h.target_lsn, "handle.wait()")
            else:
                with mu:
                    loose.append(wal.sync_async())

    return mu, loose, work


@pytest.mark.parametrize(("threads", "seed"), RUNS)
def test_every_rename_is_dir_fsynced_before_its_records_are_acknowledged(
    tmp_path: Path, threads: int, seed: int
) -> None:
    """Concurrent committers over rotating segments: no ack precedes the dir fsync it needs."""
    rec = Recorder()
    backend = RecordingBackend(rec)
    wal_dir = tmp_path / "wal"
    wal = lsnwal.open(wal_dir, CFG, sync_backend=backend, fs=RecordingFs(rec, backend))
    written: dict[int, bytes] = {}
    try:
        with Monitor(wal, rec):
            _, loose, work = _workload(wal, rec, written, seed)
            run_threads(threads, work)  # type: ignore[arg-type]
            for h in loose:
                assert h.wait(60)
                rec.ack(h.target_lsn, "late handle.wait()")
        rotations = wal.stats().rotations
    finally:
        wal.close()
    assert rotations >= 2, "the workload must rotate segments under the committers"
    assert check_honest(rec, written) > 0
    pairs = check_rename_order(rec, wal_dir / "archive")
    assert pairs > 0, "no rename or create preceded an acknowledgement: nothing was checked"
    assert data_records(wal_dir, config=CFG) == written


# --------------------------------------------------------------------------- the checkers can fail


def _log(missing_dir: bool, early_ack: bool) -> Recorder:
    """A hand-built log: create a file, fsync it, fsync its directory, acknowledge LSN 2."""
    rec = Recorder()
    rec.ns_events.append(NsEvent(1, "rename", 7, "/w", "/w/pending", "rename a -> pending/a"))
    rec.file_syncs.append(FileSync(2, 3, 7, 1, {1: b"a", 2: b"b"}, True))
    if not missing_dir:
        rec.dir_syncs.append(DirSync(4, 5, "/w/pending", True))
        rec.dir_syncs.append(DirSync(6, 7, "/w", True))
    rec.acks.append(Ack(2 if early_ack else 8, 2, "sync()"))
    return rec


def test_the_rename_checker_rejects_a_missing_directory_fsync() -> None:
    """An ack after a rename whose directories were never fsynced is rejected."""
    with pytest.raises(AssertionError, match="before the directories involved"):
        check_rename_order(_log(missing_dir=True, early_ack=False))


def test_the_honesty_checker_rejects_an_ack_before_the_fsync_returned() -> None:
    """An ack logged while the covering fsync was still running is rejected."""
    with pytest.raises(AssertionError, match="cover only up to LSN 0"):
        check_honest(_log(missing_dir=False, early_ack=True), {1: b"a", 2: b"b"})


def test_the_checkers_accept_a_good_order() -> None:
    """The same log with both directories fsynced before a late ack passes both checks."""
    rec = _log(False, False)
    assert check_honest(rec, {1: b"a", 2: b"b"}) == 1
    assert check_rename_order(rec) == 2


def test_the_honesty_checker_rejects_changed_bytes_and_a_falling_synced_lsn() -> None:
    """Fsynced bytes that differ from the payload, or synced_lsn going down, are rejected."""
    rec = _log(False, False)
    with pytest.raises(AssertionError, match="differ"):
        check_honest(rec, {1: b"a", 2: b"X"})
    rec.samples.extend([(9, 2), (10, 1)])
    with pytest.raises(AssertionError, match="backwards"):
        check_honest(rec, {1: b"a", 2: b"b"})


def test_the_rename_checker_skips_only_archive_moves_of_durable_files() -> None:
    """Moving a fully fsynced file into archive/ needs no dir fsync before a later ack."""
    rec = _log(missing_dir=False, early_ack=False)
    rec.ns_events.append(NsEvent(7, "rename", 7, "/w/pending", "/w/archive", "archive a"))
    rec.acks.append(Ack(9, 2, "sync()"))
    assert check_rename_order(rec, "/w/archive") == 2
    early = _log(missing_dir=False, early_ack=False)  # the move precedes the data's fsync
    early.ns_events.insert(0, NsEvent(0, "rename", 7, "/w/pending", "/w/archive", "archive a"))
    with pytest.raises(AssertionError, match="archive a"):
        check_rename_order(early, "/w/archive")
