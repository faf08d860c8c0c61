"""Store retention: by count, bytes and age, never past the checkpoint or a pinned mark,
never while a restore holds the prefix, and always leaving a gapless tail.

A WAL is shipped to a ``file://`` store (retention only uses the seam, so the
directory store checks the logic quickly); random policies and checkpoints are
compared with a small reference model, then one run deletes for real and the
store still replays the newest records byte for byte.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import lsnwal
from lsnwal.store import LocalStore
from lsnwal.store import retention as ret
from lsnwal.store.url import timeline_dir


def shipped_wal(tmp_path: Path) -> tuple[str, LocalStore, Path]:
    """A 10+-segment WAL with marks m0..m5, shipped to a file:// store."""
    base = tmp_path / "store"
    base.mkdir()
    url = f"file://{base}"
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, archive_url=url)
    rng = random.Random(3)
    with lsnwal.open(tmp_path / "w", cfg) as wal:
        for i in range(6):
            for _ in range(45):
                wal.append(rng.randbytes(rng.randint(30, 200)))
            wal.mark(f"m{i}")
        wal.rotate()  # seal the active segment: it archives and ships
        wal.sync()
        wal.wait_archived(30)
        assert wal._archiver.wait_shipped(30)
    return url, LocalStore(str(base)), tmp_path / "w"


def model(segs: list[lsnwal.SegmentInfo], marks: dict[str, int], cfg: lsnwal.WalConfig,
          checkpoint: int, ages: list[float]) -> list[int]:
    """First LSNs the rules allow deleting, oldest first (the newest never goes)."""
    count, total = len(segs), sum(s.size_bytes for s in segs)
    pinned = {marks[m] for m in cfg.store_pinned_marks}
    out = []
    for s, age in zip(segs[:-1], ages, strict=False):
        if s.last_lsn > checkpoint or any(s.first_lsn <= p <= s.last_lsn for p in pinned):
            break
        if not ((cfg.store_max_segments is not None and count > cfg.store_max_segments)
                or (cfg.store_max_bytes is not None and total > cfg.store_max_bytes)
                or (cfg.store_max_age_s is not None and age > cfg.store_max_age_s)):
            break
        out.append(s.first_lsn)
        count -= 1
        total -= s.size_bytes
    return out


def test_retention_plans_match_the_rules(tmp_path: Path) -> None:
    """60 random policies and checkpoints: the plan equals the reference model's."""
    _url, store, wal_dir = shipped_wal(tmp_path)
    segs = [s for s in lsnwal.collect_all_segments(wal_dir) if s.state == "archive"]
    assert len(segs) >= 10
    marks = {n: lsn for n, lsn, _ in lsnwal.list_marks(wal_dir)}
    last_ts = [r.timestamp for r in lsnwal.replay(wal_dir)]
    rng = random.Random(11)
    sizes = []
    for _ in range(60):
        kw: dict[str, object] = {}
        if rng.random() < 0.5:
            kw["store_max_segments"] = rng.randint(1, len(segs) + 1)
        if rng.random() < 0.4:
            kw["store_max_bytes"] = rng.randint(4096, 4096 * len(segs))
        if rng.random() < 0.3:
            kw["store_max_age_s"] = rng.uniform(1, 100)
        if rng.random() < 0.3:
            kw["store_pinned_marks"] = (f"m{rng.randint(0, 5)}",)
        cfg = lsnwal.WalConfig(**kw)  # type: ignore[arg-type]
        checkpoint = rng.randint(0, segs[-1].last_lsn)
        now = last_ts[-1] + rng.uniform(0, 100)
        ages = [now - last_ts[s.last_lsn - 1] for s in segs]
        got = [c.first_lsn for c in ret.plan(store, "", 1, cfg, checkpoint, now)]
        assert got == model(segs, marks, cfg, checkpoint, ages), (kw, checkpoint)
        sizes.append(len(got))
    assert min(sizes) == 0 and max(sizes) >= 5  # the family covers "keep all" and deep cuts


def test_retention_deletes_the_oldest_and_the_rest_replays(tmp_path: Path) -> None:
    """A real run keeps a gapless tail whose records equal the local ones byte for byte."""
    url, _store, wal_dir = shipped_wal(tmp_path)
    base = str(tmp_path / "store")
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, archive_url=url, store_max_segments=4)
    with lsnwal.open(wal_dir, cfg) as wal:
        wal.checkpoint(wal.last_lsn)
        wal.rotate()  # seal the active segment: it archives and ships
        wal.sync()
        wal.wait_archived(30)
        assert wal._archiver.wait_shipped(30)
        gone = wal._archiver.shipper.apply_retention()  # type: ignore[union-attr]
    names = sorted(os.listdir(os.path.join(base, timeline_dir("", 1))))
    assert len(gone) > 5 and len(names) == 4
    remote = [(r.lsn, r.timestamp, r.payload) for r in lsnwal.replay(url)]
    local = [(r.lsn, r.timestamp, r.payload) for r in lsnwal.replay(wal_dir)]
    assert remote == local[local.index(remote[0]):][: len(remote)]
    assert remote[0][0] == int(names[0][:20])


def test_a_restore_hold_stops_retention(tmp_path: Path) -> None:
    """While a hold exists nothing is deleted; once released the same plan deletes."""
    _url, store, _wal_dir = shipped_wal(tmp_path)
    cfg = lsnwal.WalConfig(store_max_segments=2)
    hold = ret.Hold(store, "")
    assert ret.active_holds(store, "") == [hold.key]
    assert ret.plan(store, "", 1, cfg, 10**9) == []
    hold.release()
    assert ret.active_holds(store, "") == []
    assert len(ret.plan(store, "", 1, cfg, 10**9)) > 5


def test_restore_from_a_store_holds_it_while_reading(tmp_path: Path) -> None:
    """``restore(url)`` places a hold before it lists and removes it when done."""
    url, store, _wal_dir = shipped_wal(tmp_path)
    seen: list[list[str]] = []
    real_get = store.get

    def spying_get(key: str, start: int = 0, end: int | None = None) -> bytes:
        if "/tl-" in "/" + key:
            seen.append(ret.active_holds(store, ""))
        return real_get(key, start, end)

    from lsnwal.store import source

    orig = source.open_store
    try:
        source.open_store = lambda u, c=None: store  # type: ignore[assignment]
        store.get = spying_get  # type: ignore[method-assign]
        lsnwal.restore(url, tmp_path / "r")
    finally:
        source.open_store = orig
    assert seen and all(len(h) == 1 for h in seen)
    assert ret.active_holds(store, "") == []


@pytest.mark.parametrize("field,value", [("store_max_segments", 0), ("store_max_bytes", -1),
                                         ("store_max_age_s", 0), ("store_pinned_marks", ["m"])])
def test_bad_store_retention_settings_are_refused(field: str, value: object) -> None:
    """Each invalid store retention setting is a ValueError when the config is built."""
    with pytest.raises(ValueError):
        lsnwal.WalConfig(**{field: value})  # type: ignore[arg-type]
