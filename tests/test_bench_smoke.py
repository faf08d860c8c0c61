"""Smoke tests of the benchmark scripts in ``stress/`` and of the harness they share.

Each script runs once with ``--quick`` on a tiny size and must print its tables and write
its JSON; the harness's interleaving, statistics and reference loops are checked against
lsnwal's own codec. No figure is compared with a speed: benchmarks measure, tests do not.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import lsnwal
from lsnwal import format as fmt
from lsnwal import scanner

STRESS = Path(__file__).resolve().parent.parent / "stress"
sys.path.insert(0, str(STRESS))
import _harness as h  # noqa: E402

SCRIPTS = {
    "bench_commit.py": ("commit", ["--peers", "naive", "--lone", "50", "--seconds", "0.05"],
                        ["| lsnwal workload", "| peer (commits/s)", "segment files after 50"]),
    "bench_append.py": ("append", ["--records", "3000"],
                        ["| writer", "append_batch() / naive bulk loop"]),
    "bench_replay.py": ("replay", ["--records", "3000", "--peers", ""],
                        ["| scan", "zstd replay() / plain replay()"]),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_quick_run_prints_tables_and_writes_json(script: str, tmp_path: Path) -> None:
    """A --quick run exits 0, prints its markdown tables and writes the same figures as JSON."""
    name, args, expected = SCRIPTS[script]
    env = {**os.environ, "PYTHONPATH": str(STRESS.parent)}
    proc = subprocess.run(
        [sys.executable, str(STRESS / script), "--quick", "--dir", str(tmp_path / "scratch"),
         "--out", str(tmp_path / "out"), *args],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in ["| machine", "| target", *expected]:
        assert text in proc.stdout, f"{text!r} missing from:\n{proc.stdout}"
    md = (tmp_path / "out" / f"{name}.txt").read_text(encoding="utf-8")
    assert md.rstrip() == proc.stdout.rstrip()
    doc = json.loads((tmp_path / "out" / f"{name}.json").read_text(encoding="utf-8"))
    assert set(doc["facts"]) == {"date", "cpu", "cores", "memory", "python", "kernel",
                                 "file system"}
    assert all(r["error"] is None and r["reps"] for r in doc["results"])
    assert all(rep["seconds"] > 0 for r in doc["results"] for rep in r["reps"])
    assert sum(r["rate"] for r in doc["results"]) > 0  # something was counted
    assert {t["label"] for t in doc["targets"]} and all("met" in t for t in doc["targets"])
    assert list((tmp_path / "scratch").iterdir()) == []  # the scratch directory was removed


def test_interleave_runs_a_b_c_a_b_c_and_takes_the_median(tmp_path: Path) -> None:
    """Repetitions run as A B C A B C A B C in fresh directories; a figure is their median."""
    calls: list[str] = []
    seen: set[Path] = set()

    def case(name: str, rates: list[int]) -> h.Run:
        def run(work: Path) -> h.Measure:
            assert work not in seen and list(work.iterdir()) == []
            seen.add(work)
            calls.append(name)
            return h.Measure(rates[calls.count(name) - 1], 1.0)
        return run

    r = h.interleave([("A", case("A", [5, 1, 9])), ("B", case("B", [2, 8, 3])),
                      ("C", case("C", [7, 7, 1]))], 3, tmp_path, lambda _m: None)
    assert calls == ["A", "B", "C"] * 3
    assert (r["A"].rate, r["B"].rate, r["C"].rate) == (5, 3, 7)
    assert list(tmp_path.iterdir()) == []


def test_interleave_reports_a_failing_case_and_keeps_the_others(tmp_path: Path) -> None:
    """A case that raises gets an error and no rate; the other cases still run every time."""
    calls: list[str] = []

    def bad(_work: Path) -> h.Measure:
        calls.append("bad")
        raise OSError("disk gone")

    def good(_work: Path) -> h.Measure:
        calls.append("good")
        return h.Measure(10, 2.0)

    r = h.interleave([("bad", bad), ("good", good)], 3, tmp_path, lambda _m: None)
    assert calls == ["bad", "good", "good", "good"]
    assert r["bad"].rate is None and r["bad"].error == "OSError: disk gone"
    assert r["good"].rate == 5.0


@pytest.mark.parametrize("n", [1, 2, 3, 10, 99, 100, 101, 1000])
def test_summarize_is_the_standard_library_quantiles(n: int) -> None:
    """p50/p90/p99/max are statistics.quantiles (inclusive) and max, for every sample size."""
    values = [((i * 7919) % 1009) / 1000 for i in range(n)]
    s = h.summarize(values)
    q = statistics.quantiles(values, n=100, method="inclusive") if n > 1 else [values[0]] * 99
    assert (s["p50"], s["p90"], s["p99"], s["max"]) == (q[49], q[89], q[98], max(values))
    assert s["p50"] == pytest.approx(statistics.median(values))


def test_naive_bulk_loop_writes_records_lsnwal_decodes(tmp_path: Path) -> None:
    """The naive bulk loop's file is n valid lsnwal records, LSNs 1..n, payloads intact."""
    n = 9000  # more than one 1 MiB flush
    h.naive_bulk_write(tmp_path / "log", n)
    data = (tmp_path / "log").read_bytes()
    scan = scanner.RecordScanner(data, 0, 1)
    got = [(lsn, data[off + fmt.RECORD_HEADER_SIZE: off + fmt.RECORD_HEADER_SIZE + ln])
           for off, lsn, _kind, _ts, ln in scan]
    assert scan.verdict == scanner.END
    assert got == [(i, h.PAYLOAD) for i in range(1, n + 1)]


