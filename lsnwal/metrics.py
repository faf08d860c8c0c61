"""Prometheus metrics for a WAL (the ``lsnwal[metrics]`` extra, ``prometheus-client``).

Owns the mapping from ``WalStats`` fields to Prometheus names and the timed
sync backend behind the ``lsnwal_fsync_seconds`` histogram. Usage::

    metrics = lsnwal.metrics.WalMetrics("orders")            # label wal="orders"
    wal = lsnwal.open("data/wal", sync_backend=metrics.sync_backend())
    metrics.attach(wal)
    prometheus_client.start_http_server(9108)

Rules kept here:

* **Every ``stats()`` field is published**, under a conventional name: counters
  end in ``_total``, units are base units in the name (``_seconds``,
  ``_bytes``), LSNs are gauges. ``NAMES`` maps the known fields; a field added
  later is still published (as a gauge ``lsnwal_<field>``, ``_s`` spelled
  ``_seconds``; a text field as 1 when set), never silently dropped.
* **Reading is free for the WAL.** Samples come from ``wal.stats()`` at scrape
  time (one lock round trip); the histogram is observed by the sync backend
  on the sync thread, after the fsync, outside every lsnwal lock.
* A collector holds its WAL weakly: a closed or collected WAL stops publishing
  instead of being kept alive.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .aio import AsyncWal
from .fs import OsSyncBackend, SyncBackend
from .stats import WalStats
from .wal import AsyncWalWriter

#: fsync latency buckets, seconds: 50 µs (NVMe with a write cache) to 2.5 s (a sick disk)
FSYNC_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                 0.1, 0.25, 0.5, 1.0, 2.5)

#: WalStats field -> (metric name, type, help). Counters get ``_total`` from the client.
NAMES: dict[str, tuple[str, str, str]] = {
    "last_lsn": ("lsnwal_last_lsn", "gauge", "Last LSN assigned."),
    "synced_lsn": ("lsnwal_synced_lsn", "gauge",
                   "Every record at or below this LSN is on stable storage."),
    "checkpoint_lsn": ("lsnwal_checkpoint_lsn", "gauge",
                       "LSN the application's last checkpoint covers."),
    "records_appended": ("lsnwal_records_appended", "counter",
                         "Records appended since the WAL was opened."),
    "bytes_appended": ("lsnwal_appended_bytes", "counter",
                       "Payload bytes appended since the WAL was opened."),
    "rotations": ("lsnwal_rotations", "counter", "Active segments rotated into pending/."),
    "fsyncs": ("lsnwal_fsyncs", "counter", "File fsyncs (data) made by the WAL."),
    "fsync_p50_s": ("lsnwal_fsync_window_seconds", "quantile:0.5",
                    "fsync latency over the recent window, by quantile."),
    "fsync_p99_s": ("lsnwal_fsync_window_seconds", "quantile:0.99", ""),
    "fsync_max_s": ("lsnwal_fsync_window_seconds", "quantile:1", ""),
    "commits": ("lsnwal_commits", "counter",
                "Completed durability requests (sync() calls and resolved handles)."),
    "commits_per_fsync": ("lsnwal_commits_per_fsync", "gauge",
                          "Commits served per fsync since open (group commit)."),
    "pending_segments": ("lsnwal_pending_segments", "gauge",
                         "Rotated segments waiting for fsync (backpressure counts these)."),
    "pending_bytes": ("lsnwal_pending_bytes", "gauge", "Bytes in pending segments."),
    "archive_segments": ("lsnwal_archive_segments", "gauge", "Segments in the archive."),
    "archive_bytes": ("lsnwal_archive_bytes", "gauge", "Bytes in the archive."),
    "backpressure_wait_s": ("lsnwal_backpressure_wait_seconds", "counter",
                            "Time writers spent waiting for room in pending/."),
    "dir_fsyncs": ("lsnwal_dir_fsyncs", "counter", "Directory fsyncs made by the WAL."),
    "pruned_segments": ("lsnwal_pruned_segments", "counter",
                        "Archived segments deleted by retention."),
    "failed": ("lsnwal_failed", "gauge", "1 once an fsync or write failed (fail-stop)."),
    "archive_error": ("lsnwal_archive_failed", "gauge",
                      "1 when archiving stopped (segments stay in pending/)."),
}


def metric_name(field: str) -> tuple[str, str, str]:
    """(name, type, help) for a ``WalStats`` field, including fields added after 0.2."""
    if field in NAMES:
        return NAMES[field]
    base = field[:-2] + "_seconds" if field.endswith("_s") else field
    return f"lsnwal_{base}", "gauge", f"WalStats.{field}"


def _value(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    if v is None or isinstance(v, str):
        return 0.0 if v is None else 1.0
    return None  # pragma: no cover - WalStats holds numbers, bools and optional text


def families(stats: WalStats, wal_label: str) -> list[Metric]:
    """The metric families for one snapshot, labelled ``wal=wal_label``."""
    out: dict[str, Metric] = {}
    for f in dataclasses.fields(stats):
        value = _value(getattr(stats, f.name))
        if value is None:  # pragma: no cover - see _value
            continue
        name, kind, help_ = metric_name(f.name)
        fam = out.get(name)
        if kind.startswith("quantile:"):
            if fam is None:
                fam = out[name] = GaugeMetricFamily(name, help_, labels=["wal", "quantile"])
            assert isinstance(fam, GaugeMetricFamily)
            fam.add_metric([wal_label, kind.split(":", 1)[1]], value)
            continue
        if fam is None:
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fam = out[name] = cls(name, help_, labels=["wal"])
        fam.add_metric([wal_label], value)  # type: ignore[attr-defined]
    return list(out.values())


class _StatsCollector(Collector):
    def __init__(self, wal: AsyncWalWriter, label: str) -> None:
        self._wal = weakref.ref(wal)
        self._label = label

    def collect(self) -> Iterator[Metric]:
        wal = self._wal()
        if wal is None or wal.closed:
            return iter(())
        return iter(families(wal.stats(), self._label))


_HISTOGRAMS: weakref.WeakKeyDictionary[CollectorRegistry, tuple[Histogram, Histogram]] = (
    weakref.WeakKeyDictionary())
_HIST_LOCK = threading.Lock()


def _histograms(registry: CollectorRegistry) -> tuple[Histogram, Histogram]:
    """The fsync histograms of ``registry`` (made once per registry, shared by every WAL)."""
    with _HIST_LOCK:
        pair = _HISTOGRAMS.get(registry)
        if pair is None:
            pair = (
                Histogram("lsnwal_fsync_seconds", "Latency of each file fsync (data).",
                          ["wal"], buckets=FSYNC_BUCKETS, registry=registry),
                Histogram("lsnwal_dir_fsync_seconds", "Latency of each directory fsync.",
                          ["wal"], buckets=FSYNC_BUCKETS, registry=registry),
            )
            _HISTOGRAMS[registry] = pair
        return pair


class TimedSyncBackend:
    """A sync backend that observes each fsync's latency into the histograms."""

    def __init__(self, inner: SyncBackend, file_hist: Any, dir_hist: Any) -> None:
        self.inner = inner
        self._file = file_hist
        self._dir = dir_hist

    def sync_file(self, fd: int) -> None:
        """fsync a file through the inner backend and record how long it took."""
        t0 = time.perf_counter()
        self.inner.sync_file(fd)
        self._file.observe(time.perf_counter() - t0)

    def sync_dir(self, fd: int) -> None:
        """fsync a directory through the inner backend and record how long it took."""
        t0 = time.perf_counter()
        self.inner.sync_dir(fd)
        self._dir.observe(time.perf_counter() - t0)


class WalMetrics:
    """Prometheus metrics of one WAL, labelled ``wal=<name>``."""

    def __init__(self, name: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.name = name
        self.registry = registry
        file_h, dir_h = _histograms(registry)
        self._file_hist = file_h.labels(wal=name)
        self._dir_hist = dir_h.labels(wal=name)
        self._collector: _StatsCollector | None = None

    def sync_backend(self, inner: SyncBackend | None = None) -> SyncBackend:
        """A backend for ``lsnwal.open(..., sync_backend=...)`` feeding ``lsnwal_fsync_seconds``."""
        return TimedSyncBackend(inner or OsSyncBackend(), self._file_hist, self._dir_hist)

    def attach(self, wal: AsyncWalWriter | AsyncWal) -> None:
        """Publish ``wal.stats()`` at every scrape (replaces an earlier attached WAL)."""
        self.detach()
        writer = wal.writer if isinstance(wal, AsyncWal) else wal
        self._collector = _StatsCollector(writer, self.name)
        self.registry.register(self._collector)

    def detach(self) -> None:
        """Stop publishing the attached WAL's stats (the histograms stay)."""
        if self._collector is not None:
            self.registry.unregister(self._collector)
            self._collector = None
