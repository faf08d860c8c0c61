"""Scan benchmark: records/s reading a WAL back, against a hand-written loop and two peers.

One plain and one zstd-compressed WAL of ``--records`` 100-byte records are written
once with the default ``WalConfig``, the active segment sealed with ``wal.rotate()``
so that every record is in ``archive/`` (compressed in the zstd WAL);
LevelDB and LMDB are filled with the same records. Then, warm cache (one untimed pass
first), interleaved repetitions of:

* the hand-written loop — 1 MiB reads, unpack each record header, check its CRC32C,
  count (the reference every ratio is taken against);
* ``replay()`` over the plain segments, over the zstd archive, and over a third WAL
  whose records all sit in one unsealed active segment (no seal: every record's CRC
  is checked, as for the newest records after a crash);
* raw mode, ``open_reader(path).iter_raw()`` — ``(lsn, payload)`` without ``Record``
  objects ("n/a" when this lsnwal has no ``open_reader``);
* ``verify()`` — every CRC checked, nothing built;
* LevelDB's iterator and LMDB's cursor, for reference.

Beside them: the bytes each archive takes on disk (the records look like an
application's JSON log, so compression has something real to work on) and the median
time ``replay(from_lsn=...)`` takes to reach a record near the end (21 runs each).

Every workload must count exactly ``--records`` records, or it is reported as an error.
Usage: ``python stress/bench_replay.py [--quick] [--records N] [--reps 3] [--out DIR]``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

import lsnwal

BATCH = 1000


def payloads(n: int) -> list[bytes]:
    """``n`` distinct 100-byte records shaped like an application's log (JSON, ids, values)."""
    ops = (b"set", b"del", b"incr", b"append")
    return [(b'{"seq":%d,"op":"%s","key":"user:%06d:cart","value":%d,"ts":%d}'
             % (i, ops[i % 4], i * 7919 % 1000003, i * 2654435761 % 100000,
                1764633600 + i // 1000)).ljust(100) for i in range(n)]


def build_wal(path: Path, records: list[bytes], compression: str | None,
              sealed: bool = True) -> list[str]:
    """Write ``records`` with ``append_batch``, seal the active segment (``wal.rotate()``) so
    that every record is in the archive (compressed in the zstd WAL), close; return the
    segment paths in order. With ``sealed=False`` every record stays in one unsealed
    active segment (as a crash leaves the newest records)."""
    cfg = lsnwal.WalConfig(compression=compression)  # type: ignore[arg-type]
    if not sealed:
        cfg = lsnwal.WalConfig(segment_max_bytes=1 << 30)
    wal = lsnwal.open(path, cfg)
    try:
        for i in range(0, len(records), BATCH):
            wal.append_batch(records[i : i + BATCH])
        if sealed:
            wal.rotate()
    finally:
        wal.close()
    return [str(s.path) for s in lsnwal.collect_all_segments(str(path))]


def disk_bytes(path: Path) -> int:
    """Bytes of every segment file of the WAL at ``path``."""
    return sum(s.size_bytes for s in lsnwal.collect_all_segments(str(path)))


def seek_s(path: Path, lsn: int, runs: int = 21) -> float:
    """Median time from calling ``replay(from_lsn=lsn)`` to holding that record."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        rec = next(iter(lsnwal.replay(str(path), from_lsn=lsn)))  # the rest is never read
        times.append(time.perf_counter() - t0)
        if rec.lsn != lsn:
            raise RuntimeError(f"replay(from_lsn={lsn}) began at {rec.lsn}")
    return statistics.median(times)


def counted(n: int, fn: Callable[[], int]) -> h.Run:
    """Time ``fn`` (which returns its record count); a wrong count is an error."""
    def run(_work: Path) -> h.Measure:
        m = h.timed(fn)
        if m.ops != n:
            raise RuntimeError(f"counted {m.ops:,} records, expected {n:,}")
        return m
    return run


def replay_count(path: Path) -> int:
    """Records yielded by ``lsnwal.replay``."""
    n = 0
    for _ in lsnwal.replay(str(path)):
        n += 1
    return n


def raw_count(path: Path) -> int:
    """Items yielded by ``open_reader(path).iter_raw()``."""
    n = 0
    with getattr(lsnwal, "open_reader")(str(path)) as reader:  # noqa: B009 (may be absent)
        for _ in reader.iter_raw():
            n += 1
    return n


def verify_count(path: Path) -> int:
    """Records ``lsnwal.verify`` checked (an error if it found a problem)."""
    report = lsnwal.verify(str(path))
    if not report.ok:
        raise RuntimeError(f"verify reported problems: {report.problems[:3]}")
    return report.records


def main() -> int:
    """Build the data once, run the scans interleaved, print the table and the targets."""
    p = h.parser(__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000, help="records in each store")
    p.add_argument("--plot", type=Path, default=None, help="write a bar chart (PNG) here")
    a = p.parse_args()
    h.apply_quick(a, p, records=20_000)
    n = a.records
    peers = [x for x in a.peers.split(",") if x in ("leveldb", "lmdb")]
    with h.scratch_dir(a.dir, "bench-replay") as scratch:
        facts = h.machine_facts(scratch)
        h.log(f"writing {n:,} records into each store ...")
        plain, zstd, active = scratch / "plain", scratch / "zstd", scratch / "active"
        records = payloads(n)
        segments = build_wal(plain, records, None)
        build_wal(zstd, records, "zstd")
        build_wal(active, records, None, sealed=False)
        del records
        sizes = {"plain": disk_bytes(plain), "zstd": disk_bytes(zstd)}
        seeks = {"plain": seek_s(plain, n - 5), "zstd": seek_s(zstd, n - 5)}
        opened: dict[str, Any] = {}
        cases = [("hand-written loop", counted(n, lambda: h.naive_scan(segments))),
                 ("replay()", counted(n, lambda: replay_count(plain))),
                 ("replay(), zstd archive", counted(n, lambda: replay_count(zstd))),
                 ("replay(), unsealed active segment",
                  counted(n, lambda: replay_count(active)))]
        if hasattr(lsnwal, "open_reader"):
            cases.append(("open_reader().iter_raw()", counted(n, lambda: raw_count(plain))))
        cases.append(("verify()", counted(n, lambda: verify_count(plain))))
        try:
            for name in peers:
                (scratch / name).mkdir()
                peer = opened[name] = h.PEER_CLASSES[name](scratch / name)
                peer.fill(n)
                label = "LevelDB iterator" if name == "leveldb" else "LMDB cursor"
                cases.append((label, counted(n, peer.scan)))
            h.log("warm-up pass ...")
            h.interleave(cases, 1, scratch / "warm", lambda _m: None)
            r = h.interleave(cases, a.reps, scratch / "runs", h.log)
        finally:
            for peer in opened.values():
                peer.close()
    base = r["hand-written loop"].rate
    shown = [k for k in ("hand-written loop", "replay()", "open_reader().iter_raw()", "verify()",
                         "replay(), zstd archive", "replay(), unsealed active segment",
                         "LevelDB iterator", "LMDB cursor")
             if k in r or "()" in k]

    def rate(key: str) -> float | None:
        return r[key].rate if key in r else None

    def vs_loop(key: str) -> str:
        x = h.ratio(rate(key), base)
        return "n/a" if x is None else f"{x:.2f}x"

    rows = [[k, h.fmt_rate(rate(k)), vs_loop(k)] for k in shown]
    errors = [f"- {x.name}: {x.error}" for x in r.values() if x.error]

    targets = [h.Target("replay() / hand-written loop", h.ratio(rate("replay()"), base), 1.0),
               h.Target("iter_raw() / hand-written loop",
                        h.ratio(rate("open_reader().iter_raw()"), base), 1.5),
               h.Target("verify() rate", h.ratio(rate("verify()"), 1e6), 2.5,
                        unit="M records/s"),
               h.Target("zstd replay() / plain replay()",
                        h.ratio(rate("replay(), zstd archive"), rate("replay()")), 0.8)]
    sections = [f"{n:,} records of 100 B, warm page cache, median of {a.reps} interleaved "
                "repetitions; every workload counts every record.",
                h.table(["scan", "records/s", "vs loop"], rows),
                h.table(["archive", "MB on disk", "vs plain", f"seek to LSN {n - 5:,}"],
                        [[k, f"{v / 1e6:,.1f}", f"{v / sizes['plain']:.2f}x",
                          f"{seeks[k] * 1e3:.2f} ms"] for k, v in sizes.items()]),
                *(["Errors:\n" + "\n".join(errors)] if errors else [])]
    h.publish("replay", "Scans", facts, sections, r, targets, a.out,
              {"records": n, "bytes_on_disk": sizes, "seek_s": seeks})
    if a.plot:
        group = {"LevelDB iterator": "LevelDB", "LMDB cursor": "LMDB",
                 "hand-written loop": "hand-written loop"}
        why = h.bar_plot(a.plot, f"Reading {n:,} records of 100 B, warm cache (log scale)",
                         "records per second",
                         [(k, rate(k), group.get(k, "lsnwal")) for k in shown])
        h.log(f"plot: {why or a.plot}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
