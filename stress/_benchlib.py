"""Shared helpers for the ``stress/bench_*.py`` scripts.

What lives here, so that every benchmark reports the same way:

* **machine facts** (:func:`machine_facts`): CPU model, core counts, Python, kernel,
  the file system that holds the benchmark directory (longest matching mount point
  in ``/proc/mounts``) and the date. A benchmark figure without them means little:
  an fsync on ext4 in a VM and one on an NVMe drive with power-loss protection
  differ by two orders of magnitude.
* **percentiles** (:func:`percentile`, :func:`summarize`): median / p90 / p99 / max,
  never the mean alone, because commit latency has a long tail and the tail is
  what users feel.
* **the raw disk fsync latency** (:func:`measure_fsync_latency`): the physical floor
  every durable commit pays, measured in the same directory as the benchmark.
* **tables** (:func:`render_table`) and number formatting.
* **a scratch directory** (:func:`bench_directory`) on the file system being
  measured, removed at the end whatever happens.

Nothing here imports lsnwal, so the helpers work while the library is incomplete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "FileSystemInfo",
    "LatencySummary",
    "MachineFacts",
    "bench_directory",
    "eprint",
    "filesystem_of",
    "fmt_count",
    "fmt_rate",
    "fmt_ratio",
    "fmt_us",
    "machine_facts",
    "measure_fsync_latency",
    "percentile",
    "render_facts",
    "render_table",
    "summarize",
    "to_jsonable",
]


# --------------------------------------------------------------------------- machine


@dataclasses.dataclass(frozen=True)
class FileSystemInfo:
    """The mount that holds a path, as listed in ``/proc/mounts``."""

    fs_type: str
    mount_point: str
    device: str
    options: str


@dataclasses.dataclass(frozen=True)
class MachineFacts:
    """What a reader needs to judge a benchmark figure."""

    cpu_model: str
    cores_logical: int
    cores_usable: int
    arch: str
    python: str
    kernel: str
    os: str
    bench_dir: str
    fs_type: str
    fs_mount_point: str
    fs_device: str
    fs_options: str
    date: str


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape_mount_field(field: str) -> str:
    """Undo the octal escapes ``/proc/mounts`` uses for spaces, tabs and backslashes."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def filesystem_of(
    path: str | os.PathLike[str], mounts_file: str = "/proc/mounts"
) -> FileSystemInfo | None:
    """Return the mount holding ``path`` (longest matching mount point), or ``None``.

    When one mount point is listed more than once (stacked mounts), the last entry
    wins, because it is the one on top.
    """
    target = os.path.realpath(path)
    best: FileSystemInfo | None = None
    best_len = -1
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        device, mount_point, fs_type, options = (
            _unescape_mount_field(fields[0]),
            _unescape_mount_field(fields[1]),
            fields[2],
            fields[3],
        )
        if mount_point == "/":
            matches = True
        else:
            mp = mount_point.rstrip("/")
            matches = target == mp or target.startswith(mp + "/")
        if matches and len(mount_point) >= best_len:
            best = FileSystemInfo(fs_type, mount_point, device, options)
            best_len = len(mount_point)
    return best


#: ``/proc/cpuinfo`` keys naming the CPU: x86, then ARM and other architectures.
_CPU_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu model", "cpu")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in _CPU_MODEL_KEYS and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _usable_cores() -> int:
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        try:
            return len(getaffinity(0))
        except OSError:
            pass
    return os.cpu_count() or 1


