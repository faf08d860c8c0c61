"""Replay: seek time as the archive grows, plain vs zstd, compression ratio, peak memory.

What is measured
----------------
(a) **Time to first record** of ``replay(path, from_lsn=X)``, X in the middle of
    the last archived segment, on an archive of ``--small-segments`` (10) and one
    of ``--large-segments`` (1,000) segments of the same size (small
    ``segment_max_bytes``, 100-byte records). The clock runs from the call to
    ``replay`` until ``next()`` returns record X: listing and analysing the WAL
    directory, choosing the segment, reading its header, seal and index, and
    decoding the first records. ``--runs`` runs per archive, alternating between
    the two; the first record must be X. Target: the large archive within 2x
    of the small one (seeking reads headers and indexes, not earlier records).
(b) **Replay records/s, plain vs zstd**: a full ``replay()`` (from the oldest
    record, every CRC checked, a ``Record`` built per record) of two WALs holding
    the same JSON corpus, one archived plain, one with ``compression="zstd"``
    (level ``--level``); ``--reps`` repetitions each; every LSN must come back.
(c) **Compression ratio** of that corpus: plain archive bytes / zstd archive
    bytes (both on disk: headers, indexes and seals included), and payload
    bytes / zstd bytes. The corpus is generated deterministically (fixed seed):
    orders, page-view events, log lines and metrics as JSON documents with ids,
    ISO timestamps, nested objects, arrays and free text, about 150-1,200 bytes.
(d) **Peak RSS of a full replay** of a plain archive of at least ``--gb`` GB
    (1e9 bytes; default 1.0, 0.1 with ``--quick``) of corpus documents, in a child
    process: its peak RSS at the end of the replay minus the same figure from a
    child that only starts Python and imports lsnwal (median of 3). The replays of
    (b) are measured the same way. Target: at most 100 MB above that baseline.
    Both ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` and ``VmHWM`` (from
    ``/proc/self/status``) are reported; the difference uses ``VmHWM`` where it
    exists, because on Linux a child's ``ru_maxrss`` starts at the high-water mark
    of the process that spawned it (it is kept across fork + exec), here the
    benchmark itself holding its corpus, which can hide the replay's own growth.

Every WAL is built through the public API (``lsnwal.open``, ``append_batch``,
``sync_async().wait()`` to rotate the last segment, ``wait_archived()``) in a
scratch directory that is removed at the end. A workload that returns a wrong
record, count or LSN is an error (exit status 1); a missed target is reported.

How to read it
--------------
Reads come from the page cache (the archives were just written): the figures
are CPU and memory costs, not disk speed. Other processes add noise; compare
figures from one run.

Usage::

    python stress/bench_replay.py                 # 1 GB RSS archive, 200,000-document corpus
    python stress/bench_replay.py --quick         # 0.1 GB, 20,000 documents, fewer runs
    python stress/bench_replay.py --gb 2 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# The shared helpers sit beside this script; make them importable however it is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as bl

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # a checkout without `pip install -e .`
    sys.path.append(str(REPO_ROOT))
import lsnwal  # noqa: E402

SEEK_PAYLOAD = bytes(i % 251 for i in range(100))
TTFR_TARGET = 2.0
RSS_TARGET_BYTES = 100 * 1000 * 1000
CORPUS_SEED = 20240601

#: Run in a child: the peak RSS of an interpreter that imported lsnwal and, when a
#: path is given, replayed that whole WAL (LSNs checked for continuity). Reports
#: ``ru_maxrss`` and, where /proc exists, ``VmHWM`` (see ``measure_rss``).
RSS_CHILD = r"""
import json, resource, sys, time
import lsnwal

def hwm_kib():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None

out = {"start_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
       "start_hwm_kib": hwm_kib()}