def test_naive_scan_counts_every_record_and_rejects_every_flip(tmp_path: Path) -> None:
    """The hand-written scan counts what lsnwal wrote and raises on a flip in any field."""
    path = tmp_path / "wal"
    with lsnwal.open(path, lsnwal.WalConfig(segment_max_bytes=64 * 1024)) as wal:
        wal.append_batch([h.PAYLOAD] * 2000)
    segments = [str(s.path) for s in lsnwal.collect_all_segments(str(path))]
    assert len(segments) > 2 and h.naive_scan(segments) == 2000
    first = Path(segments[0])
    clean = first.read_bytes()
    # every byte the CRC covers in one record: header tail (4..28) and payload
    rec = h.SEGMENT_HEADER_BYTES + 5 * (fmt.RECORD_HEADER_SIZE + len(h.PAYLOAD))
    for i in range(4, fmt.RECORD_HEADER_SIZE + len(h.PAYLOAD), 3):
        if i in range(4, 8):
            continue  # the length field: a flip there changes framing, checked below
        damaged = bytearray(clean)
        damaged[rec + i] ^= 0x01
        first.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match="bad CRC"):
            h.naive_scan(segments)
    damaged = bytearray(clean)
    damaged[rec + 4] ^= 0x01  # length 100 -> 101: the CRC no longer matches
    first.write_bytes(bytes(damaged))
    with pytest.raises(ValueError):
        h.naive_scan(segments)


# --------------------------------------------------------------------------- the page

ROOT = STRESS.parent
PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "docs" / "results"


def test_benchmarks_page_points_only_at_what_users_have() -> None:
    """The benchmarks page never cites DESIGN.md, ../shared, the contract or an issue."""
    from test_docs_site import FORBIDDEN

    assert [m.group(0) for m in FORBIDDEN.finditer(PAGE.read_text(encoding="utf-8"))] == []


def test_benchmarks_page_tables_fit_and_plots_exist() -> None:
    """No fenced ASCII table, no table wider than six columns, every plot it shows exists."""
    text = PAGE.read_text(encoding="utf-8")
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    assert not [b for b in fenced if re.search(r"^-{3,}\s+-{3,}", b, re.M)]
    widths = {line.count("|") - 1 for line in text.splitlines() if line.startswith("|")}
    assert widths and max(widths) <= 6
    images = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", text)
    assert images
    for img in images:
        assert (PAGE.parent / img).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", img


def test_benchmarks_page_figures_are_the_recorded_run() -> None:
    """Every rate the page shows is the median recorded in docs/results for that one run."""
    text = PAGE.read_text(encoding="utf-8")
    docs = {n: json.loads((RESULTS / f"{n}.json").read_text(encoding="utf-8"))
            for n in ("commit", "append", "replay")}
    assert docs["commit"]["facts"]["date"][:16].replace("T", " ") in text
    shown = 0
    for doc in docs.values():
        for r in doc["results"]:
            if r["rate"] is not None:
                figure = re.escape(f"{r['rate']:,.0f}")
                assert re.search(rf"\|\s+{figure} \|", text), r["name"]
                shown += 1
    assert shown >= 30


def test_benchmarks_page_is_its_template_filled_from_the_results() -> None:
    """docs/benchmarks.md is exactly what bench_page.py makes of the template and the results."""
    proc = subprocess.run([sys.executable, str(STRESS / "bench_page.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
