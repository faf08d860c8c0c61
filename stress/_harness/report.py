"""Machine facts, tables, targets, the command line and plots of the benchmark harness.

Owns what a reader sees: the machine facts (CPU, cores, Python, kernel, the file system
of the bench directory), markdown tables with few columns, the targets table with its
ratios and met/missed, the JSON written next to the markdown, the options every script
takes, and bar charts whose legend sits outside the axes. Progress goes to stderr, the
report to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .measure import Result
from .peers import PEERS

REPO = Path(__file__).resolve().parent.parent.parent

# ----------------------------------------------------------------------------- machine facts


def machine_facts(bench_dir: Path) -> dict[str, str]:
    """CPU, cores, memory, Python, kernel and the file system holding ``bench_dir``."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    fs, target, best = "unknown", os.path.realpath(bench_dir), ""
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as fh:
        for line in fh:
            dev, mnt, typ = line.split()[:3]
            under = target == mnt or target.startswith(mnt.rstrip("/") + "/")
            if under and len(mnt) >= len(best):
                best, fs = mnt, f"{typ} on {dev} (mounted at {mnt})"
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as fh:
        mem = f"{int(fh.readline().split()[1]) / 2**20:.0f} GiB"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpu": f"{cpu} ({platform.machine()})",
            "cores": f"{os.cpu_count()} logical, {usable} usable", "memory": mem,
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "kernel": f"{platform.system()} {platform.release()}",
            "file system": fs}


# ----------------------------------------------------------------------------- report


def fmt_rate(x: float | None) -> str:
    """``12,345`` or ``n/a``."""
    return "n/a" if x is None else f"{x:,.0f}"


def fmt_ms(x: float | None) -> str:
    """Seconds as milliseconds with three decimals, or ``n/a``."""
    return "n/a" if x is None else f"{x * 1e3:.3f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A markdown table; the first ``left`` columns are left-aligned, the rest right."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        cells = (str(c).ljust(w) if i < left else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        return "| " + " | ".join(cells) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ("-" if i < left else ":")
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


@dataclass
class Target:
    """One goal: ``value`` (a ratio or a rate) against ``goal``, at least or at most."""

    label: str
    value: float | None
    goal: float
    at_most: bool = False
    unit: str = "x"

    @property
    def met(self) -> bool | None:
        """True/False, or None when a figure is missing."""
        if self.value is None:
            return None
        return self.value <= self.goal if self.at_most else self.value >= self.goal


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing."""
    return None if a is None or b is None or b == 0 else a / b


def targets_table(targets: Sequence[Target]) -> str:
    """Target, measured value, goal, met/missed."""
    def val(t: Target) -> str:
        if t.value is None:
            return "n/a"
        if t.unit == "x":
            return f"{t.value:.3g}x"
        return f"{t.value:,.0f} {t.unit}" if t.value >= 100 else f"{t.value:.3g} {t.unit}"
    rows = [[t.label, val(t), ("<= " if t.at_most else ">= ") + f"{t.goal:g}"
             + ("x" if t.unit == "x" else f" {t.unit}"),
             {True: "met", False: "MISSED", None: "n/a"}[t.met]] for t in targets]
    return table(["target", "measured", "goal", "status"], rows)


def facts_table(facts: dict[str, str]) -> str:
    """The machine facts as a two-column table."""
    return table(["machine", ""], [[k, v] for k, v in facts.items()], left=2)


# ----------------------------------------------------------------------------- command line


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a tiny smoke run (seconds, not minutes)")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    p.add_argument("--dir", type=Path, default=REPO / ".bench-tmp",
                   help="where the scratch directory is made (the file system measured)")
    p.add_argument("--out", type=Path, default=None,
                   help="write <name>.txt (the report) and <name>.json into this directory")
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers to include")
    return p


def apply_quick(args: argparse.Namespace, p: argparse.ArgumentParser, **small: Any) -> None:
    """With ``--quick``, use the ``small`` values (one repetition) for options left unset."""
    if args.quick:
        for key, value in {"reps": 1, **small}.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)


@contextlib.contextmanager
def scratch_dir(base: Path, name: str) -> Iterator[Path]:
    """A fresh directory under ``base``, removed afterwards whatever happens."""
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def log(msg: str) -> None:
    """Progress goes to stderr so stdout holds only the report."""
    print(msg, file=sys.stderr, flush=True)


def publish(name: str, title: str, facts: dict[str, str], sections: Sequence[str],
            results: dict[str, Result], targets: Sequence[Target], out: Path | None,
            extra: dict[str, Any] | None = None) -> str:
    """Print the markdown report; with ``out``, also write it to ``<name>.txt`` and the
    figures to ``<name>.json``."""
    text = "\n\n".join([f"## {title}", facts_table(facts), *sections,
                        "### Targets", targets_table(targets)]) + "\n"
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.txt").write_text(text, encoding="utf-8")
        doc = {"facts": facts, "results": [r.to_json() for r in results.values()],
               "targets": [{**asdict(t), "met": t.met} for t in targets], **(extra or {})}
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return text


def bar_plot(path: Path, title: str, xlabel: str,
             bars: Sequence[tuple[str, float | None, str]]) -> str | None:
    """A horizontal bar chart (log scale), one labelled bar per row: ``(label, value, group)``.

    Bars of one group share a colour; the groups' legend sits below the axes so it never
    covers a bar. Returns why no plot was drawn (matplotlib missing, nothing to draw) or None.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        return "matplotlib is not installed"
    rows = [(lab, v, g) for lab, v, g in bars if v]
    if not rows:
        return "no figures to plot"
    groups = list(dict.fromkeys(g for _, _, g in rows))
    colours = {g: f"C{i}" for i, g in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.8))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [v for _, v, _ in rows], color=[colours[g] for _, _, g in rows])
    ax.set_yticks(y, [lab for lab, _, _ in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    for yi, (_, v, _) in zip(y, rows, strict=True):
        ax.annotate(f"{v:,.0f}", (v, yi), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)
    values = [v for _, v, _ in rows if v]
    ax.set_xlim(min(values) / 3, max(values) * 2.5)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    handles = [Patch(color=colours[g]) for g in groups]
    fig.legend(handles, groups, loc="lower center", ncol=min(len(groups), 4), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.3 / len(rows), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