if len(sys.argv) > 1:
    n = nbytes = 0
    expected = None
    t0 = time.perf_counter()
    for rec in lsnwal.replay(sys.argv[1]):
        if expected is not None and rec.lsn != expected:
            raise SystemExit(f"replay yielded LSN {rec.lsn} where {expected} was expected")
        expected = rec.lsn + 1
        n += 1
        nbytes += len(rec.payload)
    out.update(seconds=time.perf_counter() - t0, records=n, payload_bytes=nbytes,
               last_lsn=(expected or 1) - 1)
out["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out["hwm_kib"] = hwm_kib()
print(json.dumps(out))
"""


# --------------------------------------------------------------------------- corpus

_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "order", "payment", "shipment",
    "invoice", "customer", "account", "refund", "retry", "timeout", "cache", "replica", "leader",
    "follower", "commit", "rollback", "snapshot", "checkpoint", "segment", "archive", "latency",
    "throughput", "request", "response", "handler", "session", "token", "expired", "granted",
    "denied", "pending", "completed",
)
_FIRST = (
    "Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace", "John", "Ken",
    "Leslie", "Margaret",
)
_LAST = (
    "Lovelace", "Turing", "Liskov", "Shannon", "Knuth", "Dijkstra", "Allen", "Hopper", "Backus",
    "Thompson",
)
_CITIES = [
    ("Berlin", "DE", "10115"), ("Paris", "FR", "75001"), ("Lyon", "FR", "69001"),
    ("Madrid", "ES", "28001"), ("Milano", "IT", "20121"), ("Amsterdam", "NL", "1011"),
    ("Wien", "AT", "1010"), ("Zürich", "CH", "8001"), ("Kraków", "PL", "30-001"),
    ("Boston", "US", "02108"), ("Toronto", "CA", "M5H"), ("Osaka", "JP", "530-0001"),
]
_STREETS = (
    "Main Street", "Rue de Rivoli", "Gran Vía", "Hauptstraße", "Keizersgracht", "Elm Avenue",
)
_UAS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
_LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR")
_LOGGERS = ("app.http", "app.db", "app.cache", "app.worker", "app.auth")
_PRODUCTS = ("widget", "gadget", "sprocket", "gizmo", "doohickey", "adapter", "cable")
_PAGES = ("/", "/products", "/products/{id}", "/cart", "/checkout", "/account", "/search")


def _iso(rng: random.Random, base: float) -> str:
    t = base + rng.random() * 86_400
    ms = int((t % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def _hex(rng: random.Random, bits: int = 64) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."


def _person(rng: random.Random) -> dict[str, Any]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    city, country, zipcode = rng.choice(_CITIES)
    return {
        "id": rng.randint(1, 5_000_000),
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.com",
        "address": {
            "street": f"{rng.randint(1, 240)} {rng.choice(_STREETS)}",
            "city": city,
            "zip": zipcode,
            "country": country,
        },
    }


def _document(rng: random.Random, seq: int, base: float) -> dict[str, Any]:
    pick = rng.random()
    if pick < 0.3:
        items = [
            {
                "sku": f"SKU-{rng.randint(10000, 99999)}",
                "name": f"{rng.choice(_WORDS)} {rng.choice(_PRODUCTS)}",
                "qty": rng.randint(1, 5),
                "unit_price": round(rng.uniform(1, 250), 2),
            }
            for _ in range(rng.randint(1, 6))
        ]
        return {
            "type": "order_created",
            "seq": seq,
            "order_id": f"ord_{_hex(rng)}",
            "created_at": _iso(rng, base),
            "customer": _person(rng),
            "items": items,
            "total": round(sum(i["qty"] * i["unit_price"] for i in items), 2),
            "currency": rng.choice(("EUR", "EUR", "USD", "CHF")),
            "status": rng.choice(("pending", "paid", "paid", "shipped")),
            "note": _sentence(rng, 0, 12) if rng.random() < 0.3 else None,
        }
    if pick < 0.6:
        page = rng.choice(_PAGES).replace("{id}", str(rng.randint(1, 9999)))
        return {
            "type": "page_view",
            "seq": seq,
            "event_id": _hex(rng, 128),
            "ts": _iso(rng, base),
            "session": _hex(rng),
            "user_id": rng.randint(1, 5_000_000) if rng.random() < 0.7 else None,
            "url": f"https://shop.example.com{page}?utm_source={rng.choice(_WORDS)}",
            "referrer": rng.choice(("", "https://www.google.com/", "https://news.example.org/")),
            "user_agent": rng.choice(_UAS),
            "viewport": {
                "w": rng.choice((390, 768, 1280, 1920)),
                "h": rng.choice((844, 1024, 800)),
            },
            "duration_ms": rng.randint(5, 60_000),
        }
    if pick < 0.85:
        return {
            "type": "log",
            "seq": seq,
            "ts": _iso(rng, base),
            "level": rng.choice(_LEVELS),
            "logger": rng.choice(_LOGGERS),
            "message": _sentence(rng, 4, 20),
            "trace_id": _hex(rng, 128),
            "span_id": _hex(rng),
            "duration_ms": round(rng.expovariate(1 / 40), 3),
            "tags": rng.sample(_WORDS, rng.randint(0, 4)),
        }
    return {
        "type": "metric",
        "seq": seq,
        "ts": int(base) + rng.randint(0, 86_400),
        "name": rng.choice(("cpu.usage", "mem.rss", "disk.io.wait", "http.requests", "gc.pause")),
        "host": f"web-{rng.randint(1, 48):02d}",
        "value": round(rng.uniform(0, 100), 4),
        "labels": {"region": rng.choice(("eu-west-1", "us-east-1")), "env": "prod"},
    }


def json_corpus(count: int, seed: int = CORPUS_SEED) -> list[bytes]:
    """``count`` JSON documents, the same for the same ``seed``."""
    rng = random.Random(seed)
    base = 1_714_521_600.0  # 2024-05-01T00:00:00Z
    return [
        json.dumps(_document(rng, i, base), ensure_ascii=False).encode("utf-8")
        for i in range(count)
    ]


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Options:
    small_segments: int
    large_segments: int
    segment_bytes: int
    runs: int
    corpus_records: int
    reps: int
    level: int
    gb: float


@dataclasses.dataclass
class SeekResult:
    segments: int
    records: int
    archive_bytes: int
    from_lsn: int
    seconds: list[float] = dataclasses.field(default_factory=list)
    summary: bl.LatencySummary | None = None
    error: str | None = None


@dataclasses.dataclass
class ReplayResult:
    name: str
    records: int
    payload_bytes: int
    archive_bytes: int
    segments: int
    seconds: list[float] = dataclasses.field(default_factory=list)
    summary: bl.LatencySummary | None = None
    rate_p50: float | None = None
    error: str | None = None


@dataclasses.dataclass
class RssResult:
    name: str
    archive_bytes: int
    records: int = 0
    seconds: float | None = None
    #: peak RSS in KiB as ``ru_maxrss`` reports it (see ``measure_rss``)
    maxrss_kib: int | None = None
    #: peak RSS in KiB of the child's own address space (``VmHWM``), if known
    hwm_kib: int | None = None
    #: peak RSS above the baseline in bytes: VmHWM where known, else ru_maxrss
    above_baseline_bytes: int | None = None
    target: bool = False
    error: str | None = None


@dataclasses.dataclass
class Report:
    machine: bl.MachineFacts
    options: Options
    seek: list[SeekResult]
    seek_ratio: float | None
    replay: list[ReplayResult]
    compression_ratio_plain: float | None
    compression_ratio_payload: float | None
    baseline: list[dict[str, Any]]
    rss_source: str
    rss: list[RssResult]
    build_seconds: dict[str, float]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- building


def _archive_bytes(path: Path) -> tuple[int, int]:
    """(bytes, files) of the segments in ``path/archive``."""
    total = files = 0
    for entry in os.scandir(path / "archive"):
        if entry.is_file():
            total += entry.stat().st_size
            files += 1
    return total, files


def _seal_everything(wal: lsnwal.AsyncWalWriter) -> None:
    """Rotate the active segment, wait until it is synced and archived."""
    wal.sync_async().wait()
    if not wal.wait_archived(timeout=600):
        raise RuntimeError("archiving did not finish within 600 s")


def build_seek_archive(path: Path, segments: int, segment_bytes: int) -> int:
    """An archive of exactly ``segments`` segments of 100-byte records; returns the records."""
    cfg = lsnwal.WalConfig(segment_max_bytes=segment_bytes)
    per_call = max(1, segment_bytes // (128 * 8))
    batch = [SEEK_PAYLOAD] * per_call
    with lsnwal.open(path, cfg) as wal:
        # A segment is "done" when the writer rotates past it; the last one is
        # rotated by sync_async() below.
        while wal.stats().rotations < segments - 1:
            wal.append_batch(batch)
        _seal_everything(wal)
        last = wal.last_lsn
    return last


def build_corpus_wal(
    path: Path, docs: Iterator[bytes], target_bytes: int | None, cfg: lsnwal.WalConfig,
    batch: int = 1000,
) -> tuple[int, int]:
    """Append ``docs`` (until ``target_bytes`` of payload, if given); returns (records, bytes)."""
    records = nbytes = 0
    with lsnwal.open(path, cfg) as wal:
        chunk: list[bytes] = []
        for doc in docs:
            chunk.append(doc)
            nbytes += len(doc)
            if len(chunk) == batch:
                wal.append_batch(chunk)
                records += len(chunk)
                chunk = []
            if target_bytes is not None and nbytes >= target_bytes:
                break
        if chunk:
            wal.append_batch(chunk)
            records += len(chunk)
        _seal_everything(wal)
        if wal.last_lsn != records:
            raise RuntimeError(f"wrote {records} records but last_lsn is {wal.last_lsn}")
    return records, nbytes


def _cycle(items: list[bytes]) -> Iterator[bytes]:
    while True:
        yield from items


# --------------------------------------------------------------------------- measuring


def measure_seek(results: list[SeekResult], paths: list[Path], runs: int) -> None:
    """Time ``replay(from_lsn=X)`` until its first record, alternating between archives."""
    for i in range(runs):
        order = list(zip(results, paths, strict=True))
        if i % 2:
            order.reverse()
        for res, path in order:
            if res.error is not None:
                continue
            try:
                t0 = time.perf_counter()
                it = lsnwal.replay(path, from_lsn=res.from_lsn)
                rec = next(it)
                dt = time.perf_counter() - t0
                if hasattr(it, "close"):
                    it.close()
            except Exception as exc:
                res.error = _describe(exc)
                continue
            if rec.lsn != res.from_lsn:
                res.error = f"first record has LSN {rec.lsn}, expected {res.from_lsn}"
                continue
            res.seconds.append(dt)
    for res in results:
        res.summary = bl.summarize(res.seconds)


def measure_replay(res: ReplayResult, path: Path, reps: int) -> None:
    for _ in range(reps):
        try:
            t0 = time.perf_counter()
            n = nbytes = 0
            expected = 1
            for rec in lsnwal.replay(path):
                if rec.lsn != expected:
                    raise AssertionError(f"LSN {rec.lsn} where {expected} was expected")
                expected += 1
                n += 1
                nbytes += len(rec.payload)
            dt = time.perf_counter() - t0
        except Exception as exc:
            res.error = _describe(exc)
            break
        if n != res.records or nbytes != res.payload_bytes:
            res.error = f"replayed {n} records / {nbytes} B, expected {res.records} / " \
                f"{res.payload_bytes} B"
            break
        res.seconds.append(dt)
    res.summary = bl.summarize(res.seconds)
    if res.summary is not None:
        res.rate_p50 = res.records / res.summary.p50_s


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []), str(REPO_ROOT)]
    )
    return env


def run_rss_child(path: Path | None) -> dict[str, Any]:
    argv = [sys.executable, "-c", RSS_CHILD, *([str(path)] if path is not None else [])]
    out = subprocess.run(argv, capture_output=True, text=True, env=_child_env(), check=False)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
        raise RuntimeError(tail[0])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_rss(res: RssResult, path: Path, base: dict[str, int], expected_records: int) -> None:
    """Replay ``path`` in a child and compare its peak RSS with the baseline child's.

    On Linux ``ru_maxrss`` survives ``fork`` + ``exec``: a child starts with the
    high-water mark of the process that spawned it (this benchmark, which holds the
    corpus), so its ``ru_maxrss`` is max(parent at spawn time, its own peak) and can
    hide what the replay adds. ``VmHWM`` in ``/proc/self/status`` belongs to the
    child's own address space: it is used when available, ``ru_maxrss`` is shown beside.
    """
    try:
        out = run_rss_child(path)
    except Exception as exc:
        res.error = _describe(exc)
        return
    res.records = out["records"]
    res.seconds = out["seconds"]
    res.maxrss_kib = out["maxrss_kib"]
    res.hwm_kib = out["hwm_kib"]
    if res.hwm_kib is not None and "hwm_kib" in base:
        res.above_baseline_bytes = (res.hwm_kib - base["hwm_kib"]) * 1024
    else:
        res.above_baseline_bytes = (out["maxrss_kib"] - base["maxrss_kib"]) * 1024
    if res.records != expected_records or out["last_lsn"] != expected_records:
        res.error = f"replayed {res.records} records up to LSN {out['last_lsn']}, " \
            f"expected {expected_records}"


def median_baseline(samples: list[dict[str, Any]]) -> dict[str, int]:
    """Median ``maxrss_kib`` (and ``hwm_kib`` when every sample has it) of baseline children."""
    out = {"maxrss_kib": int(statistics.median(s["maxrss_kib"] for s in samples))}
    hwm = [s["hwm_kib"] for s in samples if s.get("hwm_kib") is not None]
    if hwm and len(hwm) == len(samples):
        out["hwm_kib"] = int(statistics.median(hwm))
    return out


# --------------------------------------------------------------------------- running


def run(scratch: Path, opts: Options) -> Report:
    build: dict[str, float] = {}

    # ----- (a) seek
    seek: list[SeekResult] = []
    seek_paths: list[Path] = []
    for count in (opts.small_segments, opts.large_segments):
        path = scratch / f"seek-{count}"
        bl.eprint(f"building a {count}-segment archive ({opts.segment_bytes:,} B segments) ...")
        t0 = time.perf_counter()
        res = SeekResult(segments=0, records=0, archive_bytes=0, from_lsn=0)
        try:
            res.records = build_seek_archive(path, count, opts.segment_bytes)
            infos = [s for s in lsnwal.collect_all_segments(path) if s.last_lsn >= s.first_lsn]
            res.segments = len(infos)
            res.archive_bytes, _ = _archive_bytes(path)
            last = infos[-1]
            res.from_lsn = (last.first_lsn + last.last_lsn) // 2
            if res.segments != count or any(s.state != "archive" for s in infos):
                res.error = f"built {res.segments} segments ({infos[-1].state} last), " \
                    f"expected {count} archived"
        except Exception as exc:
            res.error = f"building the archive: {_describe(exc)}"
        build[f"seek archive, {count} segments"] = time.perf_counter() - t0
        seek.append(res)
        seek_paths.append(path)
    bl.eprint(f"timing replay(from_lsn=X) to the first record, {opts.runs} runs each ...")
    measure_seek(seek, seek_paths, opts.runs)
    small, large = seek
    seek_ratio = (
        large.summary.p50_s / small.summary.p50_s
        if small.summary and large.summary and not small.error and not large.error
        else None
    )

    # ----- (b) + (c) plain vs zstd on the JSON corpus
    bl.eprint(f"generating {opts.corpus_records:,} JSON documents ...")
    corpus = json_corpus(opts.corpus_records)
    corpus_bytes = sum(map(len, corpus))
    replay_results: list[ReplayResult] = []
    corpus_paths: dict[str, Path] = {}
    seg_bytes = 16 * 1024 * 1024
    for name, compression in (("plain", None), ("zstd", "zstd")):
        path = scratch / f"corpus-{name}"
        cfg = lsnwal.WalConfig(segment_max_bytes=seg_bytes, compression=compression,
                               compression_level=opts.level)
        bl.eprint(f"building the {name} corpus WAL ...")
        t0 = time.perf_counter()
        res = ReplayResult(name=f"JSON corpus, {name}", records=len(corpus),
                           payload_bytes=corpus_bytes, archive_bytes=0, segments=0)
        try:
            build_corpus_wal(path, iter(corpus), None, cfg)
            res.archive_bytes, res.segments = _archive_bytes(path)
        except Exception as exc:
            res.error = f"building the WAL: {_describe(exc)}"
        build[f"corpus WAL, {name}"] = time.perf_counter() - t0
        replay_results.append(res)
        corpus_paths[name] = path
    for res, path in zip(replay_results, corpus_paths.values(), strict=True):
        if res.error is None:
            bl.eprint(f"replaying {res.name}, {opts.reps} repetitions ...")
            measure_replay(res, path, opts.reps)
    plain, zstd = replay_results
    ratio_plain = (
        plain.archive_bytes / zstd.archive_bytes if plain.archive_bytes and zstd.archive_bytes
        else None
    )
    ratio_payload = corpus_bytes / zstd.archive_bytes if zstd.archive_bytes else None

    # ----- (d) peak RSS
    bl.eprint("measuring the interpreter baseline (3 children) ...")
    baseline = [run_rss_child(None) for _ in range(3)]
    base = median_baseline(baseline)
    rss: list[RssResult] = []
    for res, path in zip(replay_results, corpus_paths.values(), strict=True):
        r = RssResult(name=f"{res.name} ({res.segments} segments)",
                      archive_bytes=res.archive_bytes)
        if res.error is None:
            measure_rss(r, path, base, res.records)
        else:
            r.error = "not measured: the WAL could not be built or replayed"
        rss.append(r)
    big_path = scratch / "big-plain"
    target_bytes = int(opts.gb * 1e9)
    big = RssResult(name=f"plain archive >= {opts.gb:g} GB", archive_bytes=0, target=True)
    bl.eprint(f"building a plain archive of >= {opts.gb:g} GB ...")
    t0 = time.perf_counter()
    try:
        records, _ = build_corpus_wal(big_path, _cycle(corpus), target_bytes, lsnwal.WalConfig())
        big.archive_bytes, files = _archive_bytes(big_path)
        big.name = f"plain archive, {big.archive_bytes / 1e9:.2f} GB ({files} segments)"
    except Exception as exc:
        big.error = f"building the archive: {_describe(exc)}"
        records = 0
    build[f"plain archive >= {opts.gb:g} GB"] = time.perf_counter() - t0
    if big.error is None:
        bl.eprint("replaying it in a child process ...")
        measure_rss(big, big_path, base, records)
    rss.append(big)

    return Report(
        machine=bl.machine_facts(scratch),
        options=opts,
        seek=seek,
        seek_ratio=seek_ratio,
        replay=replay_results,
        compression_ratio_plain=ratio_plain,
        compression_ratio_payload=ratio_payload,
        baseline=baseline,
        rss_source="VmHWM" if "hwm_kib" in base else "ru_maxrss",
        rss=rss,
        build_seconds=build,
    )


# --------------------------------------------------------------------------- report


def _mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f}"


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def render_report(report: Report) -> str:
    out: list[str] = []
    opts = report.options

    out.append("")
    out.append(
        f"(a) time to the first record of replay(from_lsn=X), X mid last segment; "
        f"{opts.runs} runs each, {opts.segment_bytes:,} B segments of 100 B records"
    )
    rows = []
    for r in report.seek:
        s = r.summary
        rows.append([
            f"{r.segments or '?'} segments" + ("  [ERROR]" if r.error else ""),
            f"{r.records:,}",
            _mb(r.archive_bytes),
            f"{r.from_lsn:,}",
            bl.fmt_us(s.p50_s if s else None),
            bl.fmt_us(s.p90_s if s else None),
            bl.fmt_us(s.p99_s if s else None),
            bl.fmt_us(s.min_s if s else None),
        ])
    out.append(bl.render_table(
        ["archive", "records", "MB", "from_lsn", "p50 us", "p90 us", "p99 us", "min us"], rows
    ))
    ratio = report.seek_ratio
    out.append(
        f"large / small at p50: {bl.fmt_ratio(ratio)} (target <= {TTFR_TARGET:g}x: "
        f"{_met(None if ratio is None else ratio <= TTFR_TARGET)})"
    )

    out.append("")
    out.append(f"(b) full replay, JSON corpus, {opts.reps} repetitions (zstd level {opts.level})")
    rows = []
    for r in report.replay:
        s = r.summary
        rows.append([
            r.name + ("  [ERROR]" if r.error else ""),
            f"{r.records:,}",
            str(r.segments),
            _mb(r.archive_bytes),
            bl.fmt_rate(r.rate_p50),
            bl.fmt_rate(r.records / s.p90_s if s else None),
            bl.fmt_rate(r.records / s.p99_s if s else None),
            "-" if s is None else f"{r.payload_bytes / s.p50_s / 1e6:,.0f}",
            "-" if s is None else f"{s.p50_s:.3f}",
        ])
    out.append(bl.render_table(
        ["archive", "records", "segments", "MB on disk", "rec/s p50", "rec/s p90", "rec/s p99",
         "payload MB/s p50", "s p50"], rows
    ))
    plain, zstd = report.replay
    if plain.rate_p50 and zstd.rate_p50:
        ratio = zstd.rate_p50 / plain.rate_p50
        out.append(f"zstd / plain replay rate at p50: {bl.fmt_ratio(ratio)}")

    out.append("")
    corpus_mb = plain.payload_bytes / 1e6
    avg = plain.payload_bytes / plain.records if plain.records else 0
    out.append(
        f"(c) compression of the JSON corpus ({plain.records:,} documents, {corpus_mb:,.1f} MB, "
        f"{avg:,.0f} B average): plain archive / zstd archive "
        f"{bl.fmt_ratio(report.compression_ratio_plain)}, payload / zstd archive "
        f"{bl.fmt_ratio(report.compression_ratio_payload)}"
    )

    out.append("")
    base = median_baseline(report.baseline)
    src = report.rss_source
    base_kib = base["hwm_kib"] if src == "VmHWM" else base["maxrss_kib"]
    out.append(
        f"(d) peak RSS of a full replay in a child process; baseline (python + import "
        f"lsnwal, median of {len(report.baseline)}): {base_kib / 1024:,.1f} MiB {src}, "
        f"{base['maxrss_kib'] / 1024:,.1f} MiB ru_maxrss"
    )
    rows = []
    for r in report.rss:
        above = r.above_baseline_bytes
        rows.append([
            r.name + ("  [ERROR]" if r.error else ""),
            f"{r.records:,}",
            "-" if r.seconds is None else f"{r.seconds:.2f}",
            "-" if r.hwm_kib is None else f"{r.hwm_kib / 1024:,.1f}",
            "-" if r.maxrss_kib is None else f"{r.maxrss_kib / 1024:,.1f}",
            "-" if above is None else f"{above / 1e6:,.1f}",
            (f"<= {RSS_TARGET_BYTES / 1e6:g} MB: "
             f"{_met(None if above is None else above <= RSS_TARGET_BYTES)}") if r.target else "",
        ])
    out.append(bl.render_table(
        ["replay", "records", "seconds", "VmHWM MiB", "ru_maxrss MiB",
         f"above baseline MB ({src})", "target"], rows, align="lrrrrrl",
    ))
    if src == "VmHWM":
        out.append(
            "a child's ru_maxrss starts at the spawning process's high-water mark on Linux "
            "(kept across fork + exec); VmHWM is the child's own peak"
        )

    out.append("")
    out.append("build times (not measured figures): " + ", ".join(
        f"{k} {v:.1f} s" for k, v in report.build_seconds.items()
    ))
    errors = [(r.segments, r.error) for r in report.seek if r.error]
    lines = [f"ERROR in seek, {n} segments: {e}" for n, e in errors]
    lines += [f"ERROR in {r.name}: {r.error}" for r in report.replay if r.error]
    lines += [f"ERROR in RSS, {r.name}: {r.error}" for r in report.rss if r.error]
    if lines:
        out.append("")
        out.extend(lines)
    return "\n".join(out)


def has_errors(report: Report) -> bool:
    return any(r.error for r in report.seek) or any(r.error for r in report.replay) or any(
        r.error for r in report.rss
    )


# --------------------------------------------------------------------------- CLI


def _positive_int(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(
        description="lsnwal replay: time to the first record vs archive size, plain vs zstd "
        "replay speed, compression ratio of a JSON corpus, peak RSS of a full replay.",
    )
    parser.add_argument("--gb", type=_positive_float, default=None,
                        help="size of the archive whose replay RSS is measured, in GB "
                        "(default 1.0; 0.1 with --quick)")
    parser.add_argument("--small-segments", type=_positive_int, default=10,
                        help="segments in the small seek archive (default 10)")
    parser.add_argument("--large-segments", type=_positive_int, default=1000,
                        help="segments in the large seek archive (default 1000)")
    parser.add_argument("--segment-kib", type=_positive_int, default=None,
                        help="segment_max_bytes of the seek archives in KiB "
                        "(default 64; 16 with --quick; at least 4)")
    parser.add_argument("--runs", type=_positive_int, default=None,
                        help="time-to-first-record runs per archive (default 21; 7 with --quick)")
    parser.add_argument("--corpus", type=_positive_int, default=None,
                        help="JSON documents in the plain/zstd corpus WALs "
                        "(default 200,000; 20,000 with --quick)")
    parser.add_argument("--reps", type=_positive_int, default=None,
                        help="full-replay repetitions (default 5; 3 with --quick)")
    parser.add_argument("--level", type=int, default=3, help="zstd compression level (default 3)")
    parser.add_argument("--dir", default=None,
                        help="parent of the scratch directory, on the disk to measure "
                        "(default ./.bench-tmp); the scratch directory is removed at the end")
    parser.add_argument("--json", metavar="PATH", default=None, help="write all results as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 0.1 GB, 20,000 documents, 16 KiB segments, fewer runs")
    args = parser.parse_args(argv)
    q = args.quick
    segment_kib = args.segment_kib or (16 if q else 64)
    if segment_kib < 4:
        parser.error("--segment-kib must be at least 4")
    if args.small_segments >= args.large_segments:
        parser.error("--small-segments must be below --large-segments")
    opts = Options(
        small_segments=args.small_segments,
        large_segments=args.large_segments,
        segment_bytes=segment_kib * 1024,
        runs=args.runs or (7 if q else 21),
        corpus_records=args.corpus or (20_000 if q else 200_000),
        reps=args.reps or (3 if q else 5),
        level=args.level,
        gb=args.gb or (0.1 if q else 1.0),
    )
    return args, opts


def main(argv: Sequence[str] | None = None) -> int:
    args, opts = parse_args(argv)
    try:
        with bl.bench_directory(args.dir, prefix="bench-replay-") as scratch:
            print("lsnwal bench_replay: seek, plain vs zstd replay, compression, peak RSS",
                  flush=True)
            print(bl.render_facts(bl.machine_facts(scratch)), flush=True)
            report = run(scratch, opts)
    except KeyboardInterrupt:
        print("interrupted; scratch directory removed", file=sys.stderr)
        return 130
    print(render_report(report), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(bl.to_jsonable(report), fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 1 if has_errors(report) else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
