"""Reading records back: ``replay`` (point in time), ``iter_raw``, ``list_marks``, ``restore``.

Owns the record-level read side on top of the live-safe segment chain
(``chain.py``, reached through ``WalReader``). Rules kept here:

* Records stream in LSN order, one decoded chunk (about 1 MiB) at a time; a
  segment is never loaded whole and records are built a chunk at a time.
* A replay stops exactly at its target. ``inclusive`` applies to every kind of
  target: the LSN, the mark, and for a time the *last record at or before it*.
  A target that cannot be met raises ``RecoveryTargetError`` before the first
  record instead of returning everything.
* ``durable_only`` never yields a record above the published watermark read when
  the replay starts (it may lag the writer, never lead it).
* Damage raises ``WalCorruptionError`` (file, offset, last good LSN); the
  ``stop_at_corruption`` mode ends the replay there instead.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
from collections.abc import Generator, Iterable, Iterator
from typing import TypeVar, cast

from . import format as fmt
from . import scanner
from .chain import Chain
from .config import WalConfig
from .errors import LsnUnavailableError, RecoveryTargetError, WalCorruptionError
from .fs import FileSystem
from .restore import RestoreResult, write_restored
from .segread import SegEnd
from .store.source import note_restored, read_source
from .verify import Problem, VerifyReport, verify

_DATA = int(fmt.RecordKind.DATA)
_MARK = int(fmt.RecordKind.MARK)
_H = fmt.RECORD_HEADER_SIZE
assert _H == 28  # inlined in the hot comprehensions below


class _Stop(Exception):
    """Damage met in ``stop_at_corruption`` mode: the replay ends quietly."""


def _stop(_path: str, _offset: int | None, _lsn: int | None, _msg: str) -> None:
    raise _Stop


def time_target(value: float | int | _dt.datetime) -> float:
    """Epoch seconds for ``until_time`` (an aware ``datetime`` or a number)."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("until_time must be an aware datetime (or epoch seconds)")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("until_time must be epoch seconds or an aware datetime")
    return float(value)


def _check_lsn(name: str, v: int | None) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise ValueError(f"{name} must be a positive int")


def tail_lsn(chain: Chain) -> int:
    """The last LSN the log holds now (0 when empty): seals, then the live tail's records."""
    firsts = chain.listing()
    if not firsts:
        return 0
    ends: list[SegEnd] = []
    for _ in chain.walk(from_lsn=firsts[-1], seals_only=True, ends=ends):
        pass
    return ends[-1].last_lsn if ends else firsts[-1] - 1


def marks(chain: Chain) -> list[tuple[str, int, float]]:
    """Every named restore point ``(name, lsn, timestamp)`` in LSN order.

    Archived segments give theirs from the seal; live ones are read.
    """
    out: list[tuple[str, int, float]] = []
    ends: list[SegEnd] = []
    for _loc, chunk in chain.walk(seals_only=True, ends=ends):
        if chunk is not None:
            data = chunk.data
            for rel, lsn, kind, ts, ln in chunk.recs:
                if kind == _MARK:
                    p = rel + _H
                    out.append((bytes(data[p : p + ln]).decode("utf-8", "replace"), lsn, ts))
    for end in ends:
        if end.seal is not None:
            out.extend(end.seal.marks)
    return sorted(set(out), key=lambda m: m[1])


def plan(
    chain: Chain,
    from_lsn: int | None,
    until_lsn: int | None,
    until_mark: str | None,
    inclusive: bool,
    durable: int | None,
) -> tuple[int | None, int | None]:
    """``(start, stop_lsn)`` for a replay; raises for targets that cannot be met."""
    if until_mark is not None:
        found = [lsn for name, lsn, _ts in marks(chain) if name == until_mark]
        if not found:
            raise RecoveryTargetError(f"no mark named {until_mark!r} in this WAL")
        until_lsn = min(found)
    stop: int | None = durable
    if until_lsn is not None:
        firsts = chain.listing()
        if durable is None or until_lsn > durable:
            last = tail_lsn(chain)
            if until_lsn > last:
                raise RecoveryTargetError(
                    f"target LSN {until_lsn} is past the end of the log (last LSN {last})")
        if not firsts or until_lsn < firsts[0]:
            raise RecoveryTargetError(
                f"target LSN {until_lsn} is before the oldest retained record "
                f"{firsts[0] if firsts else 1}")
        t = until_lsn if inclusive else until_lsn - 1
        stop = t if stop is None else min(stop, t)
    return from_lsn, stop


