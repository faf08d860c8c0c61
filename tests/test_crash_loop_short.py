"""The short form of stress/crash_loop.py (issue 5): real SIGKILLs of a busy writer, 0 lost."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "stress" / "crash_loop.py"


@pytest.mark.timeout(300)
def test_crash_loop_short_run_loses_nothing(tmp_path: Path) -> None:
    """15 kill -9 / recover / verify cycles on one directory exit 0 with 0 records lost."""
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--cycles", "15", "--seed", "5", "--quiet",
         "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=280, check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert re.search(r"^  records lost: 0$", run.stdout, re.M), out
    assert re.search(r"^  cycles: 15 ", run.stdout, re.M), out
    checked = re.search(r"acknowledged records: (\d+) distinct, (\d+) checks", run.stdout)
    assert checked and int(checked.group(1)) > 0 and int(checked.group(2)) > 0, out
    assert "recovery failures: 0, verify failures: 0, child errors: 0" in run.stdout, out
