"""Follow mode and the durable watermark: a follower sees every record once, in order, never
above the published ``synced_lsn``, across rotation, archiving, compression and pruning.

The writer runs in a thread of the test and publishes the watermark with
``WatermarkWriter`` after each acknowledged sync (as the WAL's sync path does).
The main scenarios run with inotify wake-ups and with the polling fallback.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import lsnwal
from lsnwal.fs import OsFileSystem
from lsnwal.watermark import WATERMARK_NAME, WatermarkWriter


def payload(i: int) -> bytes:
    """A deterministic payload whose length varies with ``i``."""
    return b"follow-%06d|" % i + bytes([i % 253]) * (10 + i * 13 % 150)


@pytest.fixture(params=["inotify", "polling"])
def waiting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with kernel wake-ups and with the bounded back-off fallback."""
    if request.param == "polling":
        monkeypatch.setenv("LSNWAL_NO_INOTIFY", "1")
    else:
        monkeypatch.delenv("LSNWAL_NO_INOTIFY", raising=False)
    return str(request.param)


class Writer:
    """A WAL written by a thread, publishing the watermark after every acknowledged sync."""

    def __init__(self, root: Path, config: lsnwal.WalConfig) -> None:
        self.wal = lsnwal.open(root, config)
        self.pub = WatermarkWriter(OsFileSystem(), str(root))
        self.lock = threading.Lock()
        self.written: dict[int, bytes] = {}

    def write(self, start: int, n: int, sync_every: int = 10) -> None:
        for i in range(start, start + n):
            self.written[self.wal.append(payload(i))] = payload(i)
            if i % sync_every == sync_every - 1:
                self.publish(self.wal.sync())
        self.publish(self.wal.sync())

    def publish(self, synced: int) -> None:
        with self.lock:
            if synced > self.pub.synced_lsn:
                self.pub.publish(synced, self.wal.checkpoint_lsn)

    def close(self) -> None:
        self.wal.close()
        self.pub.close()


def take(it: Iterator[lsnwal.Record], until_lsn: int, reader: lsnwal.WalReader,
         seen_above: list[int]) -> list[lsnwal.Record]:
    """Records from a follower up to ``until_lsn``, noting any above the watermark."""
    out = []
    for rec in it:
        if rec.lsn > reader.synced_lsn:
            seen_above.append(rec.lsn)
        out.append(rec)
        if rec.lsn >= until_lsn:
            break
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("compression", [None, "zstd"])
def test_follow_across_rotation_archiving_and_pruning(
    wal_dir: Path, waiting: str, compression: str | None
) -> None:
    """A follower started before the writer sees every record exactly once and in order while
    segments rotate, archive (plain or zstd) and get pruned behind it."""
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, compression=compression,
                           archive_max_segments=3)
    w = Writer(wal_dir, cfg)
    reader = lsnwal.open_reader(wal_dir)
    above: list[int] = []
    done = threading.Event()

    def produce() -> None:
        w.write(0, 800)
        w.wal.checkpoint(w.wal.last_lsn - 200)  # retention may now prune behind the follower
        w.write(800, 800)
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    try:
        got = take(reader.follow(poll_max_s=0.05), 1600 + 1, reader, above)
    finally:
        t.join()
    last = w.wal.last_lsn
    got += take(reader.follow(from_lsn=got[-1].lsn + 1), last, reader, above) \
        if got[-1].lsn < last else []
    w.close()
    assert done.is_set()
    assert [r.lsn for r in got] == list(range(1, last + 1))
    assert {r.lsn: r.payload for r in got if r.kind is lsnwal.RecordKind.DATA} == w.written
    assert above == []
    oldest = next(iter(lsnwal.replay(wal_dir))).lsn
    assert oldest > 1  # retention did prune segments the follower had read


