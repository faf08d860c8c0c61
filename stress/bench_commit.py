"""Durable commits per second and commit latency: lsnwal against its peers.

What is measured
----------------
A *commit* is one 100-byte record made durable before the caller goes on. The
clock (``time.perf_counter``) runs around the whole commit, as the caller sees it:

* **lsnwal** (``WalConfig()`` defaults except ``archive_enabled=True`` and
  ``rotate_on_sync``): ``append`` + ``sync()`` from one committer; ``append`` +
  ``sync_async().wait()`` from 1, 4, 16 and 64 threads; and ``append`` +
  ``await sync_async()`` from 1000 asyncio tasks on one event loop. Every lsnwal
  workload runs once per mode (``--modes``, default both), labelled
  ``lsnwal[rotate]`` and ``lsnwal[inplace]``:

  - ``rotate`` (``rotate_on_sync=True``, the default and the DESIGN contract):
    each group-commit batch rotates the active segment into ``pending/`` (a
    rename plus a new file) and the sync thread fsyncs the sealed segment;
  - ``inplace`` (``rotate_on_sync=False``): each batch queues an fsync of the
    active file in the same FIFO; segments rotate only when full. Where creating
    a file is expensive, this is the cheaper commit path.
* **peers**, with the same thread counts, each thread committing in a loop:
  ``naive`` (a shared ``threading.Lock``; under it ``os.write`` of the record and
  ``os.fsync``), ``sqlite`` (stdlib sqlite3, ``journal_mode=WAL``,
  ``synchronous=FULL``, one connection per thread, each commit one INSERT in its
  own ``BEGIN IMMEDIATE`` transaction), ``leveldb`` (plyvel, ``put(sync=True)``),
  ``rocksdb`` (rocksdict, ``put`` with ``WriteOptions.sync = True``) and ``lmdb``
  (``sync=True``, each commit one write transaction with one put). The key-value
  peers store the 100-byte record under a 17-byte key. A peer that cannot be
  imported is reported as skipped.
* **the disk itself**: 500 times ``os.write`` of 100 bytes + ``os.fsync`` on one
  file, printed first. This is the floor for one committer without batching.

Every workload gets a fresh store in a scratch directory on the file system being
measured (``--dir``, default ``./.bench-tmp/``; ``/tmp`` is often a tmpfs where
fsync is free), runs a short warm-up, then ``--seconds`` of measurement. A commit
counts when it *completes* inside the measurement window; commits/s is that count
divided by the window length. Latency percentiles pool the commits of all threads.

How to read it
--------------
* With one committer, commits/s is about 1 / fsync latency for everyone: nobody can
  beat the disk. lsnwal's single-committer ratios against ``naive`` show its own
  overhead (close to 1.0x is the goal).
* With many committers, only group commit (one fsync covering many commits) lifts
  throughput past the fsync wall. ``commits/fsync`` (from ``wal.stats()``, counted
  over the measurement window) shows how much lsnwal batches, and ``rot/s`` how
  many segment rotations per second that cost (one per batch in ``rotate`` mode,
  about none in ``inplace`` mode). In CPython the second wall is the GIL: thread
  hand-offs cap out at tens of thousands per second.
* The ratios section prints the project's targets for each mode, with ``met`` or
  ``MISSED``: sync() x1 / naive x1 >= 0.9; sync_async().wait() x1 / naive x1 >=
  0.8; top thread count / best peer at that count >= 1.2; asyncio tasks / best
  peer at the top thread count >= 2.0; p99 at the top thread count / disk fsync
  p50 <= 5.0. The targets are written for 64 threads; ``--quick`` and
  ``--threads`` change the top count, and the ratios then use that.
* Throughput ratios above 1.0x favour lsnwal. The latency ratio (lsnwal p99 at the
  highest thread count / disk fsync p50) says how many fsync times the slowest
  commits wait; with group commit it grows with the queue, by design.
* Peer quirks worth knowing when reading their rows: SQLite allows one writer and
  its busy handler *sleeps* (1, 2, 5, 10 ms ...) between retries, so with many
  threads a few connections win and the rest starve (look at its max latency);
  rocksdict holds the GIL for the whole synced ``put`` (fsync included), so Python
  threads never share a RocksDB write group and stall each other; LMDB flushes data
  and meta page separately (about two fsyncs per commit); LevelDB releases the GIL
  and groups concurrent writers, which makes it the peer to beat at high counts.
* The figures describe this machine, its kernel and file system (printed at the
  top). In a VM the "disk" may be a host cache, so they are not durable-media
  figures.

Usage::

    python stress/bench_commit.py                     # 3 s per workload, 1/4/16/64 threads
    python stress/bench_commit.py --quick             # 1 s, 1 and 16 threads (smoke test)
    python stress/bench_commit.py --modes inplace     # lsnwal with rotate_on_sync=False only
    python stress/bench_commit.py --json out.json --plot out.png   # also out-latency.png
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import importlib
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

# The shared helpers sit beside this script; make them importable however it is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as bl

REPO_ROOT = Path(__file__).resolve().parent.parent
PAYLOAD_BYTES = 100
PAYLOAD = bytes(i % 251 for i in range(PAYLOAD_BYTES))
PEER_KEYS = ("naive", "sqlite", "leveldb", "rocksdb", "lmdb")
PEER_TITLES = {
    "naive": "naive lock+write+fsync",
    "sqlite": "sqlite WAL synchronous=FULL",
    "leveldb": "leveldb put(sync=True)",
    "rocksdb": "rocksdb put(sync=True)",
    "lmdb": "lmdb write txn (sync=True)",
}
#: the module each peer needs; ``naive`` needs only ``os``.
PEER_MODULES = {"sqlite": "sqlite3", "leveldb": "plyvel", "rocksdb": "rocksdict", "lmdb": "lmdb"}
#: ``--modes`` names -> ``WalConfig.rotate_on_sync``.
LSNWAL_MODES = {"rotate": True, "inplace": False}
#: lsnwal workload names; reported as ``lsnwal[<mode>] <name>``.
WL_SYNC = "append+sync()"
WL_WAIT = "append+sync_async().wait()"
WL_ASYNCIO = "asyncio append+await sync_async()"
LMDB_MAP_SIZE = 1 << 30
SQLITE_BUSY_TIMEOUT_S = 60.0


def lsnwal_label(mode: str, workload: str) -> str:
    """``lsnwal[rotate] append+sync()`` and the like."""
    return f"lsnwal[{mode}] {workload}"


# --------------------------------------------------------------------------- engines


class Session:
    """One committer's handle on an engine; used by one thread only."""

    def commit(self, key: bytes) -> None:
        """Make one record durable before returning."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what this committer opened (called from its own thread)."""


