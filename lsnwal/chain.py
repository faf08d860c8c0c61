"""The segment chain as a reader next to a live writer sees it: list, locate, walk.

Owns the read side's view of the segment chain (``WalReader`` in ``reader.py``
and everything built on it read through here; one file is read by
``segread.py``). A reader takes no lock and
changes nothing; a live writer in another thread or process keeps rotating
(``active.wal`` -> ``pending/``), archiving (``pending/`` -> ``archive/``, maybe
compressed) and pruning (the oldest archived segments) while it reads. Rules
kept here (invariant 13: a reader never invents damage):

* **The chain is followed by LSN, never by a listing.** The segment after one
  ending at LSN ``n`` is the file whose *header* says ``n + 1``. It is looked up
  in the order segments move — ``active.wal``, ``pending/``, ``archive/`` (plain,
  then zstd) — so a segment that moves during the lookup is found at a later
  stop. Once open, a file is read through its descriptor: a rename or an unlink
  does not disturb the read.
* **The live tail ends at its last complete record.** An incomplete record, or an
  all-zero record header (a preallocated file), at the end of an unsealed
  segment means "no more records yet". Damage followed by valid records is read
  again a few times (a write may have been under way) before it is reported.
* **Missing is classified, never guessed.** A segment that cannot be found is the
  end of the log when nothing later exists; *pruned* (``LsnUnavailableError``)
  when the segment before it is gone too (retention only cuts the oldest end);
  otherwise a gap (``WalCorruptionError`` naming both neighbouring files). Pruned
  and gap are reported only when several looks over ~30 ms agree: a listing that
  races a move may show a segment under neither name for an instant. (Not needed,
  and skipped, when no WAL directory changed in the last second.)
* **Every loop makes progress or raises.** An archived segment must be sealed, and
  a segment that yields no record where records are expected is a gap.
* The published ``WATERMARK`` bounds ``durable_only`` reads: a reader never yields
  a record above the ``synced_lsn`` it read (the file may lag, never lead).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator

from . import format as fmt
from . import scanner
from .errors import LsnUnavailableError, WalCorruptionError
from .fs import FileSystem
from .names import WalPaths, parse_segment_name, segment_name
from .seekindex import seek_entries
from .segment import Chunk, read_seal
from .segread import Loc, Report, SegEnd, read_live, read_segment

#: how often a segment that is listed but was not found is looked for again
_RELOCATE_TRIES = 20
#: looks (with growing sleeps: about 30 ms in all) before a missing segment is reported
_SETTLE_LOOKS = 5
_SETTLE_S = 0.002
#: directories unchanged for this long cannot be in the middle of a move: no settling
_QUIET_S = 1.0

class Chain:
    """The segment chain of one WAL directory as a live reader sees it (module docstring)."""

    def __init__(self, fs: FileSystem, paths: WalPaths) -> None:
        self.fs = fs
        self.paths = paths
        self._active_floor = 0  # active.wal's first LSN only grows: below it, skip the look

    # ------------------------------------------------------------------ listing

    def _names(self, directory: str) -> list[int]:
        try:
            names = self.fs.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for name in names:
            parsed = parse_segment_name(name)
            if parsed is not None:
                out.append(parsed[0])
        return out

    def _active_first(self) -> int | None:
        try:
            fd = self.fs.open_read(self.paths.active)
        except FileNotFoundError:
            return None
        try:
            h = self._active_header(fd)
        finally:
            self.fs.close(fd)
        if h is None:
            return None
        self._active_floor = max(self._active_floor, h.first_lsn)
        return h.first_lsn

    def _active_header(self, fd: int) -> fmt.SegmentHeader | None:
        """The active file's header; None while it is not written yet (a fresh file)."""
        try:
            return fmt.decode_segment_header(self.fs.pread(fd, fmt.HEADER_SIZE, 0))
        except fmt.UnsupportedFormatError as exc:  # intact, from a newer lsnwal: refuse
            raise WalCorruptionError(f"bad segment header: {exc}", path=self.paths.active,
                                     offset=0) from None
        except fmt.HeaderError:
            return None

    def listing(self) -> list[int]:
        """First LSNs of every segment present, sorted (a moving segment is seen at least once).

        Looked at in the order segments move (active, pending, archive), so a
        segment that moves between two looks is seen twice, never missed.
        """
        firsts = set()
        act = self._active_first()
        if act is not None:
            firsts.add(act)
        firsts.update(self._names(self.paths.pending))
        firsts.update(self._names(self.paths.archive))
        return sorted(firsts)

    def _exists_named(self, lsn: int) -> str | None:
        """Path of a pending/archived file named for ``lsn`` (in the order files move)."""
        for path in (
            os.path.join(self.paths.pending, segment_name(lsn)),
            os.path.join(self.paths.archive, segment_name(lsn)),
            os.path.join(self.paths.archive, segment_name(lsn, True)),
        ):
            if self.fs.exists(path):
                return path
        return None

    # ------------------------------------------------------------------ locate

    def locate(self, lsn: int) -> Loc | None:
        """Open the segment whose header starts at ``lsn`` wherever it is now, or None."""
        fs = self.fs
        if lsn >= self._active_floor:
            try:
                fd = fs.open_read(self.paths.active)
            except FileNotFoundError:
                fd = -1
            if fd >= 0:
                try:
                    h = self._active_header(fd)
                except WalCorruptionError:
                    fs.close(fd)
                    raise
                if h is not None and h.first_lsn == lsn:
                    self._active_floor = max(self._active_floor, lsn)
                    return Loc(fd, self.paths.active, "active", h)
                fs.close(fd)
                if h is not None:
                    self._active_floor = max(self._active_floor, h.first_lsn)
        for path, state in (
            (os.path.join(self.paths.pending, segment_name(lsn)), "pending"),
            (os.path.join(self.paths.archive, segment_name(lsn)), "archive"),
            (os.path.join(self.paths.archive, segment_name(lsn, True)), "archive"),
        ):
            try:
                fd = fs.open_read(path)
            except FileNotFoundError:
                continue
            try:
                h = fmt.decode_segment_header(fs.pread(fd, fmt.HEADER_SIZE, 0))
            except fmt.HeaderError as exc:
                fs.close(fd)
                raise WalCorruptionError(f"bad segment header: {exc}", path=path, offset=0,
                                         lsn=lsn - 1) from None
            if h.first_lsn != lsn:
                fs.close(fd)
                raise WalCorruptionError(
                    f"file name says first LSN {lsn} but the header says {h.first_lsn}",
                    path=path, offset=0, lsn=lsn - 1)
            return Loc(fd, path, state, h)
        return None

    def overlap(self, visited: list[tuple[str, int, int]]) -> WalCorruptionError | None:
        """A listed segment starting inside the range of a walked one (``(path, first, last)``).

        The walk follows LSNs, so a segment that overlaps the chain is never met on
        the way; this looks for one among the names present now.
        """
        if not visited:
            return None
        lo, hi = visited[0][1], visited[-1][2]
        firsts = {first for _p, first, _l in visited}
        for f in self.listing():
            if lo < f <= hi and f not in firsts:
                owner = next((p for p, a, b in visited if a <= f <= b), visited[-1][0])
                other = self._exists_named(f) or self.paths.active
                return WalCorruptionError(
                    f"LSN overlap between segments: {owner} holds LSN {f}, "
                    f"{other} starts at LSN {f}", path=other, offset=0, lsn=f - 1)
        return None

    def missing(self, lsn: int, prev_path: str | None, prev_first: int = 0) -> Exception | None:
        """Why no segment starts at ``lsn``: None (the log ends there), pruned, or a gap.

        ``prev_path`` is the segment that ended at ``lsn - 1`` (None at the start)
        and started at ``prev_first``. Retention only ever removes the oldest
        segments, so a missing segment is pruned only when nothing older than it is
        left either; a segment starting inside the previous one is an overlap.
        """
        firsts = self.listing()
        inside = [f for f in firsts if prev_first < f < lsn] if prev_path else []
        if inside:
            other = self._exists_named(inside[0]) or self.paths.active
            return WalCorruptionError(
                f"LSN overlap between segments: {prev_path} ends at LSN {lsn - 1}, "
                f"{other} starts at LSN {inside[0]}", path=other, offset=0, lsn=lsn - 1)
        later = [f for f in firsts if f > lsn]
        if not later:
            return None
        nxt = self._exists_named(later[0]) or self.paths.active
        if not [f for f in firsts if f < lsn]:
            return LsnUnavailableError(
                f"LSN {lsn} is no longer retained (pruned while being read; the oldest "
                f"retained segment starts at LSN {later[0]})")
        return WalCorruptionError(
            f"LSN gap between segments: {prev_path or '(start)'} ends at LSN {lsn - 1}, "
            f"{nxt} starts at LSN {later[0]}", path=nxt, offset=0, lsn=lsn - 1)

    # ------------------------------------------------------------------ the chain

    def walk(
        self,
        from_lsn: int | None = None,
        stop_lsn: int | None = None,
        report: Report | None = None,
        seals_only: bool = False,
        ends: list[SegEnd] | None = None,
        hint: tuple[int, int] | None = None,
        build: int = scanner.BUILD_TUPLES,
    ) -> Generator[tuple[Loc, Chunk | None], None, None]:
        """Walk the chain from the segment holding ``from_lsn`` (default: the oldest).

        Yields ``(segment, None)`` when a segment is entered, then ``(segment, chunk)``
        per decoded chunk; with ``seals_only`` a sealed archived segment is not read.
        Each segment's ``SegEnd`` is appended to ``ends`` (if given) after its chunks.
        Stops after ``stop_lsn`` or at the end of the log; raises when a segment was
        pruned (``LsnUnavailableError``) or on a gap or damage (``WalCorruptionError``)
        unless ``report`` takes the damage (then the walk goes on where it can).
        ``hint`` is ``(first LSN, file offset of from_lsn or 0)`` of the segment
        holding ``from_lsn`` as an earlier look found it: no listing, no re-read.
        ``build`` says what a chunk's ``recs`` hold (``format.BUILD_*``).
        """
        loc = self.locate(hint[0]) if hint is not None else None
        if loc is not None and (loc.header.compressed or from_lsn is None):
            self.fs.close(loc.fd)
            loc = None
        resume = None
        if loc is not None and hint is not None and from_lsn is not None:
            if hint[1] > 0:
                resume = SegEnd(from_lsn - 1, False, None, 0, hint[1])
        else:
            loc = self.start(from_lsn)
        want = from_lsn if from_lsn is not None else 0
        seen: set[tuple[str, int]] = set()
        while loc is not None:
            new: Loc | None = None
            key = (loc.path, loc.header.first_lsn)
            if key in seen:  # never read a segment twice: a loop is damage, not a wait
                self.fs.close(loc.fd)
                raise WalCorruptionError("the segment chain loops back", path=loc.path,
                                         offset=0, lsn=loc.header.first_lsn - 1)
            seen.add(key)
            try:
                yield loc, None
                end = None
                if loc.state == "archive" and (seals_only or want > loc.header.first_lsn):
                    seal = read_seal(self.fs, loc.fd, self.fs.fsize(loc.fd))
                    if seal is not None and loc.header.first_lsn - 1 <= seal.last_lsn and (
                            seals_only or seal.last_lsn < want):
                        end = SegEnd(seal.last_lsn, True, seal, seal.record_count)
                live_end = False
                if end is None:
                    got: list[SegEnd] = []
                    for chunk in read_segment(self.fs, loc, want, got, report, resume, build):
                        yield loc, chunk
                        if stop_lsn is not None and chunk.last_lsn >= stop_lsn:
                            return
                    end = got[0]
                    while not end.sealed and not end.damaged and loc.state == "active":
                        # An unsealed end of the active file: the log's end for now,
                        # unless it was rotated while we read (its seal came later).
                        # A rotation writes the seal first, so a file that has no
                        # byte past our read (and is not preallocated) was not rotated.
                        grown = self.fs.fsize(loc.fd) > end.offset
                        if not grown or self._active_first() == loc.header.first_lsn:
                            live_end = True
                            break
                        got = []
                        for chunk in read_live(self.fs, loc, got, report, end, build):
                            yield loc, chunk
                            if stop_lsn is not None and chunk.last_lsn >= stop_lsn:
                                return
                        end = got[0]
                if ends is not None:
                    ends.append(end)
                nxt = end.last_lsn + 1
                if live_end or (stop_lsn is not None and nxt > stop_lsn):
                    return
                new = self.locate(nxt)
                if new is not None and new.path == loc.path:
                    self.fs.close(new.fd)  # the same file again (it holds no record)
                    new = None
                if new is not None and report is not None and loc.state == "pending" and \
                        not end.sealed and not end.damaged:
                    # Every record is there (the next segment follows on), but a rotated
                    # segment is always sealed: its seal or trailer is damaged.
                    report(loc.path, end.offset, end.last_lsn,
                           f"pending segment has no valid seal ({end.torn or 'cut short'}) "
                           "although a later segment follows")
                if new is None and end.damaged:
                    new = self._next_listed(loc.header.first_lsn)  # reported already
                elif new is None:
                    # Listed now, though locate() did not find it: the segment moved between
                    # our looks (active -> pending -> archive). Look again; never report a
                    # move as pruned or as a gap.
                    for _ in range(_RELOCATE_TRIES):
                        if nxt == loc.header.first_lsn or nxt not in self.listing():
                            break  # (a segment holding no record names itself: a gap)
                        new = self.locate(nxt)
                        if new is not None:
                            break
                if new is None and not end.damaged:
                    problem = self.missing(nxt, loc.path, loc.header.first_lsn)
                    settle = problem is not None and not self._quiet()
                    for i in range(_SETTLE_LOOKS if settle else 0):
                        # Pruned or a gap is final; a file in the middle of a move is not
                        # (a directory listing that races a rename may show neither name).
                        # Report only what several looks over a few milliseconds agree on.
                        time.sleep(_SETTLE_S * (i + 1))
                        new = self.locate(nxt)
                        if new is not None and new.path == loc.path:
                            self.fs.close(new.fd)  # the same file (it holds no record)
                            new = None
                        if new is not None:
                            problem = None
                            break
                        problem = self.missing(nxt, loc.path, loc.header.first_lsn)
                        if problem is None:
                            break
                    if problem is not None:
                        if report is None or isinstance(problem, LsnUnavailableError):
                            raise problem
                        assert isinstance(problem, WalCorruptionError)
                        report(problem.path or loc.path, 0, nxt - 1, problem.reason)
                        new = self._next_listed(nxt - 1)
            except BaseException:
                if new is not None:  # located already, never to be read: close it too
                    self.fs.close(new.fd)
                raise
            finally:
                self.fs.close(loc.fd)
            loc, resume = new, None

    def _quiet(self) -> bool:
        """True when no WAL directory changed for ``_QUIET_S``: then no rename, create or
        unlink can have raced the listing just taken, and what it shows is settled."""
        try:
            newest = max(self.fs.mtime(d) for d in (self.paths.root, self.paths.pending,
                                                    self.paths.archive) if self.fs.isdir(d))
        except (OSError, KeyError, ValueError):
            return False
        return time.time() - newest > _QUIET_S

    def _next_listed(self, after: int) -> Loc | None:
        """The first segment listed with a first LSN above ``after`` (to go on past damage)."""
        for first in self.listing():
            if first > after:
                loc = self.locate(first)
                if loc is not None:
                    return loc
        return None

    def start(self, from_lsn: int | None) -> Loc | None:
        """Open the segment holding ``from_lsn`` (default: the oldest retained one).

        A seek looks at the active header, ``pending/`` and the archive's seek index
        before it lists the archive; whatever it opens is checked against its
        header, and the walk from there follows the chain, so a stale index only
        costs reading past a few seals. Raises ``LsnUnavailableError`` when
        ``from_lsn`` is older than every retained segment.
        """
        if from_lsn is not None:
            loc = self._seek(from_lsn)
            if loc is not None:
                return loc
        for attempt in range(50):
            firsts = self.listing()
            if not firsts:
                return None
            if from_lsn is None:
                cand = firsts[0]
            else:
                below = [f for f in firsts if f <= from_lsn]
                if not below and attempt < _SETTLE_LOOKS and not self._quiet():  # moving?
                    time.sleep(_SETTLE_S * (attempt + 1))
                    continue
                if not below:
                    raise LsnUnavailableError(
                        f"LSN {from_lsn} is no longer retained (the oldest retained record "
                        f"is {firsts[0]})")
                cand = below[-1]
            loc = self.locate(cand)
            if loc is not None:
                return loc
            # moved out of sight between the listing and the open (pruned): look again
        raise LsnUnavailableError(f"LSN {from_lsn} could not be found (pruned while reading)")

    def _seek(self, from_lsn: int) -> Loc | None:
        act = self._active_first()
        cands = [act] if act is not None and act <= from_lsn else []
        if not cands:
            below = [f for f in self._names(self.paths.pending) if f <= from_lsn]
            cands = [max(below)] if below else []
        if not cands:
            entries = seek_entries(self.fs, self.paths.root, from_lsn)
            cands = [entries[0][0]] if entries else []
        for cand in cands:
            try:
                loc = self.locate(cand)
            except WalCorruptionError:
                return None  # let the listing path find (and report) it
            if loc is not None:
                return loc
        return None


def _name_lsn(path: str) -> int | None:
    parsed = parse_segment_name(os.path.basename(path))
    return parsed[0] if parsed is not None else None