_T = TypeVar("_T")


class Batched(itertools.chain[_T]):
    """An iterator over items produced a list at a time, that can be closed like a generator.

    Iterating runs at C speed (``itertools.chain``); ``close()`` closes the generator of
    lists at once, releasing the segment it holds open (as closing a generator does).
    """

    _source: Generator[list[_T], None, None]

    @classmethod
    def over(cls, source: Generator[list[_T], None, None]) -> Batched[_T]:
        """Items of the lists ``source`` yields, in order."""
        it = cast("Batched[_T]", cls.from_iterable(source))
        it._source = source
        return it

    def close(self) -> None:
        """Stop early: close the source; nothing more is yielded (idempotent)."""
        self._source.close()
        for _ in self:  # the rest of the batch under way: dropped, as a generator would
            pass


def record_batches(
    chain: Chain,
    start: int | None,
    stop: int | None,
    t_target: float | None,
    inclusive: bool,
    kinds: frozenset[fmt.RecordKind] | None,
    quiet: bool,
    hint: tuple[int, int] | None,
) -> Generator[list[fmt.Record], None, None]:
    """The records from ``start`` to ``stop`` (and the time target), one list per decoded chunk.

    The records of a chunk are built by the decoder itself (``scanner.BUILD_RECORDS``);
    wrapped in ``Batched`` they are handed out with no Python frame per record.
    """
    lo = start if start is not None else 0
    hi = stop if stop is not None else 1 << 63
    ends: list[SegEnd] = []
    seen_any = False
    held: fmt.Record | None = None  # exclusive time target: yield a record once the next fits
    try:
        for _loc, chunk in chain.walk(start, stop, None if not quiet else _stop, ends=ends,
                                      hint=hint, build=scanner.BUILD_RECORDS):
            if chunk is None:
                continue
            batch: list[fmt.Record] = chunk.recs
            if batch[0].lsn < lo or batch[-1].lsn > hi:
                batch = [r for r in batch if lo <= r.lsn <= hi]
                if not batch:
                    continue
            if t_target is None:
                yield batch if kinds is None else [r for r in batch if r.kind in kinds]
                seen_any = True
                continue
            out: list[fmt.Record] = []
            for rec in batch:
                if rec.timestamp > t_target:
                    if not seen_any:
                        raise RecoveryTargetError(
                            f"target time {t_target} is before the first record "
                            f"(LSN {rec.lsn} at {rec.timestamp})")
                    yield out
                    return  # the held record (if any) was the target: left out
                seen_any = True
                if not inclusive:
                    rec, held = held, rec  # type: ignore[assignment]
                    if rec is None:
                        continue
                if kinds is None or rec.kind in kinds:
                    out.append(rec)
            yield out
    except _Stop:
        return
    if t_target is not None and not seen_any:
        raise RecoveryTargetError(f"target time {t_target} cannot be met: no record to replay")
    if start is not None and not seen_any and (stop is None or start <= stop):
        last = ends[-1].last_lsn if ends else 0
        if start > last + 1:
            raise LsnUnavailableError(f"LSN {start} was never written (last LSN is {last})")


def raw_batches(
    chain: Chain, start: int | None, stop: int | None, hint: tuple[int, int] | None = None
) -> Generator[list[tuple[int, bytes]], None, None]:
    """``(lsn, payload)`` of every DATA record from ``start`` to ``stop``, a list per chunk."""
    lo = start if start is not None else 0
    hi = stop if stop is not None else 1 << 63
    for _loc, chunk in chain.walk(start, stop, hint=hint, build=scanner.BUILD_RAW):
        if chunk is None or not chunk.recs:
            continue
        batch: list[tuple[int, bytes]] = chunk.recs
        if batch[0][0] < lo or batch[-1][0] > hi:
            batch = [r for r in batch if lo <= r[0] <= hi]
        yield batch


