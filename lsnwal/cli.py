"""The ``lsnwal`` command: inspect, dump, verify, replay, restore, prune and benchmark a WAL.

Owns the operator's view of a WAL directory (modelled on ``pg_waldump``,
``pg_verifybackup`` and the WAL-G / Litestream commands). Rules kept here:

* **Read-only means read-only.** ``info``, ``dump``, ``verify``, ``replay``,
  ``marks``, the source of ``restore`` and every ``--dry-run`` only read: they
  go through ``recovery.analyze``, ``replay`` and ``verify`` (the one decoder),
  never take the LOCK and never create, rename or delete a file. They work
  while the application is writing.
* **Plans before work.** ``replay`` and ``restore`` print which segments they
  will read and the LSN and time range before reading a record; ``--dry-run``
  stops there.
* **Errors are one line.** An expected condition (missing directory, locked WAL,
  corruption, a target that cannot be met, bad arguments) prints
  ``lsnwal: error: ...`` on stderr and exits non-zero; a traceback means a bug.
  Exit status: 0 success, 1 failure (including ``verify`` finding damage),
  2 bad usage, 130 interrupted.
* **Progress** is a ``tqdm`` bar on stderr, only when stderr is a terminal and
  the optional ``cli`` extra is installed; otherwise nothing.

The module is longer than the usual 400 lines because argparse wiring, help
texts and output formats of nine commands are one job; splitting it would
scatter the help next to nothing it describes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TextIO, TypeVar

from . import format as fmt
from .config import WalConfig
from .errors import RecoveryTargetError, WalCorruptionError, WalError
from .fs import OsFileSystem
from .names import ACTIVE_NAME, WalPaths
from .recovery import Analysis, Seg, analyze

PROG = "lsnwal"
_N = TypeVar("_N", int, float)
_STATES = ("archive", "pending", "active")
_RETRIES = 5  # a live writer may rotate or archive between our listings: look again


class CliError(Exception):
    """An expected failure: reported as one line on stderr, exit status 1."""


# --------------------------------------------------------------------------- small helpers


def _fmt_time(ts: float | None) -> str:
    """Epoch seconds as ISO 8601 UTC with microseconds (``-`` for None)."""
    if ts is None:
        return "-"
    t = _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _fmt_bytes(n: int) -> str:
    """A byte count for people: ``512 B``, ``4.0 KiB``, ``1.2 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _parse_time(text: str) -> float:
    """``--*-time`` values: epoch seconds, or ISO 8601 with a timezone (``Z`` allowed)."""
    try:
        return float(text)
    except ValueError:
        pass
    iso = text.strip()
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    try:
        value = _dt.datetime.fromisoformat(iso)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither epoch seconds nor an ISO 8601 time"
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no timezone; add one, e.g. {text}Z or {text}+02:00"
        )
    return value.timestamp()


def _number(
    conv: Callable[[str], _N], what: str, ok: Callable[[_N], bool], rule: str
) -> Callable[[str], _N]:
    """An argparse type: ``conv(text)``, refused unless ``ok(value)``."""

    def parse(text: str) -> _N:
        try:
            value = conv(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text} {rule}")
        return value

    return parse


_positive_int = _number(int, "an integer", lambda v: v >= 1, "must be at least 1")
_non_negative_int = _number(int, "an integer", lambda v: v >= 0, "must not be negative")
_positive_float = _number(float, "a number", lambda v: v > 0, "must be positive")


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
               "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}
_AGE_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _split_unit(text: str) -> tuple[float, str]:
    t = text.strip().lower()
    i = len(t)
    while i and t[i - 1].isalpha():
        i -= 1
    try:
        return float(t[:i]), t[i:]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number with a unit") from None


def _size(text: str) -> int:
    """``--max-bytes``: ``500M``, ``10GiB``, ``1048576``."""
    number, unit = _split_unit(text)
    if unit not in _SIZE_UNITS or number <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use a positive size like 512M or 10G")
    return int(number * _SIZE_UNITS[unit])


def _age(text: str) -> float:
    """``--max-age``: ``3600``, ``90m``, ``36h``, ``7d``."""
    number, unit = _split_unit(text)
    if unit not in _AGE_UNITS or number <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use a positive age like 3600, 90m, 36h, 7d")
    return number * _AGE_UNITS[unit]


def _preview(payload: bytes, limit: int) -> str:
    """The first ``limit`` bytes of a payload as a Python bytes literal, with the rest counted."""
    shown = repr(payload[:limit])
    if len(payload) > limit:
        shown += f"...(+{len(payload) - limit} B)"
    return shown


