"""Shipping archived segments to a real object store (SeaweedFS started by the suite).

Each test opens a WAL with ``archive_url`` and checks the store's objects byte
for byte against the local archive, and what the store holds by replaying it.
Faults a server cannot produce on demand (a 500 on the n-th put, a lost
answer, a revoked permission, a stalled upload) are injected at the store seam
(``tests/_faultstore.py``); a stopped server, a conflicting object and a
``kill -9`` are real.
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
from typing import Any

import pytest
from _faultstore import FaultStore
from _seaweed import ACCESS_KEY, SECRET_KEY, Server, s3_client

import lsnwal
from lsnwal.store import (
    StoreTransientError,
    open_store,
    parse_url,
)
from lsnwal.store.base import ObjectStore
from lsnwal.store.source import read_source
from lsnwal.store.url import segment_key

CHILD = Path(__file__).with_name("_ship_child.py")


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test server's credentials in the usual AWS environment variables."""
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def cfg(url: str, store: Any = None, **kw: Any) -> lsnwal.WalConfig:
    """Small segments, quick retries, shipping to ``url``."""
    return lsnwal.WalConfig(segment_max_bytes=4096, archive_url=url, archive_store=store,
                            archive_ship_retry_max_s=0.2, **kw)


def write(wal: lsnwal.AsyncWalWriter, n: int, seed: int = 1) -> None:
    """Append ``n`` records of 40..400 random bytes and sync."""
    rng = random.Random(seed)
    for _ in range(n):
        wal.append(rng.randbytes(rng.randint(40, 400)))
    wal.sync()


def ship_stats(wal: lsnwal.AsyncWalWriter) -> dict[str, Any]:
    """The shipping counters (the ship_* fields of the WAL's stats)."""
    return wal.stats().as_dict()


def wait_shipped(wal: lsnwal.AsyncWalWriter, timeout: float = 60.0) -> bool:
    """Wait until every archived segment is in the store."""
    wal.wait_archived(timeout)
    return wal._archiver.wait_shipped(timeout)


def records(path: str, store: Any = None) -> list[tuple[int, int, float, bytes]]:
    """Every record of a WAL directory or store URL, as comparable tuples."""
    src, fs = read_source(path, None, store)
    return [(r.lsn, int(r.kind), r.timestamp, r.payload) for r in lsnwal.replay(src, fs=fs)]


def assert_store_matches_archive(store: ObjectStore, url: str, wal_dir: Path,
                                 timeline: int = 1) -> int:
    """Every local archived segment is in the store byte for byte; return how many."""
    pfx = parse_url(url).prefix
    names = sorted(os.listdir(wal_dir / "archive"))
    for name in names:
        assert store.get(segment_key(pfx, timeline, name)) == (wal_dir / "archive" / name) \
            .read_bytes(), name
    return len(names)


def assert_store_holds_archived_records(url: str, store: Any, wal_dir: Path) -> None:
    """The store replays exactly the local records up to the last archived LSN.

    Records of the active segment reach the store when it is sealed (rotation);
    everything archived must be there, identical.
    """
    archived = [s for s in lsnwal.collect_all_segments(wal_dir) if s.state == "archive"]
    remote = records(url, store)
    local = records(str(wal_dir))
    assert remote and remote[-1][0] == archived[-1].last_lsn
    assert remote == local[: len(remote)]


