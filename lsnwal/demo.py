"""``lsnwal demo`` (what ``make run`` runs): a transactional key-value store on lsnwal.

A small bank: accounts are keys of a ``str -> int`` store, and every transaction
(a transfer between two accounts) is one WAL record holding the values it writes
(a redo log). The demo shows, with figures, each thing a storage engine needs
from a WAL, and checks each one:

1. asyncio transactions that ``await wal.sync_async()`` (group commit);
2. a thread pool committing with the blocking ``wal.sync()``;
3. a checkpoint whose payload is a JSON snapshot of the store;
4. a named mark (a restore point), with the store's state at that moment kept;
5. a crash: a child process (``lsnwal demo --child``) commits from four threads,
   reporting each acknowledged commit on stdout, and is killed with SIGKILL;
6. recovery: open the WAL, rebuild the store from the newest checkpoint snapshot
   plus a replay of the records after it; every acknowledged transaction must be
   there, and the result must equal a full replay from LSN 1;
7. point-in-time restore to the mark (``lsnwal.restore`` into a new directory,
   then the same rebuild): the store must equal its state at the mark.

Rules kept here: the store applies a transaction under its lock in the same
critical section as ``append``, so memory order is LSN order and a replay
reproduces the store exactly; a transaction is acknowledged only after its
commit returned (the record is durable). The working directory is wiped at the
start, but only if it is empty or was made by this demo (it holds ``.lsnwal-demo``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import RecordKind, WalConfig, replay, restore
from . import open as wal_open
from .wal import AsyncWalWriter

MARKER = ".lsnwal-demo"
MARK_NAME = "end-of-day"
ACCOUNTS = 20
START_BALANCE = 1000
TOTAL = ACCOUNTS * START_BALANCE
#: small segments, so that the demo rotates, archives and restores across segments
CONFIG = WalConfig(segment_max_bytes=64 * 1024)
CHILD_THREADS = 4
KILL_AFTER_ACKS = 300
CHILD_MAX_S = 30.0  # the child stops by itself if nobody kills it


class DemoError(Exception):
    """The demo cannot run (for example: a --dir it must not wipe)."""


# --------------------------------------------------------------------------- the store


def _apply(data: dict[str, int], payload: bytes) -> None:
    data.update(json.loads(payload)["w"])


def digest(data: dict[str, int]) -> str:
    """A short fingerprint of a store state (sha256 of its canonical JSON)."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _balance_sum(data: dict[str, int]) -> int:
    return sum(v for k, v in data.items() if k.startswith("acct:"))


def _tx_count(data: dict[str, int]) -> int:
    return sum(1 for k in data if k.startswith("tx:"))


class Store:
    """A ``str -> int`` store whose every transaction is one WAL record."""

    def __init__(self, wal: AsyncWalWriter, data: dict[str, int] | None = None) -> None:
        self.wal = wal
        self.data: dict[str, int] = dict(data or {})
        self.lock = threading.Lock()

    def _write(self, txid: str, writes: dict[str, int]) -> int:
        payload = json.dumps({"tx": txid, "w": writes}, separators=(",", ":")).encode()
        lsn = self.wal.append(payload)  # LSN order == the order applied below (same lock)
        self.data.update(writes)
        return lsn

    def open_accounts(self) -> int:
        """The first transaction: every account starts with ``START_BALANCE``."""
        with self.lock:
            writes = {f"acct:{i:02d}": START_BALANCE for i in range(ACCOUNTS)}
            writes["tx:genesis"] = 0
            return self._write("genesis", writes)

    def transfer(self, txid: str, rng: random.Random) -> int:
        """Move money between two accounts; return the record's LSN (not yet durable)."""
        with self.lock:
            a, b = rng.sample(range(ACCOUNTS), 2)
            ka, kb = f"acct:{a:02d}", f"acct:{b:02d}"
            amount = min(rng.randint(1, 50), self.data[ka])
            writes = {ka: self.data[ka] - amount, kb: self.data[kb] + amount, f"tx:{txid}": amount}
            return self._write(txid, writes)

    def commit_sync(self, txid: str, rng: random.Random) -> int:
        """A transaction acknowledged after the blocking ``wal.sync()``."""
        lsn = self.transfer(txid, rng)
        self.wal.sync()
        return lsn

    async def commit_async(self, txid: str, rng: random.Random) -> int:
        """A transaction acknowledged after ``await wal.sync_async()`` (loop not blocked)."""
        lsn = self.transfer(txid, rng)
        await self.wal.sync_async()
        return lsn


