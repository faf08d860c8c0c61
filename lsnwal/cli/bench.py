"""``lsnwal bench``: this disk's fsync rate and lsnwal's commit rates on it.

Owns the four timed phases (raw write + fdatasync, one committer, committing
threads, asyncio tasks) and the "fsyncs/s x commits per fsync" limit printed
from them. Rules kept here:

* **Leave nothing behind.** Every file is written in a fresh scratch directory
  inside the given one, removed afterwards even on failure or interrupt; the
  given directory must already exist (``CliError`` otherwise).
* **Measure what lsnwal does.** The disk probe syncs the way lsnwal's default
  backend does (``fdatasync``, ``fsync`` where there is none), after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

from ..config import WalConfig
from ._common import CliError


def _pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0.5, 0.99) by ``statistics.quantiles``; 0.0 for no values."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _bench_disk(directory: str, seconds: float) -> dict[str, float]:
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    lat: list[float] = []
    data = b"x" * 100
    # What lsnwal's default backend calls for segment files (os.fsync where there is none).
    sync = getattr(os, "fdatasync", os.fsync)
    try:
        for _ in range(20):  # warm-up: the first syncs also persist the new file's metadata
            os.write(fd, data)
            sync(fd)
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            os.write(fd, data)
            t0 = time.perf_counter()
            sync(fd)
            lat.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        os.unlink(path)
    return {"fsyncs": len(lat), "fsyncs_per_s": len(lat) / elapsed, "p50_s": _pct(lat, 0.5),
            "p99_s": _pct(lat, 0.99), "max_s": max(lat, default=0.0)}


def _bench_wal(directory: str, seconds: float, mode: str, workers: int) -> dict[str, float]:
    from ..wal import AsyncWalWriter

    wal = AsyncWalWriter.open_or_create(directory, WalConfig(archive_enabled=False))
    payload = b"p" * 100
    count = [0]
    lock = threading.Lock()
    try:
        s0 = wal.stats()
        t0 = time.perf_counter()
        deadline = t0 + seconds
        if mode == "sync":
            n = 0
            while time.perf_counter() < deadline:
                wal.append(payload)
                wal.sync()
                n += 1
            count[0] = n
        elif mode == "threads":
            def worker() -> None:
                n = 0
                while time.perf_counter() < deadline:
                    wal.append(payload)
                    wal.sync_async().wait()
                    n += 1
                with lock:
                    count[0] += n

            threads = [threading.Thread(target=worker) for _ in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            async def task() -> int:
                n = 0
                while time.perf_counter() < deadline:
                    wal.append(payload)
                    await wal.sync_async()
                    n += 1
                return n

            async def run_all() -> int:
                return sum(await asyncio.gather(*(task() for _ in range(workers))))

            count[0] = asyncio.run(run_all())
        elapsed = time.perf_counter() - t0
        s1 = wal.stats()
    finally:
        wal.close()
    fsyncs = s1.fsyncs - s0.fsyncs
    commits = s1.commits - s0.commits
    return {"commits": count[0], "commits_per_s": count[0] / elapsed, "fsyncs": fsyncs,
            "fsyncs_per_s": fsyncs / elapsed,
            "commits_per_fsync": commits / fsyncs if fsyncs else 0.0,
            "fsync_p50_s": s1.fsync_p50_s, "fsync_p99_s": s1.fsync_p99_s}


def cmd_bench(args: argparse.Namespace) -> int:
    """``lsnwal bench PATH``: this disk's fsync rate and lsnwal's commit rates on it."""
    root = os.path.abspath(args.path)
    if not os.path.isdir(root):
        raise CliError(f"no directory at {root} (bench needs a directory on the disk to measure)")
    scratch = tempfile.mkdtemp(prefix="lsnwal-bench-", dir=root)
    out = sys.stdout
    s = args.seconds
    results: dict[str, Any] = {"path": root, "seconds_per_phase": s}
    try:
        if not args.json:
            print(f"bench in {scratch} ({s:g} s per phase; removed afterwards)", file=out)
            out.flush()
        disk = _bench_disk(scratch, s)
        results["disk"] = disk
        if not args.json:
            print(f"  disk: write 100 B + fdatasync      {disk['fsyncs_per_s']:>10,.0f} fsyncs/s"
                  f"   p50 {disk['p50_s'] * 1e3:.3f} ms  p99 {disk['p99_s'] * 1e3:.3f} ms"
                  f"  max {disk['max_s'] * 1e3:.3f} ms", file=out)
            out.flush()
        phases = [("one committer, append + sync()", "sync", 1),
                  (f"{args.threads} threads, append + sync_async().wait()", "threads",
                   args.threads),
                  (f"{args.tasks} asyncio tasks, await sync_async()", "asyncio", args.tasks)]
        results["lsnwal"] = {}
        for i, (label, mode, workers) in enumerate(phases):
            r = _bench_wal(os.path.join(scratch, f"wal{i}"), s, mode, workers)
            results["lsnwal"][mode] = {"workers": workers, **r}
            if not args.json:
                print(f"  lsnwal: {label:<42} {r['commits_per_s']:>10,.0f} commits/s  "
                      f"{r['commits_per_fsync']:.1f} commits/fsync  "
                      f"{r['fsyncs_per_s']:,.0f} fsyncs/s", file=out)
                out.flush()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    best_mode = max(results["lsnwal"], key=lambda m: results["lsnwal"][m]["commits_per_s"])
    best = results["lsnwal"][best_mode]
    limit = disk["fsyncs_per_s"] * best["commits_per_fsync"]
    results["limit"] = {"phase": best_mode, "fsyncs_per_s": disk["fsyncs_per_s"],
                        "commits_per_fsync": best["commits_per_fsync"],
                        "commits_per_s": limit, "measured_commits_per_s": best["commits_per_s"]}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"limit: {disk['fsyncs_per_s']:,.0f} fsyncs/s x {best['commits_per_fsync']:.1f} "
              f"commits per fsync = {limit:,.0f} commits/s "
              f"(measured with {best_mode}: {best['commits_per_s']:,.0f} commits/s)", file=out)
    return 0