def _hexdump(payload: bytes, indent: str = "      ") -> Iterator[str]:
    for off in range(0, len(payload), 16):
        chunk = payload[off : off + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        yield f"{indent}{off:08x}  {chunk.hex(' '):<47}  {text}"


# --------------------------------------------------------------------------- progress


class _Bar(Protocol):
    total: float | None
    n: float

    def update(self, n: float = 1) -> object: ...

    def close(self) -> None: ...


class _NoBar:
    """What ``_progress`` returns when no bar is shown: every call does nothing."""

    total: float | None = None
    n: float = 0

    def update(self, n: float = 1) -> None:
        self.n += n

    def close(self) -> None:
        return None


@contextlib.contextmanager
def _progress(total: int | None, desc: str, unit: str, *, extra_tty: bool = True) -> Iterator[_Bar]:
    """A tqdm bar on stderr when stderr is a terminal and tqdm is installed; else nothing."""
    bar: _Bar = _NoBar()
    if extra_tty and sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:  # the optional `cli` extra is not installed: no bar, no noise
            pass
        else:
            bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False,
                       file=sys.stderr, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


class _ProgressFs(OsFileSystem):
    """The real file system, advancing a progress bar by every byte read.

    Lets ``verify`` and ``restore`` show progress without a second reader: they
    take a ``fs`` argument, and every read they make goes through ``pread``.
    """

    def __init__(self, bar: _Bar) -> None:
        super().__init__()
        self._bar = bar

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        data = super().pread(fd, size, offset)
        bar = self._bar
        if bar.total is not None and bar.n + len(data) > bar.total:
            bar.total = bar.n + len(data)  # live segments are read twice: grow, never overflow
        bar.update(len(data))
        return data


# --------------------------------------------------------------------------- reading a WAL


def _config(args: argparse.Namespace) -> WalConfig:
    changes: dict[str, Any] = {}
    if getattr(args, "archive_dir", None):
        changes["archive_dir"] = args.archive_dir
    if getattr(args, "pending_dir", None):
        changes["pending_dir"] = args.pending_dir
    return WalConfig(**changes)


def _check_wal_dir(path: str, cfg: WalConfig) -> WalPaths:
    """Resolve ``path``; raise ``CliError`` unless it looks like a WAL directory."""
    paths = WalPaths.of(path, cfg)
    if not os.path.exists(paths.root):
        raise CliError(f"no WAL directory at {paths.root}")
    if not os.path.isdir(paths.root):
        raise CliError(f"{paths.root} is not a directory")
    if not any(os.path.exists(p) for p in (paths.active, paths.pending, paths.archive)):
        raise CliError(
            f"{paths.root} is not an lsnwal directory (no {ACTIVE_NAME}, pending/ or archive/)"
        )
    return paths


def _analysis(paths: WalPaths, cfg: WalConfig) -> Analysis:
    """Read-only analysis of every segment (archive headers and seals, live records)."""
    fs = OsFileSystem()
    last: Exception | None = None
    for _ in range(_RETRIES):
        try:
            return analyze(fs, paths, cfg, full_archive=True)
        except (FileNotFoundError, WalCorruptionError) as exc:
            last = exc
    assert last is not None
    raise last


def _with_records(an: Analysis) -> list[Seg]:
    return [s for s in (*an.archive, *an.live) if s.last_lsn >= s.first_lsn]


def _seg_times(s: Seg) -> tuple[float | None, float | None]:
    if s.last_lsn < s.first_lsn:
        return None, None
    if s.state == "archive" and s.seal is not None:
        return s.seal.first_ts, s.seal.last_ts
    return s.first_ts, s.last_ts


def _marks(an: Analysis) -> list[tuple[str, int, float]]:
    out: list[tuple[str, int, float]] = []
    for s in an.archive:
        if s.seal is not None:
            out.extend(s.seal.marks)
    for s in an.live:
        out.extend(s.marks)
    return sorted(out, key=lambda m: m[1])


def _lock_holder(paths: WalPaths) -> int | None:
    """PID of the process holding the WAL's LOCK (Linux ``/proc/locks``), else None.

    Reads the kernel's lock table; never takes or tests the lock itself.
    """
    try:
        st = os.stat(paths.lock)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == want:
            try:
                return int(fields[4])
            except ValueError:
                return -1
    return None


# --------------------------------------------------------------------------- info


def cmd_info(args: argparse.Namespace) -> int:
    """``lsnwal info PATH``."""
    cfg = _config(args)
    paths = _check_wal_dir(args.path, cfg)
    an = _analysis(paths, cfg)
    segs = [*an.archive, *an.live]
    recs = _with_records(an)
    last = an.next_lsn - 1
    oldest = recs[0].first_lsn if recs else an.next_lsn
    holder = _lock_holder(paths)
    per_state: dict[str, dict[str, Any]] = {}
    for state in _STATES:
        of = [s for s in segs if s.state == state]
        with_recs = [s for s in of if s.last_lsn >= s.first_lsn]
        per_state[state] = {
            "count": len(of),
            "bytes": sum(s.size for s in of),
            "first_lsn": with_recs[0].first_lsn if with_recs else None,
            "last_lsn": with_recs[-1].last_lsn if with_recs else None,
        }
    versions = sorted({s.header.version for s in segs if s.header is not None})
    marks = _marks(an)
    first_ts = _seg_times(recs[0])[0] if recs else None
    info: dict[str, Any] = {
        "path": paths.root,
        "format_version": fmt.FORMAT_VERSION,
        "segment_format_versions": versions,
        "last_lsn": last,
        # Without a writer, open() makes everything found durable: synced == last found.
        # With one, only the writer knows how far its fsyncs got.
        "synced_lsn": last if holder is None else None,
        "checkpoint_lsn": an.checkpoint_lsn,
        "oldest_lsn": oldest if recs else None,
        "records": (last - oldest + 1) if recs else 0,
        "first_time": first_ts,
        "last_time": an.last_ts if recs else None,
        "writer_pid": holder,
        "segments": per_state,
        "marks": [{"name": n, "lsn": lsn, "timestamp": ts} for n, lsn, ts in marks],
        "recovery_notes": an.report(),
    }
    if args.segments:
        info["segment_list"] = [
            {"path": s.path, "state": s.state, "first_lsn": s.first_lsn,
             "last_lsn": s.last_lsn, "size_bytes": s.size, "compressed": s.compressed}
            for s in segs
        ]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    out = sys.stdout
    print(f"WAL {paths.root}", file=out)
    vers = ", ".join(f"v{v}" for v in versions) or "-"
    print(f"  format version   {fmt.FORMAT_VERSION} (segments on disk: {vers})", file=out)
    print(f"  last LSN         {last}", file=out)
    if holder is None:
        print(f"  synced LSN       {last} (no writer: everything found is what open() keeps)",
              file=out)
    else:
        who = f"pid {holder}" if holder > 0 else "another process"
        print(f"  synced LSN       <= {last} (a writer, {who}, holds the LOCK; its stats() "
              "has the exact value)", file=out)
    print(f"  checkpoint LSN   {an.checkpoint_lsn}", file=out)
    if recs:
        print(f"  retained         LSN {oldest}..{last} ({last - oldest + 1} records)", file=out)
        print(f"  time range       {_fmt_time(first_ts)} .. {_fmt_time(an.last_ts)}", file=out)
    else:
        print("  retained         no records", file=out)
    print("  segments", file=out)
    for state in _STATES:
        d = per_state[state]
        rng = f"LSN {d['first_lsn']}..{d['last_lsn']}" if d["first_lsn"] is not None else ""
        print(f"    {state:<8} {d['count']:>6}  {_fmt_bytes(d['bytes']):>10}  {rng}", file=out)
    if args.segments:
        for s in segs:
            print(f"      {s.state:<8} {os.path.basename(s.path)}  LSN {s.first_lsn}..{s.last_lsn}"
                  f"  {_fmt_bytes(s.size)}{'  zstd' if s.compressed else ''}", file=out)
    print(f"  marks            {len(marks)}", file=out)
    for name, lsn, ts in marks:
        print(f"    {name!r} at LSN {lsn}  {_fmt_time(ts)}", file=out)
    for note in an.report():
        print(f"  recovery would: {note}", file=out)
    return 0


# --------------------------------------------------------------------------- dump


def _record_json(rec: fmt.Record, preview: int, hex_payload: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "lsn": rec.lsn,
        "kind": rec.kind.name,
        "timestamp": rec.timestamp,
        "time": _fmt_time(rec.timestamp),
        "length": len(rec.payload),
    }
    if rec.kind is fmt.RecordKind.CHECKPOINT:
        d["checkpoint_lsn"] = rec.checkpoint_lsn
    elif rec.kind is fmt.RecordKind.MARK:
        d["name"] = rec.name
    if hex_payload:
        d["payload_hex"] = rec.payload.hex()
    else:
        d["payload"] = rec.payload[:preview].decode("utf-8", "backslashreplace")
        d["truncated"] = len(rec.payload) > preview
    return d


def _record_text(rec: fmt.Record, preview: int, hex_payload: bool) -> Iterator[str]:
    head = f"{rec.lsn:>12}  {_fmt_time(rec.timestamp)}  {rec.kind.name:<10} {len(rec.payload):>7} B"
    if rec.kind is fmt.RecordKind.MARK:
        yield f"{head}  mark {rec.name!r}"
        return
    if rec.kind is fmt.RecordKind.CHECKPOINT:
        head += f"  covers LSN <= {rec.checkpoint_lsn}"
    if hex_payload:
        yield head
        yield from _hexdump(rec.payload)
    else:
        yield f"{head}  {_preview(rec.payload, preview)}"


def cmd_dump(args: argparse.Namespace) -> int:
    """``lsnwal dump PATH``."""
    from .replay import replay

    cfg = _config(args)
    paths = _check_wal_dir(args.path, cfg)
    an = _analysis(paths, cfg)
    recs = _with_records(an)
    last = an.next_lsn - 1
    if not recs:
        return 0
    start = args.from_lsn if args.from_lsn is not None else recs[0].first_lsn
    if args.from_time is not None:
        # Timestamps never go back within a WAL: skip every segment that ends before it.
        for s in recs:
            _first, seg_last_ts = _seg_times(s)
            if seg_last_ts is not None and seg_last_ts < args.from_time:
                start = max(start, s.last_lsn + 1)
    until = args.until_lsn
    if until is not None and until > last:
        until = None  # dump what there is; a record past the end is not an error here
    if start > last or (until is not None and until < start):
        return 0
    records = replay(paths.root, config=cfg, from_lsn=start, until_lsn=until,
                     until_time=args.until_time, kinds=args.kinds)
    stop = until if until is not None else last
    out = sys.stdout
    shown = 0
    # A bar only when stdout goes elsewhere than the terminal (else it fights the records).
    with _progress(stop - start + 1, "dump", "rec", extra_tty=not out.isatty()) as bar:
        for rec in records:
            bar.update(1)
            if args.from_time is not None and rec.timestamp < args.from_time:
                continue
            if args.json:
                out.write(json.dumps(_record_json(rec, args.preview, args.hex)) + "\n")
            else:
                for line in _record_text(rec, args.preview, args.hex):
                    out.write(line + "\n")
            shown += 1
            if args.limit is not None and shown >= args.limit:
                break
    return 0


# --------------------------------------------------------------------------- verify


def cmd_verify(args: argparse.Namespace) -> int:
    """``lsnwal verify PATH``: exit 0 when intact, 1 when damaged."""
    from .replay import verify

    cfg = _config(args)
    paths = _check_wal_dir(args.path, cfg)
    total = 0
    for d in (paths.archive, paths.pending):
        with contextlib.suppress(OSError):
            total += sum(e.stat().st_size for e in os.scandir(d) if e.is_file())
    with contextlib.suppress(OSError):
        total += os.path.getsize(paths.active)
    with _progress(total or None, "verify", "B") as bar:
        report = verify(paths.root, config=cfg, fs=_ProgressFs(bar))
    if args.json:
        print(json.dumps({
            "path": paths.root,
            "ok": report.ok,
            "segments": report.segments,
            "records": report.records,
            "first_lsn": report.first_lsn,
            "last_lsn": report.last_lsn,
            "problems": [
                {"file": p.file, "offset": p.offset, "lsn": p.lsn, "message": p.message}
                for p in report.problems
            ],
            "warnings": list(report.warnings),
        }, indent=2))
    else:
        rng = (f" (LSN {report.first_lsn}..{report.last_lsn})"
               if report.first_lsn is not None else "")
        verdict = "OK" if report.ok else f"DAMAGED, {len(report.problems)} problem(s)"
        print(f"verify {paths.root}: {verdict}: {report.segments} segments, "
              f"{report.records} records{rng}, every checksum read")
        for p in report.problems:
            where = f" offset {p.offset}" if p.offset is not None else ""
            after = f" (last good LSN {p.lsn})" if p.lsn is not None else ""
            print(f"  problem: {p.file}{where}{after}: {p.message}")
        for w in report.warnings:
            print(f"  warning: {w}")
    return 0 if report.ok else 1


# --------------------------------------------------------------------------- replay / restore


@dataclass
class Plan:
    """What a replay or restore will read, computed from segment headers and seals only."""

    target: str
    start_lsn: int
    stop_lsn: int  # the highest LSN that may be replayed
    exact: bool  # stop_lsn is the exact last LSN (False for a time target: an upper bound)
    first_time: float | None
    last_time: float | None
    segments: list[Seg]
    first_time_exact: bool = True  # False: the time of the segment holding start_lsn
    last_time_exact: bool = True  # False: an upper bound (the target or a segment's end)

    @property
    def records(self) -> int:
        """Records the plan covers (an upper bound when not ``exact``)."""
        return max(0, self.stop_lsn - self.start_lsn + 1)

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-friendly data."""
        return {
            "target": self.target,
            "start_lsn": self.start_lsn,
            "stop_lsn": self.stop_lsn,
            "stop_exact": self.exact,
            "records": self.records,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "segments": [
                {"path": s.path, "state": s.state, "first_lsn": s.first_lsn,
                 "last_lsn": s.last_lsn, "size_bytes": s.size}
                for s in self.segments
            ],
        }

    def print(self, what: str, out: TextIO) -> None:
        """Print the plan for people."""
        le = "" if self.exact else "<= "
        print(f"plan: {what} {self.target}", file=out)
        if self.records == 0:
            print("  records   none", file=out)
        else:
            n = self.records if self.exact else f"at most {self.records}"
            print(f"  records   LSN {self.start_lsn}..{le}{self.stop_lsn} ({n} records)",
                  file=out)
            ge = "" if self.first_time_exact else ">= "
            le_t = "" if self.last_time_exact else "<= "
            print(f"  time      {ge}{_fmt_time(self.first_time)} .. "
                  f"{le_t}{_fmt_time(self.last_time)}", file=out)
        size = sum(s.size for s in self.segments)
        print(f"  segments  {len(self.segments)} to read, {_fmt_bytes(size)}", file=out)
        segs = self.segments
        shown = segs if len(segs) <= 12 else [*segs[:5], None, *segs[-5:]]
        for s in shown:
            if s is None:
                print(f"    ... {len(segs) - 10} more (--json lists every one)", file=out)
                continue
            print(f"    {s.state:<8} {os.path.basename(s.path)}  LSN {s.first_lsn}..{s.last_lsn}"
                  f"  {_fmt_bytes(s.size)}", file=out)
        out.flush()


def _make_plan(an: Analysis, args: argparse.Namespace) -> Plan:
    """The plan for ``args``' target; raises the errors ``replay`` would raise for it."""
    recs = _with_records(an)
    last = an.next_lsn - 1
    oldest = recs[0].first_lsn if recs else an.next_lsn
    inclusive = not args.exclusive
    incl = "inclusive" if inclusive else "exclusive"
    start = getattr(args, "from_lsn", None) or oldest
    after = [s for s in recs if s.last_lsn >= start]
    stop, exact = last, True
    last_time: float | None = None
    last_time_exact = True
    if args.until_mark is not None:
        found = [(lsn, ts) for name, lsn, ts in _marks(an) if name == args.until_mark]
        if not found:
            raise RecoveryTargetError(f"no mark named {args.until_mark!r} in this WAL")
        lsn, last_time = min(found)
        stop = lsn if inclusive else lsn - 1
        last_time_exact = inclusive
        target = f"until mark {args.until_mark!r} (LSN {lsn}, {incl})"
    elif args.until_lsn is not None:
        stop = args.until_lsn if inclusive else args.until_lsn - 1
        target = f"until LSN {args.until_lsn} ({incl})"
    elif args.until_time is not None:
        t: float = args.until_time
        target = f"until time {_fmt_time(t)} ({incl})"
        # Timestamps never go back: segments whose first record is after the target are
        # not needed, and the target is in the last one that starts before it.
        def starts_before(s: Seg) -> bool:
            first_ts = _seg_times(s)[0] or 0.0
            return first_ts <= t if inclusive else first_ts < t

        before = [s for s in after if starts_before(s)]
        if after and start <= after[0].first_lsn and not before:
            raise RecoveryTargetError(
                f"target time {_fmt_time(t)} is before the first record "
                f"(LSN {after[0].first_lsn} at {_fmt_time(_seg_times(after[0])[0])})")
        stop = before[-1].last_lsn if before else start - 1
        exact = False
        seg_last = _seg_times(before[-1])[1] if before else None
        last_time = t if seg_last is None else min(t, seg_last)
        last_time_exact = False
    else:
        target = f"to the end of the log (LSN {last})"
    if stop > last:
        raise RecoveryTargetError(
            f"target LSN {stop} is past the end of the log (last LSN {last})")
    segs = [s for s in after if s.first_lsn <= stop]
    first_time = _seg_times(segs[0])[0] if segs else None
    if last_time is None and segs:
        last_time = _seg_times(segs[-1])[1]
        last_time_exact = stop == segs[-1].last_lsn
    return Plan(target, start, stop, exact, first_time, last_time, segs,
                first_time_exact=bool(segs) and segs[0].first_lsn == start,
                last_time_exact=last_time_exact)


def _targets(args: argparse.Namespace) -> dict[str, Any]:
    return {"until_lsn": args.until_lsn, "until_time": args.until_time,
            "until_mark": args.until_mark, "inclusive": not args.exclusive}


def cmd_replay(args: argparse.Namespace) -> int:
    """``lsnwal replay PATH``: read every record up to the target (a restore drill)."""
    from .replay import replay

    cfg = _config(args)
    paths = _check_wal_dir(args.path, cfg)
    # Validates the target the way the library does (raises before reading a record).
    records = replay(paths.root, config=cfg, from_lsn=args.from_lsn, **_targets(args))
    plan = _make_plan(_analysis(paths, cfg), args)
    out = sys.stdout
    if not args.json:
        plan.print("replay", out)
    if args.dry_run:
        if args.json:
            print(json.dumps({"dry_run": True, "plan": plan.as_dict()}, indent=2))
        else:
            print("dry run: nothing read beyond headers and seals, nothing changed")
        return 0
    counts = {k.name: 0 for k in fmt.RecordKind}
    first: fmt.Record | None = None
    last: fmt.Record | None = None
    last_cp: fmt.Record | None = None
    t0 = time.perf_counter()
    with _progress(plan.records or None, "replay", "rec") as bar:
        for rec in records:
            if first is None:
                first = rec
            last = rec
            counts[rec.kind.name] += 1
            if rec.kind is fmt.RecordKind.CHECKPOINT:
                last_cp = rec
            bar.update(1)
    elapsed = time.perf_counter() - t0
    n = sum(counts.values())
    result = {
        "records": n,
        "by_kind": counts,
        "first_lsn": first.lsn if first else None,
        "last_lsn": last.lsn if last else None,
        "first_time": first.timestamp if first else None,
        "last_time": last.timestamp if last else None,
        "last_checkpoint": (
            {"lsn": last_cp.lsn, "covers": last_cp.checkpoint_lsn} if last_cp else None),
        "seconds": elapsed,
    }
    if args.json:
        print(json.dumps({"dry_run": False, "plan": plan.as_dict(), "result": result}, indent=2))
        return 0
    rng = f" (LSN {first.lsn}..{last.lsn})" if first and last else ""
    kinds = ", ".join(f"{v} {k.lower()}" for k, v in counts.items())
    print(f"replayed {n} records{rng} in {elapsed:.2f} s: {kinds}; every checksum verified")
    if first and last:
        print(f"  time      {_fmt_time(first.timestamp)} .. {_fmt_time(last.timestamp)}")
    if last_cp is not None:
        print(f"  last checkpoint: record LSN {last_cp.lsn} covers LSN <= "
              f"{last_cp.checkpoint_lsn} ({len(last_cp.payload)} B snapshot payload)")
    return 0


def _check_target_dir(src: WalPaths, target: str) -> str:
    tgt = os.path.abspath(target)
    if os.path.exists(tgt) and (not os.path.isdir(tgt) or os.listdir(tgt)):
        raise CliError(f"restore target {tgt} exists and is not an empty directory")
    for d in (src.root, src.archive, src.pending):
        if tgt == d or tgt.startswith(d.rstrip(os.sep) + os.sep):
            raise CliError(f"restore target {tgt} is inside the source WAL {src.root}")
    return tgt


def cmd_restore(args: argparse.Namespace) -> int:
    """``lsnwal restore SRC DST``: a new WAL directory holding the records up to the target."""
    from .replay import replay, restore

    cfg = _config(args)
    paths = _check_wal_dir(args.source, cfg)
    tgt = _check_target_dir(paths, args.target)
    replay(paths.root, config=cfg, **_targets(args))  # validate the target first
    plan = _make_plan(_analysis(paths, cfg), args)
    if not args.json:
        plan.print("restore", sys.stdout)
        print(f"  into      {tgt}", flush=True)
    if args.dry_run:
        if args.json:
            print(json.dumps({"dry_run": True, "target": tgt, "plan": plan.as_dict()}, indent=2))
        else:
            print("dry run: nothing written, target not created")
        return 0
    t0 = time.perf_counter()
    total = sum(s.size for s in plan.segments)
    with _progress(total or None, "restore", "B") as bar:
        result = restore(paths.root, tgt, config=cfg, fs=_ProgressFs(bar), **_targets(args))
    elapsed = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"dry_run": False, "target": tgt, "plan": plan.as_dict(),
                          "result": {"records": result.records, "first_lsn": result.first_lsn,
                                     "last_lsn": result.last_lsn, "seconds": elapsed}},
                         indent=2))
    elif result.records:
        print(f"restored {result.records} records (LSN {result.first_lsn}..{result.last_lsn}) "
              f"into {result.target} in {elapsed:.2f} s; opening it continues at LSN "
              f"{(result.last_lsn or 0) + 1}")
    else:
        print(f"restored 0 records into {result.target}")
    return 0


