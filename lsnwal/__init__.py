"""lsnwal — a write-ahead log with gap-free LSNs, FIFO background fsync and PITR.

The public API (see docs/api.md and ../DESIGN.md)::

    with lsnwal.open("data/wal", lsnwal.WalConfig()) as wal:
        lsn = wal.append(b"set x=1")
        wal.sync_async().wait()
    for record in lsnwal.replay("data/wal", until_mark="before-migration"):
        ...
"""

from __future__ import annotations

from .config import WalConfig
from .errors import (
    BackpressureTimeout,
    LsnUnavailableError,
    RecordTooLargeError,
    RecoveryTargetError,
    WalClosedError,
    WalCorruptionError,
    WalError,
    WalLockedError,
    WalSyncError,
)
from .format import FORMAT_VERSION, Record, RecordKind
from .fs import FileSystem, OsFileSystem, OsSyncBackend, SyncBackend
from .handle import SyncHandle
from .recovery import SegmentInfo, collect_all_segments
from .replay import Problem, VerifyReport, list_marks, replay, restore, verify
from .restore import RestoreResult
from .stats import WalStats
from .sync import SegmentSyncManager
from .wal import AsyncWalWriter, open

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "AsyncWalWriter",
    "BackpressureTimeout",
    "FileSystem",
    "LsnUnavailableError",
    "OsFileSystem",
    "OsSyncBackend",
    "Problem",
    "Record",
    "RecordKind",
    "RecordTooLargeError",
    "RecoveryTargetError",
    "RestoreResult",
    "SegmentInfo",
    "SegmentSyncManager",
    "SyncBackend",
    "SyncHandle",
    "VerifyReport",
    "WalClosedError",
    "WalConfig",
    "WalCorruptionError",
    "WalError",
    "WalLockedError",
    "WalStats",
    "WalSyncError",
    "__version__",
    "collect_all_segments",
    "list_marks",
    "open",
    "replay",
    "restore",
    "verify",
]
