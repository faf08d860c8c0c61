"""Timelines and the shipping lease: history is never overwritten, one writer per prefix.

Owns three small JSON documents:

* ``<wal>/SHIPPING`` (local): this WAL directory's writer id, store and
  timeline, written once when shipping starts (tmp, fsync, rename, fsync dir).
* ``<wal>/RESTORED_FROM`` (local): written by a restore from a store; the next
  open that ships to the same store starts a **new timeline** instead of
  writing names its source already holds.
* ``PREFIX/history/tl-N`` (store, create-only): timeline N branched from
  timeline ``parent`` after LSN ``branch_lsn``. Two restores racing for the
  same number: one create wins, the other takes the next number.
* ``PREFIX/LEASE`` (store, compare-and-swap): which writer ships to the
  prefix, with an epoch that grows at every acquisition. A different writer
  owning it refuses the open (``StoreLeaseError``) unless ``archive_takeover=True``
  or it released the lease and we ship on a new timeline (after a restore);
  a writer whose lease was taken stops shipping (fencing).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .base import ObjectStore, StoreConflictError, StoreError
from .url import TIMELINE_DIGITS, history_key, history_prefix, lease_key, parse_timeline

STATE_NAME = "SHIPPING"
RESTORED_NAME = "RESTORED_FROM"


class StoreLeaseError(StoreError):
    """Another writer ships to this prefix (or took the lease over from us)."""


def _write_json(path: str, doc: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: str) -> dict[str, Any] | None:
    """A small local JSON document, or None if absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_restored_marker(target: str, url: str, timeline: int, last_lsn: int | None) -> None:
    """Record in a restored WAL directory which store history it came from."""
    _write_json(os.path.join(target, RESTORED_NAME),
                {"url": url, "timeline": timeline, "last_lsn": last_lsn or 0})


def timelines(store: ObjectStore, prefix: str) -> dict[int, dict[str, Any]]:
    """Every timeline: ``{n: history}`` (timeline 1, the root, has no history object).

    One LIST of ``PREFIX/history/`` — never of the segments, so it costs the same
    for 10 or 100,000 of them.
    """
    base = history_prefix(prefix)
    out: dict[int, dict[str, Any]] = {1: {}}
    for obj in store.list(base):
        n = parse_timeline(obj.key[len(base):])
        if n is not None:
            try:
                doc = json.loads(store.get(obj.key))
            except ValueError:
                doc = {}
            out[n] = doc if isinstance(doc, dict) else {}
    return out


def new_timeline(store: ObjectStore, prefix: str, parent: int, branch_lsn: int) -> int:
    """Create the next free timeline number with a create-only history object."""
    n = max([parent, *timelines(store, prefix)]) + 1
    while n < 10**TIMELINE_DIGITS:
        doc = {"parent": parent, "branch_lsn": branch_lsn, "created": time.time(),
               "host": socket.gethostname()}
        raw = json.dumps(doc, sort_keys=True).encode()
        from .base import crc32c

        if store.put_if_absent(history_key(prefix, n), raw, crc32c(raw)):
            return n
        n += 1
    raise StoreError("no free timeline number left")


@dataclass
class ShipState:
    """Who ships, where, on which timeline (the local SHIPPING document)."""

    writer_id: str
    timeline: int  # 0 until a pending branch is created
    new: bool = False  # not yet saved in <wal>/SHIPPING
    branch: tuple[int, int] | None = None  # (parent timeline, branch LSN) still to create


def resolve_timeline(store: ObjectStore, prefix: str, url: str, wal_root: str) -> ShipState:
    """This WAL's writer id and timeline for ``url`` (creating a timeline after a restore)."""
    path = os.path.join(wal_root, STATE_NAME)
    state = read_json(path)
    if state and state.get("url") == url and isinstance(state.get("timeline"), int):
        return ShipState(str(state["writer_id"]), int(state["timeline"]))
    restored = read_json(os.path.join(wal_root, RESTORED_NAME))
    if restored is not None and restored.get("url") == url:
        # The timeline is created only once the lease is ours (Lease.acquire).
        branch = (int(restored.get("timeline", 1)), int(restored.get("last_lsn", 0)))
        return ShipState(uuid.uuid4().hex, 0, new=True, branch=branch)
    return ShipState(uuid.uuid4().hex, 1, new=True)


