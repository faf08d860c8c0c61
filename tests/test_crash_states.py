"""Exhaustive crash-state tests on ``SimFileSystem`` (issue 5, DESIGN invariants 1, 2, 5-8).

A seeded workload (appends, batches, ``sync_async().wait()``, ``await handle``,
``sync()``, checkpoints, marks, size rotations with 4 KiB segments, archiving,
pruning by count/bytes and with the archive off, a clean reopen and a crash
followed by recovery in the middle) runs on a ``SimFileSystem`` whose ``on_op``
hook snapshots the whole model after every mutating operation. Beside each
snapshot it records the highest ``synced_lsn`` any caller had been *told* so far
(only when ``sync()``/``wait()``/``await``/the property returned), the
checkpoints declared, and the payload of every LSN.

Every snapshot is then crashed in every surviving variant the model allows
(``crash_variants``), the WAL is opened on the result (default ``tolerate_tail``)
and ``check_crash_state`` asserts:

* recovery does not raise;
* every acknowledged LSN not covered by the recovered checkpoint is replayed
  byte for byte, and nothing above the checkpoint was pruned;
* LSNs are contiguous and every replayed record is one the workload wrote;
* the checkpoint LSN a caller could rely on survives, and is never one that was
  not declared;
* ``verify()`` is ok after recovery (no sealed segment silently truncated);
* writing works after recovery (append + sync, then replay shows it).

Identical crash states (same files, same acknowledgement) are checked once and
counted once.

Two sizes, the same kinds of coverage (every persistence point of every thread
in ``REQUIRED_POINTS``, every crash-variant kind, every failpoint on every
thread that passes it; asserted in both):

* ``make test``: a representative sample — one seed, a 60-step workload per
  configuration, one plain write in four and, of every other operation of
  each thread, the first and every third; of each snapshot's crash variants,
  three of each kind (the first, the last and one between); at least
  ``QUICK_MIN_STATES`` distinct crash states; and a middle hit of each
  failpoint per thread kind plus its last hit;
* ``make stress`` (``LSNWAL_STRESS=1``): the full enumeration — every crash
  variant of every snapshot of four seeds of a 300-step workload, at least
  ``MIN_STATES`` states, and every hit of every failpoint.

A second test crashes at each named failpoint (a hit of each thread kind).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

import lsnwal
from lsnwal.names import ACTIVE_NAME
from lsnwal.testing import CrashVariant, SimFileSystem, SimState, SimulatedCrash

ROOT = "/wal"
STRESS = os.environ.get("LSNWAL_STRESS") == "1"  # as conftest.stress_enabled()
#: crash states the full enumeration (``make stress``) must check
MIN_STATES = 60_000
#: crash states the representative sample of ``make test`` must check
QUICK_MIN_STATES = 2_000
#: ``make test``: workload steps per configuration, and keep every n-th plain write
QUICK_STEPS, QUICK_EVERY, QUICK_STRIDE = 60, 4, 3
#: ``make test``: crash variants checked per snapshot and variant kind
QUICK_VARIANTS_PER_KIND = 3
DATA, CHECKPOINT, MARK = (int(k) for k in lsnwal.RecordKind)
#: the long forms run for many minutes; the short ones well under the default
LONG = pytest.mark.timeout(7200 if STRESS else 600)

#: every failpoint lsnwal defines (fs.py / writer.py / sync.py / wal.py / archive.py)
FAILPOINTS = [
    f"{when}_{what}"
    for what in ("record_write", "rotate_rename", "active_create", "file_fsync", "dir_fsync",
                 "archive_move", "prune")
    for when in ("before", "after")
]

#: workload configurations: every retention path and both archive copy paths
CONFIGS: dict[str, lsnwal.WalConfig] = {
    # plain archive, pruned by count; small write buffer so records reach the
    # file between fsyncs (torn and zero-filled tails of the active segment)
    "count": lsnwal.WalConfig(segment_max_bytes=4096, archive_max_segments=3,
                              write_buffer_bytes=700),
    # archive off: synced segments are deleted once the checkpoint covers them
    "off": lsnwal.WalConfig(segment_max_bytes=4096, archive_enabled=False,
                            write_buffer_bytes=1500),
    # the default: unbuffered appends (each record reaches the file at once)
    "inplace": lsnwal.WalConfig(segment_max_bytes=4096, archive_max_segments=2),
    # rotation by age: the sync thread seals and renames the active segment itself
    "age": lsnwal.WalConfig(segment_max_bytes=1 << 20, segment_max_age_s=0.001,
                            archive_max_segments=4),
    # zstd archive (copy to .tmp, fsync, rename, fsync, unlink pending), pruned by bytes
    "zstd": lsnwal.WalConfig(segment_max_bytes=4096, compression="zstd",
                             archive_max_bytes=9000, write_buffer_bytes=900),
}


@dataclass(frozen=True)
class Snap:
    """One snapshot of the model and what callers had been told at that moment."""

    index: int
    state: SimState
    acked: int  # highest synced_lsn any caller had been told
    cp_acked: int  # highest checkpoint whose CHECKPOINT record LSN <= acked
    cp_declared: int  # highest checkpoint LSN passed to checkpoint() so far
    expected: dict[int, tuple[int, bytes, int | None]]  # this epoch's LSN -> record
    op: str
    thread: str
    step: str


@dataclass
class Recorder:
    """Tracks acknowledgements and expected records; snapshots the model on every op."""

    snapshot_ops: bool = True
    fs: SimFileSystem | None = None
    acked: int = 0
    cp_declared: int = 0
    checkpoints: list[tuple[int, int]] = field(default_factory=list)  # (record LSN, cp)
    expected: dict[int, tuple[int, bytes, int | None]] = field(default_factory=dict)
    snaps: list[Snap] = field(default_factory=list)
    step: str = "start"
    mu: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, fs: SimFileSystem) -> None:
        """Record the operations of ``fs`` from now on."""
        self.fs = fs
        if self.snapshot_ops:
            fs.on_op = self.on_op

    def on_op(self, op: str) -> None:
        """The ``on_op`` hook: runs under the model's lock, so the snapshot is exact."""
        self.snaps.append(self.snapshot(op))

    def snapshot(self, op: str) -> Snap:
        """The model's state now, with what callers had been told so far."""
        assert self.fs is not None
        with self.mu:
            acked, cp_acked, cp_declared = self.acked, self.cp_acked(), self.cp_declared
        return Snap(len(self.snaps), self.fs.checkpoint_state(), acked, cp_acked, cp_declared,
                    self.expected, op, threading.current_thread().name, self.step)

    def cp_acked(self) -> int:
        """The checkpoint a caller may rely on: its record is at or below ``acked``."""
        return max((cp for rec, cp in self.checkpoints if rec <= self.acked), default=0)

    def ack(self, lsn: int) -> None:
        """A call returned telling the caller that ``lsn`` is durable."""
        with self.mu:
            self.acked = max(self.acked, lsn)

    def will_write(
        self, wal: lsnwal.AsyncWalWriter, items: list[tuple[int, bytes, int | None]]
    ) -> int:
        """Register the records the next call appends; return the first LSN they get."""
        first = wal.current_lsn
        for lsn, item in enumerate(items, first):
            assert lsn not in self.expected, f"LSN {lsn} handed out twice"
            self.expected[lsn] = item
        return first


