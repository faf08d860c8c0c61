"""Soak test: writers, asyncio committers, a replay reader and pruning, all at once, for a while.

For ``--seconds`` (default 60) one WAL takes:

* ``--threads`` writer threads, each ``append`` (or ``append_batch``) then
  ``sync_async().wait()`` or ``sync()``;
* ``--tasks`` asyncio committers on one event loop, ``append`` then
  ``await wal.sync_async()``;
* a replay reader that reads the log from its oldest retained record up to the
  durable LSN over and over, checking every record it has seen acknowledged;
* a keeper that declares checkpoints, writes marks and prunes (the archive keeps at
  most ``--archive-segments`` segments once checkpointed).

Every ``--interval`` seconds it prints commits/s and the p50/p99/max commit
latency (append to acknowledgement, as the caller sees it), the durable LSN,
pending/archived segments and what the reader read. At the end it closes the
WAL, reopens it (recovery), replays everything, checks that every acknowledged
record above the checkpoint is there byte for byte (by hash) and that LSNs are
contiguous, and runs ``lsnwal.verify``. Exit status 1 if verify fails, any
acknowledged record is missing or changed, or any worker raised.

Usage::

    python stress/soak.py                       # 60 s (make stress)
    python stress/soak.py --seconds 10 --interval 2 --dir /var/tmp/soak
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import lsnwal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import summarize  # the one place percentiles are computed


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=8).digest()


@dataclass
class Shared:
    """State the workers share (under ``mu``)."""

    mu: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[int, bytes] = field(default_factory=dict)  # LSN -> payload hash
    latencies: list[float] = field(default_factory=list)  # this interval's commits
    commits: int = 0
    errors: list[str] = field(default_factory=list)
    read_records: int = 0
    read_passes: int = 0
    reader_restarts: int = 0  # a segment moved or pruned under the reader: read again
    restart_reasons: Counter[str] = field(default_factory=Counter)
    reader_mismatches: int = 0

    def committed(self, items: list[tuple[int, bytes]], latency: float) -> None:
        """A commit returned: its records are acknowledged."""
        with self.mu:
            for lsn, p in items:
                self.acked[lsn] = _digest(p)
            self.latencies.append(latency)
            self.commits += 1

    def failed(self, who: str, exc: BaseException) -> None:
        """A worker raised: the soak fails."""
        with self.mu:
            self.errors.append(f"{who}: {exc!r}")


def writer(wal: lsnwal.AsyncWalWriter, sh: Shared, t: int, stop: threading.Event) -> None:
    """Append and commit until stopped."""
    rng = random.Random(t)
    try:
        while not stop.is_set():
            n = rng.choice((1, 1, 1, 4))
            items = [rng.randbytes(rng.choice((16, 100, 100, 400, 2000))) for _ in range(n)]
            t0 = time.perf_counter()
            lsns = [wal.append(items[0])] if n == 1 else list(wal.append_batch(items))
            if rng.random() < 0.25:
                ok = wal.sync() >= lsns[-1]
            else:
                h = wal.sync_async()
                ok = h.wait(60) and h.target_lsn >= lsns[-1]
            if not ok:
                raise AssertionError(f"commit of LSN {lsns[-1]} not acknowledged in 60 s")
            sh.committed(list(zip(lsns, items, strict=True)), time.perf_counter() - t0)
    except BaseException as exc:
        sh.failed(f"writer {t}", exc)


def async_committers(wal: lsnwal.AsyncWalWriter, sh: Shared, tasks: int,
                     stop: threading.Event) -> None:
    """Run ``tasks`` asyncio committers on one event loop until stopped."""

    async def one(t: int) -> None:
        rng = random.Random(10_000 + t)
        while not stop.is_set():
            p = rng.randbytes(rng.choice((16, 100, 300)))
            t0 = time.perf_counter()
            lsn = wal.append(p)
            if await wal.sync_async() < lsn:
                raise AssertionError(f"await returned below LSN {lsn}")
            sh.committed([(lsn, p)], time.perf_counter() - t0)

    async def main() -> None:
        await asyncio.gather(*(one(t) for t in range(tasks)))

    try:
        asyncio.run(main())
    except BaseException as exc:
        sh.failed("asyncio committers", exc)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for word in ("/archive/", "/pending/", "active.wal"):
        text = text.split(word)[0] + word if word in text else text
    return f"{type(exc).__name__}: {text[:90]}"


def reader(path: str, cfg: lsnwal.WalConfig, wal: lsnwal.AsyncWalWriter, sh: Shared,
           stop: threading.Event) -> None:
    """Replay the durable part of the log over and over, checking acknowledged records."""
    streak = 0
    while not stop.is_set():
        until = wal.synced_lsn
        if until == 0:
            time.sleep(0.01)
            continue
        n = 0
        # Like an application rebuilding its state: from the checkpoint on. Retention
        # never prunes those records, so a pass fails only if a segment moves under it.
        start = min(wal.checkpoint_lsn + 1, until)
        try:
            for rec in lsnwal.replay(path, config=cfg, from_lsn=start, until_lsn=until):
                n += 1
                with sh.mu:
                    want = sh.acked.get(rec.lsn)
                if want is not None and want != _digest(rec.payload):
                    with sh.mu:
                        sh.reader_mismatches += 1
                        sh.errors.append(f"reader: LSN {rec.lsn} differs from what was acked")
            streak = 0
            with sh.mu:
                sh.read_records += n
                sh.read_passes += 1
        except (FileNotFoundError, lsnwal.WalError) as exc:
            # A live directory changes under a reader: a segment is renamed into the
            # archive or pruned between listing and opening. Read again; give up only
            # if it keeps failing.
            streak += 1
            with sh.mu:
                sh.reader_restarts += 1
                sh.restart_reasons[_reason(exc)] += 1
                sh.read_records += n
            if streak >= 20:
                sh.failed("reader", exc)
                return


def keeper(wal: lsnwal.AsyncWalWriter, sh: Shared, stop: threading.Event) -> None:
    """Checkpoint behind the durable LSN, write marks, prune."""
    n = 0
    try:
        while not stop.wait(0.05):
            n += 1
            synced = wal.synced_lsn
            cp = max(wal.checkpoint_lsn, synced - 2000)
            if synced and cp > wal.checkpoint_lsn:
                wal.checkpoint(cp, b"soak")
            if n % 20 == 0:
                wal.mark(f"soak-{n}")
            if n % 10 == 0:
                wal.prune()
    except BaseException as exc:
        sh.failed("keeper", exc)


def final_check(path: str, cfg: lsnwal.WalConfig, sh: Shared) -> list[str]:
    """Reopen, replay everything, compare with what was acknowledged, verify."""
    problems: list[str] = []
    with lsnwal.open(path, cfg) as wal:
        cp, last = wal.checkpoint_lsn, wal.last_lsn
    top = max(sh.acked, default=0)
    if last < top:
        problems.append(f"reopened WAL ends at {last}, acknowledged up to {top}")
    found: dict[int, bytes] = {}
    for rec in lsnwal.replay(path, config=cfg):
        found[rec.lsn] = _digest(rec.payload)
    if found and len(found) != max(found) - min(found) + 1:
        problems.append("replayed LSNs are not contiguous")
    if found and min(found) > cp + 1:
        problems.append(f"records above checkpoint {cp} were pruned (first is {min(found)})")
    missing = changed = 0
    for lsn, digest in sh.acked.items():
        got = found.get(lsn)
        if got is None:
            missing += lsn > cp
        elif got != digest:
            changed += 1
    if missing or changed:
        problems.append(f"{missing} acknowledged records missing, {changed} changed")
    report = lsnwal.verify(path, config=cfg)
    print(f"verify: ok={report.ok} segments={report.segments} records={report.records} "
          f"LSNs {report.first_lsn}..{report.last_lsn}; checkpoint {cp}; "
          f"{len(sh.acked)} acknowledged, {sum(1 for n in sh.acked if n in found)} still "
          f"retained and checked, {missing} missing, {changed} changed")
    if not report.ok:
        problems.append(f"verify: {report.problems[:5]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print per-interval figures; 1 on any problem."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to run (60)")
    ap.add_argument("--interval", type=float, default=5.0, help="report every N s (5)")
    ap.add_argument("--threads", type=int, default=4, help="writer threads (4)")
    ap.add_argument("--tasks", type=int, default=16, help="asyncio committers (16)")
    ap.add_argument("--segment-bytes", type=int, default=256 * 1024)
    ap.add_argument("--archive-segments", type=int, default=40)
    ap.add_argument("--zstd", action="store_true", help="compress the archive")
    ap.add_argument("--dir", default=None, help="work directory (default: a new temp dir)")
    args = ap.parse_args(argv)
    base = args.dir or tempfile.mkdtemp(prefix="lsnwal-soak-")
    path = os.path.join(base, "wal")
    if os.path.exists(path):
        print(f"soak: {path} exists; give a fresh --dir", file=sys.stderr)
        return 2
    cfg = lsnwal.WalConfig(segment_max_bytes=args.segment_bytes,
                           archive_max_segments=args.archive_segments,
                           compression="zstd" if args.zstd else None)
    print(f"soak: {args.seconds:.0f}s, {args.threads} writer threads, {args.tasks} asyncio "
          f"committers, 1 reader, pruning; segments {args.segment_bytes} B, archive "
          f"<= {args.archive_segments} segments{', zstd' if args.zstd else ''}; dir {path}")
    sh = Shared()
    stop = threading.Event()
    wal = lsnwal.open(path, cfg)
    workers = [threading.Thread(target=writer, args=(wal, sh, t, stop))
               for t in range(args.threads)]
    workers.append(threading.Thread(target=async_committers, args=(wal, sh, args.tasks, stop)))
    workers.append(threading.Thread(target=reader, args=(path, cfg, wal, sh, stop)))
    workers.append(threading.Thread(target=keeper, args=(wal, sh, stop)))
    t_start = time.monotonic()
    for w in workers:
        w.start()
    print(f"{'t(s)':>6} {'commits/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'synced_lsn':>11} {'pending':>7} {'archive':>7} {'pruned':>7} {'read/s':>9}")
    last_read = 0
    next_t = t_start + args.interval
    end = t_start + args.seconds
    while True:
        now = time.monotonic()
        if now >= end or sh.errors:
            break
        time.sleep(max(0.0, min(next_t, end) - now))
        now = time.monotonic()
        with sh.mu:
            lat = sorted(sh.latencies)
            sh.latencies = []
            read = sh.read_records
        span = args.interval if now >= next_t else max(1e-9, now - (next_t - args.interval))
        st = wal.stats()
        q = summarize(lat)
        print(f"{now - t_start:6.1f} {len(lat) / span:10.0f} {q['p50'] * 1e3:8.2f} "
              f"{q['p99'] * 1e3:8.2f} {q['max'] * 1e3:8.2f} "
              f"{st.synced_lsn:11d} {st.pending_segments:7d} {st.archive_segments:7d} "
              f"{st.pruned_segments:7d} {(read - last_read) / span:9.0f}", flush=True)
        last_read = read
        next_t += args.interval
    stop.set()
    for w in workers:
        w.join(120)
    st = wal.stats()
    wal.close()
    elapsed = time.monotonic() - t_start
    print(f"total: {sh.commits} commits in {elapsed:.1f}s ({sh.commits / elapsed:.0f}/s), "
          f"{st.fsyncs} fsyncs ({st.commits_per_fsync:.1f} commits/fsync), "
          f"{st.rotations} rotations, {st.pruned_segments} segments pruned; reader: "
          f"{sh.read_passes} passes, {sh.read_records} records, {sh.reader_restarts} restarts")
    for why, count in sh.restart_reasons.most_common(5):
        print(f"  reader restart x{count}: {why}")
    problems = list(sh.errors)
    if not problems:
        problems += final_check(path, cfg, sh)
    for p in problems:
        print(f"PROBLEM: {p}")
    if problems:
        print(f"the directory is kept for inspection: {path}")
        return 1
    print("soak: ok")
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