def save_state(wal_root: str, url: str, state: ShipState) -> None:
    """Persist a new ``ShipState`` (once its lease is held) in ``<wal>/SHIPPING``."""
    if state.new:
        _write_json(os.path.join(wal_root, STATE_NAME),
                    {"writer_id": state.writer_id, "timeline": state.timeline, "url": url})
        state.new = False


class Lease:
    """The shipping lease of one prefix, held by one writer (compare-and-swap on ETags)."""

    def __init__(self, store: ObjectStore, prefix: str, state: ShipState) -> None:
        self.store = store
        self.prefix = prefix
        self.key = lease_key(prefix)
        self.state = state
        self.etag: str | None = None
        self.epoch = 0

    def _doc(self, released: bool) -> bytes:
        return json.dumps({"owner": self.state.writer_id, "released": released,
                           "epoch": self.epoch, "timeline": self.state.timeline,
                           "host": socket.gethostname(), "at": time.time()},
                          sort_keys=True).encode()

    def acquire(self, takeover: bool) -> None:
        """Take the lease, or raise ``StoreLeaseError`` (see the module rules).

        Another writer's lease is taken only with ``takeover``, or when that
        writer released it and we ship on a different timeline (a restore).
        """
        for _ in range(5):
            info = self.store.head(self.key)
            doc: dict[str, Any] = {}
            if info is not None:
                with contextlib.suppress(ValueError):
                    doc = json.loads(self.store.get(self.key))
                owner = doc.get("owner")
                ours = owner == self.state.writer_id
                branched = doc.get("released") is True and (
                    self.state.branch is not None or doc.get("timeline") != self.state.timeline)
                if not (ours or takeover or branched):
                    state = "released" if doc.get("released") else "held"
                    raise StoreLeaseError(
                        f"{self.store.location} holds the history of another WAL (lease {state} "
                        f"by host {doc.get('host', '?')}, timeline {doc.get('timeline', '?')}); "
                        "refusing to ship a second history there. Restore from it to continue "
                        "on a new timeline, or, if that writer is gone for good, open with "
                        "archive_takeover=True")
            self.epoch = int(doc.get("epoch", 0)) + 1
            try:
                self.etag = self.store.put_if_match(
                    self.key, self._doc(False), None if info is None else info.etag)
            except StoreConflictError:
                continue  # someone moved it between our read and our swap: look again
            if self.state.branch is not None:  # a restored WAL: branch now that we lead
                parent, lsn = self.state.branch
                self.state.timeline = new_timeline(self.store, self.prefix, parent, lsn)
                self.state.branch = None
                try:
                    self.etag = self.store.put_if_match(self.key, self._doc(False), self.etag)
                except StoreConflictError:
                    raise StoreLeaseError(
                        f"the lease at {self.store.location} was taken while we started "
                        "a timeline; not shipping") from None
            return
        raise StoreLeaseError(f"the lease at {self.store.location} keeps changing; not shipping")

    def check(self) -> None:
        """Raise ``StoreLeaseError`` if the lease is no longer ours (fencing before uploads)."""
        info = self.store.head(self.key)
        if info is None or info.etag != self.etag:
            raise StoreLeaseError(
                f"the shipping lease at {self.store.location} was taken by another writer; "
                "shipping stopped (nothing was overwritten)")

    def release(self) -> None:
        """Mark the lease released (only if still ours)."""
        if self.etag is None:
            return
        with contextlib.suppress(StoreError):
            self.store.put_if_match(self.key, self._doc(True), self.etag)
        self.etag = None
