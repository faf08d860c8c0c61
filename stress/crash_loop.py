"""Real-process crash loop: SIGKILL a busy writer again and again; nothing acknowledged may be lost.

Each cycle starts a child process on the same WAL directory. The child recovers
the WAL (``lsnwal.open``) and writes with several threads (``append`` /
``append_batch`` then ``sync_async().wait()`` or ``sync()``) and several asyncio
tasks (``await wal.sync_async()``), while another thread declares checkpoints,
writes marks and prunes. Segments are 4 KiB and the archive keeps at most 12
segments, so the child rotates, archives and prunes all the time. After a commit
*returns*, the child prints one line per record it covered::

    A <lsn> <blake2b-64 hex of the payload>

with one ``os.write`` (a pipe write under PIPE_BUF is atomic, so a kill never
tears a line). Before ``checkpoint(cp)`` it prints ``c <cp>`` (intent: the upper
bound) and after it returns ``C <cp> <record lsn>``.

The parent SIGKILLs the child at a seeded random moment: two cycles in three at a
random delay after the start (sometimes during the child's own recovery), one in
three while the child is stopped *inside* a durability step (the child's failpoint
hook prints ``AT <failpoint>`` and waits at the chosen rotation, archive, prune,
fsync or record-write failpoint; the parent then kills it there). Then the parent

1. recovers: ``lsnwal.open`` must not raise;
2. replays everything and checks: LSNs contiguous; every acknowledged LSN above the
   recovered checkpoint present with the same payload hash; nothing above the
   checkpoint pruned; the checkpoint at least the last durable one and at most the
   highest declared;
3. runs ``lsnwal.verify`` (must be ok);

and goes on with the next cycle on the same directory. Acknowledged LSNs
accumulate over all cycles, so every cycle re-checks all earlier ones.

A kill -9 does not lose the page cache, so this complements the simulated power
losses of tests/test_crash_states.py: it runs the real OS, real threads and
real timing instead of a model.

Usage::

    python stress/crash_loop.py                  # 500 cycles (make stress)
    python stress/crash_loop.py --cycles 15      # the short form in make test
    python stress/crash_loop.py --seed 7 --dir /tmp/wal-crash --quiet

Exit status 1 if any acknowledged record is lost or changed, recovery fails or
verify reports a problem.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import lsnwal

CONFIG = lsnwal.WalConfig(segment_max_bytes=4096, archive_max_segments=12, write_buffer_bytes=2048)

#: failpoints the parent may stop the child at (then SIGKILL it there)
KILL_POINTS = [
    "before_rotate_rename", "after_rotate_rename", "before_active_create",
    "after_active_create", "before_archive_move", "after_archive_move", "before_prune",
    "after_prune", "before_dir_fsync", "after_dir_fsync", "before_file_fsync",
    "after_file_fsync", "after_record_write",
]


def _digest(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


# ----------------------------------------------------------------------------- child


def child_main(directory: str, seed: int, stop_at: str, stop_nth: int) -> int:
    """Write until killed; print every acknowledged record (see module docstring)."""
    hits = 0
    hits_mu = threading.Lock()

    def emit(line: str) -> None:
        os.write(1, (line + "\n").encode())

    def failpoint(name: str) -> None:
        nonlocal hits
        if name != stop_at:
            return
        with hits_mu:
            hits += 1
            now = hits == stop_nth
        if now:
            emit(f"AT {name}")
            time.sleep(60)  # the parent kills us here, inside the durability step

    wal = lsnwal.open(directory, CONFIG, failpoint=failpoint if stop_at else None)
    emit(f"R {wal.last_lsn}")
    done = threading.Event()

    def writer(t: int) -> None:
        rng = random.Random(seed * 1000 + t)
        while not done.is_set():
            items = [rng.randbytes(rng.choice((0, 8, 100, 400, 1500))) for _ in
                     range(rng.choice((1, 1, 1, 3, 7)))]
            lsns = [wal.append(items[0])] if len(items) == 1 else list(wal.append_batch(items))
            if rng.random() < 0.3:
                durable = wal.sync()
            else:
                h = wal.sync_async()
                h.wait()
                durable = h.target_lsn
            assert durable >= lsns[-1]
            emit("\n".join(f"A {n} {_digest(p)}" for n, p in zip(lsns, items, strict=True)))

    async def committer(t: int) -> None:
        rng = random.Random(seed * 1000 + 100 + t)
        while not done.is_set():
            p = rng.randbytes(rng.randint(1, 300))
            lsn = wal.append(p)
            await wal.sync_async()
            emit(f"A {lsn} {_digest(p)}")

    async def async_main() -> None:
        await asyncio.gather(*(committer(t) for t in range(3)))

    def keeper() -> None:
        rng = random.Random(seed * 1000 + 999)
        n = 0
        while not done.wait(0.01):
            n += 1
            synced = wal.synced_lsn
            if synced > wal.checkpoint_lsn and rng.random() < 0.6:
                cp = rng.randint(wal.checkpoint_lsn, synced)
                emit(f"c {cp}")
                rec = wal.checkpoint(cp, b"app-state")
                emit(f"C {cp} {rec}")
            if n % 7 == 0:
                wal.mark(f"m{seed}-{n}")
            if n % 11 == 0:
                wal.prune()

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(3)]
    threads.append(threading.Thread(target=keeper, daemon=True))
    for th in threads:
        th.start()
    timer = threading.Timer(30.0, done.set)  # never reached in a normal run: we get killed
    timer.daemon = True
    timer.start()
    asyncio.run(async_main())
    for th in threads:
        th.join()
    wal.close()
    return 0


# ----------------------------------------------------------------------------- parent


@dataclass
class Truth:
    """What the children were told, over all cycles."""

    acked: dict[int, str] = field(default_factory=dict)  # LSN -> payload hash
    max_acked: int = 0
    declared_cp: int = 0  # highest checkpoint any child was about to declare
    durable_cp: int = 0  # highest checkpoint whose CHECKPOINT record was acknowledged
    #: (record LSN, cp) declared by the current child: LSNs of records that were not
    #: durable at the kill are handed out again by the next child
    checkpoints: list[tuple[int, int]] = field(default_factory=list)

    def end_cycle(self) -> None:
        """The child is dead: keep the checkpoints its acknowledgements made durable."""
        for rec, cp in self.checkpoints:
            if rec <= self.max_acked:
                self.durable_cp = max(self.durable_cp, cp)
        self.checkpoints.clear()

    def take(self, line: str) -> None:
        """Learn from one complete line of child output."""
        parts = line.split()
        if not parts:
            return
        if parts[0] == "A":
            lsn, digest = int(parts[1]), parts[2]
            old = self.acked.setdefault(lsn, digest)
            if old != digest:
                raise AssertionError(f"LSN {lsn} acknowledged twice with different payloads")
            self.max_acked = max(self.max_acked, lsn)
        elif parts[0] == "c":
            self.declared_cp = max(self.declared_cp, int(parts[1]))
        elif parts[0] == "C":
            self.checkpoints.append((int(parts[2]), int(parts[1])))


@dataclass
class Summary:
    """Counts printed at the end."""

    cycles: int = 0
    random_kills: int = 0
    failpoint_kills: dict[str, int] = field(default_factory=dict)
    checked: int = 0  # acknowledged records checked, summed over cycles
    lost: int = 0
    verify_failures: int = 0
    recovery_failures: int = 0
    child_errors: int = 0
    cuts: int = 0  # cycles whose recovery cut a torn tail or set a file aside
    startup_kills: int = 0  # killed before the child had finished opening the WAL


def _reader(stream: object, lines: list[str], at: threading.Event, ready: threading.Event) -> None:
    buf = b""
    fd = stream.fileno()  # type: ignore[attr-defined]
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        *complete, buf = buf.split(b"\n")
        for raw in complete:
            line = raw.decode()
            lines.append(line)
            if line.startswith("AT "):
                at.set()
            elif line.startswith("R "):
                ready.set()
    # an incomplete last line (no newline) cannot be an acknowledgement we rely on


def run_cycle(directory: str, rng: random.Random, cycle: int, truth: Truth,
              summary: Summary, log: logging.Logger) -> list[str]:
    """One child run, one kill, one recovery check; return the problems found."""
    stop_at, stop_nth = "", 0
    if cycle % 3 == 2:
        stop_at, stop_nth = rng.choice(KILL_POINTS), rng.randint(1, 25)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--dir", directory,
           "--seed", str(rng.randrange(1 << 30)), "--stop-at", stop_at,
           "--stop-nth", str(stop_nth)]
    lines: list[str] = []
    at, ready = threading.Event(), threading.Event()
    with tempfile.TemporaryFile() as errf:
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf)
        reader = threading.Thread(target=_reader, args=(child.stdout, lines, at, ready),
                                  daemon=True)
        reader.start()
        how = "random"
        if stop_at:
            how = stop_at if at.wait(3.0) else "random (failpoint not reached)"
        else:  # one cycle in six very early: inside the child's own recovery
            time.sleep(rng.uniform(0.02, 0.2) if rng.random() < 1 / 6 else rng.uniform(0.1, 0.8))
        exited = child.poll()
        if exited is None:
            child.send_signal(signal.SIGKILL)
        child.wait()
        reader.join(10)
        if child.stdout:
            child.stdout.close()
        errf.seek(0)
        stderr = errf.read().decode(errors="replace")
    if not ready.is_set():
        summary.startup_kills += 1
    problems: list[str] = []
    if exited is not None:
        summary.child_errors += 1
        problems.append(f"child exited by itself with status {exited}: {stderr[-2000:]}")
    if how == stop_at:
        summary.failpoint_kills[stop_at] = summary.failpoint_kills.get(stop_at, 0) + 1
    else:
        summary.random_kills += 1
    try:
        for line in lines:
            truth.take(line)
    except AssertionError as exc:
        problems.append(str(exc))
    truth.end_cycle()
    problems += check_directory(directory, truth, summary)
    log.info("cycle %d: killed (%s) after %d lines; %d acknowledged so far, max LSN %d%s",
             cycle, how, len(lines), len(truth.acked), truth.max_acked,
             f"; PROBLEMS: {problems}" if problems else "")
    return problems


def check_directory(directory: str, truth: Truth, summary: Summary) -> list[str]:
    """Recover the WAL and check every acknowledged record; return the problems."""
    problems: list[str] = []
    try:
        wal = lsnwal.open(directory, CONFIG)
    except Exception as exc:
        summary.recovery_failures += 1
        return [f"recovery raised {exc!r}"]
    try:
        last, cp = wal.last_lsn, wal.checkpoint_lsn
        if wal.recovery_report:
            summary.cuts += 1
    finally:
        wal.close()
    if last < truth.max_acked:
        problems.append(f"recovered last_lsn {last} < acknowledged {truth.max_acked}")
    if not truth.durable_cp <= cp <= truth.declared_cp:
        problems.append(f"recovered checkpoint {cp}, durable {truth.durable_cp}, "
                        f"declared at most {truth.declared_cp}")
    found: dict[int, str] = {}
    try:
        for rec in lsnwal.replay(directory, config=CONFIG):
            found[rec.lsn] = _digest(rec.payload)
    except lsnwal.WalError as exc:
        problems.append(f"replay raised {exc!r}")
    if found:
        first, top = min(found), max(found)
        if len(found) != top - first + 1:
            problems.append(f"LSNs not contiguous between {first} and {top}")
        if first > cp + 1:
            problems.append(f"records {cp + 1}..{first - 1} above checkpoint {cp} are gone")
    lost = 0
    for lsn, digest in truth.acked.items():
        got = found.get(lsn)
        if got is None and lsn <= cp:
            continue  # pruned: the application's checkpoint covers it
        summary.checked += 1
        if got != digest:
            lost += 1
            if lost <= 5:
                what = "missing" if got is None else "changed"
                problems.append(f"acknowledged LSN {lsn} is {what}")
    summary.lost += lost
    report = lsnwal.verify(directory, config=CONFIG)
    if not report.ok:
        summary.verify_failures += 1
        problems.append(f"verify: {report.problems[:3]}")
    return problems


def parent_main(args: argparse.Namespace) -> int:
    """Run the cycles and print the summary; 1 on any loss or failure."""
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    log = logging.getLogger("crash_loop")
    logging.getLogger("lsnwal").setLevel(logging.ERROR)  # recovery cuts are expected here
    own_dir = args.dir is None
    base = args.dir or tempfile.mkdtemp(prefix="lsnwal-crash-loop-")
    directory = os.path.join(base, "wal")
    if os.path.exists(directory):
        print(f"crash_loop: {directory} exists; give a fresh --dir", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    truth, summary = Truth(), Summary()
    failures: list[str] = []
    t0 = time.monotonic()
    for cycle in range(args.cycles):
        problems = run_cycle(directory, rng, cycle, truth, summary, log)
        summary.cycles += 1
        if problems:
            failures += [f"cycle {cycle}: {p}" for p in problems]
            break  # keep the directory as it is for a post-mortem
    elapsed = time.monotonic() - t0
    fp = ", ".join(f"{k}={v}" for k, v in sorted(summary.failpoint_kills.items()))
    print(f"crash_loop: seed={args.seed} dir={directory}")
    print(f"  cycles: {summary.cycles} ({summary.random_kills} random-time kills, "
          f"{sum(summary.failpoint_kills.values())} kills inside a durability step"
          f"{': ' + fp if fp else ''}; {summary.startup_kills} during the child's own "
          "recovery/startup)")
    print(f"  acknowledged records: {len(truth.acked)} distinct, "
          f"{summary.checked} checks over all cycles; max acknowledged LSN {truth.max_acked}")
    print(f"  recoveries that had to cut a tail or set a file aside: {summary.cuts}")
    print(f"  records lost: {summary.lost}")
    print(f"  recovery failures: {summary.recovery_failures}, verify failures: "
          f"{summary.verify_failures}, child errors: {summary.child_errors}")
    print(f"  elapsed: {elapsed:.1f}s")
    for f in failures:
        print(f"  FAILURE {f}")
    if failures or summary.lost:
        print(f"  the directory is kept for inspection: {directory}")
        return 1
    if own_dir:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=500, help="kill/recover cycles (500)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the kill schedule (1)")
    ap.add_argument("--dir", default=None,
                    help="work directory; the WAL is DIR/wal (default: a new temp dir)")
    ap.add_argument("--quiet", action="store_true", help="print only the summary")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stop-at", default="", help=argparse.SUPPRESS)
    ap.add_argument("--stop-nth", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        with contextlib.suppress(KeyboardInterrupt):
            return child_main(args.dir, args.seed, args.stop_at, args.stop_nth)
        return 1
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
