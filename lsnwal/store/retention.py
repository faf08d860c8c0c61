"""Retention in the store: which segment objects may go, and holds that stop it.

Owns the store-side retention policy (``store_max_segments``,
``store_max_bytes``, ``store_max_age_s``, ``store_pinned_marks``) and
restore **holds**. Rules (the store's copy of invariant 8):

* Only segments of the writer's own timeline are deleted, oldest first, and
  deletion stops at the first segment that must stay, so the store never has
  a gap: what remains is always a contiguous history up to the newest segment.
* Never past the checkpoint: a segment goes only if every record in it is at
  or below the durable checkpoint (its last LSN is the next object's first
  LSN - 1; the newest object is never deleted).
* Never past a pinned mark: the segment holding a pinned mark, and everything
  after it, stays.
* Never while a restore holds the prefix: a restore from the store creates
  ``PREFIX/holds/<id>`` (create-only) and deletes it when done; retention
  skips its run while any hold younger than ``HOLD_TTL_S`` exists (a
  crashed restore's hold expires).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass

from ..config import WalConfig
from ..names import parse_segment_name
from .base import ObjectStore, StoreAuthError, StoreError, crc32c
from .url import timeline_dir

log = logging.getLogger("lsnwal")

HOLD_TTL_S = 3600.0


def holds_prefix(prefix: str) -> str:
    """Where restore holds live."""
    return f"{prefix}/holds/" if prefix else "holds/"


@dataclass(frozen=True)
class StoreCandidate:
    """A segment object retention deletes, and why."""

    key: str
    first_lsn: int
    last_lsn: int
    size: int
    reason: str


def active_holds(store: ObjectStore, prefix: str, now: float | None = None) -> list[str]:
    """Keys of the holds younger than ``HOLD_TTL_S``."""
    now = time.time() if now is None else now
    out = []
    for obj in store.list(holds_prefix(prefix)):
        try:
            doc = json.loads(store.get(obj.key))
            created = float(doc.get("created", 0))
        except (ValueError, AttributeError, StoreError):
            created = now  # unreadable: treat as fresh (keeping data is the safe side)
        if now - created < HOLD_TTL_S:
            out.append(obj.key)
    return out


def plan(store: ObjectStore, prefix: str, timeline: int, cfg: WalConfig, checkpoint_lsn: int,
         now: float | None = None) -> list[StoreCandidate]:
    """What store retention would delete now (oldest first; see the module rules)."""
    now = time.time() if now is None else now
    limits = (cfg.store_max_segments, cfg.store_max_bytes, cfg.store_max_age_s)
    if all(v is None for v in limits) or active_holds(store, prefix, now):
        return []
    tdir = timeline_dir(prefix, timeline)
    objs = []
    for o in store.list(tdir):
        parsed = parse_segment_name(o.key[len(tdir):])
        if parsed is not None and "/" not in o.key[len(tdir):]:
            objs.append((o.key, parsed[0], o.size))
    count, total = len(objs), sum(o[2] for o in objs)
    out: list[StoreCandidate] = []
    pinned = set(cfg.store_pinned_marks)
    for (key, first, size), nxt in itertools.pairwise(objs):
        last = nxt[1] - 1
        if last > checkpoint_lsn:
            break
        reason = ""
        if cfg.store_max_segments is not None and count > cfg.store_max_segments:
            reason = f"more than store_max_segments={cfg.store_max_segments}"
        elif cfg.store_max_bytes is not None and total > cfg.store_max_bytes:
            reason = f"store over store_max_bytes={cfg.store_max_bytes}"
        meta = None
        if not reason and cfg.store_max_age_s is not None:
            meta = store.head(key)
            last_ts = float((meta.metadata if meta else {}).get("lsnwal-last-ts", now))
            if now - last_ts > cfg.store_max_age_s:
                reason = f"newest record older than store_max_age_s={cfg.store_max_age_s}"
        if not reason:
            break
        if pinned:
            meta = meta or store.head(key)
            if meta is None or _has_pinned(meta.metadata, pinned):
                break
        out.append(StoreCandidate(key, first, last, size, reason))
        count -= 1
        total -= size
    return out


def _has_pinned(metadata: dict[str, str] | object, pinned: set[str]) -> bool:
    md = metadata if isinstance(metadata, dict) else {}
    if md.get("lsnwal-marks", "0") == "0":
        return False
    names = md.get("lsnwal-mark-names")
    if names is None:
        return True  # marks too long for the metadata: keep it (the safe side)
    for item in names.split(",") if names else []:
        _, _, hexname = item.partition(":")
        with contextlib.suppress(ValueError):
            if bytes.fromhex(hexname).decode() in pinned:
                return True
    return False


def apply(store: ObjectStore, prefix: str, timeline: int, cfg: WalConfig,
          checkpoint_lsn: int) -> list[StoreCandidate]:
    """Delete what ``plan`` says, oldest first (a crash midway leaves a shorter, gapless tail)."""
    done = plan(store, prefix, timeline, cfg, checkpoint_lsn)
    for c in done:
        store.delete(c.key)
    return done


class Hold:
    """A restore's hold on a prefix: retention in the store waits while it exists."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store = store
        self.key: str | None = holds_prefix(prefix) + os.urandom(8).hex()
        raw = json.dumps({"created": time.time(), "pid": os.getpid()}).encode()
        try:
            store.put_if_absent(self.key, raw, crc32c(raw))
        except StoreAuthError:
            log.warning("lsnwal: no permission to place a restore hold in %s; reading without "
                        "one (store retention could delete what this restore reads)",
                        store.location)
            self.key = None

    def release(self) -> None:
        """Remove the hold (idempotent; a failure only delays retention by HOLD_TTL_S)."""
        key, self.key = self.key, None
        if key is not None:
            with contextlib.suppress(StoreError):
                self.store.delete(key)
