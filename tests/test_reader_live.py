"""Readers next to a live writer in other processes: verify, replay and follow never invent
damage, and the follower sees every durable record exactly once, across a kill -9.

The writer (threads and asyncio tasks, small segments, zstd archive, retention on)
and each reader run as separate processes (``_live_child.py``). The short form
runs in ``make test``; ``LSNWAL_STRESS=1`` runs it longer, with more kills.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lsnwal

STRESS = os.environ.get("LSNWAL_STRESS") == "1"  # as conftest.stress_enabled()
CHILD = str(Path(__file__).with_name("_live_child.py"))


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent),
                                         env.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, CHILD, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _result(proc: subprocess.Popen[str], timeout: float) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, (out, err)
    result: dict[str, object] = json.loads(lines[-1])
    return result


def _start_writer(root: Path, ctrl: Path, gen: int, seconds: float) -> subprocess.Popen[str]:
    proc = _spawn("writer", str(root), str(ctrl), str(gen), str(seconds))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
    return proc


def _run(tmp_path: Path, gens: list[tuple[float, bool]]) -> None:
    """Run writer generations ``(seconds, killed)`` under three readers; check everything."""
    root, ctrl = tmp_path / "wal", tmp_path / "ctrl"
    ctrl.mkdir()
    writer = _start_writer(root, ctrl, 0, gens[0][0])
    readers = {role: _spawn(role, str(root), str(ctrl)) for role in ("follow", "verify",
                                                                      "replay")}
    for gen, (seconds, killed) in enumerate(gens):
        if gen:
            writer = _start_writer(root, ctrl, gen, seconds)
        if killed:
            time.sleep(seconds / 2)
            writer.send_signal(signal.SIGKILL)
            writer.communicate(timeout=30)
        else:
            done = _result(writer, timeout=seconds + 60)
            assert done["errors"] == []
    final = lsnwal.open_reader(root).synced_lsn
    assert final > 0
    (ctrl / "stop").write_text(str(final))
    got = {role: _result(proc, timeout=120) for role, proc in readers.items()}

    fol = got["follow"]
    assert fol["errors"] == []
    # every durable record exactly once, in order, never above the published watermark
    assert (fol["first"], fol["last"], fol["count"], fol["distinct"]) == (1, final, final,
                                                                          final)
    assert (fol["out_of_order"], fol["above_watermark"], fol["bad_payload"]) == (0, 0, 0)
    assert fol["seq_errors"] == 0  # each writer thread's records, contiguous and byte-exact
    assert int(str(fol["sequences"])) >= 6

    ver = got["verify"]
    assert ver["errors"] == [] and ver["problems"] == []
    assert int(str(ver["runs"])) >= 100
    rep = got["replay"]
    assert rep["errors"] == []
    assert int(str(rep["runs"])) >= 5
    report = lsnwal.verify(root)
    assert report.ok, report.problems
    assert report.last_lsn == final


def test_live_readers_and_follower_across_a_kill(tmp_path: Path) -> None:
    """verify (>= 100 runs), replay and a follower in other processes next to a live writer
    that is killed with SIGKILL and restarted: no false problem, no lost or repeated record."""
    if STRESS:  # three kills, then a long clean run
        _run(tmp_path, [(8.0, True), (8.0, True), (8.0, True), (20.0, False)])
    else:
        _run(tmp_path, [(1.5, True), (1.5, False)])
