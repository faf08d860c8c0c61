"""Write docs/benchmarks.md from its template and the figures of one ``make bench-docs`` run.

Owns the page's tables and the figures quoted in its text: every ``@@KEY@@`` of
``stress/benchmarks_page.md.in`` is filled from
``docs/results/{commit,append,replay,follow}.json``,
so the page always shows one run. Rule: a placeholder left unfilled is an error. The prose
around the figures is the template's; read it again after a new run, since what a figure
means can change. Usage: ``python stress/bench_page.py [--check]`` (``--check`` writes
nothing and exits 1 when the page is not what the template and the results give).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

ROOT = Path(__file__).resolve().parent.parent
R = ROOT / "docs" / "results"
Doc = dict[str, Any]
c: Doc = json.loads((R / "commit.json").read_text(encoding="utf-8"))
a: Doc = json.loads((R / "append.json").read_text(encoding="utf-8"))
s: Doc = json.loads((R / "replay.json").read_text(encoding="utf-8"))
f: Doc = json.loads((R / "follow.json").read_text(encoding="utf-8"))


def res(doc: Doc, name: str) -> dict[str, Any]:
    """The recorded result named ``name`` (KeyError when the run did not have it)."""
    for r in doc["results"]:
        if r["name"] == name:
            return dict(r)
    raise KeyError(name)


def rate(doc: Doc, name: str) -> float | None:
    """The median rate of ``name``, or None when the run did not measure it."""
    try:
        value = res(doc, name)["rate"]
    except KeyError:
        return None
    return None if value is None else float(value)


def fr(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def ratio(x: float | None, y: float | None) -> str:
    return "n/a" if x is None or not y else f"{x / y:.2f}x"


def ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e3:,.1f}"


def L(k: str) -> float | None:
    """An lsnwal workload's rate."""
    return rate(c, f"lsnwal {k}")


def N(k: str) -> float | None:
    """The same workload's rate with the no-op sync backend."""
    return rate(c, f"no-op {k}")


def P(k: str) -> float | None:
    """A peer's rate (``leveldb 64``)."""
    return rate(c, k)


def cpf(label: str, digits: int = 0) -> str:
    """Median over the repetitions of an lsnwal workload's commits per fsync."""
    v = sorted(x["commits_per_fsync"] for x in res(c, f"lsnwal {label}")["reps"]
               if x.get("commits_per_fsync"))
    return f"{v[len(v) // 2]:.{digits}f}" if v else "n/a"