async def _await_handle(handle: lsnwal.SyncHandle) -> int:
    return await handle


def _payload(rng: random.Random, i: int, size: int) -> bytes:
    head = f"r{i}:".encode()
    return (head + rng.randbytes(max(0, size - len(head))))[:size] if size else b""


def _step(wal: lsnwal.AsyncWalWriter, rec: Recorder, rng: random.Random, i: int) -> None:
    """One workload step chosen by ``rng``.

    Records are registered under the LSNs they will get *before* the call (only
    this thread appends, so they are ``current_lsn`` onwards): a crash inside
    the call may leave them on disk although the call never returned.
    """
    r = rng.random()
    if r < 0.30:
        rec.step = "append"
        p = _payload(rng, i, rng.choice([0, 1, rng.randint(2, 120), rng.randint(120, 700)]))
        lsn = rec.will_write(wal, [(DATA, p, None)])
        assert wal.append(p) == lsn
    elif r < 0.38:
        rec.step = "append_batch"
        ps = [_payload(rng, i * 100 + k, rng.randint(1, 300)) for k in range(rng.randint(2, 9))]
        lsn = rec.will_write(wal, [(DATA, p, None) for p in ps])
        assert wal.append_batch(ps) == range(lsn, lsn + len(ps))
    elif r < 0.40:
        rec.step = "append_big"  # larger than a segment: it gets a segment of its own
        p = _payload(rng, i, rng.randint(4200, 6000))
        lsn = rec.will_write(wal, [(DATA, p, None)])
        assert wal.append(p) == lsn
    elif r < 0.52:
        rec.step = "sync_async"
        h = wal.sync_async()
        assert h.wait(30), "sync_async handle did not complete"
        rec.ack(h.target_lsn)
    elif r < 0.56:
        rec.step = "await"
        rec.ack(asyncio.run(_await_handle(wal.sync_async())))
    elif r < 0.66:
        rec.step = "sync"
        rec.ack(wal.sync())
    elif r < 0.73:
        rec.step = "checkpoint"
        cp = rng.randint(wal.checkpoint_lsn, wal.last_lsn)
        p = _payload(rng, i, rng.randint(0, 40))
        lsn = rec.will_write(wal, [(CHECKPOINT, p, cp)])
        with rec.mu:
            rec.cp_declared = max(rec.cp_declared, cp)
            rec.checkpoints.append((lsn, cp))
        assert wal.checkpoint(cp, p) == lsn
    elif r < 0.78:
        rec.step = "mark"
        name = f"mark-{i}"
        lsn = rec.will_write(wal, [(MARK, name.encode(), None)])
        assert wal.mark(name) == lsn
    elif r < 0.86:
        rec.step = "wait_archived"
        assert wal.wait_archived(30)
    elif r < 0.92:
        rec.step = "prune"
        wal.prune()
    else:
        rec.step = "synced_lsn"
        rec.ack(wal.synced_lsn)  # reading the watermark is being told, too