@pytest.mark.timeout(60)
def test_durable_only_stops_at_the_published_watermark(wal_dir: Path, waiting: str) -> None:
    """With durable_only (the default) nothing above the published synced_lsn is yielded;
    without it, what is written is yielded before any sync."""
    # every append reaches the OS at once (no user-space buffer), as in the final design
    w = Writer(wal_dir, lsnwal.WalConfig(segment_max_bytes=4096, write_buffer_bytes=1))
    w.write(0, 100)
    for i in range(100, 160):  # written, handed to the OS, not synced by us
        w.wal.append(payload(i))
    reader = lsnwal.open_reader(wal_dir)
    # The writer may make more durable at any time (a background fsync): every durable
    # read must stay within the watermark as read before and after it.
    for read in (lambda: [r.lsn for r in reader.replay(durable_only=True)],
                 lambda: [lsn for lsn, _ in reader.iter_raw(durable_only=True)]):
        before = reader.synced_lsn
        got = read()
        after = reader.synced_lsn
        assert before >= 100  # at least what our own sync() calls made durable
        assert got == list(range(1, len(got) + 1))
        assert before <= len(got) <= after
    follower = reader.follow(poll_max_s=0.05)
    first = [next(follower).lsn for _ in range(100)]
    assert first == list(range(1, 101)) and first[-1] <= reader.synced_lsn
    everything = reader.follow(durable_only=False, poll_max_s=0.05)
    assert [next(everything).lsn for _ in range(160)] == list(range(1, 161))
    w.publish(w.wal.sync())  # now all are durable: the durable follower goes on
    assert [next(follower).lsn for _ in range(60)] == list(range(101, 161))
    reader.close()
    w.close()


@pytest.mark.timeout(60)
def test_a_follower_behind_retention_gets_lsn_unavailable(wal_dir: Path) -> None:
    """A follower whose next segment was pruned raises LsnUnavailableError, never a jump."""
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, archive_max_segments=2)
    w = Writer(wal_dir, cfg)
    w.write(0, 200)
    reader = lsnwal.open_reader(wal_dir)
    follower = reader.follow(poll_max_s=0.05)
    first = [next(follower) for _ in range(5)]
    assert [r.lsn for r in first] == [1, 2, 3, 4, 5]
    w.write(200, 400)
    w.wal.checkpoint(w.wal.last_lsn)  # the application needs none of it any more
    w.write(600, 100)
    assert w.wal.wait_archived(10)
    assert next(iter(lsnwal.replay(wal_dir))).lsn > 300  # pruned past the follower
    got: list[int] = []
    with pytest.raises(lsnwal.LsnUnavailableError):
        for rec in follower:
            got.append(rec.lsn)
    assert got == list(range(6, 6 + len(got)))  # in order until the error, no jump
    assert len(got) < w.wal.last_lsn - 5
    w.close()