class Engine:
    """A store under test, opened in a fresh directory for one workload."""

    #: True when ``close()`` is designed to release callers blocked in a commit
    #: (lsnwal fails outstanding waiters); peers are not closed under a stuck caller.
    close_releases_waiters = False

    def session(self, index: int) -> Session:
        """Open the per-thread state of committer ``index`` (called in that thread)."""
        raise NotImplementedError

    def counters(self) -> dict[str, float | None] | None:
        """Cumulative counters (fsyncs, commits, ...) to difference across the window."""
        return None

    def close(self) -> None:
        """Close the store; every session has been closed already."""


class _CallSession(Session):
    """A session that calls one function per commit and owns nothing."""

    def __init__(
        self, commit: Callable[[bytes], None], close: Callable[[], None] | None = None
    ) -> None:
        self._commit = commit
        self._close = close

    def commit(self, key: bytes) -> None:
        self._commit(key)

    def close(self) -> None:
        if self._close is not None:
            self._close()


class NaiveEngine(Engine):
    """One append-only file, a global lock, write + fsync per commit: no batching."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(directory / "naive.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def _commit(self, key: bytes) -> None:
        with self._lock:
            os.write(self._fd, PAYLOAD)
            os.fsync(self._fd)

    def session(self, index: int) -> Session:
        return _CallSession(self._commit)

    def close(self) -> None:
        os.close(self._fd)


class SqliteSession(Session):
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(
            path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA synchronous=FULL")

    def commit(self, key: bytes) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO log(payload) VALUES (?)", (PAYLOAD,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()


class SqliteEngine(Engine):
    """SQLite in WAL mode, synchronous=FULL: every COMMIT fsyncs the WAL file."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / "bench.sqlite"
        conn = sqlite3.connect(self._path, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"sqlite refused journal_mode=WAL (got {mode!r})")
            conn.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        finally:
            conn.close()

    def session(self, index: int) -> Session:
        return SqliteSession(self._path)


class LevelDbEngine(Engine):
    """LevelDB through plyvel; ``sync=True`` fsyncs its log, writers are grouped."""

    def __init__(self, plyvel: ModuleType, directory: Path) -> None:
        self._db: Any = plyvel.DB(str(directory), create_if_missing=True)

    def session(self, index: int) -> Session:
        put = self._db.put
        return _CallSession(lambda key: put(key, PAYLOAD, sync=True))

    def close(self) -> None:
        self._db.close()


class RocksDbEngine(Engine):
    """RocksDB through rocksdict; ``WriteOptions.sync`` fsyncs its WAL per write group."""

    def __init__(self, rocksdict: ModuleType, directory: Path) -> None:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        self._db: Any = rocksdict.Rdict(str(directory), options)
        self._write_options: Any = rocksdict.WriteOptions()
        self._write_options.sync = True

    def session(self, index: int) -> Session:
        put = self._db.put
        wo = self._write_options
        return _CallSession(lambda key: put(key, PAYLOAD, wo))

    def close(self) -> None:
        self._db.close()
        self._db = None


class LmdbEngine(Engine):
    """LMDB with ``sync=True``: one writer at a time, each commit flushes data and meta."""

    def __init__(self, lmdb: ModuleType, directory: Path) -> None:
        self._env: Any = lmdb.open(
            str(directory), map_size=LMDB_MAP_SIZE, sync=True, metasync=True, max_dbs=0
        )

    def _commit(self, key: bytes) -> None:
        with self._env.begin(write=True) as txn:
            txn.put(key, PAYLOAD)

    def session(self, index: int) -> Session:
        return _CallSession(self._commit)

    def close(self) -> None:
        self._env.close()


class LsnwalEngine(Engine):
    """An lsnwal writer; ``mode`` is ``"sync"`` (blocking sync()) or ``"wait"``.

    ``rotate_on_sync`` is passed to ``WalConfig`` (``--modes``: rotate / inplace).
    """

    close_releases_waiters = True

    def __init__(
        self, lsnwal: ModuleType, directory: Path, mode: str, rotate_on_sync: bool = True
    ) -> None:
        config = lsnwal.WalConfig(archive_enabled=True, rotate_on_sync=rotate_on_sync)
        self.wal: Any = lsnwal.open(str(directory / "wal"), config)
        self._mode = mode

    def _commit_sync(self, key: bytes) -> None:
        self.wal.append(PAYLOAD)
        self.wal.sync()

    def _commit_wait(self, key: bytes) -> None:
        self.wal.append(PAYLOAD)
        if not self.wal.sync_async().wait():
            raise RuntimeError("SyncHandle.wait() without a timeout returned False")

    def session(self, index: int) -> Session:
        return _CallSession(self._commit_sync if self._mode == "sync" else self._commit_wait)

    def counters(self) -> dict[str, float | None] | None:
        stats_fn = getattr(self.wal, "stats", None)
        if stats_fn is None:
            return None
        try:
            stats = stats_fn()
        except Exception:  # a half-built stats() must not sink the benchmark
            return None
        return {
            name: getattr(stats, name, None)
            for name in (
                "fsyncs",
                "commits",
                "commits_per_fsync",
                "fsync_p50_s",
                "fsync_p99_s",
                "rotations",
            )
        }

    def close(self) -> None:
        self.wal.close()


# --------------------------------------------------------------------------- runners


@dataclasses.dataclass
class Measurement:
    """What one run produced, before it is turned into a reported result."""

    latencies: list[float]
    counters_before: dict[str, float | None] | None = None
    counters_after: dict[str, float | None] | None = None
    error: str | None = None
    stuck: int = 0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sleep_until(deadline: float, stop: threading.Event) -> None:
    """Sleep until ``deadline`` (perf_counter time) or until ``stop`` is set."""
    while not stop.is_set():
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return
        stop.wait(remaining)


