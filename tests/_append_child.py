"""Child process of test_append_kill9: append without ever syncing, print each appended LSN.

Usage: ``python _append_child.py WAL_DIR SEED SEGMENT_MAX_BYTES``. Prints
``ready <last_lsn>`` once the WAL is open, then, after each ``append`` or
``append_batch`` returns, one line ``<lsn> <payload hex>`` per record, flushed at
once, until it is killed (or a safety limit of 60 s passes). It never calls
``sync``: what it prints was only handed to the operating system.
"""

from __future__ import annotations

import random
import sys
import time

import lsnwal


def main() -> None:
    wal_dir, seed, seg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    wal = lsnwal.open(wal_dir, lsnwal.WalConfig(segment_max_bytes=seg))
    out = sys.stdout
    out.write(f"ready {wal.last_lsn}\n")
    out.flush()
    deadline = time.monotonic() + 60.0
    i = 0
    while time.monotonic() < deadline:
        i += 1
        n = rng.choice((1, 1, 1, 2, 7))
        payloads = [
            f"s{seed}-{i}-{k}:".encode() + rng.randbytes(rng.randint(0, 900)) for k in range(n)
        ]
        lsns = [wal.append(payloads[0])] if n == 1 else list(wal.append_batch(payloads))
        out.write("".join(f"{lsn} {p.hex()}\n" for lsn, p in zip(lsns, payloads, strict=True)))
        out.flush()
    wal.close()


if __name__ == "__main__":
    main()