@pytest.mark.timeout(60)
def test_follow_async(wal_dir: Path) -> None:
    """async for over follow_async yields every durable record in order while a thread
    writes; the event loop stays free (another task keeps ticking)."""
    w = Writer(wal_dir, lsnwal.WalConfig(segment_max_bytes=4096, compression="zstd"))
    reader = lsnwal.open_reader(wal_dir)

    async def main() -> tuple[list[int], int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        tick = asyncio.create_task(ticker())
        t = threading.Thread(target=w.write, args=(0, 800))
        t.start()
        lsns = []
        async for rec in reader.follow_async(poll_max_s=0.05):
            lsns.append(rec.lsn)
            if rec.lsn == 800:
                break
        stop.set()
        await tick
        await asyncio.to_thread(t.join)
        return lsns, ticks

    lsns, ticks = asyncio.run(main())
    assert lsns == list(range(1, 801))
    assert ticks > 0
    w.close()


@pytest.mark.timeout(30)
def test_close_stops_a_waiting_follower(wal_dir: Path) -> None:
    """close() from another thread ends a follower that is waiting for records."""
    w = Writer(wal_dir, lsnwal.WalConfig())
    w.write(0, 3)
    reader = lsnwal.open_reader(wal_dir)
    got: list[int] = []
    t = threading.Thread(target=lambda: got.extend(r.lsn for r in reader.follow(
        poll_max_s=0.05)))
    t.start()
    while len(got) < 3:
        t.join(0.01)
    reader.close()
    t.join(20)
    assert not t.is_alive()
    assert got == [1, 2, 3]
    w.close()


@pytest.mark.timeout(25)
def test_inotify_wakes_the_follower(wal_dir: Path) -> None:
    """On Linux the follower waits on inotify: with a 60 s polling interval it still gets
    each next record soon after it is written and published (the timeout would fail first)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux only")
    w = Writer(wal_dir, lsnwal.WalConfig())
    w.write(0, 1)
    reader = lsnwal.open_reader(wal_dir)
    follower = reader.follow(poll_max_s=60.0)
    assert next(follower).lsn == 1
    for i in range(1, 4):
        threading.Timer(0.05, w.write, args=(i, 1)).start()
        assert next(follower).lsn == i + 1
    w.close()


def test_watermark_is_read_exactly_and_a_torn_one_is_ignored(wal_dir: Path) -> None:
    """synced_lsn and checkpoint_lsn are the published values; an unreadable watermark counts
    as nothing published (0), never as a guess."""
    w = Writer(wal_dir, lsnwal.WalConfig())
    w.write(0, 50)
    w.wal.checkpoint(20)
    w.publish(w.wal.sync())
    reader = lsnwal.open_reader(wal_dir)
    assert reader.synced_lsn == w.wal.synced_lsn
    assert reader.checkpoint_lsn >= 20
    w.close()
    path = wal_dir / WATERMARK_NAME
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    assert reader.watermark() is None and reader.synced_lsn == 0
    assert list(reader.replay(durable_only=True)) == []


def _cli(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).parent.parent)
    return subprocess.Popen([sys.executable, "-m", "lsnwal", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.timeout(60)
def test_cli_dump_follow_and_info_watermark(wal_dir: Path) -> None:
    """``lsnwal dump --follow`` prints durable records as they come; ``info`` shows the
    published synced LSN."""
    w = Writer(wal_dir, lsnwal.WalConfig(segment_max_bytes=4096))
    w.write(0, 20)
    proc = _cli("dump", str(wal_dir), "--follow", "--json", "--limit", "300")
    t = threading.Thread(target=w.write, args=(20, 400))
    t.start()
    out, err = proc.communicate(timeout=50)
    t.join()
    assert proc.returncode == 0, err
    lsns = [json.loads(line)["lsn"] for line in out.splitlines()]
    assert lsns == list(range(1, 301))
    info = _cli("info", str(wal_dir), "--json")
    out, err = info.communicate(timeout=30)
    assert info.returncode == 0, err
    doc = json.loads(out)
    assert doc["synced_lsn"] == w.pub.synced_lsn
    assert doc["watermark"]["writer_pid"] == os.getpid()
    w.close()


def test_durable_replay_before_anything_is_published(wal_dir: Path) -> None:
    """Without a published watermark nothing counts as durable for a reader in another
    process: durable replays give nothing (from any LSN), plain replays give everything."""
    with lsnwal.open(wal_dir, lsnwal.WalConfig(segment_max_bytes=4096)) as wal:
        for i in range(50):
            wal.append(payload(i))
    (wal_dir / WATERMARK_NAME).unlink(missing_ok=True)
    reader = lsnwal.open_reader(wal_dir)
    assert reader.synced_lsn == 0
    for start in (None, 1, 25, 50):
        assert list(reader.replay(from_lsn=start, durable_only=True)) == []
        assert list(reader.iter_raw(from_lsn=start, durable_only=True)) == []
    assert [r.lsn for r in reader.replay(from_lsn=25)] == list(range(25, 51))
    with pytest.raises(lsnwal.LsnUnavailableError):
        list(reader.replay(from_lsn=52))