def wait_until(pred: Any, timeout: float = 60.0) -> None:
    """Wait (bounded) for a condition the shipper thread reaches on its own."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_every_segment_is_shipped_once_byte_for_byte(seaweed: Any, tmp_path: Path) -> None:
    """Every archived segment lands as one object, identical bytes, LSN metadata from its seal."""
    url, client = seaweed.url(), seaweed.client()
    store = open_store(url, client)
    with lsnwal.open(tmp_path / "w", cfg(url, client)) as wal:
        write(wal, 150)
        wal.mark("before")
        write(wal, 100, seed=2)
        wal.checkpoint(wal.last_lsn)
        wal.sync()
        assert wait_shipped(wal)
        st = ship_stats(wal)
    n = assert_store_matches_archive(store, url, tmp_path / "w")
    assert n >= 10 and st["ship_objects"] == n
    assert (st["ship_lag_lsns"], st["ship_lag_bytes"], st["ship_conflict"]) == (0, 0, False)
    pfx = parse_url(url).prefix
    for seg in lsnwal.collect_all_segments(tmp_path / "w"):
        if seg.state != "archive":
            continue  # the active segment ships once it is sealed and archived
        meta = store.head(segment_key(pfx, 1, os.path.basename(seg.path)))
        assert meta is not None
        assert meta.metadata["lsnwal-first-lsn"] == str(seg.first_lsn)
        assert meta.metadata["lsnwal-last-lsn"] == str(seg.last_lsn)
    assert_store_holds_archived_records(url, client, tmp_path / "w")


def test_local_copy_goes_only_after_the_store_acknowledged(seaweed: Any, tmp_path: Path) -> None:
    """With the archive off, checkpointed segments stay local while uploads stall, then go."""
    url = seaweed.url()
    fault = FaultStore(open_store(url, seaweed.client()))
    fault.gate.clear()  # every segment upload waits
    with lsnwal.open(tmp_path / "w", cfg(url, fault, archive_enabled=False)) as wal:
        write(wal, 200)
        wal.checkpoint(wal.last_lsn)
        wal.sync()
        wal.wait_archived(30)
        held = sorted(os.listdir(tmp_path / "w" / "archive"))
        assert len(held) >= 5  # retention would delete them all; the store has none yet
        assert ship_stats(wal)["ship_lag_bytes"] > 0
        write(wal, 20, seed=3)  # commits go on while shipping is stuck
        fault.gate.set()
        assert wait_shipped(wal)
        wal.checkpoint(wal.last_lsn)
        wal.sync()
        wal.prune()
        wait_until(lambda: not os.listdir(tmp_path / "w" / "archive"))
    st = open_store(url, seaweed.client())
    pfx = parse_url(url).prefix
    for name in held:
        assert st.head(segment_key(pfx, 1, name)) is not None


def test_transient_errors_are_retried_until_shipped(seaweed: Any, tmp_path: Path) -> None:
    """Injected 500s and timeouts on several puts are retried; every segment still lands once."""
    url = seaweed.url()
    fault = FaultStore(open_store(url, seaweed.client()))
    fault.fail_next = [StoreTransientError(f"injected 500 #{i}") for i in range(4)]
    with lsnwal.open(tmp_path / "w", cfg(url, fault)) as wal:
        write(wal, 120)
        assert wait_shipped(wal)
        st = ship_stats(wal)
    assert st["ship_retries"] == 4 and "injected 500" in (st["ship_error"] or "")
    n = assert_store_matches_archive(fault.inner, url, tmp_path / "w")
    assert st["ship_objects"] == n


class _LostAnswer(FaultStore):
    """The server stores the first segment but the client never hears back."""

    def put_if_absent(self, key: str, data: bytes, crc: int, metadata: Any = None) -> bool:
        if key.endswith(".wal") and not getattr(self, "_done", False):
            self._done = True
            self.inner.put_if_absent(key, data, crc, metadata)
            raise StoreTransientError("connection reset after the request was sent")
        return super().put_if_absent(key, data, crc, metadata)


def test_a_lost_answer_is_recognised_as_identical(seaweed: Any, tmp_path: Path) -> None:
    """The retry of a put the store did apply gets 412, compares CRC32C, and counts as done."""
    url = seaweed.url()
    fault = _LostAnswer(open_store(url, seaweed.client()))
    with lsnwal.open(tmp_path / "w", cfg(url, fault)) as wal:
        write(wal, 60)
        assert wait_shipped(wal)
        st = ship_stats(wal)
    assert not st["ship_stopped"] and not st["ship_conflict"]
    assert_store_matches_archive(fault.inner, url, tmp_path / "w")


@pytest.mark.parametrize("victim", [0, 3])
def test_a_conflicting_object_stops_shipping_and_is_kept(
    seaweed: Any, tmp_path: Path, victim: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A different object under a segment's name: shipping stops there, nothing is overwritten."""
    url, client = seaweed.url(), seaweed.client()
    store = open_store(url, client)
    pfx = parse_url(url).prefix
    plain = tmp_path / "plain"
    with lsnwal.open(plain, lsnwal.WalConfig(segment_max_bytes=4096)) as wal:
        write(wal, 120)
    names = sorted(os.listdir(plain / "archive"))
    planted = b"someone else's history " * 10
    key = segment_key(pfx, 1, names[victim])
    from lsnwal.store.base import crc32c

    assert store.put_if_absent(key, planted, crc32c(planted))
    with lsnwal.open(plain, cfg(url, client)) as wal:
        wait_until(lambda: ship_stats(wal)["ship_stopped"])
        st = ship_stats(wal)
        write(wal, 30, seed=9)  # commits go on
        assert wal.synced_lsn == wal.last_lsn
    assert st["ship_conflict"] and "DIFFERENT" in st["ship_error"]
    assert "refusing to overwrite" in caplog.text
    assert store.get(key) == planted
    assert (plain / "archive" / names[victim]).exists()
    for name in names[:victim]:
        assert store.get(segment_key(pfx, 1, name)) == (plain / "archive" / name).read_bytes()
    for name in names[victim + 1 :]:
        assert store.head(segment_key(pfx, 1, name)) is None  # stopped at the conflict


