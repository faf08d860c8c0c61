"""Timing and statistics of the benchmark harness: committers, windows, repetitions.

Owns how a figure is made: committers in threads or asyncio tasks start together, warm
up, then every commit that ends inside the measurement window is counted and its
latency kept; repetitions are interleaved (A B C A B C, never A A B B) and a figure is
the median of them. Statistics use ``statistics.median`` and ``statistics.quantiles``
only. Nothing here asserts speed.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Commit = Callable[[], None]
Probe = Callable[[], dict[str, float]]

# ----------------------------------------------------------------------------- statistics


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99 and max of ``values`` (``statistics.quantiles``, inclusive method)."""
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    if len(values) == 1:
        return dict.fromkeys(("p50", "p90", "p99", "max"), float(values[0]))
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": q[49], "p90": q[89], "p99": q[98], "max": float(max(values))}


@dataclass
class Measure:
    """What one repetition of one workload did: operations in a timed span."""

    ops: int
    seconds: float
    latencies: list[float] = field(default_factory=list, repr=False)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.ops / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Result:
    """Every repetition of one workload; figures are medians over the repetitions."""

    name: str
    reps: list[Measure] = field(default_factory=list)
    error: str | None = None

    @property
    def rate(self) -> float | None:
        """Median ops/s over the repetitions (None when the workload failed or was n/a)."""
        return None if self.error or not self.reps else statistics.median(m.rate for m in self.reps)

    def latency(self, key: str) -> float | None:
        """Median over the repetitions of each one's latency quantile ``key`` (p50/p99/max)."""
        per = [summarize(m.latencies)[key] for m in self.reps if m.latencies]
        return statistics.median(per) if per and not self.error else None

    def extra(self, key: str) -> float | None:
        """Median over the repetitions of an extra figure (e.g. commits per fsync)."""
        per = [m.extra[key] for m in self.reps if key in m.extra]
        return statistics.median(per) if per and not self.error else None

    def to_json(self) -> dict[str, Any]:
        """Rates, latency quantiles and extras, per repetition and as medians."""
        return {"name": self.name, "error": self.error, "rate": self.rate,
                "p50_s": self.latency("p50"), "p99_s": self.latency("p99"),
                "reps": [{"ops": m.ops, "seconds": m.seconds, "rate": m.rate, **m.extra,
                          **({f"{k}_s": v for k, v in summarize(m.latencies).items()}
                             if m.latencies else {})} for m in self.reps]}


#: One workload: given a fresh directory, run once and return what it did.
Run = Callable[[Path], Measure]


def interleave(cases: Sequence[tuple[str, Run]], reps: int, scratch: Path,
               log: Callable[[str], None]) -> dict[str, Result]:
    """Run every case ``reps`` times as A B C A B C ..., each run in a fresh directory."""
    results = {name: Result(name) for name, _ in cases}
    for rep in range(reps):
        for i, (name, run) in enumerate(cases):
            res = results[name]
            if res.error:
                continue
            work = scratch / f"case{i}-rep{rep}"
            work.mkdir(parents=True)
            try:
                m = run(work)
                res.reps.append(m)
                log(f"  [{rep + 1}/{reps}] {name}: {m.rate:,.0f}/s")
            except Exception as exc:  # reported in the table as the row's error
                res.error = f"{type(exc).__name__}: {exc}"
                log(f"  [{rep + 1}/{reps}] {name}: ERROR {res.error}")
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return results


# ----------------------------------------------------------------------------- timing


def run_threads(make_commit: Callable[[], Commit], threads: int, warmup_s: float,
                seconds: float, probe: Probe | None = None) -> Measure:
    """``threads`` committers, started together; commits ending inside the window count.

    ``make_commit`` runs in each committer's own thread (per-thread connections);
    ``probe`` is read at both edges of the window and its difference kept as extras.
    """
    stop = threading.Event()
    edges: list[float] = []
    barrier = threading.Barrier(threads + 1, action=lambda: edges.append(time.perf_counter()))
    samples: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def worker(mine: list[float]) -> None:
        try:
            commit = make_commit()
            barrier.wait()
            start = edges[0] + warmup_s
            end = start + seconds
            clock = time.perf_counter
            while not stop.is_set():
                t0 = clock()
                if t0 >= end:
                    return
                commit()
                t1 = clock()
                if start <= t1 <= end:
                    mine.append(t1 - t0)
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # handed to the caller after the join
            errors.append(exc)
            stop.set()
            barrier.abort()

    pool = [threading.Thread(target=worker, args=(s,), daemon=True) for s in samples]
    for t in pool:
        t.start()
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    try:
        barrier.wait(timeout=60)
        start = edges[0] + warmup_s
        stop.wait(max(0.0, start - time.perf_counter()))
        before = probe() if probe else {}
        stop.wait(max(0.0, start + seconds - time.perf_counter()))
        after = probe() if probe else {}
    except threading.BrokenBarrierError:
        pass
    finally:
        stop.set()
        for t in pool:
            t.join(60)
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in pool):
        raise RuntimeError("a committer was still blocked 60 s after the window closed")
    lat = [x for s in samples for x in s]
    return Measure(len(lat), seconds, lat, {k: after[k] - before[k] for k in after})


def run_tasks(commit: Callable[[], Awaitable[object]], tasks: int, warmup_s: float,
              seconds: float, probe: Probe | None = None) -> Measure:
    """``tasks`` asyncio committers on one event loop in this thread, timed as above."""
    lat: list[float] = []
    edge: dict[str, dict[str, float]] = {}

    async def committer(start: float, end: float) -> None:
        clock = time.perf_counter
        while True:
            t0 = clock()
            if t0 >= end:
                return
            await commit()
            t1 = clock()
            if start <= t1 <= end:
                lat.append(t1 - t0)

    async def edges(start: float, end: float) -> None:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        edge["before"] = probe() if probe else {}
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        edge["after"] = probe() if probe else {}

    async def main() -> None:
        start = time.perf_counter() + warmup_s
        end = start + seconds
        await asyncio.gather(edges(start, end), *(committer(start, end) for _ in range(tasks)))

    asyncio.run(main())
    b, a = edge.get("before", {}), edge.get("after", {})
    return Measure(len(lat), seconds, lat, {k: a[k] - b[k] for k in a})


def timed(fn: Callable[[], int]) -> Measure:
    """Time one call of ``fn``, which returns how many operations it did."""
    t0 = time.perf_counter()
    ops = fn()
    return Measure(ops, time.perf_counter() - t0)