# --------------------------------------------------------------------------- prune


def _retention_config(args: argparse.Namespace) -> WalConfig:
    changes: dict[str, Any] = {}
    if args.max_segments is not None:
        changes["archive_max_segments"] = args.max_segments
    if args.max_bytes is not None:
        changes["archive_max_bytes"] = args.max_bytes
    if args.max_age is not None:
        changes["archive_max_age_s"] = args.max_age
    if args.no_archive:
        changes["archive_enabled"] = False
    return _config(args).replace(**changes)


class _ReadOnlyFs(OsFileSystem):
    """The real file system with every write refused (a safety net for dry runs)."""

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise PermissionError("lsnwal prune --dry-run must not change anything")

    create = open_write = write = truncate = rename = unlink = makedirs = lock = _refuse


def _prune_plan(paths: WalPaths, cfg: WalConfig) -> tuple[list[Any], int]:
    """What retention would delete now, computed read-only by the archiver's own rules."""
    from .archive import Archiver

    an = _analysis(paths, cfg)
    fs = _ReadOnlyFs()
    # The archiver's thread prunes up to its checkpoint on its own; give it 0 so that it
    # never would, and ask plan() with the real, durable checkpoint from disk.
    archiver = Archiver(fs, fs.sync_backend(), paths, cfg, an.archive, checkpoint_lsn=0)
    try:
        return archiver.plan(an.checkpoint_lsn), an.checkpoint_lsn
    finally:
        archiver.stop()


