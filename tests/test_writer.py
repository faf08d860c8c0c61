"""The writer: starting values, LSN assignment, bad input, rotation, reopen, timestamps."""

from __future__ import annotations

import array
import hashlib
import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import lsnwal
from lsnwal import RecordKind, WalConfig
from lsnwal.spares import SPARE_PREFIX, SPARE_SUFFIX

# --------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (pre-created empty spare files left out)."""
    out: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(SPARE_PREFIX) and name.endswith(SPARE_SUFFIX):
                continue  # made asynchronously by the spare pool; empty, hold no data
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def settle(wal: lsnwal.AsyncWalWriter) -> None:
    """Make the on-disk state stable: write out buffers, fsync, finish archiving."""
    wal.sync()
    assert wal.wait_archived(timeout=10)


def lsns(wal: lsnwal.AsyncWalWriter) -> tuple[int, int, int, int]:
    """The WAL's LSN counters."""
    return wal.last_lsn, wal.current_lsn, wal.synced_lsn, wal.checkpoint_lsn


def records(path: Path, config: WalConfig | None = None) -> list[lsnwal.Record]:
    """Every record of the WAL at ``path``."""
    return list(lsnwal.replay(path, config=config))


# --------------------------------------------------------------------------- starting values


def test_new_wal_starting_values(wal_dir: Path) -> None:
    """A new WAL starts at last 0, synced 0, checkpoint 0, current 1, no failure."""
    with lsnwal.open(wal_dir) as wal:
        assert wal.last_lsn == 0
        assert wal.synced_lsn == 0
        assert wal.checkpoint_lsn == 0
        assert wal.current_lsn == 1
        assert wal.failure is None
        assert not wal.closed
    assert wal.closed


def test_layout_is_created(wal_dir: Path) -> None:
    """open() creates the LOCK file, the active segment, pending/ and archive/."""
    with lsnwal.open(wal_dir):
        assert (wal_dir / "LOCK").is_file()
        assert (wal_dir / "active.wal").is_file()
        assert (wal_dir / "pending").is_dir()
        assert (wal_dir / "archive").is_dir()


# --------------------------------------------------------------------------- appends


def test_append_returns_gap_free_lsns(open_wal: lsnwal.AsyncWalWriter) -> None:
    """append returns 1, 2, 3 and the counters follow."""
    assert [open_wal.append(b"a"), open_wal.append(b"b"), open_wal.append(b"c")] == [1, 2, 3]
    assert open_wal.last_lsn == 3
    assert open_wal.current_lsn == 4


def test_append_accepts_bytes_like(open_wal: lsnwal.AsyncWalWriter, wal_dir: Path) -> None:
    """bytes, bytearray, C-contiguous memoryviews and buffers, and bytes subclasses are stored."""

    class B(bytes):
        pass

    payloads: list[Any] = [
        b"bytes",
        bytearray(b"bytearray"),
        memoryview(b"memoryview"),
        memoryview(b"xxsliceyy")[2:7],
        B(b"subclass"),
        b"",
        memoryview(array.array("i", [1, 2])),
        array.array("d", [1.5, -2.0]),
        memoryview(b"abcdef").cast("B", (2, 3)),
    ]
    got = [open_wal.append(p) for p in payloads]
    assert got == list(range(1, len(payloads) + 1))
    open_wal.close()
    assert [r.payload for r in records(wal_dir)] == [memoryview(p).tobytes() for p in payloads]
    assert all(type(r.payload) is bytes for r in records(wal_dir))


@pytest.mark.parametrize(
    "bad",
    [memoryview(b"a-b-c-")[::2], memoryview(bytearray(20))[1::3]],
    ids=["every-2nd", "every-3rd"],
)
def test_non_contiguous_buffer_is_refused_and_changes_nothing(
    open_wal: lsnwal.AsyncWalWriter, wal_dir: Path, bad: memoryview
) -> None:
    """A non-contiguous buffer raises a TypeError that says so, using no LSN and no byte."""
    before = (wal_dir / "active.wal").read_bytes()
    for call in (open_wal.append, lambda p: open_wal.append_batch([b"ok", p])):
        with pytest.raises(TypeError, match="non-contiguous"):
            call(bad)
    assert open_wal.last_lsn == 0
    assert (wal_dir / "active.wal").read_bytes() == before


