"""Records per second: lsnwal's append paths and scans against a bare Python loop.

What is measured
----------------
Every workload handles ``--records`` records of 100-byte payloads (default
1,000,000) and is repeated ``--reps`` times; the write workloads of one
repetition run one after the other, in an order that rotates from repetition to
repetition so that drift in the machine does not favour one of them.

Writing (clock around the appends *and* the final fsync; opening is not timed):

* **bare loop, clock per record** — the floor for ``append()``: a plain
  ``for`` loop that builds each record exactly as lsnwal's format v1 lays it out
  (``crc u32, length u32, lsn u64, timestamp f64, kind u8, flags u8,
  reserved u16``, precompiled ``struct.Struct``, CRC32C from the ``crc32c``
  package over the 24 header bytes after the CRC and the payload), one
  ``time.time()`` per record, appends it to a ``bytearray``, hands the buffer to
  ``os.write`` once it holds 1 MiB, and ``os.fsync``\\ s once at the end. It
  writes no segment header, no index and no seal, takes no lock, checks no
  input and never rotates. The first repetition's file is decoded with
  lsnwal's own ``RecordScanner`` to prove it holds the same records.
* **bare loop, clock per batch** — the same, with one ``time.time()`` per batch
  of ``--batch`` records, as ``append_batch`` does: the floor for it.
* **lsnwal append()** — ``wal.append(payload)`` per record, then ``wal.sync()``.
* **lsnwal append_batch()** — ``wal.append_batch(batch)`` per ``--batch``
  records, then ``wal.sync()``.

Both lsnwal workloads use ``WalConfig()`` defaults (64 MiB segments, so 1 M
records rotate about twice; rotated segments are fsynced and archived by the
background threads while the loop goes on, as in production).

Scanning (every record's CRC is checked in each):

* **open() recovery** — a child process writes the records into one active
  segment, ``sync()``\\ s and leaves with ``os._exit`` (no close, no seal), as a
  crash would. Each repetition copies that directory (not timed) and times
  ``lsnwal.open``: it reads every record of the active segment, rebuilds its
  index, seals and fsyncs it. ``last_lsn`` must equal ``--records``.
* **collect_all_segments()** — the same analysis, read-only, on the crashed copy.
* **verify()** and **replay()** — on the WAL after that open and a close (one
  sealed, archived segment): ``verify`` checks every CRC and must count every
  record; ``replay`` builds a ``Record`` per record and must yield LSNs 1..N.
* **bare scan** (reference) — a pure-Python loop over the bare loop's file in
  1 MiB reads: unpack the header, check the CRC, step to the next record.

A workload that returns a wrong count is reported as an error (exit status 1);
a missed target is only reported.

Targets (from the foundation issue): ``append_batch`` >= 1.0x its bare loop,
``append`` >= 0.5x its bare loop, a scan that checks every CRC >= 1.5 M
records/s.

How to read it
--------------
Rates are records / elapsed seconds; p50 is the median repetition, p90/p99 the
slow side (with 5 repetitions p99 is about the slowest). Files are written to
and read from the page cache: the scans measure CPU, not the disk, and the
write figures include one fsync of the data (about 128 MB per million records).
Other processes on the machine add noise; compare figures from one run.

Usage::

    python stress/bench_append.py                       # 1,000,000 records, 5 repetitions
    python stress/bench_append.py --quick               # 200,000 records, 3 repetitions
    python stress/bench_append.py --records 2000000 --reps 7 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import crc32c as _crc32c

# The shared helpers sit beside this script; make them importable however it is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as bl

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # a checkout without `pip install -e .`
    sys.path.append(str(REPO_ROOT))
import lsnwal  # noqa: E402
from lsnwal import format as fmt  # noqa: E402

PAYLOAD_BYTES = 100
PAYLOAD = bytes(i % 251 for i in range(PAYLOAD_BYTES))
FLUSH_BYTES = 1024 * 1024
DATA_KIND = 1
SCAN_TARGET = 1.5e6

# The bare loop's own record layout (it does not borrow lsnwal's structs):
# crc u32 | length u32, lsn u64, timestamp f64, kind u8, flags u8, reserved u16
BARE_TAIL = struct.Struct("<IQdBBH")
BARE_CRC = struct.Struct("<I")
BARE_HEADER = struct.Struct("<IIQdBBH")

#: Writes ``records`` records into one active segment, syncs, and leaves like a crash.
CRASH_WRITER = r"""
import os, sys
import lsnwal
path, n, seg_max, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
payload = bytes(i % 251 for i in range(100))
wal = lsnwal.open(path, lsnwal.WalConfig(segment_max_bytes=seg_max))
chunk = [payload] * batch
left = n
while left:
    k = min(batch, left)
    wal.append_batch(chunk if k == batch else chunk[:k])
    left -= k