@dataclass
class Rebuilt:
    """A store state rebuilt from a WAL directory."""

    data: dict[str, int]
    snapshot_lsn: int  # the LSN the checkpoint snapshot covers (0: no snapshot used)
    replayed: int  # DATA records applied after the snapshot
    last_lsn: int


def rebuild(path: str, checkpoint_lsn: int) -> Rebuilt:
    """The store as of the end of the WAL at ``path``: checkpoint snapshot + later records.

    ``checkpoint_lsn`` is what the opened WAL reports; the CHECKPOINT record that
    declared it comes after it, so the search starts there.
    """
    data: dict[str, int] = {}
    start: int | None = None
    if checkpoint_lsn:
        for rec in replay(path, from_lsn=checkpoint_lsn + 1, kinds=[RecordKind.CHECKPOINT]):
            if rec.checkpoint_lsn == checkpoint_lsn:
                snap = json.loads(rec.payload)
                data = {str(k): int(v) for k, v in snap["data"].items()}
                start = checkpoint_lsn + 1
                break
        else:
            raise DemoError(f"no CHECKPOINT record for LSN {checkpoint_lsn} in {path}")
    n = 0
    last = checkpoint_lsn
    for rec in replay(path, from_lsn=start, kinds=[RecordKind.DATA]):
        _apply(data, rec.payload)
        n += 1
        last = rec.lsn
    return Rebuilt(data, checkpoint_lsn if start else 0, n, last)


def full_replay(path: str, **targets: object) -> dict[str, int]:
    """The store from every DATA record since LSN 1, ignoring snapshots."""
    data: dict[str, int] = {}
    for rec in replay(path, kinds=[RecordKind.DATA], **targets):  # type: ignore[arg-type]
        _apply(data, rec.payload)
    return data


# --------------------------------------------------------------------------- output


@dataclass
class Report:
    """What the demo prints, and the verdict of its checks."""

    checks: list[tuple[str, bool]] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        """Print a line now (the demo is a story told as it happens)."""
        print(text, flush=True)

    def check(self, what: str, ok: bool) -> bool:
        """Record and print one check."""
        self.checks.append((what, ok))
        self.say(f"   [{'ok' if ok else 'FAIL'}] {what}")
        return ok

    @property
    def failed(self) -> list[str]:
        """Descriptions of the failed checks."""
        return [w for w, ok in self.checks if not ok]


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} commits/s" if seconds > 0 else "-"


def _stats_line(wal: AsyncWalWriter) -> str:
    s = wal.stats()
    return (f"WAL stats: {s.records_appended:,} records, {s.commits:,} commits, {s.fsyncs:,} "
            f"fsyncs -> {s.commits_per_fsync:.1f} commits per fsync; fsync p50 "
            f"{s.fsync_p50_s * 1e3:.2f} ms, p99 {s.fsync_p99_s * 1e3:.2f} ms; "
            f"{s.rotations} rotations, {s.archive_segments} archived segments")


# --------------------------------------------------------------------------- steps