def run_threads(
    engine: Engine, threads: int, warmup_s: float, seconds: float, grace_s: float
) -> Measurement:
    """Run ``threads`` committers against ``engine`` for warm-up plus ``seconds``.

    All threads start together (a barrier); the deadlines are fixed when the
    barrier opens, so no shared state is touched on the commit path except by the
    engine itself. A failing committer stops the others. Threads still blocked
    ``grace_s`` after the end are reported as stuck (they are daemon threads).
    """
    stop = threading.Event()
    start_box: list[float] = []
    barrier = threading.Barrier(threads + 1, action=lambda: start_box.append(time.perf_counter()))
    samples: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    errors_lock = threading.Lock()

    def fail(exc: BaseException) -> None:
        with errors_lock:
            errors.append(_describe(exc))
        stop.set()
        barrier.abort()

    def worker(index: int) -> None:
        session: Session | None = None
        try:
            session = engine.session(index)
            barrier.wait()
            warm_end = start_box[0] + warmup_s
            end = warm_end + seconds
            mine = samples[index]
            commit = session.commit
            clock = time.perf_counter
            prefix = b"%04d-" % index
            seq = 0
            while not stop.is_set():
                t0 = clock()
                if t0 >= end:
                    break
                commit(b"%s%012d" % (prefix, seq))
                t1 = clock()
                seq += 1
                if warm_end <= t1 <= end:
                    mine.append(t1 - t0)
        except threading.BrokenBarrierError:
            pass  # another committer failed before the start, or the run was interrupted
        except BaseException as exc:
            fail(exc)
        finally:
            if session is not None:
                try:
                    session.close()
                except BaseException as exc:
                    fail(exc)

    workers = [
        threading.Thread(target=worker, args=(i,), name=f"committer-{i}", daemon=True)
        for i in range(threads)
    ]
    result = Measurement(latencies=[])
    for w in workers:
        w.start()
    try:
        try:
            barrier.wait(timeout=grace_s)
        except threading.BrokenBarrierError:
            pass  # a committer could not open its session; its error is in `errors`
        else:
            warm_end = start_box[0] + warmup_s
            _sleep_until(warm_end, stop)
            result.counters_before = engine.counters()
            _sleep_until(warm_end + seconds, stop)
            result.counters_after = engine.counters()
    finally:
        stop.set()
        barrier.abort()
        join_deadline = time.perf_counter() + grace_s
        for w in workers:
            w.join(max(0.0, join_deadline - time.perf_counter()))
        result.stuck = sum(w.is_alive() for w in workers)
    if result.stuck:
        errors.append(
            f"{result.stuck} of {threads} committers still blocked {grace_s:.0f}s after the end"
        )
    result.latencies = [x for per_thread in samples for x in per_thread]
    result.error = "; ".join(dict.fromkeys(errors)) or None
    return result


def run_asyncio(
    engine: LsnwalEngine, tasks: int, warmup_s: float, seconds: float, grace_s: float
) -> Measurement:
    """Run ``tasks`` asyncio committers (append + ``await sync_async()``) on one loop.

    The event loop runs in its own thread so that this thread can take the stats
    snapshots at the window edges, exactly as for the threaded workloads.
    """
    wal = engine.wal
    stop = threading.Event()
    start_box: list[float] = []
    barrier = threading.Barrier(2, action=lambda: start_box.append(time.perf_counter()))
    samples: list[float] = []
    errors: list[str] = []

    async def committer(warm_end: float, end: float) -> None:
        clock = time.perf_counter
        while not stop.is_set():
            t0 = clock()
            if t0 >= end:
                return
            wal.append(PAYLOAD)
            await wal.sync_async()
            t1 = clock()
            if warm_end <= t1 <= end:
                samples.append(t1 - t0)

    async def drive() -> None:
        barrier.wait()  # blocks the loop briefly, before any task exists
        warm_end = start_box[0] + warmup_s
        end = warm_end + seconds
        pending = {asyncio.create_task(committer(warm_end, end)) for _ in range(tasks)}
        budget_end = time.perf_counter() + warmup_s + seconds + grace_s
        while pending:
            remaining = budget_end - time.perf_counter()
            if remaining <= 0:
                errors.append(
                    f"{len(pending)} of {tasks} tasks still waiting {grace_s:.0f}s after the end"
                )
                break
            done, pending = await asyncio.wait(
                pending, timeout=remaining, return_when=asyncio.FIRST_EXCEPTION
            )
            for task in done:
                exc = task.exception()
                if exc is not None:
                    errors.append(_describe(exc))
                    stop.set()
        stop.set()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace_s)

    def loop_thread() -> None:
        try:
            asyncio.run(drive())
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:
            errors.append(_describe(exc))
            stop.set()

    thread = threading.Thread(target=loop_thread, name="asyncio-committers", daemon=True)
    result = Measurement(latencies=samples)
    thread.start()
    try:
        try:
            barrier.wait(timeout=grace_s)
        except threading.BrokenBarrierError:
            pass
        else:
            warm_end = start_box[0] + warmup_s
            _sleep_until(warm_end, stop)
            result.counters_before = engine.counters()
            _sleep_until(warm_end + seconds, stop)
            result.counters_after = engine.counters()
    finally:
        stop.set()
        barrier.abort()
        thread.join(3 * grace_s)
        result.stuck = int(thread.is_alive())
    if result.stuck:
        errors.append("the event loop did not finish (an await blocked the loop?)")
    result.error = "; ".join(dict.fromkeys(errors)) or None
    return result


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class WorkloadResult:
    """One row of the report."""

    engine: str
    workload: str
    threads: int
    tasks: int
    seconds: float
    commits: int
    commits_per_s: float
    latency: bl.LatencySummary | None
    fsyncs: int | None = None
    commits_per_fsync: float | None = None
    wal_fsync_p50_s: float | None = None
    error: str | None = None
    #: lsnwal only: ``rotate`` or ``inplace`` (``WalConfig.rotate_on_sync``)
    mode: str | None = None
    #: lsnwal only: segment rotations over the window (``stats().rotations`` delta)
    rotations: int | None = None
    rotations_per_s: float | None = None

    @property
    def ok(self) -> bool:
        """Ran to the end without an error (possibly with no commit in the window)."""
        return self.error is None

    @property
    def concurrency(self) -> str:
        return f"{self.tasks} tasks" if self.tasks > self.threads else str(self.threads)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclasses.dataclass(frozen=True)
class WalFigures:
    """What lsnwal's ``stats()`` says about the measured window."""

    fsyncs: int | None = None
    commits_per_fsync: float | None = None
    fsync_p50_s: float | None = None
    rotations: int | None = None


