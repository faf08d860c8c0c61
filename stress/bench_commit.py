"""Commit-path benchmark: durable commits of 100-byte records, lsnwal against its peers.

Every workload commits one 100-byte record at a time and counts the commits that end
inside a measurement window after a warm-up. lsnwal runs with the default ``WalConfig``
through the public API only: ``append`` then ``sync_async().wait()``, ``sync()`` or
``await wal.sync_async()``; the same workloads run again with a sync backend that does
nothing (the Python ceiling: what the code costs without the disk). The peers (naive
lock + write + fsync loop, SQLite WAL ``synchronous=FULL``, LMDB, LevelDB and RocksDB
with sync on) run in the same interleaved repetitions. Last, 10,000 lone commits count
the segment files they leave (default config: size rotation needs none beyond the one).

Usage: ``python stress/bench_commit.py [--quick] [--reps 3] [--out docs/results]
[--plot docs/img/commits.png]``. Figures are medians of the interleaved repetitions.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

import lsnwal

#: (label, how lsnwal commits, committers); "wait" and "sync" run in threads, "await" in tasks
LSNWAL_WORKLOADS = [
    ("1 committer, wait()", "wait", 1),
    ("1 committer, sync()", "sync", 1),
    ("1 task, await", "await", 1),
    ("16 threads, wait()", "wait", 16),
    ("64 threads, wait()", "wait", 64),
    ("16 threads, sync()", "sync", 16),
    ("1,000 tasks, await", "await", 1000),
]
PEER_THREADS = (1, 16, 64)
#: the plot's blocks: committers, then the lsnwal workloads with that many
PLOT_BLOCKS = [(1, ["1 committer, wait()", "1 committer, sync()", "1 task, await"]),
               (16, ["16 threads, wait()", "16 threads, sync()"]),
               (64, ["64 threads, wait()"]), (1000, ["1,000 tasks, await"])]


class NoSync:
    """A sync backend that syncs nothing: lsnwal's commit path without the disk."""

    def sync_file(self, fd: int) -> None:
        """Do nothing."""

    def sync_dir(self, fd: int) -> None:
        """Do nothing."""


def lsnwal_case(mode: str, n: int, noop: bool, warm: float, secs: float) -> h.Run:
    """One lsnwal workload in a fresh WAL; commits per fsync come from ``stats()``."""
    def run(work: Path) -> h.Measure:
        wal = lsnwal.open(work / "wal", sync_backend=NoSync() if noop else None)
        try:
            def probe() -> dict[str, float]:
                s = wal.stats()
                return {"fsyncs": s.fsyncs, "commits": s.commits}

            def commit_wait() -> None:
                wal.append(h.PAYLOAD)
                wal.sync_async().wait()

            def commit_sync() -> None:
                wal.append(h.PAYLOAD)
                wal.sync()

            async def commit_await() -> None:
                wal.append(h.PAYLOAD)
                await wal.sync_async()

            if mode == "await":
                m = h.run_tasks(commit_await, n, warm, secs, probe)
            else:
                fn = commit_wait if mode == "wait" else commit_sync
                m = h.run_threads(lambda: fn, n, warm, secs, probe)
        finally:
            wal.close()
        if m.extra.get("fsyncs"):
            m.extra["commits_per_fsync"] = m.extra["commits"] / m.extra["fsyncs"]
        return m
    return run


def peer_case(name: str, n: int, warm: float, secs: float) -> h.Run:
    """One peer with ``n`` committing threads in a fresh directory."""
    def run(work: Path) -> h.Measure:
        peer = h.PEER_CLASSES[name](work)
        try:
            return h.run_threads(peer.committer, n, warm, secs)
        finally:
            peer.close()
    return run


def count_segments(work: Path, commits: int) -> tuple[int, int]:
    """Lone commits in a default WAL, alternating ``sync_async().wait()`` and ``sync()``;
    returns (segment files left, files size rotation needs)."""
    wal = lsnwal.open(work / "wal")
    try:
        for i in range(commits):
            wal.append(h.PAYLOAD)
            if i % 2:
                wal.sync()
            else:
                wal.sync_async().wait()
        size = wal.stats().bytes_appended
        seg_max = lsnwal.WalConfig().segment_max_bytes
    finally:
        wal.close()
    return len(lsnwal.collect_all_segments(str(work / "wal"))), 1 + size // seg_max