def cmd_prune(args: argparse.Namespace) -> int:
    """``lsnwal prune PATH``: apply retention (``--dry-run``: list what would go)."""
    from .wal import AsyncWalWriter

    cfg = _retention_config(args)
    paths = _check_wal_dir(args.path, cfg)
    limits = (cfg.archive_max_segments, cfg.archive_max_bytes, cfg.archive_max_age_s)
    if cfg.archive_enabled and all(v is None for v in limits):
        print("no retention limit given (--max-segments, --max-bytes, --max-age or "
              "--no-archive): nothing would be pruned", file=sys.stderr)
    plan, checkpoint = _prune_plan(paths, cfg)
    out = sys.stdout
    if args.dry_run:
        print(f"dry run: retention would delete {len(plan)} archived segment(s), "
              f"{_fmt_bytes(sum(c.size_bytes for c in plan))} (checkpoint LSN {checkpoint})",
              file=out)
        for c in plan:
            print(f"  {os.path.basename(c.path)}  LSN {c.first_lsn}..{c.last_lsn}  "
                  f"{_fmt_bytes(c.size_bytes)}  ({c.reason})", file=out)
        return 0
    reasons = {c.path: c.reason for c in plan}
    before = {e.path: e.stat().st_size for e in os.scandir(paths.archive) if e.is_file()}
    # Opening takes the LOCK (WalLockedError while the application runs) and recovers.
    wal = AsyncWalWriter.open_or_create(paths.root, cfg)
    try:
        wal.wait_archived()
        wal.prune(dry_run=False)
        wal.wait_archived()
        checkpoint = wal.checkpoint_lsn
    finally:
        wal.close()
    after = {e.path for e in os.scandir(paths.archive) if e.is_file()}
    gone = sorted(p for p in before if p not in after)
    print(f"pruned {len(gone)} archived segment(s), {_fmt_bytes(sum(before[p] for p in gone))}"
          f" (checkpoint LSN {checkpoint})", file=out)
    for p in gone:
        why = reasons.get(p, "retention")
        print(f"  {os.path.basename(p)}  {_fmt_bytes(before[p])}  ({why})", file=out)
    return 0