def test_append_copies_mutable_payload(open_wal: lsnwal.AsyncWalWriter, wal_dir: Path) -> None:
    """Changing a bytearray after append does not change the stored record."""
    buf = bytearray(b"original")
    open_wal.append(buf)
    buf[:] = b"changed!"
    open_wal.append_batch([buf])
    buf[:] = b"later!!!"
    open_wal.close()
    assert [r.payload for r in records(wal_dir)] == [b"original", b"changed!"]


def test_append_batch_returns_range(open_wal: lsnwal.AsyncWalWriter, wal_dir: Path) -> None:
    """append_batch returns the range of the new LSNs, continuing after single appends."""
    assert open_wal.append(b"first") == 1
    r = open_wal.append_batch([b"a", bytearray(b"b"), memoryview(b"c")])
    assert r == range(2, 5)
    assert open_wal.append_batch(iter([b"d", b"e"])) == range(5, 7)
    assert open_wal.append_batch([]) == range(7, 7)
    assert open_wal.append(b"last") == 7
    open_wal.close()
    recs = records(wal_dir)
    assert [r.lsn for r in recs] == list(range(1, 8))
    assert [r.payload for r in recs] == [b"first", b"a", b"b", b"c", b"d", b"e", b"last"]
    assert all(r.kind is RecordKind.DATA for r in recs)


def test_append_batch_spanning_segments(wal_dir: Path, small_config: WalConfig) -> None:
    """A batch bigger than a segment rotates as needed and keeps every record in order."""
    payloads = [bytes([i % 251]) * (50 + i % 300) for i in range(300)]
    with lsnwal.open(wal_dir, small_config) as wal:
        assert wal.append_batch(payloads) == range(1, 301)
    assert [r.payload for r in records(wal_dir, small_config)] == payloads
    assert len(lsnwal.collect_all_segments(wal_dir, small_config)) > 5


# --------------------------------------------------------------------------- invariant 10

BIG = 100  # max_record_bytes used by the bad-input tests


def _setup(wal: lsnwal.AsyncWalWriter) -> None:
    wal.append_batch([b"r%d" % i for i in range(1, 40)] + [b"z" * BIG])
    wal.checkpoint(20)
    wal.mark("m1")


