"""The code examples of the documentation run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_crash_testing_example_runs() -> None:
    """The example of docs/testing.md runs and prints what the page says it prints."""
    text = (DOCS / "testing.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    claimed = re.search(r"It prints a line like `(\d+)( crash states: [^`]+)`", text)
    assert claimed is not None
    got = re.fullmatch(r"(\d+)" + re.escape(claimed.group(2)), out.stdout.strip())
    assert got is not None, out.stdout
    assert int(got.group(1)) >= 100  # every snapshot crashed in every variant
