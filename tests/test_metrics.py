"""Operators' view: the Prometheus exporter (every ``stats()`` field, the fsync histogram,
served over HTTP on 127.0.0.1), structured log records, and ``lsnwal top``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import lsnwal
from lsnwal.cli import main
from lsnwal.metrics import NAMES, WalMetrics, families, metric_name
from lsnwal.stats import WalStats

SMALL = lsnwal.WalConfig(segment_max_bytes=4096)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in registry.collect():
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_stats_field_has_a_conventional_name() -> None:
    """Each WalStats field maps to an lsnwal_ name; counters are never LSNs, units are base."""
    for f in dataclasses.fields(WalStats):
        name, kind, _help = metric_name(f.name)
        assert name.startswith("lsnwal_")
        assert not name.endswith("_s")  # seconds are spelled out
        if kind == "counter":
            assert "_lsn" not in name
        if f.name.endswith("_s"):
            assert "_seconds" in name
    assert set(NAMES) <= {f.name for f in dataclasses.fields(WalStats)}  # none stale


def test_a_field_added_later_is_still_published() -> None:
    """An unknown numeric field becomes a gauge, ``_s`` spelled ``_seconds``."""
    assert metric_name("shipping_lag_s") == ("lsnwal_shipping_lag_seconds", "gauge",
                                             "WalStats.shipping_lag_s")


def test_families_carry_every_value_of_a_snapshot(wal_dir: Path) -> None:
    """Every field of a real snapshot appears exactly once among the samples, value for value."""
    with lsnwal.open(wal_dir, SMALL) as wal:
        for i in range(50):
            wal.append(b"%03d" % i * 40)
        wal.sync()
        stats = wal.stats()
    fams = families(stats, "w")
    got = {}
    for fam in fams:
        for s in fam.samples:
            got[(s.name, s.labels.get("quantile"))] = s.value
    for f in dataclasses.fields(stats):
        name, kind, _ = metric_name(f.name)
        raw = getattr(stats, f.name)
        want = float(raw) if not isinstance(raw, (str, type(None))) else float(raw is not None)
        if kind.startswith("quantile:"):
            assert got[(name, kind.split(":")[1])] == want
        elif kind == "counter":
            assert got[(name + "_total", None)] == want
        else:
            assert got[(name, None)] == want


def test_exporter_over_http(wal_dir: Path) -> None:
    """A scrape of 127.0.0.1 shows synced LSN, counters and the fsync histogram of a live WAL."""
    registry = CollectorRegistry()
    metrics = WalMetrics("orders", registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_address[1]
        with lsnwal.open(wal_dir, SMALL, sync_backend=metrics.sync_backend()) as wal:
            metrics.attach(wal)
            for i in range(30):
                wal.append(b"x" * 100)
                if i % 10 == 9:
                    wal.sync()
            last = wal.last_lsn
            fsyncs = wal.stats().fsyncs
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                text = resp.read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        synced = [s for s in fams["lsnwal_synced_lsn"].samples if s.labels["wal"] == "orders"]
        assert synced[0].value == last
        assert fams["lsnwal_fsync_seconds"].type == "histogram"
        count = next(s for s in fams["lsnwal_fsync_seconds"].samples
                 if s.name == "lsnwal_fsync_seconds_count").value
        assert count >= fsyncs >= 1  # every fsync observed (the histogram also sees close's)
        assert fams["lsnwal_records_appended"].samples[0].value == 30
        assert "lsnwal_dir_fsync_seconds" in fams
    finally:
        server.shutdown()
        thread.join(10)


def test_closed_wal_stops_publishing_and_detach(wal_dir: Path) -> None:
    """After close the stats metrics disappear; detach unregisters; histograms stay."""
    registry = CollectorRegistry()
    metrics = WalMetrics("a", registry=registry)
    wal = lsnwal.open(wal_dir)
    metrics.attach(wal)
    assert any(n == "lsnwal_last_lsn" for n, _ in _samples(registry))
    wal.close()
    assert not any(n == "lsnwal_last_lsn" for n, _ in _samples(registry))
    metrics.detach()
    metrics.detach()  # idempotent
    assert any(n.startswith("lsnwal_fsync_seconds") for n, _ in _samples(registry))


def test_two_wals_share_one_registry(tmp_path: Path) -> None:
    """Two WALs in one registry are told apart by the ``wal`` label."""
    registry = CollectorRegistry()
    m1, m2 = WalMetrics("one", registry), WalMetrics("two", registry)
    with lsnwal.open(tmp_path / "1") as w1, lsnwal.open(tmp_path / "2") as w2:
        m1.attach(w1)
        m2.attach(w2)
        w1.append(b"x")
        w1.sync()
        s = _samples(registry)
        assert s[("lsnwal_last_lsn", (("wal", "one"),))] == 1
        assert s[("lsnwal_last_lsn", (("wal", "two"),))] == 0


def test_attach_accepts_an_async_wal(wal_dir: Path) -> None:
    """``attach`` takes the object ``open_async`` gives as well."""
    import asyncio

    registry = CollectorRegistry()
    metrics = WalMetrics("aio", registry)

    async def main_() -> float:
        async with lsnwal.open_async(wal_dir) as wal:
            metrics.attach(wal)
            wal.append(b"x")
            await wal.sync()
            return _samples(registry)[("lsnwal_synced_lsn", (("wal", "aio"),))]

    assert asyncio.run(main_()) == 1


# --------------------------------------------------------------------------- logs


def test_recovery_logs_structured_fields(wal_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A torn tail cut at open is logged with event, path, offset and byte count as fields."""
    with lsnwal.open(wal_dir) as wal:
        wal.append_batch([b"a" * 50, b"b" * 50])
    active = wal_dir / "active.wal"
    size = active.stat().st_size
    with open(active, "ab") as f:
        f.write(b"\x07" * 13)  # a torn record after the last good one
    with caplog.at_level(logging.WARNING, logger="lsnwal"):
        lsnwal.open(wal_dir).close()
    cuts = [r for r in caplog.records if getattr(r, "event", None) == "recovery_cut"]
    assert len(cuts) == 1
    rec = cuts[0]
    assert rec.path == str(active)
    assert rec.offset >= size - 64  # where the good records end (before any seal)
    assert rec.cut_bytes >= 13
    assert os.path.exists(rec.broken_path)


