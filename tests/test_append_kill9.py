"""A process crash loses nothing appended: kill -9 of a writer that never syncs.

Owns the family "appends survive a process crash" (the default configuration
hands every record to the operating system before ``append`` returns): each
cycle starts ``_append_child.py`` on the same WAL directory; the child appends
single records and batches without ever syncing and prints every LSN once its
call returned; the parent SIGKILLs it at a seeded random moment, reopens the
directory and checks that every printed LSN is there byte for byte, that LSNs
are contiguous and that the child continued where recovery ended.

Cycles: 6 (3 for each of two segment sizes) in the normal run, 100 under ``LSNWAL_STRESS=1``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _commit_helpers import stress_enabled

import lsnwal

CHILD = Path(__file__).with_name("_append_child.py")
CYCLES = 100 if stress_enabled() else 6
SEED = int(os.environ.get("LSNWAL_APPEND_KILL9_SEED", "20261202"))


class _Child:
    """A running child and a thread collecting its complete stdout lines."""

    def __init__(self, wal_dir: Path, seed: int, seg: int, stderr_path: Path) -> None:
        self.lines: list[bytes] = []
        self.started = threading.Event()
        self._stderr = stderr_path.open("wb")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(wal_dir), str(seed), str(seg)],
            stdout=subprocess.PIPE, stderr=self._stderr, env=env,
        )
        self._reader = threading.Thread(target=self._read, name="append-kill9", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if len(self.lines) > 1:
                self.started.set()
        self.started.set()  # EOF: the child died early; the caller checks why

    def kill(self) -> int:
        """SIGKILL the child, collect everything it printed; return its exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        status = self.proc.wait(30)
        self._reader.join(30)
        self._stderr.close()
        return status


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seg", [16 * 1024, 64 * 1024 * 1024])
def test_every_appended_record_survives_kill9(tmp_path: Path, seg: int) -> None:
    """SIGKILL at random moments: every LSN the child saw appended is recovered byte for byte."""
    rng = random.Random(SEED + seg)
    wal_dir = tmp_path / "wal"
    cfg = lsnwal.WalConfig(segment_max_bytes=seg)
    appended: dict[int, bytes] = {}
    last = 0
    for cycle in range(CYCLES // 2):
        err = tmp_path / f"child-{cycle}.err"
        child = _Child(wal_dir, SEED + cycle, seg, err)
        try:
            assert child.started.wait(60), "the child appended nothing"
            time.sleep(rng.uniform(0.0, 0.15))  # the seeded random moment of the kill
        finally:
            status = child.kill()
        errors = err.read_text()
        assert status == -signal.SIGKILL, f"child exited with {status}: {errors}"
        complete = [line for line in child.lines if line.endswith(b"\n")]
        assert complete and complete[0].startswith(b"ready "), errors
        ready = int(complete[0].split()[1])
        assert ready == last, f"recovery ended at {last}, the child started after {ready}"
        for line in complete[1:]:
            lsn_text, hex_payload = line.split()
            lsn = int(lsn_text)
            assert lsn > ready and lsn not in appended, f"LSN {lsn} handed out twice"
            appended[lsn] = bytes.fromhex(hex_payload.decode())
        assert len(complete) > 1
        with lsnwal.open(wal_dir, cfg) as wal:
            last = wal.last_lsn
        records = {r.lsn: r.payload for r in lsnwal.replay(wal_dir, config=cfg)}
        assert sorted(records) == list(range(1, last + 1)), "LSNs are not 1..last"
        lost = [lsn for lsn in appended if records.get(lsn) != appended[lsn]]
        assert not lost, (
            f"cycle {cycle}: {len(lost)} appended records lost or changed by kill -9 "
            f"(first: LSN {min(lost)}; recovered up to {last}, appended up to {max(appended)})"
        )
    assert len(appended) > CYCLES
