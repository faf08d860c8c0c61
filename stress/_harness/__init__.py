"""The one benchmark harness of ``stress/``: peers, timing, statistics, machine facts, report.

Every ``bench_*.py`` script declares its workloads and targets and leaves the rest here:

* **Peers** — the stores lsnwal is measured against, each opened in a fresh directory:
  the naive loop (one file, a lock, ``os.write`` + ``os.fsync`` per commit), SQLite in
  WAL mode with ``synchronous=FULL``, LMDB ``sync=True``, LevelDB (plyvel, ``sync=True``)
  and RocksDB (rocksdict, ``sync=True``); plus the two hand-written reference loops (the
  naive buffered bulk writer and the naive scanner, both in lsnwal's record format).
* **Timing** — committers in threads or in asyncio tasks, started together, a warm-up,
  then a fixed measurement window in which every commit's latency is recorded.
* **Repetitions** — interleaved: A B C A B C A B C, never A A A B B B, so that drift of a
  shared machine hits every workload alike; a figure is the median of the repetitions.
* **Statistics** — only ``statistics.median`` and ``statistics.quantiles``.
* **Machine facts** and **the report** — markdown tables with few columns, a targets
  table with ratios, and the same figures as JSON next to it.

Rules kept here: nothing asserts speed (a missed target is reported, never raised); a
peer whose module is not installed is reported "n/a", never replaced by something else;
every scratch directory is removed, even on failure.
"""

from .measure import (
    Commit,
    Measure,
    Probe,
    Result,
    Run,
    interleave,
    run_tasks,
    run_threads,
    summarize,
    timed,
)
from .peers import (
    PAYLOAD,
    PEER_CLASSES,
    PEERS,
    REC_HEADER,
    SEGMENT_HEADER_BYTES,
    Peer,
    naive_bulk_write,
    naive_scan,
)
from .report import (
    REPO,
    Target,
    apply_quick,
    bar_plot,
    facts_table,
    fmt_ms,
    fmt_rate,
    log,
    machine_facts,
    parser,
    publish,
    ratio,
    scratch_dir,
    table,
    targets_table,
)

__all__ = [
    "PAYLOAD", "PEERS", "PEER_CLASSES", "REC_HEADER", "REPO", "SEGMENT_HEADER_BYTES", "Commit",
    "Measure", "Peer", "Probe", "Result", "Run", "Target", "apply_quick", "bar_plot",
    "facts_table", "fmt_ms", "fmt_rate", "interleave", "log", "machine_facts", "naive_bulk_write",
    "naive_scan", "parser", "publish", "ratio", "run_tasks", "run_threads", "scratch_dir",
    "summarize", "table", "targets_table", "timed",
]
