"""Follow latency: from the writer's ``synced_lsn`` moving to a follower in another process
seeing the record. Prints median/p90/p99/max for inotify wake-ups and for the polling
fallback (``LSNWAL_NO_INOTIFY=1``).

The writer (this process) appends one record, ``sync()``s it and notes the time
the call returned (the watermark is published before ``sync()`` returns, by the
WAL itself or here with ``WatermarkWriter`` when the WAL does not publish yet).
The follower (a child process) notes when ``follow()`` yields each record. Both
use ``time.monotonic()``, one clock for the whole machine on Linux.
With ``--out DIR`` the figures also go to ``DIR/follow.json`` and ``DIR/follow.txt``
(``make bench-docs`` puts them on the benchmarks page).
Usage: ``python stress/reader_latency.py [--commits N] [--interval-ms MS] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lsnwal
from lsnwal.fs import OsFileSystem
from lsnwal.watermark import WatermarkWriter, read_watermark

CHILD = """
import sys, time, lsnwal
reader = lsnwal.open_reader(sys.argv[1])
n = int(sys.argv[2])
out = []
print("ready", flush=True)
for rec in reader.follow(from_lsn=1, poll_max_s=float(sys.argv[3])):
    out.append((rec.lsn, time.monotonic()))
    if rec.lsn >= n:
        break
print(" ".join(f"{lsn}:{t!r}" for lsn, t in out), flush=True)
"""


def run(commits: int, interval_s: float, polling: bool, poll_max_s: float) -> list[float]:
    root = tempfile.mkdtemp(prefix="lsnwal-latency-") + "/wal"
    wal = lsnwal.open(root, lsnwal.WalConfig(segment_max_bytes=1 << 20))
    wal.sync()
    wm = read_watermark(root)
    own = None if wm is not None and wm.writer_pid == os.getpid() else \
        WatermarkWriter(OsFileSystem(), root)
    env = dict(os.environ)
    if polling:
        env["LSNWAL_NO_INOTIFY"] = "1"
    child = subprocess.Popen([sys.executable, "-c", CHILD, root, str(commits), str(poll_max_s)],
                             stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    child.stdout.readline()
    synced_at: dict[int, float] = {}
    for i in range(commits):
        lsn = wal.append(b"latency-%d" % i)
        durable = wal.sync()
        if own is not None:
            own.publish(durable, 0)
        synced_at[lsn] = time.monotonic()
        time.sleep(interval_s)
    out, _ = child.communicate(timeout=60)
    wal.close()
    seen = dict((int(a), float(b)) for a, b in (p.split(":") for p in out.split()))
    return [seen[lsn] - t for lsn, t in synced_at.items() if lsn in seen]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=500)
    ap.add_argument("--interval-ms", type=float, default=5.0)
    ap.add_argument("--poll-max-s", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=None, help="write follow.json/.txt here")
    args = ap.parse_args()
    rows = []
    lines = []
    for polling in (False, True):
        lat = sorted(run(args.commits, args.interval_ms / 1000, polling, args.poll_max_s))
        q = statistics.quantiles(lat, n=100)
        name = "polling fallback" if polling else "inotify"
        line = (f"{name:<17} n={len(lat)}  median {statistics.median(lat) * 1e3:7.3f} ms  "
                f"p90 {q[89] * 1e3:7.3f} ms  p99 {q[98] * 1e3:7.3f} ms  "
                f"max {lat[-1] * 1e3:7.3f} ms")
        print(line, flush=True)
        lines.append(line)
        rows.append({"name": name, "n": len(lat), "median_s": statistics.median(lat),
                     "p90_s": q[89], "p99_s": q[98], "max_s": lat[-1]})
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {"commits": args.commits, "interval_ms": args.interval_ms,
               "python": sys.version.split()[0], "cpus": os.cpu_count(), "rows": rows}
        (args.out / "follow.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        (args.out / "follow.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
