"""The lsnwal error hierarchy.

Owns every exception lsnwal raises on purpose. They are split by what the caller
can do about them:

* misuse — ``WalClosedError``, ``RecordTooLargeError`` (plus the built-in
  ``TypeError``/``ValueError`` for bad arguments): fix the calling code;
* data — ``WalCorruptionError``, ``LsnUnavailableError``, ``RecoveryTargetError``:
  the bytes on disk or the requested target are not what was expected;
* environment — ``WalSyncError``, ``WalLockedError``, ``BackpressureTimeout``,
  ``UnsupportedPlatformError``: the disk, another process or the operating
  system is in the way.

Messages always name the file involved when there is one.
"""

from __future__ import annotations


class WalError(Exception):
    """Base class of every error lsnwal raises on purpose."""


class WalCorruptionError(WalError):
    """Bytes on disk are damaged or inconsistent (bad CRC, gap, overlap, bad header).

    ``path``, ``offset`` and ``lsn`` (the last good LSN before the damage, when
    known) locate the damage.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        offset: int | None = None,
        lsn: int | None = None,
    ) -> None:
        parts = [message]
        if path is not None:
            parts.append(f"file={path}")
        if offset is not None:
            parts.append(f"offset={offset}")
        if lsn is not None:
            parts.append(f"last_good_lsn={lsn}")
        super().__init__(" ".join(parts) if len(parts) > 1 else message)
        self.path = path
        self.offset = offset
        self.lsn = lsn
        self.reason = message


class WalSyncError(WalError):
    """An fsync (or a write the WAL depends on) failed; the WAL is fail-stopped.

    The original ``OSError`` is the ``__cause__`` and ``cause`` attribute.
    Nothing past the last published ``synced_lsn`` is reported durable; reopen the
    directory to recover what is really on disk.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


class WalClosedError(WalError):
    """The WAL was closed; no further calls are accepted."""


class WalLockedError(WalError):
    """Another writer (process or open handle) holds the directory's LOCK."""


class RecordTooLargeError(WalError, ValueError):
    """A payload is larger than ``WalConfig.max_record_bytes``."""


class LsnUnavailableError(WalError):
    """A requested LSN is no longer retained (pruned) or was never written."""


class RecoveryTargetError(WalError):
    """A replay/restore target (LSN, time or mark) cannot be met."""


class BackpressureTimeout(WalError, TimeoutError):
    """Too many rotated segments wait for fsync and the wait for room timed out."""


class UnsupportedPlatformError(WalError):
    """lsnwal cannot give its durability guarantees on this operating system (Windows)."""