BAD_INPUTS: list[tuple[str, type[BaseException], Callable[[lsnwal.AsyncWalWriter], object]]] = [
    ("append-str", TypeError, lambda w: w.append("text")),  # type: ignore[arg-type]
    ("append-int", TypeError, lambda w: w.append(5)),  # type: ignore[arg-type]
    ("append-None", TypeError, lambda w: w.append(None)),  # type: ignore[arg-type]
    ("append-list", TypeError, lambda w: w.append([1, 2])),  # type: ignore[arg-type]
    ("append-list-of-bytes", TypeError, lambda w: w.append([b"a"])),  # type: ignore[arg-type]
    ("append-too-large", lsnwal.RecordTooLargeError, lambda w: w.append(b"x" * (BIG + 1))),
    (
        "append-too-large-view",
        lsnwal.RecordTooLargeError,
        lambda w: w.append(memoryview(bytearray(BIG + 1))),
    ),
    ("batch-str-item", TypeError, lambda w: w.append_batch([b"ok", "bad"])),  # type: ignore[list-item]
    ("batch-None-item", TypeError, lambda w: w.append_batch([b"ok", b"ok", None])),  # type: ignore[list-item]
    ("batch-int-item", TypeError, lambda w: w.append_batch([1])),  # type: ignore[list-item]
    ("batch-of-str", TypeError, lambda w: w.append_batch("abc")),  # type: ignore[arg-type]
    ("batch-of-bytes-object", TypeError, lambda w: w.append_batch(b"abc")),  # type: ignore[arg-type]
    (
        "batch-too-large-item",
        lsnwal.RecordTooLargeError,
        lambda w: w.append_batch([b"ok"] * 10 + [b"x" * (BIG + 1)] + [b"ok"]),
    ),
    (
        "batch-too-large-first",
        lsnwal.RecordTooLargeError,
        lambda w: w.append_batch([bytearray(BIG + 1), b"ok"]),
    ),
    ("checkpoint-above-last", ValueError, lambda w: w.checkpoint(w.last_lsn + 1)),
    ("checkpoint-far-above-last", ValueError, lambda w: w.checkpoint(10**12)),
    ("checkpoint-below-current", ValueError, lambda w: w.checkpoint(19)),
    ("checkpoint-negative", ValueError, lambda w: w.checkpoint(-1)),
    ("checkpoint-str", TypeError, lambda w: w.checkpoint("30")),  # type: ignore[arg-type]
    ("checkpoint-float", TypeError, lambda w: w.checkpoint(30.0)),  # type: ignore[arg-type]
    ("checkpoint-None", TypeError, lambda w: w.checkpoint(None)),  # type: ignore[arg-type]
    ("checkpoint-bool", TypeError, lambda w: w.checkpoint(True)),
    ("checkpoint-payload-str", TypeError, lambda w: w.checkpoint(30, "x")),  # type: ignore[arg-type]
    (
        "checkpoint-payload-too-large",
        lsnwal.RecordTooLargeError,
        lambda w: w.checkpoint(30, b"p" * BIG),
    ),
    ("mark-empty", ValueError, lambda w: w.mark("")),
    ("mark-bytes", TypeError, lambda w: w.mark(b"name")),  # type: ignore[arg-type]
    ("mark-int", TypeError, lambda w: w.mark(3)),  # type: ignore[arg-type]
    ("mark-None", TypeError, lambda w: w.mark(None)),  # type: ignore[arg-type]
    ("mark-256-ascii", ValueError, lambda w: w.mark("n" * 256)),
    ("mark-256-utf8-bytes", ValueError, lambda w: w.mark("\u00e9" * 128)),
    ("mark-lone-surrogate", ValueError, lambda w: w.mark("a\ud800")),
]


