"""``open_reader`` / ``WalReader``: the one way lsnwal reads a WAL it does not write.

Owns the public reader object. A reader takes no lock and writes nothing; it is
safe next to a live writer in another thread or process (invariant 13: it never
reports a gap or damage that is not on disk). ``replay``, ``restore``,
``verify``, ``list_marks``, ``collect_all_segments`` and the read-only CLI
commands all read through it; the segment chain itself lives in ``chain.py``
and the records in ``replay.py``.

Rules kept here:

* ``synced_lsn`` is what the writer published in ``WATERMARK`` (0 before the
  first publish). It may lag the writer, never lead it, so
  ``durable_only=True`` never yields a record that a crash could take back.
* A reader is cheap: it holds no descriptor between calls; a follower holds
  the one segment it is reading.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING

from . import format as fmt
from .chain import Chain
from .config import WalConfig
from .fs import FileSystem, OsFileSystem
from .names import WalPaths
from .replay import Batched, marks, plan, raw_batches, record_batches, tail_lsn, validate
from .watermark import Watermark, read_watermark

if TYPE_CHECKING:
    from .recovery import SegmentInfo
    from .verify import VerifyReport

#: a follower waits at most this long between two looks when no wake-up comes
FOLLOW_POLL_MAX_S = 0.5


class WalReader:
    """A read-only, lock-free view of one WAL directory.

    ``open_reader(path, config)`` builds one; ``config`` matters only when
    ``pending_dir`` or ``archive_dir`` were moved elsewhere.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: WalConfig | None = None,
        *,
        fs: FileSystem | None = None,
    ) -> None:
        self.config = config or WalConfig()
        self.fs: FileSystem = fs or OsFileSystem()
        self.paths = WalPaths.of(path, self.config)
        if not self.fs.isdir(self.paths.root):
            raise FileNotFoundError(f"no WAL directory at {self.paths.root}")
        self.chain = Chain(self.fs, self.paths)
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop followers at their next step (idempotent); the reader holds nothing else."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    def __enter__(self) -> WalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ watermark

    def watermark(self) -> Watermark | None:
        """The watermark the writer published last, or None when there is none."""
        return read_watermark(self.paths.root, self.fs)

    @property
    def synced_lsn(self) -> int:
        """The durable LSN the writer published (0 when it published none yet).

        It may lag the writer's own ``synced_lsn``, never lead it: every record at
        or below it is on stable storage.
        """
        wm = self.watermark()
        return wm.synced_lsn if wm is not None else 0

    @property
    def checkpoint_lsn(self) -> int:
        """The application's checkpoint as the files show it (watermark, newest header)."""
        wm = self.watermark()
        cp = wm.checkpoint_lsn if wm is not None else 0
        for first in reversed(self.chain.listing()):
            loc = self.chain.locate(first)
            if loc is not None:
                self.fs.close(loc.fd)
                return max(cp, loc.header.checkpoint_lsn)
        return cp

    def first_checkpoint(self) -> int:
        """The checkpoint at the start of the retained log (0 if nothing is retained).

        The oldest retained segment's header records the checkpoint when it was
        made; and since retention never prunes past the checkpoint, every pruned
        LSN (below that segment) was covered by one: the larger of the two.
        """
        for first in self.chain.listing():
            loc = self.chain.locate(first)
            if loc is not None:
                self.fs.close(loc.fd)
                return max(loc.header.checkpoint_lsn, first - 1)
        return 0

    # ------------------------------------------------------------------ reading

    def replay(
        self,
        from_lsn: int | None = None,
        until_lsn: int | None = None,
        until_time: float | _dt.datetime | None = None,
        until_mark: str | None = None,
        inclusive: bool = True,
        kinds: Iterable[fmt.RecordKind] | None = None,
        durable_only: bool = False,
    ) -> Iterator[fmt.Record]:
        """Records in LSN order from ``from_lsn`` (default: the oldest retained) to the target.

        Targets are checked before the first record (``RecoveryTargetError``,
        ``LsnUnavailableError``). With ``durable_only`` no record above the
        published ``synced_lsn`` is yielded.
        """
        t_target, kind_set = validate(from_lsn, until_lsn, until_time, until_mark, kinds)
        durable = self.synced_lsn if durable_only else None
        start, stop = plan(self.chain, from_lsn, until_lsn, until_mark, inclusive, durable)
        quiet = self.config.recovery_mode == "stop_at_corruption"
        hint = self._check_from(start)
        return Batched.over(record_batches(self.chain, start, stop, t_target, inclusive,
                                           kind_set, quiet, hint))

    def _check_from(self, start: int | None) -> tuple[int, int] | None:
        """Find ``start``'s segment now: a pruned start raises here, not at the first record."""
        if start is None:
            return None
        loc = self.chain.start(start)
        if loc is None:
            return None
        self.fs.close(loc.fd)
        return loc.header.first_lsn, 0

    def iter_raw(
        self,
        from_lsn: int | None = None,
        until_lsn: int | None = None,
        durable_only: bool = False,
    ) -> Iterator[tuple[int, bytes]]:
        """``(lsn, payload)`` of the DATA records in range: the fastest way to read a WAL."""
        validate(from_lsn, until_lsn, None, None, None)
        durable = self.synced_lsn if durable_only else None
        start, stop = plan(self.chain, from_lsn, until_lsn, None, True, durable)
        return Batched.over(raw_batches(self.chain, start, stop, self._check_from(start)))

    def list_marks(self) -> list[tuple[str, int, float]]:
        """Every named restore point as ``(name, lsn, timestamp)``, in LSN order."""
        return marks(self.chain)

    def last_lsn(self) -> int:
        """The last LSN in the log now (0 when it holds none)."""
        return tail_lsn(self.chain)

    def position_after(
        self,
        until_lsn: int | None,
        until_time: float | _dt.datetime | None,
        until_mark: str | None,
        inclusive: bool,
    ) -> tuple[int, int]:
        """``(next LSN, checkpoint)`` of a restore whose target selected no record."""
        cp = self.first_checkpoint()
        if until_lsn is None and until_mark is None and until_time is None:
            return self.last_lsn() + 1, cp
        _start, stop = plan(self.chain, None, until_lsn, until_mark, inclusive, None)
        if stop is not None:
            return stop + 1, cp
        firsts = self.chain.listing()  # a time target that selects nothing: the first record
        return (firsts[0] if firsts else self.last_lsn() + 1), cp

    def segments(self) -> list[SegmentInfo]:
        """Every segment of the chain in LSN order (archive headers and seals, live records)."""
        from .verify import segment_infos

        return segment_infos(self)

    def verify(self) -> VerifyReport:
        """Check every header, seal, CRC and the LSN continuity; never raises for damage."""
        from .verify import verify_reader

        return verify_reader(self)

    # ------------------------------------------------------------------ following

    def follow(
        self,
        from_lsn: int | None = None,
        durable_only: bool = True,
        poll_max_s: float = FOLLOW_POLL_MAX_S,
    ) -> Iterator[fmt.Record]:
        """Yield records as they become durable (or written), forever, until ``close()``.

        Follows rotations, archiving, compression and pruning; a follower that
        falls behind retention gets ``LsnUnavailableError``, never a jump.
        """
        from .follow import Follower

        return Follower(self, from_lsn, durable_only, poll_max_s).run()

    def follow_async(
        self,
        from_lsn: int | None = None,
        durable_only: bool = True,
        poll_max_s: float = FOLLOW_POLL_MAX_S,
    ) -> AsyncIterator[fmt.Record]:
        """``follow`` for ``async for``: waiting never blocks the event loop."""
        from .follow import Follower

        return Follower(self, from_lsn, durable_only, poll_max_s).run_async()


def open_reader(path: str | os.PathLike[str], config: WalConfig | None = None) -> WalReader:
    """A read-only, lock-free reader of the WAL at ``path`` (see ``WalReader``)."""
    return WalReader(path, config)