# --------------------------------------------------------------------------- marks


def cmd_marks(args: argparse.Namespace) -> int:
    """``lsnwal marks PATH``."""
    from .replay import list_marks

    cfg = _config(args)
    paths = _check_wal_dir(args.path, cfg)
    marks = list_marks(paths.root, config=cfg)
    if args.json:
        print(json.dumps([{"name": n, "lsn": lsn, "timestamp": ts, "time": _fmt_time(ts)}
                          for n, lsn, ts in marks], indent=2))
        return 0
    if not marks:
        print("no marks")
    for name, lsn, ts in marks:
        print(f"{lsn:>12}  {_fmt_time(ts)}  {name}")
    return 0


# --------------------------------------------------------------------------- bench


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


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
    from .wal import AsyncWalWriter

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


# --------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """``lsnwal demo``: see lsnwal.demo."""
    from . import demo

    if args.child:
        return demo.child_main(args.dir)
    return demo.run(args.dir)


# --------------------------------------------------------------------------- argparse


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``lsnwal dump: error: ... (see --help)``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _add_dirs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--archive-dir", metavar="DIR",
                   help="the archive directory, if the WAL was configured with another "
                        "archive_dir (relative paths are inside PATH)")
    p.add_argument("--pending-dir", metavar="DIR",
                   help="the pending directory, if configured elsewhere")


