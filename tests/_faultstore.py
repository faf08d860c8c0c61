"""A store wrapper for the shipping tests: injects errors or holds puts at the seam.

Owns ``FaultStore``, which passes every call to a real store except the puts
it is told to fail (with a given ``StoreError``) or to hold until released —
the cases a real server cannot produce on demand (a 500 on the third put, an
expired token mid-run).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from lsnwal.store import ObjectInfo, ObjectStore, StoreError


class FaultStore:
    """An ``ObjectStore`` that fails or holds segment puts on request."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.location = inner.location
        self.fail_next: list[StoreError] = []  # raised by the next segment puts, in order
        self.fail_always: StoreError | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.puts = 0
        self.calls: dict[str, int] = {"get": 0, "head": 0, "list": 0}  # read requests made

    def put_if_absent(
        self, key: str, data: bytes, crc: int, metadata: Mapping[str, str] | None = None
    ) -> bool:
        """Fail, hold, or pass a put (only segment keys; the capability probes pass)."""
        if "/tl-" in key and key.endswith(".wal"):
            self.gate.wait()
            if self.fail_always is not None:
                raise self.fail_always
            if self.fail_next:
                raise self.fail_next.pop(0)
            self.puts += 1
        return self.inner.put_if_absent(key, data, crc, metadata)

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        """Passed through."""
        return self.inner.put_if_match(key, data, etag)

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Passed through (counted)."""
        self.calls["get"] += 1
        return self.inner.get(key, start, end)

    def head(self, key: str) -> ObjectInfo | None:
        """Passed through (counted)."""
        self.calls["head"] += 1
        return self.inner.head(key)

    def list(
        self, prefix: str, start_after: str = "", limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """Passed through (counted per call; a call may fetch several pages)."""
        self.calls["list"] += 1
        return self.inner.list(prefix, start_after, limit)

    def delete(self, key: str) -> None:
        """Passed through."""
        self.inner.delete(key)

    def close(self) -> None:
        """Passed through."""
        self.inner.close()