def test_archive_failure_logs_structured_fields(
    wal_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Archiving that stops is logged with event and error fields."""
    from lsnwal import archive

    def boom(self: object, batch: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(archive.Archiver, "_archive", boom)
    with caplog.at_level(logging.ERROR, logger="lsnwal"), lsnwal.open(wal_dir, SMALL) as wal:
        for _ in range(20):
            wal.append(b"z" * 500)
        wal.sync()
        wal.wait_archived(timeout=10)
    failed = [r for r in caplog.records if getattr(r, "event", None) == "archive_failed"]
    assert failed and "No space left" in failed[0].error


# --------------------------------------------------------------------------- top


def test_top_samples_a_live_wal(wal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``lsnwal top --count`` prints one line per sample with the LSNs a writer reached."""
    with lsnwal.open(wal_dir, SMALL) as wal:
        for _ in range(40):
            wal.append(b"q" * 300)
        wal.sync()
        wal.wait_archived()
        rc = main(["top", str(wal_dir), "--json", "--count", "2", "--interval", "0.01"])
        out = capsys.readouterr().out
        assert rc == 0
        rows = [json.loads(line) for line in out.splitlines()]
        assert len(rows) == 2
        assert rows[0]["records_per_s"] is None and rows[1]["records_per_s"] is not None
        assert all(r["last_lsn"] == 40 for r in rows)
        stats = wal.stats()
        assert rows[1]["archive_segments"] == stats.archive_segments
    rc = main(["top", str(wal_dir), "--count", "3", "--interval", "0.01"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(lines) == 4 and lines[0].split()[:3] == ["time", "last", "LSN"]
    assert all(line.split()[1] == "40" for line in lines[1:])


def test_top_on_a_bad_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``lsnwal top`` on a directory that is not a WAL fails in one line."""
    rc = main(["top", str(tmp_path), "--count", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "not an lsnwal directory" in err and len(err.splitlines()) == 1