def _delta(m: Measurement, name: str) -> int | None:
    """``after - before`` of one counter, or ``None`` when either snapshot lacks it."""
    before = _number((m.counters_before or {}).get(name))
    after = _number((m.counters_after or {}).get(name))
    if before is None or after is None:
        return None
    return int(after - before)


def _wal_figures(m: Measurement, commits: int) -> WalFigures:
    """fsyncs, commits per fsync and rotations over the window, from two stats() snapshots."""
    before, after = m.counters_before or {}, m.counters_after or {}
    fsyncs = _delta(m, "fsyncs")
    commits_before, commits_after = _number(before.get("commits")), _number(after.get("commits"))
    window_commits: float | None = float(commits)
    if commits_before is not None and commits_after is not None:
        window_commits = commits_after - commits_before
    per_fsync: float | None = None
    if fsyncs and window_commits is not None:
        per_fsync = window_commits / fsyncs
    elif _number(after.get("commits_per_fsync")) is not None:
        per_fsync = _number(after.get("commits_per_fsync"))  # cumulative fallback
    return WalFigures(fsyncs, per_fsync, _number(after.get("fsync_p50_s")), _delta(m, "rotations"))


def make_result(
    engine: str,
    workload: str,
    threads: int,
    tasks: int,
    seconds: float,
    m: Measurement,
    mode: str | None = None,
) -> WorkloadResult:
    commits = len(m.latencies)
    wal = _wal_figures(m, commits) if engine == "lsnwal" else WalFigures()
    rotations_per_s = wal.rotations / seconds if wal.rotations is not None and seconds > 0 else None
    return WorkloadResult(
        engine=engine,
        workload=workload,
        threads=threads,
        tasks=tasks,
        seconds=seconds,
        commits=commits,
        commits_per_s=commits / seconds if seconds > 0 else 0.0,
        latency=bl.summarize(m.latencies),
        fsyncs=wal.fsyncs,
        commits_per_fsync=wal.commits_per_fsync,
        wal_fsync_p50_s=wal.fsync_p50_s,
        error=m.error,
        mode=mode,
        rotations=wal.rotations,
        rotations_per_s=rotations_per_s,
    )


def error_result(
    engine: str, workload: str, threads: int, tasks: int, error: str, mode: str | None = None
) -> WorkloadResult:
    return WorkloadResult(
        engine, workload, threads, tasks, 0.0, 0, 0.0, None, error=error, mode=mode
    )


def progress_line(r: WorkloadResult) -> str:
    if r.latency is None:
        return f"  {r.workload} x{r.concurrency}: no commits" + (f" ({r.error})" if r.error else "")
    text = (
        f"  {r.workload} x{r.concurrency}: {bl.fmt_rate(r.commits_per_s)} commits/s, "
        f"p50 {bl.fmt_us(r.latency.p50_s)} us, p99 {bl.fmt_us(r.latency.p99_s)} us"
    )
    if r.commits_per_fsync is not None:
        text += f", {r.commits_per_fsync:.1f} commits/fsync"
    if r.rotations_per_s is not None:
        text += f", {bl.fmt_rate(r.rotations_per_s)} rotations/s"
    if r.error:
        text += f"  ERROR: {r.error}"
    return text


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass
class Options:
    seconds: float
    warmup_s: float
    threads: list[int]
    tasks: int
    peers: list[str]
    lsnwal: bool
    fsync_iterations: int
    grace_s: float
    #: lsnwal modes to run, names from ``LSNWAL_MODES``
    modes: list[str] = dataclasses.field(default_factory=lambda: list(LSNWAL_MODES))


@dataclasses.dataclass
class Report:
    machine: bl.MachineFacts
    options: Options
    disk_fsync: bl.LatencySummary
    results: list[WorkloadResult]
    skipped: dict[str, str]
    ratios: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def load_lsnwal() -> tuple[ModuleType | None, str | None]:
    """Import lsnwal from this checkout; return (module, None) or (None, reason)."""
    if (REPO_ROOT / "lsnwal").is_dir() and str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        module = importlib.import_module("lsnwal")
    except Exception as exc:
        return None, f"import failed: {_describe(exc)}"
    missing = [name for name in ("open", "WalConfig") if not hasattr(module, name)]
    if missing:
        return None, f"lsnwal has no {', '.join(missing)} yet"
    return module, None


def load_peers(wanted: Sequence[str]) -> tuple[dict[str, ModuleType | None], dict[str, str]]:
    """Import each wanted peer's module; a failure makes that peer skipped."""
    available: dict[str, ModuleType | None] = {}
    skipped: dict[str, str] = {}
    for key in wanted:
        module_name = PEER_MODULES.get(key)
        if module_name is None:
            available[key] = None
            continue
        try:
            available[key] = importlib.import_module(module_name)
        except Exception as exc:
            skipped[key] = f"cannot import {module_name}: {_describe(exc)}"
    return available, skipped


def open_peer(key: str, module: ModuleType | None, directory: Path) -> Engine:
    if key == "naive":
        return NaiveEngine(directory)
    if key == "sqlite":
        return SqliteEngine(directory)
    assert module is not None
    if key == "leveldb":
        return LevelDbEngine(module, directory)
    if key == "rocksdb":
        return RocksDbEngine(module, directory)
    if key == "lmdb":
        return LmdbEngine(module, directory)
    raise ValueError(f"unknown peer {key!r}")


class Runner:
    """Runs workloads one after another, each in a fresh directory it removes after."""

    def __init__(self, scratch: Path, opts: Options) -> None:
        self.scratch = scratch
        self.opts = opts
        self.results: list[WorkloadResult] = []
        self._counter = 0

    def _fresh_dir(self, label: str) -> Path:
        self._counter += 1
        return self.scratch / f"{self._counter:02d}-{label}"

    def run(
        self,
        engine_name: str,
        workload: str,
        threads: int,
        tasks: int,
        opener: Callable[[Path], Engine],
        driver: Callable[[Engine], Measurement],
        mode: str | None = None,
    ) -> WorkloadResult:
        label = f"{engine_name}-{mode}" if mode else engine_name
        directory = self._fresh_dir(f"{label}-{tasks}")
        bl.eprint(f"running {workload} x{tasks if tasks > threads else threads} ...")
        try:
            result = self._open_and_run(
                engine_name, workload, threads, tasks, directory, opener, driver, mode
            )
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        bl.eprint(progress_line(result))
        self.results.append(result)
        return result

    def _open_and_run(
        self,
        engine_name: str,
        workload: str,
        threads: int,
        tasks: int,
        directory: Path,
        opener: Callable[[Path], Engine],
        driver: Callable[[Engine], Measurement],
        mode: str | None,
    ) -> WorkloadResult:
        try:
            engine = opener(directory)
        except Exception as exc:
            return error_result(
                engine_name, workload, threads, tasks, f"open: {_describe(exc)}", mode
            )
        measurement: Measurement | None = None
        close_error: str | None = None
        try:
            measurement = driver(engine)
        finally:
            close_error = _close_engine(engine_name, engine, measurement)
        if close_error:
            measurement.error = (
                f"{measurement.error}; {close_error}" if measurement.error else close_error
            )
        return make_result(
            engine_name, workload, threads, tasks, self.opts.seconds, measurement, mode
        )


