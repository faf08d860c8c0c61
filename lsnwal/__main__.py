"""``python -m lsnwal``: the command-line interface (see lsnwal.cli)."""

from .cli import main

raise SystemExit(main())
