"""lsnwal — a write-ahead log with gap-free LSNs, FIFO background fsync and PITR.

The public API (the reference is in docs/api.md)::

    with lsnwal.open("data/wal", lsnwal.WalConfig()) as wal:
        lsn = wal.append(b"set x=1")
        wal.sync_async().wait()
    for record in lsnwal.replay("data/wal", until_mark="before-migration"):
        ...

    async with lsnwal.open_async("data/wal") as wal:   # asyncio
        wal.append(b"set x=1")
        await wal.sync()

``WalWriter`` is the writer's name; ``AsyncWalWriter`` is the same class under
its 0.1 name, kept as an alias for the 0.x series.
"""

from __future__ import annotations

from .aio import AsyncWal, open_async, restore_async, verify_async
from .config import WalConfig
from .errors import (
    BackpressureTimeout,
    LsnUnavailableError,
    RecordTooLargeError,
    RecoveryTargetError,
    UnsupportedPlatformError,
    WalClosedError,
    WalCorruptionError,
    WalError,
    WalLockedError,
    WalSyncError,
)
from .format import FORMAT_VERSION, Record, RecordKind
from .fs import (
    FileSystem,
    FullFsyncBackend,
    OsFileSystem,
    OsSyncBackend,
    PosixSyncBackend,
    SyncBackend,
)
from .handle import SyncHandle
from .recovery import SegmentInfo, collect_all_segments
from .replay import Problem, VerifyReport, list_marks, replay, restore, verify
from .restore import RestoreResult
from .stats import WalStats
from .sync import SegmentSyncManager
from .wal import AsyncWalWriter, open

#: The writer's name from 0.2 on (a thread-safe WAL writer with asyncio-awaitable handles).
WalWriter = AsyncWalWriter

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "AsyncWal",
    "AsyncWalWriter",
    "BackpressureTimeout",
    "FileSystem",
    "FullFsyncBackend",
    "LsnUnavailableError",
    "OsFileSystem",
    "OsSyncBackend",
    "PosixSyncBackend",
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
    "UnsupportedPlatformError",
    "VerifyReport",
    "WalClosedError",
    "WalConfig",
    "WalCorruptionError",
    "WalError",
    "WalLockedError",
    "WalStats",
    "WalSyncError",
    "WalWriter",
    "__version__",
    "collect_all_segments",
    "list_marks",
    "open",
    "open_async",
    "replay",
    "restore",
    "restore_async",
    "verify",
    "verify_async",
]