def _prepare(directory: str) -> str:
    root = os.path.abspath(directory)
    if os.path.exists(root):
        if not os.path.isdir(root):
            raise DemoError(f"{root} exists and is not a directory")
        entries = os.listdir(root)
        if entries and MARKER not in entries:
            raise DemoError(
                f"refusing to wipe {root}: it is not empty and was not made by lsnwal demo "
                f"(no {MARKER} file); pick another --dir"
            )
        shutil.rmtree(root)
    os.makedirs(root)
    with open(os.path.join(root, MARKER), "w", encoding="utf-8") as f:
        f.write("made by `lsnwal demo`; wiped by the next run\n")
    return root


async def _async_clients(store: Store, clients: int, per_client: int, tag: str) -> None:
    async def client(i: int) -> None:
        rng = random.Random(f"{tag}{i}")
        for n in range(per_client):
            await store.commit_async(f"{tag}{i}-{n}", rng)

    await asyncio.gather(*(client(i) for i in range(clients)))


def _thread_clients(store: Store, threads: int, per_thread: int, tag: str) -> None:
    def worker(i: int) -> None:
        rng = random.Random(f"{tag}{i}")
        for n in range(per_thread):
            store.commit_sync(f"{tag}{i}-{n}", rng)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for fut in [pool.submit(worker, i) for i in range(threads)]:
            fut.result()


@dataclass
class CrashResult:
    """What the parent saw of the child it killed."""

    acked: list[tuple[str, int]]
    start_lsn: int
    seconds: float
    returncode: int | None
    stderr: str


