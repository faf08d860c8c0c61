"""The ``lsnwal`` command: inspect, dump, verify, replay, restore, prune and benchmark a WAL.

Owns the operator's view of a WAL directory (modelled on ``pg_waldump``,
``pg_verifybackup`` and the WAL-G / Litestream commands). This package only
re-exports ``main`` (the console script ``lsnwal = "lsnwal.cli:main"`` and
``python -m lsnwal``); the work is split by job:

* ``_parser``: argparse wiring, help texts, ``main(argv)``, errors and exit status;
* ``_common``: formatting, argument types, progress bars, reading a WAL;
* ``inspect``: ``info``, ``dump``, ``verify``, ``marks`` (read-only);
* ``pitr``: ``replay``, ``restore`` (plans before work) and ``prune``;
* ``bench``: ``bench``; ``demo`` delegates to ``lsnwal.demo``.

Rules every subcommand keeps: read-only commands (and every ``--dry-run``) only
read and never take the LOCK; a destructive command (``prune``) only lists what
it would do unless ``--yes`` is given; ``--json`` output is lossless (payloads
in base64) and a failure under ``--json`` is a JSON error object too; errors
are one line on stderr, exit status 0 ok (also when the reader of stdout goes
away, ``| head``), 1 failure or damage found, 2 bad usage, 130 interrupted;
progress is a ``tqdm`` bar on stderr only when stderr is a terminal and the
``cli`` extra is installed.
"""

from __future__ import annotations

from ._common import CliError
from ._common import _fmt_time as _fmt_time  # the tests check the time format through it
from ._parser import build_parser, main

__all__ = ["CliError", "build_parser", "main"]
