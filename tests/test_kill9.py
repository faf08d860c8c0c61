"""A kill -9 loop: every LSN a child process was told is durable survives, byte for byte.

Each cycle starts ``_kill9_child.py`` on the same WAL directory. The child writes
from several threads and prints ``<lsn> <payload hex>`` for every record whose
durability it was acknowledged; the parent SIGKILLs it at a seeded random moment,
recovers the directory and checks invariant 7 (no acknowledged loss) and
invariant 1 (contiguous LSNs, never reused).
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

import lsnwal

CHILD = Path(__file__).with_name("_kill9_child.py")
CYCLES = 100 if os.environ.get("LSNWAL_STRESS") == "1" else 20
SEED = int(os.environ.get("LSNWAL_KILL9_SEED", "20240611"))
CONFIG = lsnwal.WalConfig(segment_max_bytes=16 * 1024)


class _Child:
    """A running child with a thread collecting its complete stdout lines."""

    def __init__(self, wal_dir: Path, seed: int, stderr_path: Path) -> None:
        self.lines: list[bytes] = []
        self.first_ack = threading.Event()
        self._stderr = stderr_path.open("wb")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(wal_dir), str(seed), "4"],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, name="kill9-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if not line.startswith(b"ready"):
                self.first_ack.set()
        self.first_ack.set()  # EOF: the child died early; the caller checks why

    def kill(self) -> int:
        """SIGKILL the child, collect everything it printed; return its exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        status = self.proc.wait(30)
        self._reader.join(30)
        self._stderr.close()
        return status


def _check_recovered(wal_dir: Path, acked: dict[int, bytes], from_lsn: int | None) -> int:
    """Recover ``wal_dir`` and check every acknowledged record; return the last LSN."""
    with lsnwal.open(wal_dir, CONFIG) as wal:
        last = wal.last_lsn
        assert last >= max(acked, default=0), "recovery lost acknowledged LSNs"
        assert wal.synced_lsn == last
    records = list(lsnwal.replay(wal_dir, config=CONFIG, from_lsn=from_lsn))
    lsns = [r.lsn for r in records]
    assert lsns == list(range(lsns[0], lsns[0] + len(lsns))), "LSNs are not contiguous"
    assert lsns[-1] == last
    if from_lsn is not None:
        assert lsns[0] == from_lsn
    got = {r.lsn: r.payload for r in records}
    start = lsns[0]
    for lsn, payload in acked.items():
        if lsn >= start:
            assert got.get(lsn) == payload, f"acknowledged LSN {lsn} lost or changed"
    report = lsnwal.verify(wal_dir, config=CONFIG)
    assert report.ok, report.problems
    return last


@pytest.mark.timeout(120)
def test_kill9_loop_loses_no_acknowledged_record(wal_dir: Path, tmp_path: Path) -> None:
    """About 20 SIGKILLs at random moments: every acknowledged LSN survives byte for byte."""
    rng = random.Random(SEED)
    acked: dict[int, bytes] = {}
    last = 0
    for cycle in range(CYCLES):
        stderr_path = tmp_path / f"child-{cycle}.err"
        child = _Child(wal_dir, SEED + cycle, stderr_path)
        try:
            assert child.first_ack.wait(30), "the child acknowledged nothing"
            time.sleep(rng.uniform(0.0, 0.4))  # the seeded random moment of the kill
        finally:
            status = child.kill()
        errors = stderr_path.read_text()
        assert status == -signal.SIGKILL, f"child exited with {status}: {errors}"
        assert "Traceback" not in errors, errors

        complete = [line for line in child.lines if line.endswith(b"\n")]
        assert complete and complete[0].startswith(b"ready ")
        ready_last = int(complete[0].split()[1])
        assert ready_last >= max(acked, default=0), "the child's recovery lost acked LSNs"
        new = 0
        for line in complete[1:]:
            lsn_text, hex_payload = line.split()
            lsn = int(lsn_text)
            assert lsn > ready_last, f"LSN {lsn} was handed out twice"
            assert lsn not in acked, f"LSN {lsn} was acknowledged twice"
            acked[lsn] = bytes.fromhex(hex_payload.decode())
            new += 1
        assert new > 0
        assert ready_last == last, "the child did not continue where recovery ended"
        # this cycle's records each time; the whole log every fifth cycle and at the end
        full = cycle % 5 == 4 or cycle == CYCLES - 1
        last = _check_recovered(wal_dir, acked, None if full else ready_last + 1)
    assert len(acked) > CYCLES
    assert last >= max(acked)