def test_server_down_then_up_loses_nothing(tmp_path: Path) -> None:
    """The store is down at open and again mid-run: commits go on, shipping catches up."""
    server = Server("weed", str(tmp_path / "sw" / "data"))
    server.start()  # creates the bucket on disk; a fresh server answers 404 until it has
    server.stop()  # down when the WAL opens
    url = server.url()
    try:
        with lsnwal.open(tmp_path / "w", cfg(url, server.client())) as wal:
            write(wal, 60)  # the open succeeded and commits go on without the store
            assert wal.synced_lsn == wal.last_lsn
            wal.wait_archived(30)
            wait_until(lambda: ship_stats(wal)["ship_retries"] > 0)
            st = ship_stats(wal)
            assert st["ship_timeline"] == 0 and st["ship_lag_lsns"] > 0
            assert not st["ship_stopped"]
            server.start()  # it connects (check, lease) and ships what waited
            assert wait_shipped(wal, 120)
            assert ship_stats(wal)["ship_timeline"] == 1
            server.stop()
            write(wal, 150, seed=2)  # nothing blocks: the store is not on the commit path
            assert wal.synced_lsn == wal.last_lsn
            wal.wait_archived(30)
            retries = ship_stats(wal)["ship_retries"]
            wait_until(lambda: ship_stats(wal)["ship_retries"] > retries)
            assert ship_stats(wal)["ship_lag_lsns"] > 0
            server.start()
            assert wait_shipped(wal, 120)
            st = ship_stats(wal)
        assert not st["ship_stopped"] and st["ship_lag_lsns"] == 0
        assert_store_matches_archive(open_store(url, server.client()), url, tmp_path / "w")
        assert_store_holds_archived_records(url, server.client(), tmp_path / "w")
    finally:
        server.stop()


def test_kill9_during_uploads_loses_nothing(seaweed: Any, tmp_path: Path, s3_env: None) -> None:
    """A writer killed (SIGKILL) while shipping: reopened, it ships the rest; store == local."""
    url = seaweed.url()
    wal_dir = tmp_path / "w"
    acked: list[int] = []
    rng = random.Random(7)
    for cycle in range(8 if os.environ.get("LSNWAL_STRESS") == "1" else 2):
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        proc = subprocess.Popen([sys.executable, str(CHILD), str(wal_dir), url, str(cycle)],
                                stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"ready")
        lines: list[bytes] = []
        reader = threading.Thread(target=lines.extend, args=(proc.stdout,), daemon=True)
        reader.start()
        time.sleep(rng.uniform(0.3, 0.8))  # a random moment of a write/ship loop
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        reader.join(30)
        acked += [int(x) for x in lines if x.strip().isdigit()]
    assert acked
    client = s3_client(seaweed.endpoint)
    with lsnwal.open(wal_dir, cfg(url, client)) as wal:
        assert wait_shipped(wal)
        assert not ship_stats(wal)["ship_stopped"]
    local = records(str(wal_dir))
    assert {r[0] for r in local} >= set(acked)
    assert_store_matches_archive(open_store(url, client), url, wal_dir)
    assert_store_holds_archived_records(url, client, wal_dir)
