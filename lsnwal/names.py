"""Segment file names and WAL directory paths: the one place that formats and parses them.

A pending or archived segment is named by its first LSN in decimal, zero-padded
to 20 digits, so a directory listing reads in LSN order::

    00000000000000000001.wal     plain segment
    00000000000000000001.zwal    zstd-framed segment (archive only)

The name is for humans and for cheap seeking; the header inside is the truth and
every reader that relies on a name checks it against the header it reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import WalConfig

ACTIVE_NAME = "active.wal"
LOCK_NAME = "LOCK"
PLAIN_SUFFIX = ".wal"
ZSTD_SUFFIX = ".zwal"
BROKEN_SUFFIX = ".broken"
TMP_SUFFIX = ".tmp"
LSN_DIGITS = 20
_PLAIN_LEN = LSN_DIGITS + len(PLAIN_SUFFIX)


def segment_name(first_lsn: int, compressed: bool = False) -> str:
    """File name of a segment whose first LSN is ``first_lsn``."""
    return f"{first_lsn:0{LSN_DIGITS}d}{ZSTD_SUFFIX if compressed else PLAIN_SUFFIX}"


def parse_segment_name(name: str) -> tuple[int, bool] | None:
    """``(first_lsn, compressed)`` for a segment file name, or None for other files."""
    if (
        len(name) == _PLAIN_LEN
        and name.endswith(PLAIN_SUFFIX)
        and name.isascii()
        and name[:LSN_DIGITS].isdigit()
    ):
        return int(name[:LSN_DIGITS]), False  # the common case, checked cheaply
    if name.endswith(PLAIN_SUFFIX):
        stem, compressed = name[: -len(PLAIN_SUFFIX)], False
    elif name.endswith(ZSTD_SUFFIX):
        stem, compressed = name[: -len(ZSTD_SUFFIX)], True
    else:
        return None
    if len(stem) != LSN_DIGITS or not stem.isascii() or not stem.isdigit():
        return None
    return int(stem), compressed


@dataclass(frozen=True)
class WalPaths:
    """Resolved paths of one WAL directory."""

    root: str
    pending: str
    archive: str

    @property
    def active(self) -> str:
        """Path of the active segment."""
        return os.path.join(self.root, ACTIVE_NAME)

    @property
    def lock(self) -> str:
        """Path of the LOCK file."""
        return os.path.join(self.root, LOCK_NAME)

    @classmethod
    def of(cls, root: str | os.PathLike[str], config: WalConfig | None = None) -> WalPaths:
        """Resolve ``pending_dir``/``archive_dir`` (relative ones live inside ``root``).

        Raises ``WalError`` when the resolved directories alias one another (the
        same place, or one inside another where that is unsafe): see ``layout``.
        """
        from .layout import check_resolved  # layout imports this module

        cfg = config or WalConfig()
        r = os.path.abspath(os.fspath(root))
        paths = cls(
            r,
            os.path.normpath(os.path.join(r, cfg.pending_dir)),
            os.path.normpath(os.path.join(r, cfg.archive_dir)),
        )
        check_resolved(paths.root, paths.pending, paths.archive)
        return paths
