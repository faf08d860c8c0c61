"""The ``lsnwal`` command line (placeholder; the full CLI is being written)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lsnwal`` command."""
    args = sys.argv[1:] if argv is None else argv
    print(f"lsnwal: command line not implemented yet ({args})", file=sys.stderr)
    return 2