def _close_engine(name: str, engine: Engine, measurement: Measurement | None) -> str | None:
    """Close ``engine`` unless committers are stuck in it and closing is unsafe then."""
    stuck = measurement.stuck if measurement is not None else 0
    if stuck and not engine.close_releases_waiters:
        bl.eprint(f"  warning: {name} left open, {stuck} committers are stuck in it")
        return None
    try:
        engine.close()
    except Exception as exc:
        return f"close: {_describe(exc)}"
    return None


def run_all(scratch: Path, opts: Options) -> tuple[list[WorkloadResult], dict[str, str]]:
    runner = Runner(scratch, opts)
    skipped: dict[str, str] = {}
    o = opts

    lsnwal: ModuleType | None = None
    if o.lsnwal:
        lsnwal, reason = load_lsnwal()
        if reason:
            skipped["lsnwal"] = reason
            print(f"lsnwal: skipped ({reason})", flush=True)
    peers, peer_skips = load_peers(o.peers)
    for key, reason in peer_skips.items():
        skipped[key] = reason
        print(f"{key}: skipped: {reason}", flush=True)

    def threaded(n: int) -> Callable[[Engine], Measurement]:
        return lambda engine: run_threads(engine, n, o.warmup_s, o.seconds, o.grace_s)

    dead_modes: set[str] = set()  # modes whose open() failed: the rest would fail alike

    def lsnwal_run(workload: str, kind: str, threads: int, tasks: int) -> None:
        """Run one lsnwal workload once per ``--modes`` entry, each in a fresh directory."""
        if lsnwal is None:
            return
        module = lsnwal

        def driver(engine: Engine) -> Measurement:
            if kind == "asyncio":
                assert isinstance(engine, LsnwalEngine)
                return run_asyncio(engine, tasks, o.warmup_s, o.seconds, o.grace_s)
            return run_threads(engine, threads, o.warmup_s, o.seconds, o.grace_s)

        engine_kind = "sync" if kind == "sync" else "wait"
        for mode in o.modes:
            if mode in dead_modes:
                continue
            opener = functools.partial(
                LsnwalEngine, module, mode=engine_kind, rotate_on_sync=LSNWAL_MODES[mode]
            )
            result = runner.run(
                "lsnwal",
                lsnwal_label(mode, workload),
                threads,
                tasks,
                opener,
                driver,
                mode,
            )
            if result.error and result.error.startswith("open:"):
                key = f"lsnwal[{mode}]"
                skipped[key] = f"open() failed: {result.error[len('open: ') :]}"
                print(f"{key}: skipped ({skipped[key]})", flush=True)
                dead_modes.add(mode)

    lsnwal_run(WL_SYNC, "sync", 1, 1)
    for n in o.threads:
        lsnwal_run(WL_WAIT, "wait", n, n)
        for key, module in peers.items():
            runner.run(
                key,
                PEER_TITLES[key],
                n,
                n,
                functools.partial(open_peer, key, module),
                threaded(n),
            )
    lsnwal_run(WL_ASYNCIO, "asyncio", 1, o.tasks)
    return runner.results, skipped


# --------------------------------------------------------------------------- report


def _find(
    results: Sequence[WorkloadResult],
    engine: str,
    workload_prefix: str,
    threads: int,
    tasks: int | None = None,
    mode: str | None = None,
) -> WorkloadResult | None:
    """The first successful result matching all given fields (``mode`` when not None)."""
    for r in results:
        if (
            r.engine == engine
            and r.workload.startswith(workload_prefix)
            and r.threads == threads
            and (tasks is None or r.tasks == tasks)
            and (mode is None or r.mode == mode)
            and r.ok
        ):
            return r
    return None


def _lsnwal_find(
    results: Sequence[WorkloadResult], mode: str, workload: str, threads: int, tasks: int
) -> WorkloadResult | None:
    return _find(results, "lsnwal", lsnwal_label(mode, workload), threads, tasks, mode)


#: (name template, comparison, target). ``{top}`` and ``{tasks}`` are filled in.
RATIO_TARGETS: tuple[tuple[str, str, float], ...] = (
    ("sync() x1 / naive x1 (commits/s)", ">=", 0.9),
    ("sync_async().wait() x1 / naive x1 (commits/s)", ">=", 0.8),
    ("x{top} threads / best peer x{top} (commits/s)", ">=", 1.2),
    ("asyncio {tasks} tasks / best peer x{top} (commits/s)", ">=", 2.0),
    ("x{top} p99 / disk fsync p50 (latency)", "<=", 5.0),
)


