"""``lsnwal store-check``, ``lsnwal follow`` (and the standby API), and CLI commands on a URL.

Against SeaweedFS started by the suite, and a real ``rclone serve s3`` that the
check must refuse. Outputs are compared record by record with the local WAL.
"""

from __future__ import annotations

import io
import json
import random
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from _seaweed import ACCESS_KEY, SECRET_KEY, Server

import lsnwal
from lsnwal.cli import main
from lsnwal.store.follow import Follower


@pytest.fixture(autouse=True)
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test server's credentials in the usual AWS environment variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


def run(*argv: str) -> tuple[int, str]:
    """Run the CLI in-process; return (exit status, stdout)."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def recs(it: Any) -> list[tuple[int, int, float, bytes]]:
    """Records as comparable tuples."""
    return [(r.lsn, int(r.kind), r.timestamp, r.payload) for r in it]


def write(wal: lsnwal.AsyncWalWriter, n: int, seed: int) -> None:
    """Append ``n`` random records and a mark, rotate and sync."""
    rng = random.Random(seed)
    for _ in range(n):
        wal.append(rng.randbytes(rng.randint(20, 300)))
    wal.mark(f"after-{seed}")
    wal.rotate()  # seal the active segment: it archives and ships
    wal.sync()


def shipped(wal: lsnwal.AsyncWalWriter) -> None:
    """Wait until everything archived is in the store."""
    wal.wait_archived(30)
    assert wal._archiver.wait_shipped(60)


def test_store_check_command(seaweed: Any, tmp_path: Path) -> None:
    """store-check exits 0 on SeaweedFS and 1 on rclone, naming the probes rclone fails."""
    code, out = run("store-check", seaweed.url(), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and len(report["probes"]) == 7
    rc = Server("rclone", str(tmp_path / "rc" / "data"))
    rc.start()
    try:
        code, out = run("store-check", rc.url())
    finally:
        rc.stop()
    assert code == 1 and "REFUSED" in out
    assert "FAIL  refuse-overwrite" in out and "FAIL  checksum-enforced" in out


def test_cli_restore_verify_marks_from_a_url(seaweed: Any, tmp_path: Path) -> None:
    """``lsnwal restore URL DST --until-mark`` equals a local restore; verify and marks work."""
    url = seaweed.url()
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, archive_url=url,
                           archive_store=seaweed.client())
    with lsnwal.open(tmp_path / "w", cfg) as wal:
        write(wal, 150, 1)
        write(wal, 100, 2)
        shipped(wal)
    code, out = run("restore", url, str(tmp_path / "r"), "--until-mark", "after-1")
    assert code == 0 and "restored" in out
    lsnwal.restore(tmp_path / "w", tmp_path / "l", until_mark="after-1")
    assert recs(lsnwal.replay(tmp_path / "r")) == recs(lsnwal.replay(tmp_path / "l"))
    code, out = run("verify", url, "--json")
    assert code == 0 and json.loads(out)["ok"]
    code, out = run("marks", url)
    assert code == 0 and "after-1" in out and "after-2" in out
    code, out = run("replay", url, "--until-mark", "after-2", "--json")
    assert code == 0 and json.loads(out)["result"]["last_lsn"] == lsnwal.list_marks(
        tmp_path / "w")[-1][1]
    assert run("restore", url, str(tmp_path / "r"))[0] == 1  # target not empty: refused


def test_standby_follows_segments_as_they_land(seaweed: Any, tmp_path: Path) -> None:
    """A follower copies each new segment once; the replica replays what the store holds."""
    url = seaweed.url()
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, archive_url=url,
                           archive_store=seaweed.client())
    replica = tmp_path / "replica"
    with lsnwal.open(tmp_path / "w", cfg) as wal:
        write(wal, 100, 1)
        shipped(wal)
        f = Follower(url, replica)
        first = f.poll()
        assert first > 0 and f.status().pending == 0
        assert recs(lsnwal.replay(replica)) == recs(lsnwal.replay(url))
        assert f.poll() == 0  # nothing new: one LIST, no copy
        write(wal, 100, 2)
        shipped(wal)
        second = f.poll()
        assert second > 0
        st = f.status()
        assert st.segments == first + second and st.last_lsn == wal.last_lsn
        assert recs(lsnwal.replay(replica)) == recs(lsnwal.replay(url))
        write(wal, 50, 3)
        shipped(wal)
    code, out = run("follow", url, str(replica), "--once", "--json")
    line = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and line["copied"] > 0 and line["pending"] == 0
    assert recs(lsnwal.replay(replica)) == recs(lsnwal.replay(url))
    # The standby takes over: it writes on, and ships on a new timeline.
    with lsnwal.open(replica, cfg) as wal:
        write(wal, 30, 4)
        shipped(wal)
        assert wal.stats().as_dict()["ship_timeline"] == 2
