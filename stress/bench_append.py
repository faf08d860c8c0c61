"""Append benchmark: records/s of ``append()`` and ``append_batch()`` against a naive bulk loop.

Each workload writes ``--records`` 100-byte records and ends with one fsync; the clock
covers the writes and that fsync (opening is not timed). The naive buffered bulk loop
builds every record in lsnwal's format (its own clock reading and CRC32C) into a user
space buffer, hands it to the OS 1 MiB at a time and fsyncs once: no lock, no checks,
no rotation — and a process crash loses up to 1 MiB. lsnwal's ``append()`` hands every
record to the OS before it returns (nothing appended is lost if the process dies);
``append_batch()`` writes a whole batch with one system call. Default ``WalConfig``;
where this lsnwal has the opt-in ``write_buffer_bytes``, ``append()`` runs once more
with a 1 MiB user-space buffer (what a process crash may then lose).

Usage: ``python stress/bench_append.py [--quick] [--records N] [--reps 3] [--out DIR]``.
Figures are medians of the interleaved repetitions.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

import lsnwal

BATCH = 1000


def naive(n: int) -> h.Run:
    """The naive buffered bulk loop (the reference)."""
    def run(work: Path) -> h.Measure:
        m = h.timed(lambda: h.naive_bulk_write(work / "naive.log", n))
        size = (work / "naive.log").stat().st_size
        if size != n * (h.REC_HEADER.size + len(h.PAYLOAD)):
            raise RuntimeError(f"the naive loop wrote {size} bytes for {n} records")
        return m
    return run


def lsnwal_append(n: int, batch: int, buffer_bytes: int = 0) -> h.Run:
    """``append`` per record (``batch == 1``) or ``append_batch`` per ``batch``, then sync().

    ``buffer_bytes`` > 0 turns on the opt-in user-space write buffer.
    """
    def run(work: Path) -> h.Measure:
        config = lsnwal.WalConfig(write_buffer_bytes=buffer_bytes) if buffer_bytes else None
        wal = lsnwal.open(work / "wal", config)
        try:
            def load() -> int:
                if batch == 1:
                    append, p = wal.append, h.PAYLOAD
                    for _ in range(n):
                        append(p)
                else:
                    chunk = [h.PAYLOAD] * batch
                    for _ in range(n // batch):
                        wal.append_batch(chunk)
                    if n % batch:
                        wal.append_batch(chunk[: n % batch])
                wal.sync()
                return wal.last_lsn
            m = h.timed(load)
        finally:
            wal.close()
        if m.ops != n:
            raise RuntimeError(f"last_lsn is {m.ops} after {n} appends")
        return m
    return run


def main() -> int:
    """Run the three writers interleaved, print the table and the targets."""
    p = h.parser(__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000, help="records per workload")
    a = p.parse_args()
    h.apply_quick(a, p, records=20_000)
    n = a.records
    cases = [("naive buffered bulk loop", naive(n)),
             ("append()", lsnwal_append(n, 1)),
             (f"append_batch() x{BATCH}", lsnwal_append(n, BATCH))]
    if "write_buffer_bytes" in {f.name for f in dataclasses.fields(lsnwal.WalConfig)}:
        cases.append(("append(), 1 MiB write buffer", lsnwal_append(n, 1, 1 << 20)))
    with h.scratch_dir(a.dir, "bench-append") as scratch:
        facts = h.machine_facts(scratch)
        r = h.interleave(cases, a.reps, scratch, h.log)
    base = r["naive buffered bulk loop"].rate
    on_disk = h.REC_HEADER.size + len(h.PAYLOAD)
    rows = [[name, h.fmt_rate(x.rate),
             "n/a" if x.rate is None else f"{x.rate * on_disk / 1e6:,.0f}",
             "n/a" if x.rate is None or not base else f"{x.rate / base:.2f}x"]
            for name, x in r.items()]
    errors = [f"- {x.name}: {x.error}" for x in r.values() if x.error]
    sections = [f"{n:,} records of 100 B ({on_disk} B on disk), writes plus one final fsync, "
                f"median of {a.reps} interleaved repetitions.",
                h.table(["writer", "records/s", "MB/s", "vs naive"], rows),
                *(["Errors:\n" + "\n".join(errors)] if errors else [])]
    targets = [h.Target("append() / naive bulk loop", h.ratio(r["append()"].rate, base), 0.4),
               h.Target("append_batch() / naive bulk loop",
                        h.ratio(r[f"append_batch() x{BATCH}"].rate, base), 1.2)]
    h.publish("append", "Appends", facts, sections, r, targets, a.out, {"records": n})
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