def compute_ratios(
    results: Sequence[WorkloadResult], disk: bl.LatencySummary, opts: Options
) -> list[dict[str, Any]]:
    """The ratios the project tracks, for each lsnwal mode, with their targets.

    ``value`` (and ``met``) is None when a side is missing. The targets are set for
    64 threads; with other thread counts the top count measured stands in.
    """
    if not opts.lsnwal:
        return []
    top = max(opts.threads)
    naive1 = _find(results, "naive", "", 1)
    peers_top = [
        r for r in results if r.engine != "lsnwal" and r.threads == top and r.ok and r.commits > 0
    ]
    best = max(peers_top, key=lambda r: r.commits_per_s, default=None)
    best_note = (
        f"best peer x{top}: {best.engine} {bl.fmt_rate(best.commits_per_s)}/s"
        if best
        else f"no peer measured at x{top}"
    )

    def cps(r: WorkloadResult | None) -> float | None:
        return r.commits_per_s if r else None

    out: list[dict[str, Any]] = []
    for mode in opts.modes:
        sync1 = _lsnwal_find(results, mode, WL_SYNC, 1, 1)
        wait1 = _lsnwal_find(results, mode, WL_WAIT, 1, 1)
        wait_top = _lsnwal_find(results, mode, WL_WAIT, top, top)
        aio = _lsnwal_find(results, mode, WL_ASYNCIO, 1, opts.tasks)
        naive_note = f"naive x1 {bl.fmt_rate(cps(naive1))}/s" if naive1 else "naive not measured"
        sides: list[tuple[float | None, float | None, str]] = [
            (cps(sync1), cps(naive1), naive_note),
            (cps(wait1), cps(naive1), naive_note),
            (cps(wait_top), cps(best), best_note),
            (cps(aio), cps(best), best_note),
            (
                wait_top.latency.p99_s if wait_top and wait_top.latency else None,
                disk.p50_s,
                f"disk fsync p50 {bl.fmt_us(disk.p50_s)} us",
            ),
        ]
        for (template, op, target), (num, den, note) in zip(RATIO_TARGETS, sides, strict=True):
            value = num / den if num is not None and den else None
            met = None if value is None else (value >= target if op == ">=" else value <= target)
            out.append(
                {
                    "mode": mode,
                    "rotate_on_sync": LSNWAL_MODES[mode],
                    "name": template.format(top=top, tasks=opts.tasks),
                    "value": value,
                    "op": op,
                    "target": target,
                    "met": met,
                    "note": note,
                    "higher_is_better": op == ">=",
                }
            )
    return out


def _status(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "MISSED")


_KIND_ORDER = {WL_SYNC: 0, WL_WAIT: 1, WL_ASYNCIO: 2}


def _row_order(report: Report) -> list[WorkloadResult]:
    """lsnwal first (sync, wait by threads, asyncio; the modes side by side), then peers."""
    engines = {"lsnwal": 0, **{k: i + 1 for i, k in enumerate(PEER_KEYS)}}
    modes = {m: i for i, m in enumerate(report.options.modes)}

    def key(r: WorkloadResult) -> tuple[int, int, int, int, int]:
        kind = r.workload.split("] ", 1)[-1] if r.mode else ""
        return (
            engines.get(r.engine, 99),
            _KIND_ORDER.get(kind, 9),
            r.threads,
            r.tasks,
            modes.get(r.mode or "", 0),
        )

    return sorted(report.results, key=key)


def render_report(report: Report) -> str:
    out: list[str] = []
    d = report.disk_fsync
    opts = report.options
    out.append("")
    out.append(
        f"disk: write {PAYLOAD_BYTES} B + fsync, {d.count} iterations: "
        f"p50 {bl.fmt_us(d.p50_s)} us, p90 {bl.fmt_us(d.p90_s)} us, "
        f"p99 {bl.fmt_us(d.p99_s)} us, max {bl.fmt_us(d.max_s)} us "
        f"(~{bl.fmt_rate(1 / d.p50_s)} fsyncs/s at p50)"
    )
    out.append("")
    headers = [
        "workload",
        "threads",
        "commits/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "max us",
        "fsyncs",
        "commits/fsync",
        "rot/s",
    ]
    rows: list[list[str]] = []
    ordered = _row_order(report)
    for r in ordered:
        lat = r.latency
        rows.append(
            [
                r.workload + ("  [ERROR]" if r.error else ""),
                r.concurrency,
                bl.fmt_rate(r.commits_per_s),
                bl.fmt_us(lat.p50_s if lat else None),
                bl.fmt_us(lat.p90_s if lat else None),
                bl.fmt_us(lat.p99_s if lat else None),
                bl.fmt_us(lat.max_s if lat else None),
                bl.fmt_count(r.fsyncs),
                "-" if r.commits_per_fsync is None else f"{r.commits_per_fsync:,.1f}",
                bl.fmt_rate(r.rotations_per_s),
            ]
        )
    out.append(
        f"durable commits of {PAYLOAD_BYTES} B, {opts.seconds:g} s per workload "
        f"after {opts.warmup_s:g} s warm-up"
    )
    out.append(bl.render_table(headers, rows))
    out.append(
        "latency: per commit, all committers pooled; fsyncs, commits/fsync and rot/s "
        "(segment rotations per second): lsnwal's wal.stats() over the measured window"
    )
    out.append(
        "lsnwal modes: rotate = WalConfig(rotate_on_sync=True), a segment rotation per "
        "batch; inplace = rotate_on_sync=False, an in-place fsync of the active file"
    )

    # commits/s pivot: engine x thread count
    counts = opts.threads
    pivot_rows: list[list[str]] = []
    for title, engine, prefix, mode in _series(opts.modes, opts.peers):
        cells = []
        for n in counts:
            found = _find(report.results, engine, prefix, n, mode=mode)
            cells.append(bl.fmt_rate(found.commits_per_s) if found else "-")
        if any(c != "-" for c in cells):
            pivot_rows.append([title, *cells])
    if pivot_rows:
        out.append("")
        out.append("commits/s by thread count")
        out.append(bl.render_table(["engine", *[f"x{n}" for n in counts]], pivot_rows))

    # lsnwal batching: commits per fsync and rotations per second, modes side by side
    wal_rows: list[list[str]] = []
    for r in ordered:
        if r.engine != "lsnwal":
            continue
        vs_rotate = "-"
        if r.mode != "rotate" and r.mode is not None:
            kind = r.workload.split("] ", 1)[-1]
            base = _lsnwal_find(report.results, "rotate", kind, r.threads, r.tasks)
            if base is not None and base.commits_per_s > 0 and r.ok:
                vs_rotate = bl.fmt_ratio(r.commits_per_s / base.commits_per_s)
        wal_rows.append(
            [
                r.workload + ("  [ERROR]" if r.error else ""),
                r.concurrency,
                bl.fmt_rate(r.commits_per_s),
                bl.fmt_count(r.fsyncs),
                "-" if r.commits_per_fsync is None else f"{r.commits_per_fsync:,.1f}",
                bl.fmt_count(r.rotations),
                bl.fmt_rate(r.rotations_per_s),
                vs_rotate,
            ]
        )
    if wal_rows:
        out.append("")
        out.append("lsnwal batching over the measured window (commits/s vs the rotate mode)")
        out.append(
            bl.render_table(
                [
                    "workload",
                    "threads",
                    "commits/s",
                    "fsyncs",
                    "commits/fsync",
                    "rotations",
                    "rotations/s",
                    "vs rotate",
                ],
                wal_rows,
            )
        )

    if report.ratios:
        out.append("")
        out.append(
            "ratios against the project's targets, per lsnwal mode "
            "(throughput: >1x favours lsnwal; latency: lsnwal tail in disk fsyncs)"
        )
        if max(counts) != 64:
            out.append(
                f"  note: the targets are set for 64 threads; this run's top count is "
                f"x{max(counts)}"
            )
        ratio_rows = [
            [
                x["mode"],
                x["name"],
                bl.fmt_ratio(x["value"]),
                f"{x['op']} {x['target']:g}x",
                _status(x["met"]),
                x["note"],
            ]
            for x in report.ratios
        ]
        out.append(
            bl.render_table(
                ["mode", "ratio", "value", "target", "status", "note"], ratio_rows, align="llrrll"
            )
        )
        missed = [f"{x['mode']}: {x['name']}" for x in report.ratios if x["met"] is False]
        measured = [x for x in report.ratios if x["met"] is not None]
        out.append(
            f"targets met: {len(measured) - len(missed)} of {len(measured)} measured"
            + (f" (of {len(report.ratios)})" if len(measured) != len(report.ratios) else "")
        )

    errors = [r for r in report.results if r.error]
    if report.skipped or any(r.error or not r.commits for r in report.results):
        out.append("")
    for key, reason in report.skipped.items():
        out.append(
            f"{key}: skipped ({reason})"
            if key.startswith("lsnwal")
            else f"{key}: skipped: {reason}"
        )
    for r in errors:
        out.append(f"error in {r.workload} x{r.concurrency}: {r.error}")
    for r in report.results:
        if r.error is None and r.commits == 0:
            out.append(f"note: {r.workload} x{r.concurrency}: no commit completed in the window")
    return "\n".join(out)