def _add_targets(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--until-lsn", type=_positive_int, metavar="LSN",
                   help="stop at this LSN")
    g.add_argument("--until-time", type=_parse_time, metavar="TIME",
                   help="stop at the last record at or before TIME (epoch seconds or ISO 8601 "
                        "with a timezone, e.g. 2024-05-01T12:00:00Z)")
    g.add_argument("--until-mark", metavar="NAME", help="stop at the named mark")
    p.add_argument("--exclusive", action="store_true",
                   help="stop just before the target instead of including it")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (segments, LSN and time range) and stop; reads only "
                        "headers and seals and changes nothing")


def build_parser() -> argparse.ArgumentParser:
    """The ``lsnwal`` argument parser (every subcommand, with examples in its --help)."""
    from . import __version__

    fmt_cls = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=PROG, formatter_class=fmt_cls,
        description="Inspect, verify, replay, restore and prune lsnwal write-ahead logs.",
        epilog=_examples("lsnwal info data/wal", "lsnwal verify data/wal",
                         "lsnwal restore data/wal /tmp/restored --until-mark before-migration",
                         "lsnwal demo") +
        "\n\nRead-only commands never take the LOCK: they are safe while the application "
        "writes.\nExit status: 0 ok, 1 failure or damage found, 2 bad usage.",
    )
    parser.add_argument("--version", action="version", version=f"lsnwal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, func: Callable[[argparse.Namespace], int],
            examples: list[str]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=fmt_cls,
                           epilog=_examples(*examples))
        p.set_defaults(func=func)
        return p

    p = add("info", "LSNs, segments per state, marks and format version of a WAL (read-only)",
            cmd_info, ["lsnwal info data/wal", "lsnwal info data/wal --segments",
                       "lsnwal info data/wal --json | jq .checkpoint_lsn"])
    p.add_argument("path", metavar="PATH", help="the WAL directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--segments", action="store_true", help="list every segment")
    _add_dirs(p)

    p = add("dump", "print records as text or JSON lines (read-only)", cmd_dump,
            ["lsnwal dump data/wal --from 1000 --until 1010",
             "lsnwal dump data/wal --json --from-time 2024-05-01T12:00:00Z | jq .lsn",
             "lsnwal dump data/wal --kind mark --kind checkpoint",
             "lsnwal dump data/wal --from 42 --limit 1 --hex"])
    p.add_argument("path", metavar="PATH", help="the WAL directory")
    p.add_argument("--from", dest="from_lsn", type=_positive_int, metavar="LSN",
                   help="first LSN to print (default: the oldest retained)")
    p.add_argument("--until", dest="until_lsn", type=_positive_int, metavar="LSN",
                   help="last LSN to print (default: the last record)")
    p.add_argument("--from-time", type=_parse_time, metavar="TIME",
                   help="skip records written before TIME (epoch seconds or ISO 8601)")
    p.add_argument("--until-time", type=_parse_time, metavar="TIME",
                   help="stop after the last record at or before TIME")
    p.add_argument("--kind", dest="kinds", action="append", metavar="KIND",
                   type=_kind,
                   help="only records of this kind: data, checkpoint or mark (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--hex", action="store_true", help="the whole payload in hex")
    p.add_argument("--preview", type=_non_negative_int, default=48, metavar="N",
                   help="payload bytes to show (default 48)")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="stop after N records")
    _add_dirs(p)

    p = add("verify", "check every header, seal, checksum and LSN (read-only; exit 1 if damaged)",
            cmd_verify, ["lsnwal verify data/wal && echo intact",
                         "lsnwal verify data/wal --json > report.json"])
    p.add_argument("path", metavar="PATH", help="the WAL directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_dirs(p)

    p = add("replay", "read every record up to a target and summarise (a restore drill; "
            "read-only)", cmd_replay,
            ["lsnwal replay data/wal --until-mark before-migration --dry-run",
             "lsnwal replay data/wal --until-time 2024-05-01T12:00:00Z",
             "lsnwal replay data/wal --from 5000 --until-lsn 6000 --exclusive --json"])
    p.add_argument("path", metavar="PATH", help="the WAL directory")
    p.add_argument("--from", dest="from_lsn", type=_positive_int, metavar="LSN",
                   help="start at this LSN (default: the oldest retained)")
    _add_targets(p)
    p.add_argument("--json", action="store_true", help="print plan and result as JSON")
    _add_dirs(p)

    p = add("restore", "point-in-time restore: write the records up to a target into a new WAL "
            "directory (the source is only read)", cmd_restore,
            ["lsnwal restore data/wal /srv/restored --until-mark before-migration",
             "lsnwal restore data/wal /srv/restored --until-time 2024-05-01T12:00:00+02:00",
             "lsnwal restore data/wal /srv/restored --until-lsn 123456 --dry-run"])
    p.add_argument("source", metavar="SRC", help="the WAL directory to restore from")
    p.add_argument("target", metavar="DST", help="a new or empty directory for the restored WAL")
    _add_targets(p)
    p.add_argument("--json", action="store_true", help="print plan and result as JSON")
    _add_dirs(p)

    p = add("prune", "apply archive retention now (--dry-run: list what would be deleted)",
            cmd_prune,
            ["lsnwal prune data/wal --max-segments 1000 --dry-run",
             "lsnwal prune data/wal --max-bytes 20G --max-age 7d",
             "lsnwal prune data/wal --no-archive   # keep nothing the checkpoint covers"])
    p.add_argument("path", metavar="PATH", help="the WAL directory")
    p.add_argument("--max-segments", type=_positive_int, metavar="N",
                   help="keep at most N archived segments (archive_max_segments)")
    p.add_argument("--max-bytes", type=_size, metavar="SIZE",
                   help="keep at most SIZE of archive, e.g. 500M, 20G (archive_max_bytes)")
    p.add_argument("--max-age", type=_age, metavar="AGE",
                   help="drop segments whose newest record is older, e.g. 36h, 7d "
                        "(archive_max_age_s)")
    p.add_argument("--no-archive", action="store_true",
                   help="delete every segment the checkpoint covers (archive_enabled=False)")
    p.add_argument("--dry-run", action="store_true",
                   help="only list what would be deleted and why; read-only, no LOCK taken")
    _add_dirs(p)

    p = add("marks", "list named restore points (read-only)", cmd_marks,
            ["lsnwal marks data/wal", "lsnwal marks data/wal --json"])
    p.add_argument("path", metavar="PATH", help="the WAL directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_dirs(p)

    p = add("bench", "measure this disk's fsync rate and lsnwal's commit rates on it", cmd_bench,
            ["lsnwal bench /var/lib/myapp      # a directory on the disk to measure",
             "lsnwal bench . --seconds 3 --threads 64 --json"])
    p.add_argument("path", metavar="PATH",
                   help="an existing directory on the disk to measure (a scratch directory "
                        "is made inside it and removed)")
    p.add_argument("--seconds", type=_positive_float, default=1.0, metavar="S",
                   help="length of each of the four phases (default 1)")
    p.add_argument("--threads", type=_positive_int, default=16, metavar="N",
                   help="committing threads in the thread phase (default 16)")
    p.add_argument("--tasks", type=_positive_int, default=256, metavar="N",
                   help="asyncio tasks in the asyncio phase (default 256)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("demo", "a transactional key-value store on lsnwal: commits, checkpoint, mark, "
            "kill -9, recovery and point-in-time restore", cmd_demo,
            ["lsnwal demo", "lsnwal demo --dir /tmp/lsnwal-demo"])
    p.add_argument("--dir", default="demo-data", metavar="DIR",
                   help="working directory, wiped at start (default ./demo-data)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


def _kind(text: str) -> fmt.RecordKind:
    try:
        return fmt.RecordKind[text.upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r}: use data, checkpoint or mark") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lsnwal`` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, bad usage: argparse already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``lsnwal dump ... | head``): stop quietly.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (CliError, WalError, OSError, ValueError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