def main() -> int:
    """Fill the template; refuse to write a page with a placeholder left."""
    V: dict[str, str] = {}
    V["DATE"] = c["facts"]["date"][:16].replace("T", " ") + " UTC"

    rows = []
    for label, how in [("1 committer, sync()", "`append` + `sync()`"),
                       ("1 committer, wait()", "`append` + `sync_async().wait()`"),
                       ("1 task, await", "`append` + `await wal.sync_async()`"),
                       ("16 threads, sync()", "`append` + `sync()`"),
                       ("16 threads, wait()", "`append` + `sync_async().wait()`"),
                       ("64 threads, wait()", "`append` + `sync_async().wait()`"),
                       ("1,000 tasks, await", "`append` + `await wal.sync_async()`")]:
        r = res(c, f"lsnwal {label}")
        who = "1,000 tasks" if label.startswith("1,000") else label.split(",")[0]
        rows.append([who, how, fr(r["rate"]), ms(r["p99_s"]), cpf(label, 1), fr(N(label))])
    V["LSNWAL_TABLE"] = h.table(["committers", "each commit", "commits/s", "p99 ms", "per fsync",
                                 "no-op sync"], rows, left=2)
    prow = []
    for name, label in [("naive", "naive write + fsync"), ("sqlite", "SQLite WAL, FULL"),
                        ("lmdb", "LMDB, sync"), ("leveldb", "LevelDB, sync"),
                        ("rocksdb", "RocksDB, sync")]:
        p64 = res(c, f"{name} 64")
        prow.append([label, fr(P(f"{name} 1")), fr(P(f"{name} 16")), fr(P(f"{name} 64")),
                     ms(p64["p99_s"] if p64 else None)])
    V["PEER_TABLE"] = h.table(["peer (commits/s)", "1 thread", "16 threads", "64 threads",
                               "p99 ms, 64"], prow)
    cmp = [["1 thread, `sync()`", "naive loop, 1 thread",
            ratio(L("1 committer, sync()"), P("naive 1"))],
           ["1 thread, `sync_async().wait()`", "naive loop, 1 thread",
            ratio(L("1 committer, wait()"), P("naive 1"))],
           ["1 task, `await`", "naive loop, 1 thread", ratio(L("1 task, await"), P("naive 1"))],
           ["16 threads, `sync_async().wait()`", "LevelDB, 16 threads",
            ratio(L("16 threads, wait()"), P("leveldb 16"))],
           ["16 threads, `sync()`", "LevelDB, 16 threads",
            ratio(L("16 threads, sync()"), P("leveldb 16"))],
           ["64 threads, `sync_async().wait()`", "LevelDB, 64 threads",
            ratio(L("64 threads, wait()"), P("leveldb 64"))],
           ["1,000 asyncio tasks", "LevelDB, 64 threads",
            ratio(L("1,000 tasks, await"), P("leveldb 64"))],
           ["p99 latency, 64 threads", "LevelDB p99, 64 threads",
            ratio(res(c, "lsnwal 64 threads, wait()")["p99_s"], res(c, "leveldb 64")["p99_s"])]]
    V["RATIO_TABLE"] = h.table(["lsnwal", "compared with", "ratio"], cmp, left=2)
    V["LONE"] = f"{c['lone']:,}"
    V["FILES"] = f"{c['segment_files']:,} segment file" + ("s" if c["segment_files"] != 1 else "")

    base = rate(a, "naive buffered bulk loop")
    lose = {"naive buffered bulk loop": "up to 1 MiB", "append()": "nothing",
            "append_batch() x1000": "nothing", "append(), 1 MiB write buffer": "up to 1 MiB"}
    alab = {"append()": "`append()`", "append_batch() x1000": "`append_batch()`, 1,000 a batch",
            "append(), 1 MiB write buffer": "`append()`, 1 MiB write buffer"}
    arows = [[alab.get(r["name"], r["name"]), fr(r["rate"]),
              ratio(r["rate"], base), lose.get(r["name"], "?")] for r in a["results"]]
    V["APPEND_TABLE"] = h.table(["writer", "records/s", "vs naive", "a process crash loses"], arows)
    V["APPEND_N"] = f"{a['records']:,}"

    sb = rate(s, "hand-written loop")
    srows = []
    for name, label in [("hand-written loop", "hand-written loop"), ("replay()", "`replay()`"),
                        ("open_reader().iter_raw()", "`open_reader(path).iter_raw()`"),
                        ("verify()", "`verify()`"),
                        ("replay(), zstd archive", "`replay()`, zstd archive"),
                        ("replay(), unsealed active segment",
                         "`replay()`, unsealed active segment"),
                        ("LevelDB iterator", "LevelDB iterator"), ("LMDB cursor", "LMDB cursor")]:
        if rate(s, name) is not None:  # a scan this lsnwal does not offer is left out
            srows.append([label, fr(rate(s, name)), ratio(rate(s, name), sb)])
    V["SCAN_TABLE"] = h.table(["scan", "records/s", "vs loop"], srows)
    sz, sk = s["bytes_on_disk"], s["seek_s"]
    V["ARCHIVE_TABLE"] = h.table(
        ["archive", "MB on disk", "vs plain", "replay(from_lsn) to its record"],
        [[k, f"{v / 1e6:,.1f}", f"{v / sz['plain']:.2f}x", f"{sk[k] * 1e3:.2f} ms"]
         for k, v in sz.items()])
    V["SCAN_N"] = f"{s['records']:,}"
    V["MACHINE"] = h.table(["", ""], [[k, v] for k, v in c["facts"].items() if k != "date"]
                           + [["bench directory", "inside the repository (`.bench-tmp/`)"]], left=2)

    V["R_SYNC1"] = ratio(L("1 committer, sync()"), P("naive 1"))
    V["R_SYNC16"] = ratio(L("16 threads, sync()"), P("leveldb 16"))
    V["A1000"] = fr(L("1,000 tasks, await"))
    V["R_BATCH"] = ratio(rate(a, "append_batch() x1000"), base)
    V["R_ZSIZE"] = f"{sz['zstd'] / sz['plain']:.2f}x"
    V["R_ZREPLAY"] = ratio(rate(s, "replay(), zstd archive"), rate(s, "replay()")) + " of plain"
    V["REPLAY"] = fr(rate(s, "replay()"))


    V["NOOP1"] = fr(N("1 committer, sync()"))
    V["NOOP64"] = fr(N("64 threads, wait()"))
    V["NOOP1000"] = fr(N("1,000 tasks, await"))
    V["CPF16"] = cpf("16 threads, wait()")
    V["CPF64"] = cpf("64 threads, wait()")
    V["CPF1000"] = cpf("1,000 tasks, await")
    V["P99_64"] = ms(res(c, "lsnwal 64 threads, wait()")["p99_s"])
    V["LDB_P99"] = ms(res(c, "leveldb 64")["p99_s"])
    V["NAIVE_P99"] = ms(res(c, "naive 64")["p99_s"])
    V["R_APPEND"] = ratio(rate(a, "append()"), base)
    V["R_BUF"] = ratio(rate(a, "append(), 1 MiB write buffer"), base)
    V["SEEK"] = f"{sk['plain'] * 1e3:.0f}"
    V["R_AWAIT1"] = ratio(L("1 task, await"), P("naive 1"))
    V["R_VERIFY"] = ratio(rate(s, "verify()"), sb)
    V["R_REPLAY"] = ratio(rate(s, "replay()"), sb)
    V["R_RAW"] = ratio(rate(s, "open_reader().iter_raw()"), sb)
    V["R_ACTIVE"] = ratio(rate(s, "replay(), unsealed active segment"), sb)
    flab = {"inotify": "inotify, then polling for the publish",
            "polling fallback": "polling fallback (`LSNWAL_NO_INOTIFY=1`)"}
    V["FOLLOW_TABLE"] = h.table(
        ["wake-up", "median", "p90", "p99", "max"],
        [[flab.get(r["name"], r["name"])] + [f"{r[k] * 1e3:.1f} ms" for k in
                                             ("median_s", "p90_s", "p99_s", "max_s")]
         for r in f["rows"]])
    V["FOLLOW_N"] = f"{f['commits']:,}"
    V["FOLLOW_MS"] = f"{f['interval_ms']:g}"
    text = (ROOT / "stress" / "benchmarks_page.md.in").read_text(encoding="utf-8")
    missing = set(re.findall(r"@@(\w+)@@", text)) - set(V)
    for k, v in V.items():
        text = text.replace(f"@@{k}@@", v)
    if missing:
        print(f"placeholders without a figure: {sorted(missing)}", file=sys.stderr)
        return 1
    page = ROOT / "docs" / "benchmarks.md"
    if "--check" in sys.argv[1:]:  # is the page its template filled from the results?
        return 0 if page.read_text(encoding="utf-8") == text else 1
    page.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