def machine_facts(bench_dir: str | os.PathLike[str]) -> MachineFacts:
    """Collect the facts to print beside the figures measured in ``bench_dir``."""
    fs = filesystem_of(bench_dir)
    return MachineFacts(
        cpu_model=_cpu_model(),
        cores_logical=os.cpu_count() or 1,
        cores_usable=_usable_cores(),
        arch=platform.machine(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        kernel=platform.release(),
        os=platform.system(),
        bench_dir=os.path.realpath(bench_dir),
        fs_type=fs.fs_type if fs else "unknown",
        fs_mount_point=fs.mount_point if fs else "unknown",
        fs_device=fs.device if fs else "unknown",
        fs_options=fs.options if fs else "",
        date=_dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
    )


def render_facts(facts: MachineFacts) -> str:
    """Format machine facts as an aligned block of ``key: value`` lines."""
    rows = [
        ("date", facts.date),
        ("cpu", f"{facts.cpu_model} ({facts.arch})"),
        ("cores", f"{facts.cores_logical} logical, {facts.cores_usable} usable"),
        ("python", facts.python),
        ("kernel", f"{facts.os} {facts.kernel}"),
        ("bench dir", facts.bench_dir),
        (
            "file system",
            f"{facts.fs_type} on {facts.fs_device} mounted at {facts.fs_mount_point}"
            + (f" ({facts.fs_options})" if facts.fs_options else ""),
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)} : {v}" for k, v in rows)


# --------------------------------------------------------------------------- percentiles


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values.

    Linear interpolation between the two closest ranks (numpy's default method), so
    p50 of an even-sized sample is the mean of the two middle values and p100 is the
    maximum. Raises ``ValueError`` on an empty sequence or ``q`` outside 0..100.
    """
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    position = (len(sorted_values) - 1) * q / 100.0
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return float(sorted_values[lower])
    frac = position - lower
    return float(sorted_values[lower]) * (1.0 - frac) + float(sorted_values[upper]) * frac


@dataclasses.dataclass(frozen=True)
class LatencySummary:
    """Median, tail and maximum of a latency sample, in seconds."""

    count: int
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    min_s: float


def summarize(values: Iterable[float]) -> LatencySummary | None:
    """Summarize a latency sample in seconds; ``None`` when it is empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return LatencySummary(
        count=len(ordered),
        p50_s=percentile(ordered, 50),
        p90_s=percentile(ordered, 90),
        p99_s=percentile(ordered, 99),
        max_s=ordered[-1],
        min_s=ordered[0],
    )


# --------------------------------------------------------------------------- the disk


def measure_fsync_latency(
    directory: str | os.PathLike[str],
    iterations: int = 500,
    record_bytes: int = 100,
    warmup: int = 10,
) -> LatencySummary:
    """Time ``os.write`` of ``record_bytes`` to an append-only file plus ``os.fsync``.

    This is what one durable commit costs with no batching at all: the floor for a
    single committer, and the unit group commit divides. The file is created in
    ``directory`` (so on the file system being benchmarked) and removed afterwards.
    The first ``warmup`` iterations are not timed.
    """
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    record = b"f" * record_bytes
    fd, name = tempfile.mkstemp(prefix="fsync-probe-", dir=directory)
    samples: list[float] = []
    try:
        for i in range(warmup + iterations):
            t0 = time.perf_counter()
            os.write(fd, record)
            os.fsync(fd)
            t1 = time.perf_counter()
            if i >= warmup:
                samples.append(t1 - t0)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
    summary = summarize(samples)
    assert summary is not None  # iterations >= 1
    return summary


@contextlib.contextmanager
def bench_directory(parent: str | os.PathLike[str] | None, prefix: str) -> Iterator[Path]:
    """Yield a fresh scratch directory and remove it afterwards, whatever happens.

    ``parent`` defaults to ``./.bench-tmp`` so the figures describe the file system
    of the current directory (``/tmp`` is often a tmpfs, where fsync costs nothing).
    The parent is created when missing and, if this call created it, removed again
    when it is left empty.
    """
    parent_path = Path(parent) if parent is not None else Path.cwd() / ".bench-tmp"
    created_parent = not parent_path.exists()
    parent_path.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=parent_path))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if created_parent:
            with contextlib.suppress(OSError):
                parent_path.rmdir()


# --------------------------------------------------------------------------- formatting


def fmt_us(seconds: float | None) -> str:
    """Seconds as microseconds: one decimal below 10 µs, none above; ``-`` for None."""
    if seconds is None or math.isnan(seconds):
        return "-"
    us = seconds * 1e6
    return f"{us:,.1f}" if us < 10 else f"{us:,.0f}"


def fmt_rate(per_second: float | None) -> str:
    """A rate with thousands separators; ``-`` for None."""
    if per_second is None or math.isnan(per_second):
        return "-"
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:,.1f}"


def fmt_count(value: float | None) -> str:
    """An integer count, or a ratio such as commits per fsync with one decimal."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def fmt_ratio(value: float | None) -> str:
    """A ratio as ``1.23x``; ``n/a`` for None."""
    if value is None or math.isnan(value) or math.isinf(value):
        return "n/a"
    return f"{value:,.2f}x"


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    align: str | None = None,
) -> str:
    """Render a plain-text table.

    ``align`` holds one character per column, ``l`` or ``r``; by default the first
    column is left-aligned and the others (numbers) right-aligned.
    """
    ncols = len(headers)
    if align is None:
        align = "l" + "r" * (ncols - 1)
    if len(align) != ncols:
        raise ValueError("align must have one character per column")
    for row in rows:
        if len(row) != ncols:
            raise ValueError(f"row has {len(row)} cells, expected {ncols}: {row!r}")
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, width, a in zip(cells, widths, align, strict=True):
            out.append(cell.ljust(width) if a == "l" else cell.rjust(width))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def to_jsonable(value: Any) -> Any:
    """Turn dataclasses, paths, tuples and non-finite floats into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def eprint(*args: object) -> None:
    """Print progress to stderr, so stdout holds only the report."""
    print(*args, file=sys.stderr, flush=True)
