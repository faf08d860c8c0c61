"""``lsnwal top``: a live view of a WAL in the terminal, one line per interval (like vmstat).

Owns the sampling loop and its columns. Rules kept here:

* **Read-only, from outside.** Each sample is the same read-only analysis as
  ``info`` (no LOCK, no write), plus the writer's published watermark
  (``WATERMARK``) for the durable LSN when a writer publishes one; so it works
  next to a running application, in another process.
* **Rates are differences between samples** (records/s and bytes/s over the
  last interval); the first line has none.
* One line per sample, a header every ``HEADER_EVERY`` lines; ``--json`` gives
  one JSON object per line for scripts; ``--count`` stops after N samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..watermark import read_watermark
from ._common import _analysis, _check_wal_dir, _config, _fmt_bytes

HEADER_EVERY = 20
_HEADER = (f"{'time':<8} {'last LSN':>12} {'rec/s':>9} {'synced LSN':>12} {'checkpoint':>12} "
           f"{'pending':>14} {'archive':>16} {'MiB/s':>7}")


@dataclass
class Sample:
    """One look at the WAL."""

    time: float
    last_lsn: int
    synced_lsn: int | None  # from the writer's watermark; None when none is published
    checkpoint_lsn: int
    pending_segments: int
    pending_bytes: int
    archive_segments: int
    archive_bytes: int
    total_bytes: int
    records_per_s: float | None = None
    bytes_per_s: float | None = None


def take_sample(args: argparse.Namespace, prev: Sample | None) -> Sample:
    """Read the WAL once (read-only) and compute rates against ``prev``."""
    cfg = _config(args)
    paths = _check_wal_dir(args.path, cfg)
    an = _analysis(paths, cfg)
    segs = [*an.archive, *an.live]
    wm = read_watermark(paths.root)
    now = time.time()
    pend = [s for s in segs if s.state == "pending"]
    arch = [s for s in segs if s.state == "archive"]
    s = Sample(
        time=now,
        last_lsn=an.next_lsn - 1,
        synced_lsn=wm.synced_lsn if wm is not None else None,
        checkpoint_lsn=max(an.checkpoint_lsn, wm.checkpoint_lsn if wm is not None else 0),
        pending_segments=len(pend),
        pending_bytes=sum(x.size for x in pend),
        archive_segments=len(arch),
        archive_bytes=sum(x.size for x in arch),
        total_bytes=sum(x.size for x in segs),
    )
    if prev is not None and now > prev.time:
        dt = now - prev.time
        s.records_per_s = max(0, s.last_lsn - prev.last_lsn) / dt
        s.bytes_per_s = max(0, s.total_bytes - prev.total_bytes) / dt
    return s


def _line(s: Sample) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(s.time))
    rate = "-" if s.records_per_s is None else f"{s.records_per_s:.0f}"
    mib = "-" if s.bytes_per_s is None else f"{s.bytes_per_s / 1048576:.2f}"
    synced = "-" if s.synced_lsn is None else str(s.synced_lsn)
    pend = f"{s.pending_segments}/{_fmt_bytes(s.pending_bytes)}"
    arch = f"{s.archive_segments}/{_fmt_bytes(s.archive_bytes)}"
    return (f"{clock:<8} {s.last_lsn:>12} {rate:>9} {synced:>12} {s.checkpoint_lsn:>12} "
            f"{pend:>14} {arch:>16} {mib:>7}")


def cmd_top(args: argparse.Namespace) -> int:
    """``lsnwal top PATH``: sample every ``--interval`` seconds until ``--count`` or Ctrl-C."""
    out = sys.stdout
    prev: Sample | None = None
    n = 0
    while True:
        s = take_sample(args, prev)
        if args.json:
            doc: dict[str, Any] = asdict(s)
            out.write(json.dumps(doc) + "\n")
        else:
            if n % HEADER_EVERY == 0:
                out.write(_HEADER + "\n")
            out.write(_line(s) + "\n")
        out.flush()
        n += 1
        prev = s
        if args.count is not None and n >= args.count:
            return 0
        time.sleep(args.interval)
