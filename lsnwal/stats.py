"""``WalStats`` (what ``wal.stats()`` returns) and ``SyncCounters`` (the commit path counts)."""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass

#: fsync latencies kept for the percentiles of ``stats()``
_LATENCY_WINDOW = 4096


@dataclass(frozen=True)
class WalStats:
    """A point-in-time snapshot of one WAL's counters (see docs/operations.md)."""

    last_lsn: int
    synced_lsn: int
    checkpoint_lsn: int
    records_appended: int
    bytes_appended: int
    rotations: int
    fsyncs: int
    fsync_p50_s: float
    fsync_p99_s: float
    fsync_max_s: float
    commits: int
    commits_per_fsync: float
    pending_segments: int
    pending_bytes: int
    archive_segments: int
    archive_bytes: int
    backpressure_wait_s: float
    dir_fsyncs: int
    pruned_segments: int = 0
    failed: bool = False
    #: why archiving stopped (segments then stay in pending/, nothing is lost), or None
    archive_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The snapshot as a plain dict (for JSON or logging)."""
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


class SyncCounters:
    """Counters the commit path keeps for ``stats()`` (read under the manager's lock)."""

    def __init__(self) -> None:
        self.fsyncs = 0
        self.dir_fsyncs = 0
        self.commits = 0
        self.rounds = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=_LATENCY_WINDOW)
        self.fsync_max_s = 0.0

    def note_fsync(self, seconds: float) -> None:
        """Count one file fsync and its latency."""
        self.fsyncs += 1
        self.latencies.append(seconds)
        if seconds > self.fsync_max_s:
            self.fsync_max_s = seconds
