"""The ``lsnwal`` argument parser and ``main(argv)``: wiring, help texts, errors, exit status.

Owns every subcommand's arguments, help and examples, the dispatch to the
``cmd_*`` functions of ``inspect``, ``pitr`` and ``bench`` (and ``demo``, which
delegates to ``lsnwal.demo``), and how a failure reaches the operator. Rules
kept here:

* **Errors are one line.** An expected condition (missing directory, locked
  WAL, corruption, a target that cannot be met, bad arguments) prints
  ``lsnwal: error: ...`` on stderr and exits non-zero; a traceback means a bug.
  Exit status: 0 success, 1 failure (including ``verify`` finding damage),
  2 bad usage, 130 interrupted. A closed stdout (``| head``) stops quietly
  with status 0; under ``--json`` an error is also printed as a JSON object.
* **Help sits next to its argument.** Every subcommand's ``--help`` ends with
  examples; the options shared by several commands are added by one helper.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from ..errors import WalError
from ._common import (
    PROG,
    CliError,
    _age,
    _kind,
    _non_negative_int,
    _parse_time,
    _positive_float,
    _positive_int,
    _size,
)
from .bench import cmd_bench
from .inspect import cmd_dump, cmd_info, cmd_marks, cmd_verify
from .pitr import cmd_prune, cmd_replay, cmd_restore
from .top import cmd_top

# --------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    """``lsnwal demo``: see lsnwal.demo."""
    from .. import demo

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
    g.add_argument("--until-mark", metavar="NAME",
                   help="stop at the named mark (a name used twice: the first, oldest retained "
                        "one; use --until-lsn with the LSN 'lsnwal marks' shows for a later one)")
    p.add_argument("--exclusive", action="store_true",
                   help="stop just before the target instead of including it")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (segments, LSN and time range) and stop; reads only "
                        "headers and seals and changes nothing")


def build_parser() -> argparse.ArgumentParser:
    """The ``lsnwal`` argument parser (every subcommand, with examples in its --help)."""
    from .. import __version__

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
             "lsnwal dump data/wal --from 42 --limit 1 --hex",
             "lsnwal dump data/wal --json | jq -r .payload_b64 | base64 -d   # exact bytes"])
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
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line, lossless: the whole payload as payload_b64 "
                        "(payload_utf8 too when it is valid UTF-8)")
    p.add_argument("--hex", action="store_true",
                   help="the payload in hex (text: a hex dump; JSON: payload_hex)")
    p.add_argument("--preview", type=_non_negative_int, default=None, metavar="N",
                   help="show only the first N payload bytes (text default 48; JSON default: "
                        "all, with truncated=true when cut)")
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

    p = add("prune", "apply archive retention now: lists what it would delete, and deletes "
            "it only with --yes", cmd_prune,
            ["lsnwal prune data/wal --max-segments 1000          # list only",
             "lsnwal prune data/wal --max-bytes 20G --max-age 7d --yes",
             "lsnwal prune data/wal --no-archive --yes   # keep nothing the checkpoint covers"])
    p.add_argument("path", metavar="PATH", help="the WAL directory")
    p.add_argument("--max-segments", type=_positive_int, metavar="N",
                   help="keep at most N archived segments (archive_max_segments)")
    p.add_argument("--max-bytes", type=_size, metavar="SIZE",
                   help="keep at most SIZE of archive, e.g. 500M, 20G (archive_max_bytes)")
    p.add_argument("--max-age", type=_age, metavar="AGE",
                   help="drop segments whose newest record is older than AGE, with a unit: "
                        "30m, 12h, 7d, 2w, 3600s (a bare number is refused; archive_max_age_s)")
    p.add_argument("--no-archive", action="store_true",
                   help="delete every segment the checkpoint covers (archive_enabled=False)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dry-run", action="store_true",
                   help="only list what would be deleted and why (the default without --yes); "
                        "read-only, no LOCK taken")
    g.add_argument("--yes", "--confirm", dest="yes", action="store_true",
                   help="really delete: open the WAL (taking the LOCK) and apply retention")
    _add_dirs(p)

    p = add("marks", "list named restore points (read-only)", cmd_marks,
            ["lsnwal marks data/wal", "lsnwal marks data/wal --json"])
    p.add_argument("path", metavar="PATH", help="the WAL directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_dirs(p)

    p = add("top", "a live view: one line per interval with LSNs, rates, pending and archive "
            "(read-only; Ctrl-C stops)", cmd_top,
            ["lsnwal top data/wal", "lsnwal top data/wal --interval 5 --count 12",
             "lsnwal top data/wal --json --count 1 | jq .records_per_s"])
    p.add_argument("path", metavar="PATH", help="the WAL directory")
    p.add_argument("--interval", type=_positive_float, default=1.0, metavar="S",
                   help="seconds between samples (default 1)")
    p.add_argument("--count", type=_positive_int, metavar="N", help="stop after N samples")
    p.add_argument("--json", action="store_true", help="one JSON object per sample")
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
        # The reader went away (``lsnwal dump ... | head``): it has what it wanted, so
        # stop quietly with success; stdout goes to /dev/null so the exit flush is silent.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (CliError, WalError, OSError, ValueError) as exc:
        message = _one_line(exc)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        if getattr(args, "json", False):  # a script asked for JSON: give it a JSON answer
            path = getattr(args, "path", None) or getattr(args, "source", None)
            print(json.dumps({"ok": False, "path": path,
                              "error": {"type": type(exc).__name__, "message": message}},
                             indent=2))
        return 1
