"""Helpers every ``lsnwal`` subcommand shares: formatting, argument types, progress, reading a WAL.

Owns ``CliError``, how times and byte counts are printed, the argparse value
types (times, counts, sizes, ages, record kinds), the progress bar and the
read-only analysis of a WAL directory. Rules kept here:

* **Read-only means read-only.** ``_analysis`` goes through
  ``recovery.analyze`` (the one decoder), never takes the LOCK and never
  creates, renames or deletes a file, so it works while the application is
  writing; a live writer may rotate or archive between listings, so it looks
  again (``_RETRIES`` times).
* **Errors are one line.** An expected condition raises ``CliError`` (exit 1),
  a bad argument value ``argparse.ArgumentTypeError`` (exit 2); ``_parser``
  prints either as one line, never a traceback.
* **Progress** is a ``tqdm`` bar on stderr, only when stderr is a terminal and
  the optional ``cli`` extra is installed; otherwise nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from .. import format as fmt
from ..config import WalConfig
from ..errors import WalCorruptionError
from ..fs import OsFileSystem
from ..identity import IDENTITY_NAME, is_wal_dir
from ..names import ACTIVE_NAME, WalPaths
from ..recovery import Analysis, Seg, analyze

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
_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


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
    """``--max-age``: a positive number with a unit (``3600s``, ``90m``, ``36h``, ``7d``, ``2w``).

    A bare number is refused: ``--max-age 7`` meant as days would otherwise be
    seven seconds and delete almost the whole archive.
    """
    number, unit = _split_unit(text)
    if unit == "":
        raise argparse.ArgumentTypeError(
            f"{text!r} has no unit; say 7d, 12h, 30m, 3600s or 2w (a bare number is refused "
            "so that days are never read as seconds)")
    if unit not in _AGE_UNITS or number <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use a positive age with a unit s, m, h, d or w (e.g. 36h, 7d)")
    return number * _AGE_UNITS[unit]


def _kind(text: str) -> fmt.RecordKind:
    try:
        return fmt.RecordKind[text.upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r}: use data, checkpoint or mark") from None


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
    if not is_wal_dir(paths.root) and not any(
        os.path.exists(p) for p in (paths.pending, paths.archive)
    ):
        raise CliError(
            f"{paths.root} is not an lsnwal directory (no {IDENTITY_NAME} identity file, "
            f"{ACTIVE_NAME}, pending/ or archive/)"
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