def _crash_child(root: str, rep: Report) -> CrashResult:
    """Run the child, read its acknowledgements, kill it with SIGKILL mid-stream."""
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    err_path = os.path.join(root, "child-stderr.txt")
    with open(err_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lsnwal", "demo", "--child", "--dir", root],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )
    assert proc.stdout is not None
    acked: list[tuple[str, int]] = []
    start_lsn = 0
    enough = threading.Event()
    ready_at = [time.perf_counter()]

    def read() -> None:
        nonlocal start_lsn
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "ACK":
                acked.append((parts[1], int(parts[2])))
                if len(acked) >= KILL_AFTER_ACKS:
                    enough.set()
            elif len(parts) == 2 and parts[0] == "READY":
                start_lsn = int(parts[1])
                ready_at[0] = time.perf_counter()
        enough.set()  # EOF: the child ended by itself

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    enough.wait(timeout=CHILD_MAX_S)
    seconds = time.perf_counter() - ready_at[0]
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: its threads are committing right now
    proc.wait()
    reader.join(timeout=10)  # acknowledgements already in the pipe still count
    with open(err_path, encoding="utf-8") as f:
        stderr = f.read().strip()
    return CrashResult(list(acked), start_lsn, seconds, proc.returncode, stderr)


def child_main(directory: str) -> int:
    """The process that gets killed: recover, then commit until SIGKILL arrives."""
    root = os.path.abspath(directory)
    wal_dir = os.path.join(root, "wal")
    wal = wal_open(wal_dir, CONFIG)
    store = Store(wal, rebuild(wal_dir, wal.checkpoint_lsn).data)
    out = threading.Lock()
    print(f"READY {wal.last_lsn}", flush=True)
    deadline = time.monotonic() + CHILD_MAX_S

    def worker(i: int) -> None:
        rng = random.Random(f"child{i}")
        n = 0
        while time.monotonic() < deadline:
            txid = f"c{i}-{n}"
            lsn = store.transfer(txid, rng)
            wal.sync_async().wait()  # durable: only now may it be acknowledged
            with out:
                sys.stdout.write(f"ACK {txid} {lsn}\n")
                sys.stdout.flush()
            n += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CHILD_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wal.close()
    return 3  # nobody killed us: the parent will report it


def run(directory: str = "demo-data") -> int:
    """Run the whole demo in ``directory``; return 0 when every check passed."""
    try:
        return _run(directory)
    except DemoError as exc:
        print(f"lsnwal: error: {exc}", file=sys.stderr)
        return 1


def _run(directory: str) -> int:
    t_start = time.perf_counter()
    rep = Report()
    root = _prepare(directory)
    wal_dir = os.path.join(root, "wal")
    rep.say("lsnwal demo: a bank (a transactional key-value store) on a write-ahead log")
    rep.say(f"working directory {root} (wiped at start); WAL in {wal_dir}")
    rep.say()

    wal = wal_open(wal_dir, CONFIG)
    store = Store(wal)
    store.open_accounts()
    wal.sync()

    rep.say("1. asyncio: 50 clients x 8 transfers, each awaiting wal.sync_async()")
    t0 = time.perf_counter()
    asyncio.run(_async_clients(store, 50, 8, "a"))
    dt = time.perf_counter() - t0
    rep.say(f"   400 commits in {dt:.2f} s = {_rate(400, dt)}")

    rep.say("2. thread pool: 8 threads x 40 transfers, each calling the blocking wal.sync()")
    t0 = time.perf_counter()
    _thread_clients(store, 8, 40, "t")
    dt = time.perf_counter() - t0
    rep.say(f"   320 commits in {dt:.2f} s = {_rate(320, dt)}")
    rep.say(f"   {_stats_line(wal)}")

    rep.say("3. checkpoint: a JSON snapshot of the store stored as the checkpoint payload")
    with store.lock:
        covered = wal.last_lsn
        snapshot = json.dumps({"lsn": covered, "data": store.data}, sort_keys=True).encode()
        cp_record = wal.checkpoint(covered, snapshot)
        snap_digest = digest(store.data)
    wal.sync()
    rep.say(f"   snapshot covers LSN <= {covered}: {len(store.data)} keys, {len(snapshot):,} B, "
            f"digest {snap_digest}; CHECKPOINT record at LSN {cp_record}")
    asyncio.run(_async_clients(store, 20, 5, "b"))
    rep.say("   then 100 more transfers (asyncio)")

    rep.say(f"4. mark {MARK_NAME!r}: a named restore point; the store's state is kept aside")
    with store.lock:
        mark_lsn = wal.mark(MARK_NAME)
        at_mark = dict(store.data)
    wal.sync()
    rep.say(f"   mark at LSN {mark_lsn}: {_tx_count(at_mark)} transactions, "
            f"digest {digest(at_mark)}")
    _thread_clients(store, 4, 25, "d")
    rep.say("   then 100 more transfers (threads) that a restore to the mark must not show")
    before_crash = dict(store.data)
    parent_last = wal.last_lsn
    rep.say(f"   {_stats_line(wal)}")
    wal.close()
    rep.say(f"   closed the WAL at LSN {parent_last}")

    rep.say(f"5. crash: a child process commits from {CHILD_THREADS} threads "
            f"(wal.sync_async().wait()) and is killed with SIGKILL")
    crash = _crash_child(root, rep)
    killed = crash.returncode == -signal.SIGKILL
    top = max((lsn for _, lsn in crash.acked), default=0)
    rep.say(f"   child started at LSN {crash.start_lsn + 1}; {len(crash.acked)} commits "
            f"acknowledged in {crash.seconds:.2f} s ({_rate(len(crash.acked), crash.seconds)}), "
            f"highest acknowledged LSN {top}")
    if crash.stderr and not killed:
        rep.say(f"   child stderr: {crash.stderr.splitlines()[-1]}")
    rep.check(f"child killed by SIGKILL mid-stream (exit status {crash.returncode})", killed)
    rep.check("child acknowledged commits before it died", len(crash.acked) > 0)

    rep.say("6. recovery: open the WAL, rebuild from the checkpoint snapshot + replay")
    t0 = time.perf_counter()
    wal = wal_open(wal_dir, CONFIG)
    open_s = time.perf_counter() - t0
    try:
        notes = wal.recovery_report or ["nothing to cut: the kill left no torn record"]
        rep.say(f"   opened in {open_s * 1e3:.1f} ms; last LSN {wal.last_lsn}, checkpoint LSN "
                f"{wal.checkpoint_lsn}")
        for note in notes:
            rep.say(f"   recovery: {note}")
        t0 = time.perf_counter()
        got = rebuild(wal_dir, wal.checkpoint_lsn)
        rb_s = time.perf_counter() - t0
        rec = got.data
        rep.say(f"   rebuilt in {rb_s * 1e3:.1f} ms: snapshot (LSN <= {got.snapshot_lsn}) + "
                f"{got.replayed} replayed records -> {_tx_count(rec)} transactions, "
                f"{ACCOUNTS} accounts, digest {digest(rec)}")
        sample = ", ".join(f"{k[5:]}={rec[k]}" for k in sorted(rec) if k.startswith("acct:"))
        rep.say(f"   balances: {sample}")
        missing = [t for t, _ in crash.acked if f"tx:{t}" not in rec]
        rep.check(f"all {len(crash.acked)} acknowledged child transactions recovered"
                  + (f" (missing: {missing[:5]})" if missing else ""), not missing)
        rep.check(f"highest acknowledged LSN {top} <= recovered last LSN {wal.last_lsn}",
                  top <= wal.last_lsn)
        parent_tx = [k for k in before_crash if k.startswith("tx:")]
        rep.check(f"all {len(parent_tx)} transactions from before the crash recovered",
                  all(k in rec for k in parent_tx))
        rep.check(f"balances still sum to {TOTAL:,} (no half-applied transfer)",
                  _balance_sum(rec) == TOTAL)
        rep.check("snapshot + replay equals a full replay from LSN 1",
                  rec == full_replay(wal_dir))
        final_last = wal.last_lsn
    finally:
        wal.close()

    rep.say(f"7. point-in-time restore to mark {MARK_NAME!r} (LSN {mark_lsn})")
    restored_dir = os.path.join(root, "restored-wal")
    t0 = time.perf_counter()
    result = restore(wal_dir, restored_dir, until_mark=MARK_NAME)
    with wal_open(restored_dir, CONFIG) as rwal:
        at = rebuild(restored_dir, rwal.checkpoint_lsn)
        restored_last = rwal.last_lsn
    pitr_s = time.perf_counter() - t0
    rep.say(f"   lsnwal.restore wrote {result.records} records (LSN {result.first_lsn}.."
            f"{result.last_lsn}) into {restored_dir}; opened and rebuilt in {pitr_s:.2f} s "
            f"(snapshot LSN <= {at.snapshot_lsn} + {at.replayed} records)")
    direct = full_replay(wal_dir, until_mark=MARK_NAME)
    rep.say(f"   state at the mark, kept aside when it was written: {_tx_count(at_mark)} "
            f"transactions, digest {digest(at_mark)}")
    rep.say(f"   state rebuilt from the restored WAL:              {_tx_count(at.data)} "
            f"transactions, digest {digest(at.data)}")
    rep.say(f"   full replay of the original WAL until the mark:   {_tx_count(direct)} "
            f"transactions, digest {digest(direct)}")
    rep.check("restored state equals the state at the mark", at.data == at_mark)
    rep.check("a replay until the mark gives the same state", direct == at_mark)
    rep.check(f"the restored WAL ends at the mark (LSN {restored_last})",
              restored_last == mark_lsn)
    rep.check(f"the restore went back in time (the recovered WAL ends at LSN {final_last})",
              at.data != before_crash and final_last > mark_lsn)

    elapsed = time.perf_counter() - t_start
    rep.say()
    if rep.failed:
        rep.say(f"{len(rep.failed)} of {len(rep.checks)} checks FAILED in {elapsed:.1f} s")
        return 1
    rep.say(f"all {len(rep.checks)} checks passed in {elapsed:.1f} s "
            f"(inspect the WAL: lsnwal info {wal_dir})")
    return 0
