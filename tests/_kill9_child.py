"""Child process of test_kill9: write with several threads, print every acknowledged LSN.

Usage: ``python _kill9_child.py WAL_DIR SEED THREADS``. Prints ``ready <last_lsn>``
once the WAL is open, then one line ``<lsn> <payload hex>`` per record whose
durability was acknowledged (by ``sync_async().wait()`` or ``sync()``), flushed
line by line, until it is killed (or a safety limit of 60 s passes).
"""

from __future__ import annotations

import random
import sys
import threading
import time

import lsnwal

_out = threading.Lock()


def _emit(lines: list[str]) -> None:
    with _out:
        sys.stdout.write("".join(lines))
        sys.stdout.flush()


def _writer(wal: lsnwal.AsyncWalWriter, seed: int, tid: int, deadline: float) -> None:
    rng = random.Random(seed * 1000 + tid)
    i = 0
    while time.monotonic() < deadline:
        i += 1
        n = rng.choice((1, 1, 1, 2, 5))
        payloads = [
            f"s{seed}-t{tid}-{i}-{k}:".encode() + rng.randbytes(rng.randint(0, 600))
            for k in range(n)
        ]
        lsns = [wal.append(payloads[0])] if n == 1 else list(wal.append_batch(payloads))
        if rng.random() < 0.15:
            durable = wal.sync()
            assert durable >= lsns[-1]
        else:
            handle = wal.sync_async()
            assert handle.wait(30.0)
            assert handle.target_lsn >= lsns[-1]
        _emit([f"{lsn} {p.hex()}\n" for lsn, p in zip(lsns, payloads, strict=True)])


def main() -> None:
    wal_dir, seed, n_threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = lsnwal.WalConfig(segment_max_bytes=16 * 1024)
    wal = lsnwal.open(wal_dir, config)
    _emit([f"ready {wal.last_lsn}\n"])
    deadline = time.monotonic() + 60.0
    threads = [
        threading.Thread(target=_writer, args=(wal, seed, t, deadline), daemon=True)
        for t in range(n_threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wal.close()


if __name__ == "__main__":
    main()
