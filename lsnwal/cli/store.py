"""Store commands: ``store-check``, ``follow``, and ``restore``/``replay``/``verify``/``marks``
of an ``s3://`` (or ``file://``) source.

Owns the operator's view of an object store. Rules kept here (as in every
command): errors are one line, exit status 0 ok, 1 failure or damage (or a
store that fails the check), 2 bad usage; credentials come from the AWS
environment and are never printed; reading a store writes nothing to it.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ._common import CliError, _fmt_time

Command = Callable[[argparse.Namespace], int]


def cmd_store_check(args: argparse.Namespace) -> int:
    """``lsnwal store-check URL``: probe the store; exit 1 if it cannot hold a WAL archive."""
    from ..store import check_store, open_store, parse_url

    url = parse_url(args.url)
    store = open_store(url)
    check_bucket = getattr(store, "check_bucket", None)
    if check_bucket is not None:
        check_bucket()
    report = check_store(store, url.prefix)
    if args.json:
        print(json.dumps({"location": report.location, "ok": report.ok,
                          "probes": [p.__dict__ for p in report.probes]}, indent=2))
    else:
        print(f"store-check {report.location}")
        for p in report.probes:
            print(f"  {'ok  ' if p.ok else 'FAIL'}  {p.name:<18} {p.detail}")
        print("usable for shipping" if report.ok else
              "REFUSED for shipping: this store does not enforce what lsnwal relies on")
    return 0 if report.ok else 1


def _restore(args: argparse.Namespace) -> int:
    from ..replay import restore

    tgt = os.path.abspath(args.target)
    if os.path.exists(tgt) and (not os.path.isdir(tgt) or os.listdir(tgt)):
        raise CliError(f"restore target {tgt} exists and is not an empty directory")
    if args.dry_run:
        raise CliError("--dry-run is not available for a store source yet")
    t0 = time.perf_counter()
    result = restore(args.source, tgt, until_lsn=args.until_lsn, until_time=args.until_time,
                     until_mark=args.until_mark, inclusive=not args.exclusive)
    elapsed = time.perf_counter() - t0
    out = {"records": result.records, "first_lsn": result.first_lsn,
           "last_lsn": result.last_lsn, "seconds": elapsed, "target": result.target}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"restored {result.records} records (LSN {result.first_lsn}..{result.last_lsn}) "
              f"from {args.source.split('?')[0]} into {result.target} in {elapsed:.2f} s; "
              "writing to it and shipping to the same store starts a new timeline")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from ..replay import replay

    if args.dry_run:
        raise CliError("--dry-run is not available for a store source yet")
    n, first, last = 0, None, None
    t0 = time.perf_counter()
    for rec in replay(args.path, from_lsn=args.from_lsn, until_lsn=args.until_lsn,
                      until_time=args.until_time, until_mark=args.until_mark,
                      inclusive=not args.exclusive):
        n += 1
        first = first or rec
        last = rec
    elapsed = time.perf_counter() - t0
    out = {"records": n, "first_lsn": first.lsn if first else None,
           "last_lsn": last.lsn if last else None, "seconds": elapsed}
    if args.json:
        print(json.dumps({"result": out}, indent=2))
    else:
        rng = f" (LSN {first.lsn}..{last.lsn})" if first and last else ""
        print(f"replayed {n} records{rng} in {elapsed:.2f} s; "
              "every byte checked against its CRC32C")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..replay import verify

    report = verify(args.path)
    problems = [{"file": p.file, "offset": p.offset, "lsn": p.lsn, "message": p.message}
                for p in report.problems]
    if args.json:
        print(json.dumps({"path": args.path.split("?")[0], "ok": report.ok,
                          "segments": report.segments, "records": report.records,
                          "first_lsn": report.first_lsn, "last_lsn": report.last_lsn,
                          "problems": problems}, indent=2))
    else:
        print(f"{'OK' if report.ok else 'DAMAGED'}: {report.segments} segments, "
              f"{report.records} records (LSN {report.first_lsn}..{report.last_lsn})")
        for p in problems:
            print(f"  {p['file']} offset {p['offset']} LSN {p['lsn']}: {p['message']}")
    return 0 if report.ok else 1


def _marks(args: argparse.Namespace) -> int:
    from ..replay import list_marks

    marks = list_marks(args.path)
    if args.json:
        print(json.dumps([{"name": n, "lsn": lsn, "timestamp": ts, "time": _fmt_time(ts)}
                          for n, lsn, ts in marks], indent=2))
        return 0
    if not marks:
        print("no marks")
    for name, lsn, ts in marks:
        print(f"{lsn:>12}  {_fmt_time(ts)}  {name}")
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    """``lsnwal follow URL DIR``: keep a standby WAL directory up to date from the store."""
    from ..store.follow import Follower

    f = Follower(args.url, args.replica)
    stop = threading.Event()
    while True:
        copied = f.poll()
        st = f.status()
        if copied or args.once or args.json:
            line: dict[str, Any] = {"copied": copied, **st.__dict__}
            print(json.dumps(line) if args.json else
                  f"timeline {st.timeline}: {st.segments} segments, last LSN {st.last_lsn} "
                  f"({_fmt_time(st.last_record_ts) if st.last_record_ts else '-'}), "
                  f"lag {st.lag_s:.1f} s, {st.pending} pending"
                  + (f", error: {st.error}" if st.error else ""), flush=True)
        if args.once:
            return 0 if st.error is None else 1
        if stop.wait(args.interval):  # pragma: no cover - interrupted by Ctrl-C instead
            return 0


_STORE_VERSIONS: dict[str, tuple[str, Command]] = {
    "restore": ("source", _restore),
    "replay": ("path", _replay),
    "verify": ("path", _verify),
    "marks": ("path", _marks),
}


def _dispatch(name: str, local: Command) -> Command:
    attr, remote = _STORE_VERSIONS[name]

    def run(args: argparse.Namespace) -> int:
        from ..store.url import is_store_url

        return remote(args) if is_store_url(getattr(args, attr)) else local(args)

    return run


def add_store_commands(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``store-check`` and ``follow``; let restore/replay/verify/marks take a URL."""
    for name in _STORE_VERSIONS:
        p = sub.choices[name]
        p.set_defaults(func=_dispatch(name, p.get_default("func")))
        p.epilog = (p.epilog or "") + (
            "\n\nThe source may be a store URL (s3://bucket/prefix, ?timeline=N for an older "
            "history); credentials come from the AWS environment.")
    p = add("store-check", "probe an object store: create-if-absent, checksum enforcement, "
            "ranged reads, listing, compare-and-swap (exit 1 if it cannot hold a WAL archive)",
            cmd_store_check,
            ["lsnwal store-check s3://my-bucket/wal/app1",
             "lsnwal store-check 's3://wal/x?endpoint=http://127.0.0.1:8333' --json"])
    p.add_argument("url", metavar="URL", help="s3://bucket/prefix (or file:///dir)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = add("follow", "keep a standby WAL directory up to date from a store, as segments land",
            cmd_follow,
            ["lsnwal follow s3://my-bucket/wal/app1 /srv/replica",
             "lsnwal follow s3://my-bucket/wal/app1 /srv/replica --once --json"])
    p.add_argument("url", metavar="URL", help="the store the writer ships to")
    p.add_argument("replica", metavar="DIR", help="the standby WAL directory (created)")
    p.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="seconds between two polls (one LIST each; default 1)")
    p.add_argument("--once", action="store_true", help="poll once and exit")
    p.add_argument("--json", action="store_true", help="one JSON status line per poll")