def _series(modes: Sequence[str], peers: Sequence[str]) -> list[tuple[str, str, str, str | None]]:
    """(title, engine, workload prefix, mode) of each thread-count series."""
    series: list[tuple[str, str, str, str | None]] = [
        (lsnwal_label(m, "sync_async().wait()"), "lsnwal", lsnwal_label(m, WL_WAIT), m)
        for m in modes
    ]
    series += [(PEER_TITLES[k], k, "", None) for k in PEER_KEYS if k in peers]
    return series


#: line style and marker of each lsnwal mode in the plots (lsnwal is always blue).
MODE_STYLES = {"rotate": ("-", "o"), "inplace": ("--", "s")}
MODE_AUX_STYLES = {"rotate": ":", "inplace": "-."}
LSNWAL_COLOR = "tab:blue"
PEER_COLORS = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:gray")


def _line_style(engine: str, mode: str | None, index: int) -> dict[str, Any]:
    if engine == "lsnwal":
        ls, marker = MODE_STYLES.get(mode or "", ("-", "o"))
        return {"color": LSNWAL_COLOR, "ls": ls, "marker": marker, "lw": 2.5}
    return {"color": PEER_COLORS[index % len(PEER_COLORS)], "ls": "-", "marker": "o", "lw": 1.3}


def _latency_plot_path(path: str) -> Path:
    """``out.png`` -> ``out-latency.png`` (same directory and suffix)."""
    p = Path(path)
    return p.with_name(f"{p.stem}-latency{p.suffix or '.png'}")