print(wal.sync(), flush=True)
os._exit(0)
"""


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Options:
    records: int
    reps: int
    batch: int


@dataclasses.dataclass
class Workload:
    """One workload's repetitions."""

    key: str
    title: str
    kind: str  # "write" or "scan"
    records: int
    seconds: list[float] = dataclasses.field(default_factory=list)
    #: write workloads: seconds of the final fsync / sync() alone, per repetition
    sync_seconds: list[float] = dataclasses.field(default_factory=list)
    summary: bl.LatencySummary | None = None
    rate_p50: float | None = None
    rate_p90: float | None = None
    rate_p99: float | None = None
    rate_best: float | None = None
    target: str = ""
    error: str | None = None
    note: str = ""

    def finish(self) -> None:
        self.summary = bl.summarize(self.seconds)
        s = self.summary
        if s is not None:
            self.rate_p50 = self.records / s.p50_s
            self.rate_p90 = self.records / s.p90_s
            self.rate_p99 = self.records / s.p99_s
            self.rate_best = self.records / s.min_s


@dataclasses.dataclass
class Report:
    machine: bl.MachineFacts
    options: Options
    payload_bytes: int
    workloads: list[Workload]
    ratios: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- writing


def _write_all(fd: int, data: bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def bare_per_record(path: Path, payloads: list[bytes]) -> tuple[float, float]:
    """The bare loop with one clock reading per record; returns (total s, fsync s)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        pack_tail = BARE_TAIL.pack
        pack_crc = BARE_CRC.pack
        crc = _crc32c.crc32c
        clock = time.time
        flush_at = FLUSH_BYTES
        buf = bytearray()
        lsn = 1
        t0 = time.perf_counter()
        for p in payloads:
            tail = pack_tail(len(p), lsn, clock(), DATA_KIND, 0, 0)
            buf += pack_crc(crc(p, crc(tail)))
            buf += tail
            buf += p
            lsn += 1
            if len(buf) >= flush_at:
                _write_all(fd, buf)
                buf = bytearray()
        if buf:
            _write_all(fd, buf)
        t1 = time.perf_counter()
        os.fsync(fd)
        t2 = time.perf_counter()
    finally:
        os.close(fd)
    return t2 - t0, t2 - t1


def bare_per_batch(path: Path, batch: list[bytes], batches: int) -> tuple[float, float]:
    """The bare loop with one clock reading per batch; returns (total s, fsync s)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        pack_tail = BARE_TAIL.pack
        pack_crc = BARE_CRC.pack
        crc = _crc32c.crc32c
        clock = time.time
        flush_at = FLUSH_BYTES
        buf = bytearray()
        lsn = 1
        t0 = time.perf_counter()
        for _ in range(batches):
            ts = clock()
            for p in batch:
                tail = pack_tail(len(p), lsn, ts, DATA_KIND, 0, 0)
                buf += pack_crc(crc(p, crc(tail)))
                buf += tail
                buf += p
                lsn += 1
                if len(buf) >= flush_at:
                    _write_all(fd, buf)
                    buf = bytearray()
        if buf:
            _write_all(fd, buf)
        t1 = time.perf_counter()
        os.fsync(fd)
        t2 = time.perf_counter()
    finally:
        os.close(fd)
    return t2 - t0, t2 - t1


def lsnwal_append(path: Path, payloads: list[bytes]) -> tuple[float, float, int]:
    """``append`` per record then ``sync()``; returns (total s, sync s, last LSN)."""
    wal = lsnwal.open(path, lsnwal.WalConfig())
    try:
        append = wal.append
        t0 = time.perf_counter()
        for p in payloads:
            append(p)
        t1 = time.perf_counter()
        wal.sync()
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1, wal.last_lsn
    finally:
        wal.close()


def lsnwal_append_batch(path: Path, batch: list[bytes], batches: int) -> tuple[float, float, int]:
    """``append_batch`` per batch then ``sync()``; returns (total s, sync s, last LSN)."""
    wal = lsnwal.open(path, lsnwal.WalConfig())
    try:
        append_batch = wal.append_batch
        t0 = time.perf_counter()
        for _ in range(batches):
            append_batch(batch)
        t1 = time.perf_counter()
        wal.sync()
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1, wal.last_lsn
    finally:
        wal.close()


def check_bare_file(path: Path, records: int) -> str | None:
    """Decode the bare loop's file with lsnwal's scanner: same format, every record valid?"""
    data = path.read_bytes()
    scan = fmt.RecordScanner(data, 0, 1)
    count = 0
    for _off, _lsn, kind, _ts, ln in scan:
        if kind != DATA_KIND or ln != PAYLOAD_BYTES:
            return f"record {count + 1} decodes as kind {kind}, length {ln}"
        count += 1
    if scan.verdict != fmt.END or count != records:
        return f"lsnwal's scanner read {count} of {records} records ({scan.verdict} {scan.reason})"
    return None


# --------------------------------------------------------------------------- scanning


def bare_scan(path: Path) -> tuple[float, int]:
    """Pure-Python scan of the bare file in 1 MiB reads: unpack, check CRC, step."""
    unpack = BARE_HEADER.unpack_from
    crc = _crc32c.crc32c
    count = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        t0 = time.perf_counter()
        size = os.fstat(fd).st_size
        off = 0
        carry = b""
        while off < size:
            chunk = os.pread(fd, FLUSH_BYTES, off)
            off += len(chunk)
            data = carry + chunk if carry else chunk
            mv = memoryview(data)
            n = len(data)
            pos = 0
            while pos + 28 <= n:
                c, ln, _lsn, _ts, _kind, _fl, _res = unpack(data, pos)
                end = pos + 28 + ln
                if end > n:
                    break
                if crc(mv[pos + 4 : end]) != c:
                    raise ValueError(f"bare scan: CRC mismatch at {off - n + pos}")
                count += 1
                pos = end
            mv.release()
            carry = data[pos:]
        t1 = time.perf_counter()
    finally:
        os.close(fd)
    return t1 - t0, count


def make_crashed_wal(path: Path, records: int, batch: int) -> None:
    """A WAL whose records all sit in an unsealed active segment (writer killed)."""
    seg_max = max(64 * 1024 * 1024, 2 * records * (fmt.RECORD_HEADER_SIZE + PAYLOAD_BYTES))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []), str(REPO_ROOT)]
    )
    out = subprocess.run(
        [sys.executable, "-c", CRASH_WRITER, str(path), str(records), str(seg_max), str(batch)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"crash writer failed ({out.returncode}): {out.stderr.strip()}")
    if int(out.stdout.split()[-1]) != records:
        raise RuntimeError(f"crash writer synced {out.stdout.strip()}, expected {records}")


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


# --------------------------------------------------------------------------- running


def run(scratch: Path, opts: Options) -> list[Workload]:
    n, batch_size = opts.records, opts.batch
    batches, rest = divmod(n, batch_size)
    if rest:
        raise ValueError("--records must be a multiple of --batch")
    payloads = [PAYLOAD] * n
    batch = [PAYLOAD] * batch_size

    w_bare_rec = Workload("bare_record", "bare loop, clock per record", "write", n)
    w_bare_batch = Workload(
        "bare_batch", f"bare loop, clock per batch of {batch_size}", "write", n
    )
    w_append = Workload("append", "lsnwal append()", "write", n)
    w_batch = Workload("append_batch", f"lsnwal append_batch() x{batch_size}", "write", n)
    bare_file = scratch / "bare-keep.bin"

    def do_bare_rec(rep: int) -> None:
        path = scratch / f"bare-rec-{rep}.bin"
        total, sync_s = bare_per_record(path, payloads)
        w_bare_rec.seconds.append(total)
        w_bare_rec.sync_seconds.append(sync_s)
        if rep == 0:
            problem = check_bare_file(path, n)
            if problem:
                w_bare_rec.error = f"bare file does not decode as lsnwal records: {problem}"
            path.rename(bare_file)
        else:
            path.unlink()

    def do_bare_batch(rep: int) -> None:
        path = scratch / f"bare-batch-{rep}.bin"
        total, sync_s = bare_per_batch(path, batch, batches)
        w_bare_batch.seconds.append(total)
        w_bare_batch.sync_seconds.append(sync_s)
        path.unlink()

    def do_append(rep: int) -> None:
        path = scratch / f"wal-append-{rep}"
        total, sync_s, last = lsnwal_append(path, payloads)
        shutil.rmtree(path, ignore_errors=True)
        w_append.seconds.append(total)
        w_append.sync_seconds.append(sync_s)
        if last != n:
            w_append.error = f"last_lsn {last} after {n} appends"

    def do_batch(rep: int) -> None:
        path = scratch / f"wal-batch-{rep}"
        total, sync_s, last = lsnwal_append_batch(path, batch, batches)
        shutil.rmtree(path, ignore_errors=True)
        w_batch.seconds.append(total)
        w_batch.sync_seconds.append(sync_s)
        if last != n:
            w_batch.error = f"last_lsn {last} after {n} batched appends"

    steps: list[tuple[Workload, Callable[[int], None]]] = [
        (w_bare_rec, do_bare_rec),
        (w_bare_batch, do_bare_batch),
        (w_append, do_append),
        (w_batch, do_batch),
    ]
    for rep in range(opts.reps):
        bl.eprint(f"write repetition {rep + 1}/{opts.reps} ...")
        # The bare per-record loop goes first in repetition 0: its file is kept.
        order = steps[rep % len(steps) :] + steps[: rep % len(steps)]
        for workload, step in order:
            if workload.error is None:
                try:
                    step(rep)
                except Exception as exc:
                    workload.error = _describe(exc)

    # ----- scans
    w_open = Workload("open", "open() recovery of a crashed active segment", "scan", n)
    w_collect = Workload("collect", "collect_all_segments() (read-only analysis)", "scan", n)
    w_verify = Workload("verify", "verify() of the sealed, archived WAL", "scan", n)
    w_replay = Workload("replay", "replay(): Record objects, LSNs 1..N", "scan", n)
    w_bare_scan = Workload("bare_scan", "bare scan loop (reference)", "scan", n)
    scans = [w_open, w_collect, w_verify, w_replay]
    for w in scans:
        w.target = f">= {SCAN_TARGET / 1e6:g} M rec/s"
    w_bare_scan.note = "unpack + crc32c per record, 1 MiB reads"

    crashed = scratch / "crashed"
    bl.eprint(f"writing {n:,} records into an active segment, then killing the writer ...")
    try:
        make_crashed_wal(crashed, n, batch_size)
    except Exception as exc:
        for w in scans:
            w.error = f"could not build the crashed WAL: {_describe(exc)}"
        scans = []
    recovered = scratch / "recovered"
    for rep in range(opts.reps if scans else 0):
        bl.eprint(f"scan repetition {rep + 1}/{opts.reps} ...")
        copy = scratch / f"copy-{rep}"
        shutil.copytree(crashed, copy)
        if w_open.error is None:
            try:
                secs, wal = _timed(lambda copy=copy: lsnwal.open(copy))
                last = wal.last_lsn
                wal.close()
                w_open.seconds.append(secs)
                if last != n:
                    w_open.error = f"recovered last_lsn {last}, expected {n}"
            except Exception as exc:
                w_open.error = _describe(exc)
        if rep == 0:
            copy.rename(recovered)
        else:
            shutil.rmtree(copy, ignore_errors=True)
        if w_collect.error is None:
            try:
                secs, infos = _timed(lambda: lsnwal.collect_all_segments(crashed))
                w_collect.seconds.append(secs)
                last = max((i.last_lsn for i in infos), default=0)
                if last != n:
                    w_collect.error = f"segments end at LSN {last}, expected {n}"
            except Exception as exc:
                w_collect.error = _describe(exc)
        if not recovered.exists():
            continue
        if w_verify.error is None:
            try:
                secs, rep_ = _timed(lambda: lsnwal.verify(recovered))
                w_verify.seconds.append(secs)
                if not rep_.ok or rep_.records != n:
                    first = rep_.problems[0].message if rep_.problems else ""
                    w_verify.error = (
                        f"verify counted {rep_.records} records, ok={rep_.ok} {first}".strip()
                    )
            except Exception as exc:
                w_verify.error = _describe(exc)
        if w_replay.error is None:
            try:
                secs, (count, last) = _timed(lambda: _replay_count(recovered))
                w_replay.seconds.append(secs)
                if count != n or last != n:
                    w_replay.error = f"replay yielded {count} records up to LSN {last}"
            except Exception as exc:
                w_replay.error = _describe(exc)
    if bare_file.exists():
        for _ in range(opts.reps):
            try:
                secs, count = bare_scan(bare_file)
            except Exception as exc:
                w_bare_scan.error = _describe(exc)
                break
            w_bare_scan.seconds.append(secs)
            if count != n:
                w_bare_scan.error = f"bare scan counted {count} records"
                break
    else:
        w_bare_scan.error = "no bare file to scan"

    out = [w_bare_rec, w_bare_batch, w_append, w_batch, w_open, w_collect, w_verify, w_replay,
           w_bare_scan]
    for w in out:
        w.finish()
    return out


def _replay_count(path: Path) -> tuple[int, int]:
    count = 0
    last = 0
    expected = 1
    for rec in lsnwal.replay(path):
        if rec.lsn != expected:
            raise AssertionError(f"replay yielded LSN {rec.lsn} where {expected} was expected")
        expected += 1
        count += 1
        last = rec.lsn
    return count, last


# --------------------------------------------------------------------------- report


def compute_ratios(workloads: Sequence[Workload]) -> list[dict[str, Any]]:
    by = {w.key: w for w in workloads}

    def rate(key: str) -> float | None:
        w = by.get(key)
        return w.rate_p50 if w is not None and w.error is None else None

    def ratio(name: str, num: float | None, den: float | None, target: float) -> dict[str, Any]:
        value = num / den if num is not None and den else None
        met = None if value is None else value >= target
        return {"name": name, "value": value, "target": target, "met": met}

    out = [
        ratio("append_batch() / bare loop (clock per batch)", rate("append_batch"),
              rate("bare_batch"), 1.0),
        ratio("append() / bare loop (clock per record)", rate("append"), rate("bare_record"), 0.5),
        ratio("append_batch() / bare loop (clock per record)", rate("append_batch"),
              rate("bare_record"), 1.0),
    ]
    for key in ("open", "collect", "verify", "replay"):
        r = rate(key)
        out.append({
            "name": f"{by[key].title} (M rec/s)",
            "value": None if r is None else r / 1e6,
            "target": SCAN_TARGET / 1e6,
            "met": None if r is None else r >= SCAN_TARGET,
        })
    return out


def render_report(report: Report) -> str:
    out: list[str] = []
    opts = report.options
    rec_bytes = fmt.RECORD_HEADER_SIZE + report.payload_bytes
    out.append("")
    out.append(
        f"{opts.records:,} records of {report.payload_bytes} B ({rec_bytes} B on disk each), "
        f"{opts.reps} repetitions; rec/s at the p50 / p90 / p99 repetition time"
    )
    headers = ["workload", "rec/s p50", "rec/s p90", "rec/s p99", "best", "MB/s p50",
               "s p50", "fsync s p50", "target"]
    rows = []
    for w in report.workloads:
        s = w.summary
        sync = bl.summarize(w.sync_seconds) if w.sync_seconds else None
        title = w.title + ("  [ERROR]" if w.error else "")
        rows.append([
            title,
            bl.fmt_rate(w.rate_p50),
            bl.fmt_rate(w.rate_p90),
            bl.fmt_rate(w.rate_p99),
            bl.fmt_rate(w.rate_best),
            "-" if w.rate_p50 is None else f"{w.rate_p50 * rec_bytes / 1e6:,.0f}",
            "-" if s is None else f"{s.p50_s:.3f}",
            "-" if sync is None else f"{sync.p50_s:.3f}",
            w.target,
        ])
    out.append(bl.render_table(headers, rows, align="lrrrrrrrl"))
    out.append("")
    out.append("ratios (p50 rates)")
    ratio_rows = []
    for r in report.ratios:
        value = r["value"]
        shown = "n/a" if value is None else (
            f"{value:.2f}" if "M rec/s" in r["name"] else bl.fmt_ratio(value)
        )
        met = "-" if r["met"] is None else ("met" if r["met"] else "MISSED")
        ratio_rows.append([r["name"], shown, f">= {r['target']:g}", met])
    out.append(bl.render_table(["ratio", "value", "target", ""], ratio_rows, align="lrll"))
    errors = [w for w in report.workloads if w.error]
    if errors:
        out.append("")
        for w in errors:
            out.append(f"ERROR in {w.title}: {w.error}")
    return "\n".join(out)


# --------------------------------------------------------------------------- CLI


def _positive_int(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(
        description="Records/s of lsnwal append(), append_batch() and scans of 100-byte "
        "records, against a bare pure-Python loop measured in the same run.",
    )
    parser.add_argument("--records", type=_positive_int, default=None,
                        help="records per workload (default 1,000,000; 200,000 with --quick)")
    parser.add_argument("--reps", type=_positive_int, default=None,
                        help="repetitions of every workload (default 5; 3 with --quick)")
    parser.add_argument("--batch", type=_positive_int, default=1000,
                        help="records per append_batch() call (default 1000)")
    parser.add_argument("--dir", default=None,
                        help="parent of the scratch directory, on the disk to measure "
                        "(default ./.bench-tmp); the scratch directory is removed at the end")
    parser.add_argument("--json", metavar="PATH", default=None, help="write all results as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 200,000 records, 3 repetitions")
    args = parser.parse_args(argv)
    records = args.records or (200_000 if args.quick else 1_000_000)
    reps = args.reps or (3 if args.quick else 5)
    if records % args.batch:
        parser.error(f"--records ({records}) must be a multiple of --batch ({args.batch})")
    return args, Options(records=records, reps=reps, batch=args.batch)


def main(argv: Sequence[str] | None = None) -> int:
    args, opts = parse_args(argv)
    try:
        with bl.bench_directory(args.dir, prefix="bench-append-") as scratch:
            facts = bl.machine_facts(scratch)
            print("lsnwal bench_append: records/s of appends and scans vs a bare Python loop",
                  flush=True)
            print(bl.render_facts(facts), flush=True)
            workloads = run(scratch, opts)
    except KeyboardInterrupt:
        print("interrupted; scratch directory removed", file=sys.stderr)
        return 130
    report = Report(machine=facts, options=opts, payload_bytes=PAYLOAD_BYTES, workloads=workloads)
    report.ratios = compute_ratios(workloads)
    print(render_report(report), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(bl.to_jsonable(report), fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 1 if any(w.error for w in workloads) else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
