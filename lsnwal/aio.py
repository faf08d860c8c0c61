"""asyncio face of a WAL: ``lsnwal.open_async`` and ``AsyncWal``, modelled on aiosqlite.

Owns nothing on disk: an ``AsyncWal`` wraps one ``WalWriter`` (``lsnwal.open``)
and decides, call by call, what may run on the event loop and what must not.
Rules kept here:

* **Nothing that waits for the disk runs on the loop.** Opening (recovery
  reads every live segment) and closing (a final fsync, joining the sync and
  archive threads) run in a worker thread (``asyncio.to_thread``); waiting
  for durability awaits a ``SyncHandle``, which the sync thread resolves —
  no thread per waiter and no polling.
* **Cheap calls stay plain.** ``append``, ``append_batch`` and ``mark`` hand
  bytes to the operating system (a ``write`` into the page cache) and return
  at once, so they are ordinary methods, not coroutines; a thread hop per
  record would cost more than the write. They block only under backpressure
  (the disk is far behind: ``max_pending_segments``/``max_pending_bytes``
  reached), for at most ``backpressure_timeout_s``.
* **Awaitable twins keep the blocking call's name** (as aiosqlite does):
  ``await wal.sync()``, ``await wal.checkpoint(...)`` (the record is durable
  when it returns), ``await wal.wait_archived()``, ``await wal.prune()``,
  ``await wal.close()``. The long read-only tools get module-level twins that
  run in a worker thread: ``verify_async`` and ``restore_async`` (they take
  the arguments of ``verify`` and ``restore``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator, Iterable
from types import TracebackType
from typing import Any

from .archive import PruneCandidate
from .config import WalConfig
from .errors import WalClosedError, WalSyncError
from .handle import SyncHandle
from .replay import VerifyReport, restore, verify
from .restore import RestoreResult
from .stats import WalStats
from .wal import AsyncWalWriter


class AsyncWal:
    """A WAL opened for writing from asyncio code (use ``lsnwal.open_async``).

    ``await lsnwal.open_async(path)`` or ``async with lsnwal.open_async(path) as
    wal:`` opens it off the event loop; ``wal.writer`` is the underlying
    ``WalWriter`` for anything not wrapped here.
    """

    def __init__(
        self, path: str | os.PathLike[str], config: WalConfig | None = None, **kwargs: Any
    ) -> None:
        self._path = path
        self._config = config
        self._kwargs = kwargs
        self._wal: AsyncWalWriter | None = None

    # ------------------------------------------------------------------ opening and closing

    async def _open(self) -> AsyncWal:
        if self._wal is None:
            self._wal = await asyncio.to_thread(
                AsyncWalWriter.open_or_create, self._path, self._config, **self._kwargs
            )
        return self

    def __await__(self) -> Generator[Any, None, AsyncWal]:
        """``wal = await lsnwal.open_async(path)``: recover or create, off the event loop."""
        return self._open().__await__()

    async def __aenter__(self) -> AsyncWal:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Final sync, stop the threads and release the lock, off the event loop (idempotent)."""
        if self._wal is not None:
            await asyncio.to_thread(self._wal.close)

    @property
    def writer(self) -> AsyncWalWriter:
        """The underlying ``WalWriter`` (``WalClosedError`` before the WAL is opened)."""
        if self._wal is None:
            raise WalClosedError(f"the WAL at {os.fspath(self._path)} is not open yet: await it")
        return self._wal

    # ------------------------------------------------------------------ writing

    def append(self, payload: bytes | bytearray | memoryview) -> int:
        """Append one record; return its LSN (not yet durable: ``await wal.sync()``)."""
        return self.writer.append(payload)

    def append_batch(self, payloads: Iterable[bytes | bytearray | memoryview]) -> range:
        """Append every payload or none; return the range of their LSNs."""
        return self.writer.append_batch(payloads)

    def mark(self, name: str) -> int:
        """Write a named restore point; return its LSN."""
        return self.writer.mark(name)

    def sync_async(self, timeout: float | None = None) -> SyncHandle:
        """A handle for the last appended LSN, to await later (group commit)."""
        return self.writer.sync_async(timeout)

    async def sync(self) -> int:
        """Wait until every record appended so far is durable; return the durable LSN.

        Raises ``WalSyncError`` if the disk failed (the WAL is then fail-stopped).
        """
        return await self.writer.sync_async()

    async def checkpoint(
        self, lsn: int, payload: bytes | bytearray | memoryview = b""
    ) -> int:
        """Write a CHECKPOINT record covering ``lsn`` and wait until it is durable.

        Returns the checkpoint record's LSN. Retention may delete segments the
        checkpoint covers only once this record is durable, so awaiting it is
        what makes the checkpoint effective.
        """
        w = self.writer
        record_lsn = w.checkpoint(lsn, payload)
        if await w.sync_async() < record_lsn:  # pragma: no cover - a handle covers its LSN
            raise WalSyncError(f"checkpoint record {record_lsn} was not made durable")
        return record_lsn

    async def wait_archived(self, timeout: float | None = None) -> bool:
        """Wait (in a worker thread) until every synced segment has been archived."""
        return await asyncio.to_thread(self.writer.wait_archived, timeout)

    async def prune(self, dry_run: bool = False) -> list[PruneCandidate]:
        """Apply retention now in a worker thread (``dry_run``: only list what would go)."""
        return await asyncio.to_thread(self.writer.prune, dry_run)

    # ------------------------------------------------------------------ state

    def stats(self) -> WalStats:
        """A snapshot of the WAL's counters (cheap: no I/O)."""
        return self.writer.stats()

    @property
    def synced_lsn(self) -> int:
        """Every record at or below this LSN is on stable storage."""
        return self.writer.synced_lsn

    @property
    def last_lsn(self) -> int:
        """The last LSN assigned (0 for a new WAL)."""
        return self.writer.last_lsn

    @property
    def current_lsn(self) -> int:
        """The next LSN to be assigned."""
        return self.writer.current_lsn

    @property
    def checkpoint_lsn(self) -> int:
        """The LSN the application's last checkpoint covers (0 if none)."""
        return self.writer.checkpoint_lsn

    @property
    def failure(self) -> WalSyncError | None:
        """The error that fail-stopped the WAL, or None."""
        return self.writer.failure

    @property
    def closed(self) -> bool:
        """True before opening and after ``close()``."""
        return self._wal is None or self._wal.closed

    def __repr__(self) -> str:
        if self._wal is None:
            return f"<AsyncWal {os.fspath(self._path)} not opened>"
        return f"<AsyncWal {self._wal!r}>"


def open_async(
    path: str | os.PathLike[str], config: WalConfig | None = None, **kwargs: Any
) -> AsyncWal:
    """Open (create or recover) the WAL at ``path`` for asyncio code.

    Use ``async with lsnwal.open_async(path) as wal:`` or ``wal = await
    lsnwal.open_async(path)``; keyword arguments are those of ``lsnwal.open``
    (``create_if_missing``, ``error_if_exists``, ``sync_backend``, ...).
    """
    return AsyncWal(path, config, **kwargs)


async def verify_async(path: str | os.PathLike[str], **kwargs: Any) -> VerifyReport:
    """``lsnwal.verify`` in a worker thread (it reads every byte of the WAL)."""
    return await asyncio.to_thread(verify, path, **kwargs)


async def restore_async(
    source: str | os.PathLike[str], target: str | os.PathLike[str], **kwargs: Any
) -> RestoreResult:
    """``lsnwal.restore`` in a worker thread (it reads and writes every record it restores)."""
    return await asyncio.to_thread(restore, source, target, **kwargs)
