"""Child processes of test_reader_live: a writer and three kinds of readers of one live WAL.

Usage: ``python _live_child.py ROLE WAL_DIR CTRL_DIR [ARGS]``. Roles:

* ``writer GEN SECONDS``: threads and asyncio tasks append and commit for
  SECONDS, checkpointing no further than the follower has read (a replica's
  retention rule), then close cleanly and print ``done <synced_lsn>``. The
  watermark is published by the WAL itself when it does so, else here after
  every acknowledged sync (never before: it may lag, never lead).
* ``follow``: follows durable records until ``CTRL_DIR/stop`` holds an LSN it
  has reached; writes its progress to ``CTRL_DIR/progress``.
* ``verify``: runs ``verify`` until stopped (and at least ``MIN_RUNS`` times).
* ``replay``: replays from the checkpoint + 1 until stopped.

Every reader prints one JSON line with what it saw and every error it met.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import threading
import time
import traceback

import lsnwal
from lsnwal.fs import OsFileSystem
from lsnwal.watermark import WatermarkWriter, read_watermark

CONFIG = lsnwal.WalConfig(segment_max_bytes=8192, compression="zstd", archive_max_segments=4)
THREADS = 3
TASKS = 3
MIN_VERIFY_RUNS = 100


def payload(gen: int, tid: int, i: int) -> bytes:
    """The deterministic payload of record ``i`` of writer ``tid`` of writer process ``gen``."""
    head = f"g{gen}t{tid}i{i}:".encode()
    return head + hashlib.sha256(head).digest() * (1 + i % 3)


def parse(data: bytes) -> tuple[int, int, int] | None:
    """``(gen, tid, i)`` of a payload made by ``payload``, or None if it is not one."""
    head, sep, _rest = data.partition(b":")
    try:
        g, rest = head[1:].split(b"t")
        t, i = rest.split(b"i")
        key = (int(g), int(t), int(i))
    except ValueError:
        return None
    return key if sep and payload(*key) == data else None


# --------------------------------------------------------------------------- writer


class Publisher:
    """Publishes the watermark after acknowledged syncs unless the WAL does it itself."""

    def __init__(self, wal: lsnwal.AsyncWalWriter, root: str) -> None:
        self.wal = wal
        self.lock = threading.Lock()
        wm = read_watermark(root)
        self.own = None if wm is not None and wm.writer_pid == os.getpid() else \
            WatermarkWriter(OsFileSystem(), root)

    def publish(self, synced: int) -> None:
        if self.own is not None:
            with self.lock:
                if synced > self.own.synced_lsn:
                    self.own.publish(synced, self.wal.checkpoint_lsn)


def writer(root: str, ctrl: str, gen: int, seconds: float) -> None:
    wal = lsnwal.open(root, CONFIG)
    wal.sync()
    pub = Publisher(wal, root)
    pub.publish(wal.sync())
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    errors: list[str] = []

    def thread_main(tid: int) -> None:
        i = 0
        try:
            while time.monotonic() < deadline:
                lsn = wal.append(payload(gen, tid, i))
                i += 1
                if i % 7 == 0:
                    pub.publish(wal.sync())
                elif i % 3 == 0:
                    h = wal.sync_async()
                    assert h.wait(30)
                    pub.publish(h.target_lsn)
                del lsn
        except Exception:  # reported to the test, which fails on any
            errors.append(traceback.format_exc())

    async def task_main(tid: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            wal.append(payload(gen, tid, i))
            i += 1
            if i % 4 == 0:
                h = wal.sync_async()
                await h
                pub.publish(h.target_lsn)
            else:
                await asyncio.sleep(0)

    def checkpointer() -> None:
        while time.monotonic() < deadline:
            try:
                with open(os.path.join(ctrl, "progress")) as f:
                    read = int(f.read() or 0)
            except (FileNotFoundError, ValueError):
                read = 0
            cp = min(read, wal.synced_lsn) - 50
            if cp > wal.checkpoint_lsn:
                wal.checkpoint(cp)
            time.sleep(0.02)

    async def tasks() -> None:
        await asyncio.gather(*(task_main(THREADS + k) for k in range(TASKS)))

    threads = [threading.Thread(target=thread_main, args=(t,)) for t in range(THREADS)]
    threads.append(threading.Thread(target=checkpointer))
    threads.append(threading.Thread(target=lambda: asyncio.run(tasks())))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = wal.sync()
    pub.publish(final)
    wal.close()
    print(json.dumps({"done": final, "errors": errors}), flush=True)


# --------------------------------------------------------------------------- readers


def _stop_at(ctrl: str) -> int | None:
    try:
        with open(os.path.join(ctrl, "stop")) as f:
            return int(f.read())
    except (FileNotFoundError, ValueError):
        return None


def follow(root: str, ctrl: str) -> None:
    reader = lsnwal.open_reader(root)
    out: dict[str, object] = {"errors": [], "above_watermark": 0, "out_of_order": 0,
                              "bad_payload": 0}
    errors: list[str] = out["errors"]  # type: ignore[assignment]
    lsns: list[int] = []
    seqs: dict[tuple[int, int], int] = {}
    seq_errors = 0
    state = {"last": 0}

    def watchdog() -> None:
        while not reader.closed:
            stop = _stop_at(ctrl)
            if stop is not None and state["last"] >= stop:
                reader.close()
            tmp = os.path.join(ctrl, "progress.tmp")
            with open(tmp, "w") as f:
                f.write(str(state["last"]))
            os.replace(tmp, os.path.join(ctrl, "progress"))
            time.sleep(0.01)

    w = threading.Thread(target=watchdog, daemon=True)
    w.start()
    try:
        for rec in reader.follow(poll_max_s=0.05):
            if rec.lsn != state["last"] + 1 and state["last"]:
                out["out_of_order"] = int(out["out_of_order"]) + 1  # type: ignore[call-overload]
            lsns.append(rec.lsn)
            state["last"] = rec.lsn
            if rec.lsn > reader.synced_lsn:
                out["above_watermark"] = int(out["above_watermark"]) + 1  # type: ignore[call-overload]
            if rec.kind is lsnwal.RecordKind.DATA:
                key = parse(rec.payload)
                if key is None:
                    out["bad_payload"] = int(out["bad_payload"]) + 1  # type: ignore[call-overload]
                    continue
                k = (key[0], key[1])
                if seqs.get(k, -1) + 1 != key[2]:
                    seq_errors += 1
                seqs[k] = key[2]
    except Exception:
        errors.append(traceback.format_exc())
    out.update(first=lsns[0] if lsns else None, last=state["last"], count=len(lsns),
               distinct=len(set(lsns)), seq_errors=seq_errors, sequences=len(seqs))
    print(json.dumps(out), flush=True)


def verify(root: str, ctrl: str) -> None:
    runs, problems, warnings = 0, [], 0
    errors: list[str] = []
    while _stop_at(ctrl) is None or runs < MIN_VERIFY_RUNS:
        try:
            report = lsnwal.verify(root)
        except Exception:
            errors.append(traceback.format_exc())
            break
        runs += 1
        warnings += len(report.warnings)
        problems += [f"{p.file}@{p.offset} lsn={p.lsn}: {p.message}" for p in report.problems]
    print(json.dumps({"runs": runs, "problems": problems, "errors": errors,
                      "warnings": warnings}), flush=True)


def replay(root: str, ctrl: str) -> None:
    runs, records, errors, pruned = 0, 0, [], 0
    while _stop_at(ctrl) is None or runs < 5:
        reader = lsnwal.open_reader(root)
        prev = 0
        try:
            start = reader.checkpoint_lsn + 1
            durable = runs % 2 == 1
            records_it = reader.replay(from_lsn=start, durable_only=durable)
            # read after the replay read its own limit: the watermark only grows, so no
            # durable record may be above this
            limit = reader.synced_lsn
            prev = start - 1
            for rec in records_it:
                if rec.lsn != prev + 1:
                    errors.append(f"LSN {rec.lsn} after {prev}")
                    break
                if durable and rec.lsn > limit:
                    errors.append(f"durable replay gave LSN {rec.lsn} above {limit}")
                    break
                if rec.kind is lsnwal.RecordKind.DATA and parse(rec.payload) is None:
                    errors.append(f"bad payload at LSN {rec.lsn}")
                    break
                prev = rec.lsn
                records += 1
        except lsnwal.LsnUnavailableError:
            # True only if retention really removed the LSN the replay needed next (the
            # checkpoint moved on after the replay read it): then it is not a false report.
            firsts = reader.chain.listing()
            if not firsts or firsts[0] <= prev + 1:
                errors.append(traceback.format_exc())
            pruned += 1
        except Exception:
            errors.append(traceback.format_exc())
        runs += 1
    print(json.dumps({"runs": runs, "records": records, "errors": errors, "pruned": pruned}),
          flush=True)


def main() -> None:
    role, root, ctrl = sys.argv[1], sys.argv[2], sys.argv[3]
    if role == "writer":
        writer(root, ctrl, int(sys.argv[4]), float(sys.argv[5]))
    elif role == "follow":
        follow(root, ctrl)
    elif role == "verify":
        verify(root, ctrl)
    elif role == "replay":
        replay(root, ctrl)
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