def _pick_mid_crash(fs: SimFileSystem, rng: random.Random) -> CrashVariant:
    """A crash variant that leaves recovery work (a torn or zero-filled tail if any)."""
    variants = list(fs.crash_variants())
    active = f"{ROOT}/{ACTIVE_NAME}"
    for how in ("torn", "zero", "prefix", "kept"):
        some = [v for v in variants if v.data == how and v.path in ("", active)]
        if some:  # the most kept ops: a torn record after good ones (a cut, not a reset)
            most = max(v.ops_kept for v in some)
            return rng.choice([v for v in some if v.ops_kept == most])
    return variants[-1]


def run_workload(
    cfg: lsnwal.WalConfig,
    seed: int,
    steps: int,
    *,
    rec: Recorder | None = None,
    failpoint: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> Recorder:
    """Run the seeded workload; return the recorder (snapshots and what was acknowledged).

    A third of the way in the WAL is closed and reopened; two thirds of the way
    the model crashes (a torn/zero-filled variant when there is one) and the
    workload continues on the recovered WAL (a new epoch: LSNs after the
    surviving end are handed out again). ``stop`` ends the run early (a
    failpoint fired); any error raised once it is set ends it too.
    """
    rng = random.Random(seed)
    fs = SimFileSystem()
    rec = rec if rec is not None else Recorder()
    rec.attach(fs)
    rec.step = "open"
    wal: lsnwal.AsyncWalWriter | None = None
    try:
        wal = lsnwal.open(ROOT, cfg, fs=fs, failpoint=failpoint)
        for i in range(steps):
            if stop is not None and stop.is_set():
                break
            if i == steps // 3:
                rec.step = "close"
                wal.close()
                rec.ack(wal.synced_lsn)
                rec.step = "reopen"
                wal = lsnwal.open(ROOT, cfg, fs=fs, failpoint=failpoint)
                rec.ack(wal.synced_lsn)
            elif i == 2 * steps // 3:
                rec.step = "crash"
                for k in range(8):  # unsynced records in the active file: a tail to cut
                    p = _payload(rng, 10_000 + k, 300)
                    lsn = rec.will_write(wal, [(DATA, p, None)])
                    assert wal.append(p) == lsn
                state = fs.checkpoint_state()
                fs.on_op = None
                wal.close()  # never raises; a failpoint crash here is handled below
                old = SimFileSystem.from_state(state)
                fs = old.crash(_pick_mid_crash(old, rng))
                # A new epoch: LSNs past the surviving end will be handed out again.
                rec.expected = dict(rec.expected)
                rec.attach(fs)
                rec.step = "recover"
                wal = lsnwal.open(ROOT, cfg, fs=fs, failpoint=failpoint)
                assert wal.last_lsn >= rec.acked, "the mid-run crash lost acknowledged records"
                for lsn in [n for n in rec.expected if n > wal.last_lsn]:
                    del rec.expected[lsn]
                with rec.mu:  # lost CHECKPOINT records: their LSNs are handed out again
                    rec.checkpoints = [c for c in rec.checkpoints if c[0] <= wal.last_lsn]
                # open() made everything it found durable and says so in synced_lsn
                rec.ack(wal.synced_lsn)
            _step(wal, rec, rng, i)
        rec.step = "final_sync"
        rec.ack(wal.sync())
        rec.step = "close"
        wal.close()
        rec.ack(wal.synced_lsn)
    except Exception:
        # After a failpoint crash the "machine" is down: whatever the code does
        # next (SimulatedCrash, WalSyncError, bookkeeping left half done) is moot.
        if stop is None or not stop.is_set():
            raise
    finally:
        fs.on_op = None
        if wal is not None:
            if stop is not None and stop.is_set():
                with contextlib.suppress(Exception):  # the machine is down: moot
                    wal.close()
            else:
                wal.close()  # close() never raises (DESIGN): a raise here is a bug
    return rec


@dataclass(frozen=True)
class Claim:
    """What a crash state must satisfy (taken from a snapshot)."""

    acked: int
    cp_acked: int
    cp_declared: int
    expected: dict[int, tuple[int, bytes, int | None]]


def check_crash_state(crashed: SimFileSystem, cfg: lsnwal.WalConfig, claim: Claim,
                      label: str) -> None:
    """Recover ``crashed`` and assert the durability contract (see module docstring)."""
    try:
        wal = lsnwal.open(ROOT, cfg, fs=crashed)
    except Exception as exc:  # a real crash state that recovery rejects is a bug
        raise AssertionError(f"{label}: recovery raised {exc!r}") from exc
    try:
        last, rec_cp = wal.last_lsn, wal.checkpoint_lsn
        assert last >= claim.acked, (
            f"{label}: recovered last_lsn={last} < acknowledged synced_lsn={claim.acked}")
        post = f"after {label}".encode()
        post_lsn = wal.append(post)
        assert post_lsn == last + 1, f"{label}: next LSN {post_lsn} after last {last}"
        assert wal.sync() >= post_lsn
    finally:
        wal.close()
    assert claim.cp_acked <= rec_cp <= claim.cp_declared, (
        f"{label}: recovered checkpoint_lsn={rec_cp}, acknowledged checkpoint "
        f"{claim.cp_acked}, highest declared {claim.cp_declared}")
    records = list(lsnwal.replay(ROOT, config=cfg, fs=crashed))
    lsns = [r.lsn for r in records]
    assert lsns and lsns == list(range(lsns[0], post_lsn + 1)), (
        f"{label}: LSNs not contiguous up to {post_lsn}: {lsns[:3]}..{lsns[-3:]}")
    assert lsns[0] <= rec_cp + 1, (
        f"{label}: records {rec_cp + 1}..{lsns[0] - 1} are above the checkpoint but gone")
    assert records[-1].payload == post and records[-1].kind is lsnwal.RecordKind.DATA
    for r in records[:-1]:
        want = claim.expected.get(r.lsn)
        got = (int(r.kind), r.payload, r.checkpoint_lsn)
        assert got == want, f"{label}: LSN {r.lsn} replayed as {got!r:.80}, wrote {want!r:.80}"
    report = lsnwal.verify(ROOT, config=cfg, fs=crashed)
    assert report.ok, f"{label}: verify after recovery: {report.problems}"


def _state_key(crashed: SimFileSystem, claim: Claim) -> bytes:
    """Identity of a crash state: every file's bytes, the directories, the claim."""
    h = hashlib.blake2b(digest_size=16)
    for path, data in sorted(crashed.files().items()):
        h.update(path.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    for d in (ROOT, f"{ROOT}/pending", f"{ROOT}/archive"):
        h.update(b"D" if crashed.isdir(d) else b"-")
    h.update(f"{claim.acked}/{claim.cp_acked}/{claim.cp_declared}/{id(claim.expected)}".encode())
    return h.digest()


@dataclass
class Tally:
    """Counts of what a crash-state run covered."""

    snapshots: int = 0
    variants: int = 0
    checked: int = 0  # distinct crash states recovered and checked
    ops: Counter[str] = field(default_factory=Counter)  # "thread:op" of crashed snapshots
    how: Counter[str] = field(default_factory=Counter)  # variant kinds checked
    seen: set[bytes] = field(default_factory=set)

    def line(self) -> str:
        """A one-line summary."""
        return (f"{self.checked} distinct crash states checked ({self.variants} variants of "
                f"{self.snapshots} snapshots)")


def _thread_kind(name: str) -> str:
    for k in ("sync", "archive", "spare"):
        if name == f"lsnwal-{k}":
            return k
    return "main"


def _sample_variants(variants: list[CrashVariant], per_kind: int | None) -> list[CrashVariant]:
    """All variants (``per_kind=None``), or of each kind (lost, kept, prefix, torn, zero)
    the first, the last and evenly spaced ones between, ``per_kind`` in all."""
    if per_kind is None:
        return variants
    by_kind: dict[str, list[CrashVariant]] = {}
    for v in variants:
        by_kind.setdefault(v.data, []).append(v)
    out: list[CrashVariant] = []
    for group in by_kind.values():
        if len(group) <= per_kind:
            out.extend(group)
            continue
        step = (len(group) - 1) / (per_kind - 1) if per_kind > 1 else 0
        out.extend(group[round(i * step)] for i in range(per_kind))
    return out


def check_snapshot(snap: Snap, cfg: lsnwal.WalConfig, tally: Tally, label: str) -> None:
    """Check the crash variants of one snapshot (all of them under ``make stress``)."""
    model = SimFileSystem.from_state(snap.state)
    claim = Claim(snap.acked, snap.cp_acked, snap.cp_declared, snap.expected)
    tally.snapshots += 1
    tally.ops[f"{_thread_kind(snap.thread)}:{snap.op}"] += 1
    for v in _sample_variants(list(model.crash_variants()),
                              None if STRESS else QUICK_VARIANTS_PER_KIND):
        tally.variants += 1
        crashed = model.crash(v)
        key = _state_key(crashed, claim)
        if key in tally.seen:
            continue
        tally.seen.add(key)
        check_crash_state(crashed, cfg, claim,
                          f"{label} snapshot {snap.index} after {snap.op} in {snap.step} "
                          f"[{snap.thread}]: {v.describe()}")
        tally.checked += 1
        tally.how[v.data] += 1


def _subsample(snaps: list[Snap], every: int, stride: int = 1) -> Iterator[Snap]:
    """The snapshots to crash: every ``every``-th plain write and, of every other kind of
    operation (namespace change, sync, truncate) per thread, the first and every
    ``stride``-th one (``stride=1``: all of them)."""
    writes = 0
    seen: Counter[str] = Counter()
    for s in snaps:
        if s.op == "write":
            writes += 1
            if writes % every:
                continue
        else:
            key = f"{s.thread}:{s.op}"
            seen[key] += 1
            if (seen[key] - 1) % stride:
                continue
        yield s


#: the (thread, op) pairs that must be among the checked snapshots: every
#: persistence point of rotation, both sync paths, archiving, pruning, recovery
REQUIRED_POINTS = {
    "main:write", "main:rename", "main:create", "main:sync_file", "main:sync_dir",
    "main:truncate", "main:unlink", "main:mkdir",
    "sync:sync_file", "sync:sync_dir", "sync:rename", "sync:write",
    "archive:rename", "archive:unlink", "archive:sync_dir", "archive:create",
    "archive:write", "archive:sync_file", "spare:create",
}


@pytest.fixture(autouse=True)
def _quiet_recovery_logs() -> Iterator[None]:
    """Recovery logs a warning per cut; thousands of them only slow the test down."""
    logger = logging.getLogger("lsnwal")
    old = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(old)


@LONG
def test_every_crash_state_recovers_all_acknowledged_records(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every crash variant of every snapshot recovers every acknowledged record, byte for byte."""
    t0 = time.monotonic()
    steps = 300 if STRESS else QUICK_STEPS
    every = 1 if STRESS else QUICK_EVERY  # make test: a third of plain writes, all others
    min_seeds = 4 if STRESS else 1
    least = MIN_STATES if STRESS else QUICK_MIN_STATES
    target = least + least // 10
    tally = Tally()
    seed = 0
    while seed < min_seeds or (tally.checked < target and seed < 40):
        seed += 1
        for name, cfg in CONFIGS.items():
            rec = run_workload(cfg, seed, steps)
            assert rec.acked > 0 and rec.snaps
            for snap in _subsample(rec.snaps, every, 1 if STRESS else QUICK_STRIDE):
                check_snapshot(snap, cfg, tally, f"{name}/seed {seed}")
                if seed > min_seeds and tally.checked >= target:
                    break
            if seed > min_seeds and tally.checked >= target:
                break
    elapsed = time.monotonic() - t0
    with capsys.disabled():
        print(f"\ncrash states: {tally.line()}, {seed} seed(s), in {elapsed:.1f}s; "
              f"variants by kind {dict(tally.how)}")
    missing = REQUIRED_POINTS - set(tally.ops)
    assert not missing, f"persistence points never crashed at: {sorted(missing)}"
    assert set(tally.how) == {"lost", "kept", "prefix", "torn", "zero"}
    assert tally.checked >= least, tally.line()


def _hits_per_failpoint(
    cfg: lsnwal.WalConfig, seed: int, steps: int
) -> dict[str, list[str]]:
    """For each failpoint, the kind of thread ("main", "sync", ...) of each hit, in order."""
    hits: dict[str, list[str]] = {}
    lock = threading.Lock()

    def count(point: str) -> None:
        with lock:
            hits.setdefault(point, []).append(_thread_kind(threading.current_thread().name))

    run_workload(cfg, seed, steps, rec=Recorder(snapshot_ops=False), failpoint=count)
    return hits


def _picks(kinds: list[str], per_point: int | None, salt: str) -> list[tuple[str | None, int]]:
    """Which hits to crash at, as ``(thread kind or None for any, nth hit of it)``.

    A failpoint is passed by several threads (a directory fsync: the sync thread,
    the archiver, an in-place ``sync()``). ``per_point=None`` takes every hit;
    otherwise the sample takes the last hit overall and a middle hit of each
    thread kind, counted among that kind's own hits (so that every thread's crash
    window is tried however the threads interleave in the crash run), and with
    ``per_point > 0`` also the first and last hit of each kind and ``per_point``
    random hits.
    """
    n = len(kinds)
    if per_point is None:
        return [(None, i) for i in range(1, n + 1)]
    chosen: set[tuple[str | None, int]] = {(None, n)}
    for kind in set(kinds):
        m = kinds.count(kind)
        chosen.add((kind, (m + 1) // 2))
        if per_point:
            chosen.update(((kind, 1), (kind, m)))
    if per_point:
        chosen.update((None, i) for i in random.Random(salt).sample(range(1, n + 1),
                                                                    min(n, per_point)))
    return sorted(chosen, key=lambda p: (p[0] or "", p[1]))


def _crash_at_failpoint(
    cfg: lsnwal.WalConfig, seed: int, steps: int, name: str, nth: int, kind: str | None = None
) -> Snap | None:
    """Run the workload until failpoint ``name`` fires the ``nth`` time (on a thread of
    ``kind``, or on any); snapshot there.

    The hook snapshots the model at the moment it raises ``SimulatedCrash``: that
    state, in each of its crash variants, is what a power loss there leaves. None
    if the failpoint fired fewer times in this run (threads interleave differently).
    """
    stop = threading.Event()
    taken: list[Snap] = []
    rec = Recorder(snapshot_ops=False)
    hits = 0

    def hook(point: str) -> None:
        nonlocal hits
        if stop.is_set():
            return  # the machine is already down: what happens now does not matter
        if point != name:
            return
        if kind is not None and _thread_kind(threading.current_thread().name) != kind:
            return
        hits += 1
        if hits == nth:
            taken.append(rec.snapshot(name))
            stop.set()
            raise SimulatedCrash(point)

    run_workload(cfg, seed, steps, rec=rec, failpoint=hook, stop=stop)
    return taken[0] if taken else None


@LONG
def test_crash_at_every_failpoint_recovers_all_acknowledged_records(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A SimulatedCrash at each named failpoint, in every surviving variant, loses nothing acked."""
    steps = 90
    per_point = None if STRESS else 0  # None: every hit; 0: a middle hit per thread kind
    tally = Tally()
    fired: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for cfg_name, cfg in CONFIGS.items():
        hits = _hits_per_failpoint(cfg, 7, steps)
        for name in FAILPOINTS:
            kinds = hits.get(name, [])
            if not kinds:
                continue
            for kind, nth in _picks(kinds, per_point, f"{cfg_name}{name}"):
                snap = _crash_at_failpoint(cfg, 7, steps, name, nth, kind)
                for _retry in range(3 if snap is None and kind is not None else 0):
                    # that thread passed here fewer times in this run (threads interleave
                    # differently from run to run): its first pass, in a new run
                    snap = _crash_at_failpoint(cfg, 7, steps, name, 1, kind)
                    if snap is not None:
                        break
                if snap is None:
                    continue
                fired[name] += 1
                threads[f"{_thread_kind(snap.thread)}:{name}"] += 1
                check_snapshot(snap, cfg, tally,
                               f"{cfg_name} crash at {name!r}, hit {nth} of {kind or 'any'}")
    with capsys.disabled():
        print(f"\nfailpoint crashes: {sum(fired.values())} crashes at {len(fired)} failpoints "
              f"({len(threads)} thread/failpoint pairs); {tally.line()}")
    assert set(fired) == set(FAILPOINTS), f"never fired: {set(FAILPOINTS) - set(fired)}"
    for point in ("sync:before_file_fsync", "main:before_file_fsync", "sync:after_dir_fsync",
                  "main:after_dir_fsync", "archive:before_dir_fsync", "main:before_rotate_rename",
                  "sync:before_rotate_rename"):
        assert threads[point], f"no crash at {point}"


def test_unsealed_segment_followed_by_a_newer_header_is_a_torn_tail() -> None:
    """A rotated segment that lost its unsynced tail and seal, the next header kept, recovers."""
    fs = SimFileSystem()
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, write_buffer_bytes=64)
    release = threading.Event()

    def hold_sync_thread(point: str) -> None:
        if point == "before_file_fsync" and threading.current_thread().name == "lsnwal-sync":
            assert release.wait(30)

    wal = lsnwal.open(ROOT, cfg, fs=fs, failpoint=hold_sync_thread)
    try:
        expected = {wal.append(b"durable-%d" % i): b"durable-%d" % i for i in range(3)}
        acked = wal.sync()  # in place: records 1-3 durable, the file still active.wal
        expected[wal.append(b"never acknowledged")] = b"never acknowledged"
        wal.rotate()  # seal, rename, new active
        handle = wal.sync_async()  # the rotated segment's fsync is held
        expected[wal.append(b"y" * 200)] = b"y" * 200  # written to the new active.wal
        state = fs.checkpoint_state()
    finally:
        release.set()
    assert handle.wait(30)
    wal.close()
    model = SimFileSystem.from_state(state)
    # every rename kept; the new active.wal keeps its header write only; the rotated
    # segment loses its unsynced record and seal
    [variant] = [v for v in model.crash_variants()
                 if v.meta_kept == v.meta_total and v.data == "prefix"
                 and v.path == f"{ROOT}/{ACTIVE_NAME}" and v.ops_kept == 1]
    crashed = model.crash(variant)
    with pytest.raises(lsnwal.WalCorruptionError, match="gap"):
        lsnwal.open(ROOT, cfg.replace(recovery_mode="strict"), fs=crashed)
    claim = Claim(acked, 0, 0, {k: (DATA, v, None) for k, v in expected.items()})
    check_crash_state(crashed, cfg, claim, variant.describe())
