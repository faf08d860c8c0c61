"""Scan speed of the read side against a hand-written loop, same run, warm cache.

Builds (or reuses) a WAL of N x 100-byte DATA records in plain segments and a zstd
copy, then times: the hand loop (read 1 MiB chunks, unpack each header, check each
CRC32C, count), ``replay()``, ``WalReader.iter_raw()``, ``verify()`` and ``replay()``
over the zstd archive. Prints records/s (best of ``--repeat``) and the ratios the
read side aims for. Usage: ``python stress/reader_scan.py [--records N] [--dir D]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

import lsnwal
from lsnwal.fs import OsSyncBackend


class _NoSync(OsSyncBackend):
    def sync_file(self, fd: int) -> None:
        pass

    def sync_dir(self, fd: int) -> None:
        pass


def build(root: Path, n: int, compression: str | None) -> None:
    if (root / "archive").exists():
        return
    cfg = lsnwal.WalConfig(archive_enabled=True, compression=compression)
    payload = b"x" * 100
    with lsnwal.open(root, cfg, sync_backend=_NoSync()) as wal:
        for _ in range(0, n, 10_000):
            wal.append_batch([payload] * 10_000)
        wal.sync()
        assert wal.wait_archived(120)


def hand_loop(root: Path) -> int:
    """The baseline from the issue (the harness's loop): 1 MiB reads, unpack, crc32c, count."""
    files = sorted((root / "archive").glob("*.wal")) + sorted((root / "pending").glob("*.wal"))
    return h.naive_scan([str(p) for p in [*files, root / "active.wal"]])


def best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    times = []
    count = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - t0)
    return min(times), count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/lsnwal-reader-scan")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = Path(args.dir) / str(args.records)
    plain, zstd = base / "plain", base / "zstd"
    build(plain, args.records, None)
    build(zstd, args.records, "zstd")
    reader = lsnwal.open_reader(plain)
    runs = {
        "hand loop": lambda: hand_loop(plain),
        "replay()": lambda: sum(1 for _ in lsnwal.replay(plain)),
        "iter_raw()": lambda: sum(1 for _ in reader.iter_raw()),
        "verify()": lambda: lsnwal.verify(plain).records,
        "replay() zstd": lambda: sum(1 for _ in lsnwal.replay(zstd)),
    }
    rates = {}
    for name, fn in runs.items():
        t, count = best(fn, args.repeat)
        rates[name] = count / t
        print(f"{name:<16} {count:>9} records  {t:7.3f} s  {count / t / 1e6:6.2f} M rec/s",
              flush=True)
    h = rates["hand loop"]
    print(f"replay/hand {rates['replay()'] / h:.2f}x  iter_raw/hand {rates['iter_raw()'] / h:.2f}x"
          f"  verify {rates['verify()'] / 1e6:.2f} M/s  zstd/plain "
          f"{rates['replay() zstd'] / rates['replay()']:.2f}x")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