def write_plot(report: Report, path: str) -> list[str]:
    """Write two PNGs and return their paths.

    ``path``: commits/s against thread count (log-log), both lsnwal modes (solid:
    rotate, dashed: inplace) and every peer. ``<stem>-latency.png``: p50 and p99
    commit latency against thread count for the same series.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opts = report.options
    counts = opts.threads
    m = report.machine
    subtitle = (
        f"{PAYLOAD_BYTES} B durable commits - {m.cpu_model}, {m.cores_usable} cores, {m.python}, "
        f"{m.fs_type} on {m.fs_device}, {m.date}"
    )
    disk_p50 = report.disk_fsync.p50_s

    # (style, points) per series; points are (threads, result) with a latency sample
    drawn: list[tuple[str, dict[str, Any], list[tuple[int, WorkloadResult]]]] = []
    peer_index = 0
    for title, engine, prefix, mode in _series(opts.modes, opts.peers):
        style = _line_style(engine, mode, peer_index)
        if engine != "lsnwal":
            peer_index += 1
        pts: list[tuple[int, WorkloadResult]] = []
        for n in counts:
            r = _find(report.results, engine, prefix, n, mode=mode)
            if r is not None and r.latency is not None and r.commits_per_s > 0:
                pts.append((n, r))
        if pts:
            drawn.append((title, style, pts))

    def finish_axes(ax: Any) -> None:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(counts)
        ax.set_xticklabels([str(n) for n in counts])
        ax.set_xlabel("committer threads")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)

    # ---- throughput
    fig, ax = plt.subplots(figsize=(10, 6))
    for title, style, pts in drawn:
        ax.plot([n for n, _ in pts], [r.commits_per_s for _, r in pts], label=title, **style)
    for mode in opts.modes:
        sync1 = _lsnwal_find(report.results, mode, WL_SYNC, 1, 1)
        if sync1 is not None and sync1.commits_per_s > 0:
            ax.plot(
                [1],
                [sync1.commits_per_s],
                MODE_STYLES.get(mode, ("-", "o"))[1],
                color="black",
                mfc="none" if mode != "rotate" else "black",
                ms=8,
                ls="none",
                label=f"lsnwal[{mode}] sync() x1",
            )
        aio = _lsnwal_find(report.results, mode, WL_ASYNCIO, 1, opts.tasks)
        if aio is not None and aio.commits_per_s > 0:
            ax.axhline(
                aio.commits_per_s,
                color=LSNWAL_COLOR,
                ls=MODE_AUX_STYLES.get(mode, ":"),
                lw=1.5,
                label=f"lsnwal[{mode}] asyncio, {opts.tasks} tasks",
            )
    ax.axhline(1 / disk_p50, color="gray", ls="--", lw=1, label="1 / disk fsync p50")
    ax.set_ylabel("durable commits/s")
    ax.set_title("throughput (lsnwal: solid = rotate_on_sync=True, dashed = False)")
    finish_axes(ax)
    fig.suptitle(subtitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

    # ---- latency: p50 and p99 side by side
    lat_path = _latency_plot_path(path)
    fig, (ax50, ax99) = plt.subplots(1, 2, figsize=(14, 5.5), sharey=True)
    for title, style, pts in drawn:
        xs = [n for n, _ in pts]
        lats = [r.latency for _, r in pts if r.latency is not None]
        ax50.plot(xs, [lat.p50_s * 1e6 for lat in lats], label=title, **style)
        ax99.plot(xs, [lat.p99_s * 1e6 for lat in lats], label=title, **style)
    for mode in opts.modes:
        aio = _lsnwal_find(report.results, mode, WL_ASYNCIO, 1, opts.tasks)
        if aio is not None and aio.latency is not None:
            for axis, value in ((ax50, aio.latency.p50_s), (ax99, aio.latency.p99_s)):
                axis.axhline(
                    value * 1e6,
                    color=LSNWAL_COLOR,
                    ls=MODE_AUX_STYLES.get(mode, ":"),
                    lw=1.2,
                    label=f"lsnwal[{mode}] asyncio, {opts.tasks} tasks",
                )
    for axis in (ax50, ax99):
        axis.axhline(disk_p50 * 1e6, color="gray", ls="--", lw=1, label="disk fsync p50")
    ax99.axhline(5 * disk_p50 * 1e6, color="red", ls=":", lw=1, label="target: 5 x disk fsync p50")
    ax50.set_ylabel("commit latency (us)")
    ax50.set_title("p50 commit latency")
    ax99.set_title("p99 commit latency")
    finish_axes(ax50)
    finish_axes(ax99)
    fig.suptitle(subtitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(lat_path, dpi=120)
    plt.close(fig)
    return [path, str(lat_path)]


# --------------------------------------------------------------------------- CLI


def _int_list(text: str) -> list[int]:
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from exc
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("thread counts must be positive integers")
    return values


def _peer_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in PEER_KEYS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEER_KEYS)}"
        )
    return [k for k in PEER_KEYS if k in names]


def _mode_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in LSNWAL_MODES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(LSNWAL_MODES)}"
        )
    if not names:
        raise argparse.ArgumentTypeError("give at least one mode (or use --no-lsnwal)")
    return list(dict.fromkeys(names))


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(
        description="Durable commits/s and commit latency: lsnwal against naive fsync, "
        "SQLite, LevelDB, RocksDB and LMDB, on the disk holding --dir.",
    )
    parser.add_argument(
        "--seconds",
        type=_positive,
        default=None,
        help="measured seconds per workload (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="warm-up seconds per workload, not measured (default 0.5; 0.2 with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=_int_list,
        default=None,
        help="comma-separated thread counts (default 1,4,16,64; 1,16 with --quick)",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=1000,
        help="asyncio tasks in the lsnwal asyncio workload (default 1000)",
    )
    parser.add_argument(
        "--peers",
        type=_peer_list,
        default=list(PEER_KEYS),
        help=f"comma-separated peers to run (default {','.join(PEER_KEYS)}; '' for none)",
    )
    parser.add_argument("--no-lsnwal", action="store_true", help="run only the peers")
    parser.add_argument(
        "--modes",
        type=_mode_list,
        default=list(LSNWAL_MODES),
        help="comma-separated lsnwal modes, each lsnwal workload runs once per mode: "
        "rotate (WalConfig.rotate_on_sync=True, a segment rotation per commit batch) and "
        "inplace (rotate_on_sync=False, an in-place fsync of the active file); "
        f"default {','.join(LSNWAL_MODES)}",
    )
    parser.add_argument(
        "--fsync-iterations",
        type=int,
        default=500,
        help="iterations of the raw write+fsync probe (default 500)",
    )
    parser.add_argument(
        "--dir",
        default=None,
        help="parent of the scratch directory, on the disk to measure "
        "(default ./.bench-tmp); the scratch directory is removed at the end",
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="write all results as JSON")
    parser.add_argument(
        "--plot",
        metavar="PATH.png",
        default=None,
        help="draw commits/s against thread count into PATH.png and p50/p99 latency "
        "into PATH-latency.png (matplotlib)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 1 s per workload, thread counts 1 and 16"
    )
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.fsync_iterations < 1:
        parser.error("--tasks and --fsync-iterations must be at least 1")
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 3.0)
    warmup = args.warmup if args.warmup is not None else (0.2 if args.quick else 0.5)
    if warmup < 0:
        parser.error("--warmup must not be negative")
    threads = (
        args.threads if args.threads is not None else ([1, 16] if args.quick else [1, 4, 16, 64])
    )
    opts = Options(
        seconds=seconds,
        warmup_s=warmup,
        threads=threads,
        tasks=args.tasks,
        peers=args.peers,
        lsnwal=not args.no_lsnwal,
        fsync_iterations=args.fsync_iterations,
        grace_s=max(10.0, 2 * seconds),
        modes=args.modes,
    )
    return args, opts


def main(argv: Sequence[str] | None = None) -> int:
    args, opts = parse_args(argv)
    try:
        with bl.bench_directory(args.dir, prefix="bench-commit-") as scratch:
            facts = bl.machine_facts(scratch)
            print("lsnwal bench_commit: durable commits per second and commit latency", flush=True)
            print(bl.render_facts(facts), flush=True)
            bl.eprint(f"measuring raw write+fsync latency ({opts.fsync_iterations} iterations) ...")
            disk = bl.measure_fsync_latency(scratch, opts.fsync_iterations, PAYLOAD_BYTES)
            print(
                f"disk fsync: p50 {bl.fmt_us(disk.p50_s)} us, p99 {bl.fmt_us(disk.p99_s)} us",
                flush=True,
            )
            results, skipped = run_all(scratch, opts)
    except KeyboardInterrupt:
        print("interrupted; scratch directory removed", file=sys.stderr)
        return 130
    report = Report(machine=facts, options=opts, disk_fsync=disk, results=results, skipped=skipped)
    report.ratios = compute_ratios(results, disk, opts)
    print(render_report(report), flush=True)
    if args.json:
        payload = bl.to_jsonable(report)
        payload["payload_bytes"] = PAYLOAD_BYTES
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    if args.plot:
        try:
            written = write_plot(report, args.plot)
        except ImportError as exc:
            print(f"plot skipped: {_describe(exc)}", file=sys.stderr)
        else:
            for name in written:
                print(f"wrote {name}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
