"""The read-only looks at a WAL: ``lsnwal info``, ``dump``, ``verify`` and ``marks``.

Owns what these four commands print, as text and as JSON (modelled on
``pg_waldump`` and ``pg_verifybackup``). Rules kept here:

* **Read-only means read-only.** Every command here only reads: through
  ``recovery.analyze``, ``replay`` and ``verify`` (the one decoder); none takes
  the LOCK or creates, renames or deletes a file, so all work while the
  application is writing. ``info`` finds the writer from the kernel's lock
  table, never by taking or testing the lock.
* **Damage is exit 1.** ``verify`` returns 1 when it finds a problem, 0 when
  the WAL is intact; other failures raise ``CliError`` (one line, exit 1).
* **Output is stable.** Text is for people; ``--json`` output (one document, or
  one object per line for ``dump``) is for scripts and keeps its keys.
* **JSON is lossless.** ``dump --json`` carries the whole payload in base64
  (``payload_b64``, or ``payload_hex``); only an explicit ``--preview`` cuts it,
  and then says so (``truncated``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from .. import format as fmt
from ..errors import WalError
from ..identity import read_identity
from ..names import WalPaths
from ._common import (
    _STATES,
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

#: payload bytes the text form of ``dump`` shows unless ``--preview`` says otherwise
TEXT_PREVIEW_BYTES = 48

# --------------------------------------------------------------------------- info


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
    # The newest *record's* time: an.last_ts also counts segment headers (a restore or an
    # open creates a new active segment), which would show when the WAL was last opened.
    last_ts = _seg_times(recs[-1])[1] if recs else None
    try:
        ident = read_identity(paths.root)
        wal_id = ident.wal_id if ident is not None else None
        id_note = "" if ident is not None else " (no identity file: written by lsnwal 0.1)"
    except WalError as exc:  # a damaged identity file: say so, still show the rest
        wal_id, id_note = None, f" ({exc})"
    info: dict[str, Any] = {
        "path": paths.root,
        "wal_id": wal_id,
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
        "last_time": last_ts,
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
    print(f"  wal id           {wal_id or '-'}{id_note}", file=out)
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
        print(f"  time range       {_fmt_time(first_ts)} .. {_fmt_time(last_ts)}", file=out)
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


def _record_json(rec: fmt.Record, preview: int | None, hex_payload: bool) -> dict[str, Any]:
    """One record as JSON, lossless unless ``preview`` cuts the payload.

    The payload is ``payload_b64`` (standard base64) or, with ``--hex``,
    ``payload_hex``; ``payload_utf8`` is added when the bytes shown are valid
    UTF-8, for ``jq``. ``truncated`` says whether ``--preview`` cut them.
    """
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
    shown = rec.payload if preview is None else rec.payload[:preview]
    if hex_payload:
        d["payload_hex"] = shown.hex()
    else:
        d["payload_b64"] = base64.b64encode(shown).decode("ascii")
    with contextlib.suppress(UnicodeDecodeError):
        d["payload_utf8"] = shown.decode("utf-8")
    d["truncated"] = len(shown) < len(rec.payload)
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
    from ..replay import replay

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
                preview = TEXT_PREVIEW_BYTES if args.preview is None else args.preview
                for line in _record_text(rec, preview, args.hex):
                    out.write(line + "\n")
            shown += 1
            if args.limit is not None and shown >= args.limit:
                break
    return 0


# --------------------------------------------------------------------------- verify


def cmd_verify(args: argparse.Namespace) -> int:
    """``lsnwal verify PATH``: exit 0 when intact, 1 when damaged."""
    from ..replay import verify

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


# --------------------------------------------------------------------------- marks


def cmd_marks(args: argparse.Namespace) -> int:
    """``lsnwal marks PATH``."""
    from ..replay import list_marks

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