@pytest.mark.parametrize(("case", "exc", "call"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_changes_nothing(
    wal_dir: Path,
    case: str,
    exc: type[BaseException],
    call: Callable[[lsnwal.AsyncWalWriter], object],
) -> None:
    """Each bad input raises the documented error and leaves LSNs and every file byte unchanged."""
    cfg = WalConfig(segment_max_bytes=4096, max_record_bytes=BIG)
    with lsnwal.open(wal_dir, cfg) as wal:
        _setup(wal)
        settle(wal)
        before_lsns = lsns(wal)
        before_files = snapshot(wal_dir)
        with pytest.raises(exc):
            call(wal)
        assert lsns(wal) == before_lsns
        settle(wal)
        assert lsns(wal) == before_lsns
        assert snapshot(wal_dir) == before_files
        # the WAL still works and the next LSN is the one that was next before
        assert wal.append(b"after") == before_lsns[1]
    recs = records(wal_dir, cfg)
    assert [r.lsn for r in recs] == list(range(1, before_lsns[1] + 1))
    assert recs[-1].payload == b"after"


def test_limit_is_inclusive(wal_dir: Path) -> None:
    """A payload of exactly max_record_bytes is accepted (the bound is not off by one)."""
    cfg = WalConfig(max_record_bytes=BIG)
    with lsnwal.open(wal_dir, cfg) as wal:
        assert wal.append(b"x" * BIG) == 1
        assert wal.append_batch([b"y" * BIG]) == range(2, 3)


CLOSED_CALLS: list[tuple[str, Callable[[lsnwal.AsyncWalWriter], object]]] = [
    ("append", lambda w: w.append(b"x")),
    ("append_batch", lambda w: w.append_batch([b"x", b"y"])),
    ("append_batch-empty", lambda w: w.append_batch([])),
    ("checkpoint", lambda w: w.checkpoint(1)),
    ("mark", lambda w: w.mark("after-close")),
    ("sync", lambda w: w.sync()),
    ("sync_async", lambda w: w.sync_async()),
]


@pytest.mark.parametrize("call", [c[1] for c in CLOSED_CALLS], ids=[c[0] for c in CLOSED_CALLS])
def test_call_after_close_changes_nothing(
    wal_dir: Path, small_config: WalConfig, call: Callable[[lsnwal.AsyncWalWriter], object]
) -> None:
    """After close() every writing call raises WalClosedError and no file changes."""
    wal = lsnwal.open(wal_dir, small_config)
    wal.append_batch([b"rec"] * 5)
    wal.close()
    wal.close()  # idempotent
    before = snapshot(wal_dir)
    with pytest.raises(lsnwal.WalClosedError):
        call(wal)
    assert snapshot(wal_dir) == before
    assert wal.last_lsn == 5
    with lsnwal.open(wal_dir, small_config) as again:
        assert again.current_lsn == 6


# --------------------------------------------------------------------------- rotation


def test_rotation_respects_segment_max_bytes(wal_dir: Path, small_config: WalConfig) -> None:
    """No segment exceeds segment_max_bytes unless it holds one record that is larger alone."""
    limit = small_config.segment_max_bytes
    sizes = [1, 10, 100, 500, 1000, 3000, 4000, 5000, 9000, 17, 0, 2500, 2500, 2500]
    payloads = [bytes([i]) * n for i, n in enumerate(itertools.islice(itertools.cycle(sizes), 80))]
    big_lsns: set[int] = set()
    with lsnwal.open(wal_dir, small_config) as wal:
        for i, p in enumerate(payloads):
            lsn = wal.append(p) if i % 3 else wal.append_batch([p])[0]
            if len(p) > limit - 200:
                big_lsns.add(lsn)
            if i % 17 == 0:
                wal.sync()
        wal.sync()
        assert wal.wait_archived(timeout=10)
    segs = lsnwal.collect_all_segments(wal_dir, small_config)
    assert len(segs) > 10
    for s in segs:
        assert s.size_bytes == os.path.getsize(s.path)
        if s.size_bytes > limit:
            assert s.first_lsn == s.last_lsn, f"{s} exceeds the limit with several records"
            assert s.first_lsn in big_lsns
    # every record too big for a shared segment sits alone
    by_lsn = {lsn: s for s in segs for lsn in range(s.first_lsn, s.last_lsn + 1)}
    for lsn in big_lsns:
        if len(payloads[lsn - 1]) > limit:
            assert by_lsn[lsn].first_lsn == by_lsn[lsn].last_lsn == lsn
    # first/last LSNs chain without gaps
    for a, b in itertools.pairwise(segs):
        assert b.first_lsn == a.last_lsn + 1
    assert [r.payload for r in records(wal_dir, small_config)] == payloads


def test_record_larger_than_segment(wal_dir: Path, small_config: WalConfig) -> None:
    """A record larger than segment_max_bytes is written, and replays byte for byte."""
    big = os.urandom(3 * small_config.segment_max_bytes)
    with lsnwal.open(wal_dir, small_config) as wal:
        assert wal.append(b"before") == 1
        assert wal.append(big) == 2
        assert wal.append(b"after") == 3
        assert wal.append_batch([big, b"tail"]) == range(4, 6)
    with lsnwal.open(wal_dir, small_config) as wal:
        assert wal.current_lsn == 6
    assert [r.payload for r in records(wal_dir, small_config)] == [
        b"before",
        big,
        b"after",
        big,
        b"tail",
    ]


# --------------------------------------------------------------------------- reopen


def test_lsns_continue_across_reopen(wal_dir: Path, small_config: WalConfig) -> None:
    """After close and reopen the next LSN is one past the highest LSN written."""
    with lsnwal.open(wal_dir, small_config) as wal:
        wal.append_batch([b"a", b"b", b"c"])
    with lsnwal.open(wal_dir, small_config) as wal:
        assert (wal.last_lsn, wal.current_lsn, wal.synced_lsn) == (3, 4, 3)
        assert wal.append(b"d") == 4
    with lsnwal.open(wal_dir, small_config) as wal:
        assert wal.current_lsn == 5
    assert [r.payload for r in records(wal_dir, small_config)] == [b"a", b"b", b"c", b"d"]


def test_lsns_continue_when_newest_segments_are_empty(
    wal_dir: Path, small_config: WalConfig
) -> None:
    """Opening and closing with nothing appended (twice, thrice) never resets the LSNs."""
    with lsnwal.open(wal_dir, small_config) as wal:
        wal.append_batch([b"x" * 300] * 30)  # several segments
        wal.sync()
    for _ in range(3):
        with lsnwal.open(wal_dir, small_config) as wal:
            assert wal.current_lsn == 31
            assert wal.last_lsn == 30
            assert wal.synced_lsn == 30
    with lsnwal.open(wal_dir, small_config) as wal:
        assert wal.append(b"next") == 31
    assert [r.lsn for r in records(wal_dir, small_config)] == list(range(1, 32))


def test_lsns_continue_on_reopen_of_a_never_written_wal(wal_dir: Path) -> None:
    """A WAL opened and closed twice without records still starts at LSN 1."""
    for _ in range(2):
        with lsnwal.open(wal_dir) as wal:
            assert wal.current_lsn == 1
    with lsnwal.open(wal_dir) as wal:
        assert wal.append(b"one") == 1


@pytest.mark.parametrize("archive_enabled", [False, True])
def test_lsns_continue_after_checkpoint_and_deletion(wal_dir: Path, archive_enabled: bool) -> None:
    """When checkpointed segments are deleted, LSNs and the checkpoint still continue on reopen."""
    cfg = WalConfig(segment_max_bytes=4096, archive_enabled=archive_enabled, archive_max_segments=1)
    with lsnwal.open(wal_dir, cfg) as wal:
        wal.append_batch([b"p" * 200] * 60)
        wal.sync()
        cp1 = wal.checkpoint(60)
        wal.sync()
        wal.append_batch([b"q" * 200] * 30)
        wal.sync()
        wal.checkpoint(wal.last_lsn)
        last = wal.last_lsn
        wal.sync()
        wal.prune()
        assert wal.wait_archived(timeout=10)
    oldest = records(wal_dir, cfg)[0].lsn
    assert oldest > cp1, "checkpointed segments were not deleted"
    for _ in range(2):
        with lsnwal.open(wal_dir, cfg) as wal:
            assert wal.current_lsn == last + 1
            assert wal.checkpoint_lsn == last - 1
    with lsnwal.open(wal_dir, cfg) as wal:
        assert wal.append(b"go on") == last + 1
    recs = records(wal_dir, cfg)  # retention may have pruned more meanwhile
    assert [r.lsn for r in recs] == list(range(recs[0].lsn, last + 2))
    assert recs[0].lsn >= oldest
    assert recs[-1].payload == b"go on"


def test_checkpoint_lsn_survives_reopen(wal_dir: Path, small_config: WalConfig) -> None:
    """checkpoint_lsn after reopen equals the last checkpoint declared, even after rotations."""
    with lsnwal.open(wal_dir, small_config) as wal:
        wal.append_batch([b"a"] * 10)
        rec = wal.checkpoint(7, b"app-state")
        assert rec == 11
        assert wal.checkpoint_lsn == 7
    with lsnwal.open(wal_dir, small_config) as wal:
        assert wal.checkpoint_lsn == 7
        # the checkpoint record ends up in an archived segment followed by newer segments
        wal.append_batch([b"b" * 500] * 40)
        wal.sync()
        assert wal.wait_archived(timeout=10)
    with lsnwal.open(wal_dir, small_config) as wal:
        assert wal.checkpoint_lsn == 7
        wal.checkpoint(45)
    with lsnwal.open(wal_dir, small_config) as wal:
        assert wal.checkpoint_lsn == 45
    cps = [r for r in records(wal_dir, small_config) if r.kind is RecordKind.CHECKPOINT]
    assert cps
    assert [(r.lsn, r.checkpoint_lsn, r.payload) for r in cps] == [
        (11, 7, b"app-state"),
        (52, 45, b""),
    ]


def test_checkpoint_lsn_survives_rotations_in_one_session(
    wal_dir: Path, small_config: WalConfig
) -> None:
    """A checkpoint followed by many rotations (all archived) in one session survives reopen."""
    with lsnwal.open(wal_dir, small_config) as wal:
        wal.append_batch([b"a"] * 10)
        wal.checkpoint(7)
        wal.append_batch([b"b" * 500] * 40)
        wal.sync()
        assert wal.wait_archived(timeout=10)
    segs = lsnwal.collect_all_segments(wal_dir, small_config)
    assert sum(s.state == "archive" for s in segs) > 3
    for _ in range(2):
        with lsnwal.open(wal_dir, small_config) as wal:
            assert wal.checkpoint_lsn == 7


def test_checkpoint_rules(open_wal: lsnwal.AsyncWalWriter) -> None:
    """checkpoint takes an LSN, repeats of the same LSN are allowed, and 0 is valid."""
    open_wal.append_batch([b"x"] * 3)
    assert open_wal.checkpoint(0) == 4
    assert open_wal.checkpoint(2) == 5
    assert open_wal.checkpoint(2) == 6
    assert open_wal.checkpoint(open_wal.last_lsn) == 7
    assert open_wal.checkpoint_lsn == 6


def test_mark_returns_lsn_and_replay_shows_name(wal_dir: Path, small_config: WalConfig) -> None:
    """mark() takes an LSN like any record; replay gives a MARK record whose name round-trips."""
    name = "before-migration \u00e9\u2603"
    longest = "m" * 255
    with lsnwal.open(wal_dir, small_config) as wal:
        wal.append(b"a")
        assert wal.mark(name) == 2
        assert wal.append(b"b") == 3
        assert wal.mark(longest) == 4
    recs = records(wal_dir, small_config)
    assert [r.kind for r in recs] == [
        RecordKind.DATA,
        RecordKind.MARK,
        RecordKind.DATA,
        RecordKind.MARK,
    ]
    assert recs[1].name == name
    assert recs[1].payload == name.encode("utf-8")
    assert recs[3].name == longest
    assert recs[0].name is None
    assert [(n, lsn) for n, lsn, _ in lsnwal.list_marks(wal_dir, config=small_config)] == [
        (name, 2),
        (longest, 4),
    ]


# --------------------------------------------------------------------------- timestamps


def _backwards_clock(start: float) -> Iterator[float]:
    t = start
    while True:
        yield t
        t -= 7.5  # the wall clock steps back on every read


def test_timestamps_monotonic_when_clock_steps_back(
    wal_dir: Path, small_config: WalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record timestamps never decrease, within a session and across a reopen."""
    clock = _backwards_clock(2_000_000_000.0)
    monkeypatch.setattr("lsnwal.writer._time", lambda: next(clock))
    with lsnwal.open(wal_dir, small_config) as wal:
        for i in range(30):
            wal.append(b"x" * (i * 40))
        wal.append_batch([b"y" * 300] * 20)
        wal.mark("m")
        wal.checkpoint(3)
    clock = _backwards_clock(1_000_000_000.0)  # a big step back between sessions
    with lsnwal.open(wal_dir, small_config) as wal:
        wal.append(b"later")
        wal.append_batch([b"z"] * 3)
    recs = records(wal_dir, small_config)
    assert len(recs) == 56
    stamps = [r.timestamp for r in recs]
    assert stamps == sorted(stamps)
    assert stamps[0] > 1_900_000_000.0  # the first session's clock was used


def test_timestamps_are_wall_clock(open_wal: lsnwal.AsyncWalWriter, wal_dir: Path) -> None:
    """A record's timestamp is time.time() at append (epoch seconds as a float)."""
    t0 = time.time()
    open_wal.append(b"now")
    t1 = time.time()
    open_wal.close()
    (rec,) = records(wal_dir)
    assert isinstance(rec.timestamp, float)
    assert t0 <= rec.timestamp <= t1
