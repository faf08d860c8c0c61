"""Point-in-time commands: ``lsnwal replay``, ``restore`` and ``prune``.

Owns the plan of a replay or restore (``Plan``: which segments, LSN and time
range, computed from segment headers and seals only), running it, and applying
archive retention by the archiver's own rules (modelled on WAL-G and
Litestream). Rules kept here:

* **Plans before work.** ``replay`` and ``restore`` validate the target the
  way the library does, then print which segments they will read and the LSN
  and time range before reading a record; ``--dry-run`` stops there.
* **Read-only means read-only.** ``replay``, the source of ``restore`` and
  every ``--dry-run`` only read and never take the LOCK; ``prune``'s plan is
  computed on a file system that refuses every write. A restore target must be
  new or empty and outside the source WAL.
* **Destructive means asked for** (WAL-G's rule): ``prune`` only lists what it
  would delete unless ``--yes`` is given; the list is exactly what ``--yes``
  deletes, counting the segments that opening the WAL seals and archives first.
* **Errors are one line.** A target that cannot be met raises
  ``RecoveryTargetError`` and a bad target directory ``CliError`` (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from .. import format as fmt
from .. import scanner
from ..archive import PruneCandidate
from ..config import WalConfig
from ..errors import RecoveryTargetError
from ..fs import OsFileSystem
from ..names import WalPaths, segment_name
from ..recovery import Analysis, Seg
from ._common import (
    CliError,
    _analysis,
    _check_wal_dir,
    _config,
    _fmt_bytes,
    _fmt_time,
    _marks,
    _progress,
    _ProgressFs,
    _seg_times,
    _with_records,
)

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
        lsn, last_time = min(found)  # a reused name: the first (oldest retained) mark
        stop = lsn if inclusive else lsn - 1
        last_time_exact = inclusive
        dup = f", the first of {len(found)} marks with this name" if len(found) > 1 else ""
        target = f"until mark {args.until_mark!r} (LSN {lsn}{dup}, {incl})"
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
    from ..replay import replay

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
    print(f"replayed {n} records{rng} in {elapsed:.2f} s: {kinds}; "
          "every byte checked against its CRC32C")
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
    from ..replay import replay, restore

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


def _as_archived(s: Seg, paths: WalPaths) -> Seg | None:
    """How a live (pending or active) segment will look in the archive once ``open`` seals it.

    Opening the WAL seals what recovery keeps outside the archive (a seal is added to
    an unsealed segment) and archives it under its first LSN's name; a segment
    holding no record is deleted instead (None).
    """
    if s.count == 0 and s.end.verdict != scanner.SEALED:
        return None
    v = Seg(os.path.join(paths.archive, segment_name(s.first_lsn)), "archive", s.first_lsn)
    v.header = s.header
    if s.end.verdict == scanner.SEALED and s.end.seal is not None:
        v.seal = s.end.seal
        v.size = os.path.getsize(s.path)
    else:
        v.seal = s.rebuilt_seal()
        v.size = s.data_end + len(fmt.encode_seal(v.seal))
    v.last_lsn, v.last_ts = s.last_lsn, s.last_ts
    return v


def _prune_plan(
    paths: WalPaths, cfg: WalConfig
) -> tuple[list[PruneCandidate], int, set[str]]:
    """Exactly what ``prune`` would delete now, computed read-only by the archiver's rules.

    ``prune`` opens the WAL first, and opening seals and archives the pending and
    active segments; the plan counts them as archived, so the dry run lists what
    the real run deletes (as long as the application writes nothing meanwhile).
    Returns the plan, the durable checkpoint and the archive names of every
    segment the open will archive.
    """
    from ..archive import Archiver

    an = _analysis(paths, cfg)
    fs = _ReadOnlyFs()
    future = [v for v in (_as_archived(s, paths) for s in an.live) if v is not None]
    # The archiver's thread prunes up to its checkpoint on its own; give it 0 so that it
    # never would, and ask plan() with the real, durable checkpoint from disk.
    archiver = Archiver(fs, fs.sync_backend(), paths, cfg, [*an.archive, *future],
                        checkpoint_lsn=0)
    try:
        names = {os.path.basename(v.path) for v in future}
        return archiver.plan(an.checkpoint_lsn), an.checkpoint_lsn, names
    finally:
        archiver.stop()


def _print_candidates(plan: list[PruneCandidate], out: TextIO) -> None:
    for c in plan:
        print(f"  {os.path.basename(c.path)}  LSN {c.first_lsn}..{c.last_lsn}  "
              f"{_fmt_bytes(c.size_bytes)}  ({c.reason})", file=out)


def cmd_prune(args: argparse.Namespace) -> int:
    """``lsnwal prune PATH``: list what retention deletes; delete it only with ``--yes``."""
    from ..wal import AsyncWalWriter

    cfg = _retention_config(args)
    paths = _check_wal_dir(args.path, cfg)
    limits = (cfg.archive_max_segments, cfg.archive_max_bytes, cfg.archive_max_age_s)
    if cfg.archive_enabled and all(v is None for v in limits):
        print("no retention limit given (--max-segments, --max-bytes, --max-age or "
              "--no-archive): nothing would be pruned", file=sys.stderr)
    plan, checkpoint, sealed = _prune_plan(paths, cfg)
    out = sys.stdout
    if args.dry_run or not args.yes:
        print(f"dry run: prune would delete {len(plan)} segment(s), "
              f"{_fmt_bytes(sum(c.size_bytes for c in plan))} (checkpoint LSN {checkpoint})",
              file=out)
        _print_candidates(plan, out)
        if not args.dry_run:
            print("nothing deleted: run again with --yes to delete these", file=out)
        return 0
    planned = {os.path.basename(c.path): c for c in plan}
    before = {e.name for e in os.scandir(paths.archive) if e.is_file()}
    # Opening takes the LOCK (WalLockedError while the application runs) and recovers:
    # it seals and archives the pending and active segments (counted in the plan).
    wal = AsyncWalWriter.open_or_create(paths.root, cfg, create_if_missing=False)
    try:
        wal.wait_archived()
        wal.prune(dry_run=False)
        wal.wait_archived()
        checkpoint = wal.checkpoint_lsn
    finally:
        wal.close()
    after = {e.name for e in os.scandir(paths.archive) if e.is_file()}
    gone = sorted((before | sealed | set(planned)) - after)
    size = sum(planned[n].size_bytes for n in gone if n in planned)
    print(f"pruned {len(gone)} segment(s), {_fmt_bytes(size)} (checkpoint LSN {checkpoint})",
          file=out)
    for name in gone:
        c = planned.get(name)
        print(f"  {name}  " + (f"LSN {c.first_lsn}..{c.last_lsn}  {_fmt_bytes(c.size_bytes)}  "
                               f"({c.reason})" if c else "(retention)"), file=out)
    return 0
