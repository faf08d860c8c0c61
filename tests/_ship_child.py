"""Child process of test_ship's kill -9 test: write, sync and ship until killed.

Usage: ``python _ship_child.py WAL_DIR URL SEED``. Credentials come from the
environment. Prints ``<lsn>`` per acknowledged record (flushed), so the parent
knows what must survive; segments are small so that uploads are always under way.
"""

from __future__ import annotations

import random
import sys
import time

import lsnwal


def main() -> None:
    wal_dir, url, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, archive_url=url,
                           archive_ship_retry_max_s=0.2)
    wal = lsnwal.open(wal_dir, cfg)
    print("ready", wal.last_lsn, flush=True)
    rng = random.Random(seed)
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        lsn = wal.append(f"s{seed}:".encode() + rng.randbytes(rng.randint(50, 900)))
        wal.sync()
        print(lsn, flush=True)


if __name__ == "__main__":
    main()