def replay(
    path: str | os.PathLike[str],
    *,
    config: WalConfig | None = None,
    from_lsn: int | None = None,
    until_lsn: int | None = None,
    until_time: float | _dt.datetime | None = None,
    until_mark: str | None = None,
    inclusive: bool = True,
    kinds: Iterable[fmt.RecordKind] | None = None,
    durable_only: bool = False,
    fs: FileSystem | None = None,
) -> Iterator[fmt.Record]:
    """Stream the WAL's records in LSN order, stopping exactly at the target.

    The same as ``open_reader(path, config).replay(...)``: safe next to a live
    writer. Raises (before yielding) ``LsnUnavailableError`` for a pruned or
    unwritten ``from_lsn`` and ``RecoveryTargetError`` for a target that cannot
    be met.
    """
    from .reader import WalReader

    # A store URL reads through a store view (listing only what a seek needs).
    path, fs = read_source(path, fs, seek=from_lsn if until_mark is None else None)
    return WalReader(path, config, fs=fs).replay(
        from_lsn=from_lsn, until_lsn=until_lsn, until_time=until_time,
        until_mark=until_mark, inclusive=inclusive, kinds=kinds, durable_only=durable_only)


def list_marks(
    path: str | os.PathLike[str], *, config: WalConfig | None = None, fs: FileSystem | None = None
) -> list[tuple[str, int, float]]:
    """Every named restore point as ``(name, lsn, timestamp)``, in LSN order."""
    from .reader import WalReader

    path, fs = read_source(path, fs)  # a store URL reads through a store view
    return WalReader(path, config, fs=fs).list_marks()


def validate(
    from_lsn: int | None, until_lsn: int | None, until_time: float | _dt.datetime | None,
    until_mark: str | None, kinds: Iterable[fmt.RecordKind] | None,
) -> tuple[float | None, frozenset[fmt.RecordKind] | None]:
    """Check a replay's arguments; return the time target and the kind set."""
    if sum(t is not None for t in (until_lsn, until_time, until_mark)) > 1:
        raise ValueError("give at most one of until_lsn, until_time, until_mark")
    t_target = time_target(until_time) if until_time is not None else None
    _check_lsn("from_lsn", from_lsn)
    _check_lsn("until_lsn", until_lsn)
    kind_set = None if kinds is None else frozenset(fmt.RecordKind(k) for k in kinds)
    return t_target, kind_set


def restore(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    config: WalConfig | None = None,
    until_lsn: int | None = None,
    until_time: float | _dt.datetime | None = None,
    until_mark: str | None = None,
    inclusive: bool = True,
    fs: FileSystem | None = None,
) -> RestoreResult:
    """Build a new WAL directory at ``target`` holding exactly the records up to the target.

    The source is only read. ``target`` must not exist or be empty. Opening the
    restored WAL continues one past the last LSN the target covers — also when
    the target selects no record — and keeps the source's checkpoint.
    """
    from .fs import OsFileSystem
    from .reader import WalReader

    source, src_fs = read_source(source, fs, hold=True)  # a store URL: a store view
    reader = WalReader(source, config, fs=src_fs)
    fs = fs or OsFileSystem()
    tgt = os.path.abspath(os.fspath(target))
    if fs.exists(tgt) and (not fs.isdir(tgt) or fs.listdir(tgt)):
        raise FileExistsError(f"restore target {tgt} exists and is not an empty directory")
    recs = reader.replay(until_lsn=until_lsn, until_time=until_time, until_mark=until_mark,
                         inclusive=inclusive)
    # A target that cannot be met may raise only at the first record: fetch it before
    # anything is created, so a failed restore leaves no half-made target behind.
    first = next(recs, None)
    if first is not None:
        result = write_restored(fs, tgt, itertools.chain((first,), recs),
                                checkpoint_lsn=reader.first_checkpoint())
    else:
        # No record selected: the restored WAL starts where the replay stopped.
        next_lsn, checkpoint = reader.position_after(until_lsn, until_time, until_mark,
                                                     inclusive)
        result = write_restored(fs, tgt, iter(()), next_lsn=next_lsn, checkpoint_lsn=checkpoint)
    note_restored(src_fs, tgt, result.last_lsn)  # from a store: the next open branches a timeline
    return result


__all__ = [
    "Problem", "VerifyReport", "WalCorruptionError", "list_marks", "replay", "restore", "verify",
]