def main() -> int:
    """Run every workload interleaved, print the tables and the targets."""
    p = h.parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0, help="measurement window per run")
    p.add_argument("--warmup", type=float, default=0.5, help="warm-up before each window")
    p.add_argument("--lone", type=int, default=10_000, help="lone commits for the file count")
    p.add_argument("--plot", type=Path, default=None, help="write a bar chart (PNG) here")
    a = p.parse_args()
    h.apply_quick(a, p, seconds=0.1, warmup=0.02, lone=200)
    peers = [x for x in a.peers.split(",") if x]
    # Each block puts the workloads a target compares next to each other (the reference
    # peer first), so that a burst of load from elsewhere hits both sides alike.
    cases: list[tuple[str, h.Run]] = []
    modes = {label: (mode, n) for label, mode, n in LSNWAL_WORKLOADS}
    refs = [x for x in peers if x in ("naive", "leveldb")]
    others = [x for x in peers if x not in refs]
    for n, labels in [*PLOT_BLOCKS[:2], (64, PLOT_BLOCKS[2][1] + PLOT_BLOCKS[3][1])]:
        cases += [(f"{name} {n}", peer_case(name, n, a.warmup, a.seconds)) for name in refs]
        cases += [(f"lsnwal {x}", lsnwal_case(*modes[x], False, a.warmup, a.seconds))
                  for x in labels]
        cases += [(f"{name} {n}", peer_case(name, n, a.warmup, a.seconds)) for name in others]
    cases += [(f"no-op {x}", lsnwal_case(*modes[x], True, a.warmup, a.seconds))
              for x, _, _ in LSNWAL_WORKLOADS]
    with h.scratch_dir(a.dir, "bench-commit") as scratch:
        facts = h.machine_facts(scratch)
        r = h.interleave(cases, a.reps, scratch, h.log)
        (scratch / "lone").mkdir()
        files, expected = count_segments(scratch / "lone", a.lone)

    def rate(key: str) -> float | None:
        return r[key].rate if key in r else None

    rows = [[label, h.fmt_rate(rate(f"lsnwal {label}")),
             h.fmt_ms(r[f"lsnwal {label}"].latency("p50")),
             h.fmt_ms(r[f"lsnwal {label}"].latency("p99")),
             f"{r[f'lsnwal {label}'].extra('commits_per_fsync') or 0:.1f}",
             h.fmt_rate(rate(f"no-op {label}"))] for label, _, _ in LSNWAL_WORKLOADS]
    lsn_table = h.table(["lsnwal workload", "commits/s", "p50 ms", "p99 ms", "per fsync",
                         "no-op sync"], rows)
    peer_rows = [[name, *(h.fmt_rate(rate(f"{name} {n}")) for n in PEER_THREADS),
                  h.fmt_ms(r[f"{name} 64"].latency("p99"))] for name in peers]
    peer_table = h.table(["peer (commits/s)", "1 thread", "16 threads", "64 threads",
                          "p99 ms @64"], peer_rows)
    errors = [f"- {x.name}: {x.error}" for x in r.values() if x.error]

    def lw(label: str) -> float | None:
        return rate(f"lsnwal {label}")

    naive1, ldb16, ldb64 = rate("naive 1"), rate("leveldb 16"), rate("leveldb 64")
    ldb_p99 = r["leveldb 64"].latency("p99") if "leveldb 64" in r else None
    targets = [
        h.Target("1 committer wait() / naive", h.ratio(lw("1 committer, wait()"), naive1), 1.0),
        h.Target("1 committer sync() / naive", h.ratio(lw("1 committer, sync()"), naive1), 1.1),
        h.Target("1 task await / naive", h.ratio(lw("1 task, await"), naive1), 0.9),
        h.Target("16 threads wait() / LevelDB 16", h.ratio(lw("16 threads, wait()"), ldb16), 1.0),
        h.Target("64 threads wait() / LevelDB 64", h.ratio(lw("64 threads, wait()"), ldb64), 0.8),
        h.Target("16 threads sync() / 16 threads wait()",
                 h.ratio(lw("16 threads, sync()"), lw("16 threads, wait()")), 0.9),
        h.Target("1,000 tasks / LevelDB 64 threads", h.ratio(lw("1,000 tasks, await"), ldb64), 6.0),
        h.Target("p99 @64 threads / LevelDB p99 @64",
                 h.ratio(r["lsnwal 64 threads, wait()"].latency("p99"), ldb_p99), 1.0, True),
        h.Target(f"segment files after {a.lone:,} lone commits", files, expected, True, "files"),
    ]
    sections = [f"100-byte records, {a.warmup:g} s warm-up, {a.seconds:g} s window, median of "
                f"{a.reps} interleaved repetitions.", lsn_table, peer_table,
                *(["Errors:\n" + "\n".join(errors)] if errors else [])]
    h.publish("commit", "Commits", facts, sections, r, targets, a.out,
              {"segment_files": files, "segment_files_expected": expected, "lone": a.lone})
    if a.plot:
        bars: list[tuple[str, float | None, str]] = []
        for n, labels in PLOT_BLOCKS:  # one block per concurrency: lsnwal, ceiling, peers
            bars += [(f"lsnwal {x}", rate(f"lsnwal {x}"), "lsnwal") for x in labels]
            bars += [(f"no-op sync {x}", rate(f"no-op {x}"), "lsnwal, no-op sync backend")
                     for x in labels]
            bars += [(f"{name}, {n} thread{'s' if n > 1 else ''}", rate(f"{name} {n}"), name)
                     for name in peers if n in PEER_THREADS]
        why = h.bar_plot(a.plot, "Durable commits/s, 100-byte records (log scale)",
                         "commits per second", bars)
        h.log(f"plot: {why or a.plot}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
