"""Opening a shipping WAL: bad configuration, secrets, the lease and timelines.

A store that cannot be used is refused when the WAL opens, with one
``WalError`` and nothing shipped; credentials never show in messages, logs,
stats, ``lsnwal info`` or the objects; a second writer is refused; a restored
WAL ships on a new timeline and never touches the history it came from.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from _faultstore import FaultStore
from _seaweed import ACCESS_KEY, SECRET_KEY, Server, s3_client

import lsnwal
from lsnwal.cli import main as cli_main
from lsnwal.store import (
    StoreAuthError,
    StoreCapabilityError,
    StoreConfigError,
    StoreNotFoundError,
    open_store,
    parse_url,
)
from lsnwal.store.source import read_source
from lsnwal.store.timeline import StoreLeaseError
from lsnwal.store.url import history_key, lease_key, segment_key


def cfg(url: str, store: Any = None, **kw: Any) -> lsnwal.WalConfig:
    """Small segments, quick retries, shipping to ``url``."""
    return lsnwal.WalConfig(segment_max_bytes=4096, archive_url=url, archive_store=store,
                            archive_ship_retry_max_s=0.2, **kw)


def write(wal: lsnwal.AsyncWalWriter, n: int, seed: int = 1) -> None:
    """Append ``n`` records of 40..400 random bytes, then rotate and sync them."""
    rng = random.Random(seed)
    for _ in range(n):
        wal.append(rng.randbytes(rng.randint(40, 400)))
    wal.rotate()  # seal the active segment: it archives and ships
    wal.sync()


def records(path: str, store: Any = None) -> list[tuple[int, int, float, bytes]]:
    """Every record of a WAL directory or store URL, as comparable tuples."""
    src, fs = read_source(path, None, store)
    return [(r.lsn, int(r.kind), r.timestamp, r.payload) for r in lsnwal.replay(src, fs=fs)]


def shipped(wal: lsnwal.AsyncWalWriter) -> None:
    """Wait until everything archived is in the store."""
    wal.wait_archived(30)
    assert wal._archiver.wait_shipped(60)


def make_plain_wal(path: Path) -> list[tuple[int, int, float, bytes]]:
    """A WAL without shipping, with a few segments; return its records."""
    with lsnwal.open(path, lsnwal.WalConfig(segment_max_bytes=4096)) as wal:
        write(wal, 80)
    return records(str(path))


def test_malformed_url_is_a_config_error() -> None:
    """A malformed ``archive_url`` fails when the config is built (a ValueError, a WalError)."""
    for url in ("s3://", "s3://Bad_Bucket/x", "s3://bucket/p?timeline=2", "ftp://x/y"):
        with pytest.raises(StoreConfigError):
            lsnwal.WalConfig(archive_url=url)
    with pytest.raises(ValueError):
        lsnwal.WalConfig(archive_store=object())


def test_unusable_stores_are_refused_at_open_with_nothing_shipped(
    seaweed: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown bucket, wrong key, wrong secret, a store ignoring conditions: one error each.

    The refused open ships nothing, writes no object, and leaves the WAL's
    records as they were; the credentials appear in no message and no log line.
    """
    wal_dir = tmp_path / "w"
    before = make_plain_wal(wal_dir)
    rclone = Server("rclone", str(tmp_path / "rc" / "data"))
    rclone.start()
    try:
        prefix = "refused-" + os.urandom(4).hex()
        good = seaweed.url(prefix)
        bad_secret = "WRONG-secret-Zq81" + SECRET_KEY
        cases: list[tuple[str, Any, type[Exception]]] = [
            (f"s3://no-such-bucket-lsnwal/{prefix}?endpoint={seaweed.endpoint}",
             seaweed.client(), StoreNotFoundError),
            (good, s3_client(seaweed.endpoint, secret=bad_secret), StoreAuthError),
            (good, s3_client(seaweed.endpoint, key="AKIAWRONGKEYID0001"), StoreAuthError),
            (rclone.url(prefix), rclone.client(), StoreCapabilityError),
        ]
        for url, client, err in cases:
            with pytest.raises(err) as exc:
                lsnwal.open(wal_dir, cfg(url, client))
            assert isinstance(exc.value, lsnwal.WalError)
            for secret in (bad_secret, SECRET_KEY, "AKIAWRONGKEYID0001"):
                assert secret not in str(exc.value)
                assert secret not in caplog.text
        assert list(open_store(good, seaweed.client()).list(prefix + "/")) == []
        assert not (wal_dir / "SHIPPING").exists()
        assert records(str(wal_dir)) == before
    finally:
        rclone.stop()


def test_later_auth_errors_stop_shipping_but_not_commits(
    seaweed: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A permission revoked mid-run stops shipping visibly (stats, log); commits go on."""
    url = seaweed.url()
    fault = FaultStore(open_store(url, seaweed.client()))
    with lsnwal.open(tmp_path / "w", cfg(url, fault)) as wal:
        write(wal, 40)
        shipped(wal)
        fault.fail_always = StoreAuthError("put x in s3://wal/p: AccessDenied Access Denied")
        write(wal, 80, seed=2)
        wal.wait_archived(30)
        assert not wal._archiver.wait_shipped(30)
        st = wal.stats().as_dict()
        write(wal, 40, seed=3)
        assert wal.synced_lsn == wal.last_lsn
    assert st["ship_stopped"] and "AccessDenied" in st["ship_error"]
    assert "shipping to" in caplog.text and "stopped" in caplog.text


def test_credentials_never_leak(seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                caplog: pytest.LogCaptureFixture) -> None:
    """After a shipping run, neither the key id nor the secret is in stats, info, objects, files."""
    caplog.set_level(logging.DEBUG, logger="lsnwal")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    url = seaweed.url()
    wal_dir = tmp_path / "w"
    with lsnwal.open(wal_dir, cfg(url)) as wal:
        write(wal, 60)
        wal.mark("m")
        write(wal, 10, seed=2)
        shipped(wal)
        seen = [json.dumps(wal.stats().as_dict(), default=str),
                json.dumps(wal.stats().as_dict(), default=str), repr(wal.config)]
    out = io.StringIO()
    with redirect_stdout(out):
        cli_main(["info", str(wal_dir)])
    seen.append(out.getvalue())
    store = open_store(url, seaweed.client())
    pfx = parse_url(url).prefix
    for obj in store.list(pfx + "/"):
        info = store.head(obj.key)
        assert info is not None
        seen.append(json.dumps(dict(info.metadata)))
        if not obj.key.endswith(".wal"):
            seen.append(store.get(obj.key).decode())
    for name in os.listdir(wal_dir):
        if os.path.isfile(wal_dir / name) and name.isupper():
            seen.append((wal_dir / name).read_text(errors="replace"))
    seen.append(caplog.text)
    text = "\n".join(seen)
    assert "lsnwal-first-lsn" in text and "owner" in text  # we did look at the right things
    assert ACCESS_KEY not in text and SECRET_KEY not in text


def test_second_writer_is_refused_and_takeover_fences_the_first(
    seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second WAL on a leased prefix is refused; a takeover stops the first one's shipping."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    url, client = seaweed.url(), seaweed.client()
    a = lsnwal.open(tmp_path / "a", cfg(url, client))
    try:
        write(a, 40)
        shipped(a)
        with pytest.raises(StoreLeaseError, match="another WAL"):
            lsnwal.open(tmp_path / "b", cfg(url, client))
        lsnwal.restore(url, tmp_path / "b2")
        with pytest.raises(StoreLeaseError):  # a new timeline, but A still holds the lease
            lsnwal.open(tmp_path / "b2", cfg(url, client))
        with lsnwal.open(tmp_path / "b2", cfg(url, client, archive_takeover=True)) as b:
            write(b, 20, seed=5)
            shipped(b)
            assert b.stats().as_dict()["ship_timeline"] == 2
        write(a, 60, seed=6)  # A does not know yet: its next upload finds the lease gone
        a.wait_archived(30)
        assert not a._archiver.wait_shipped(30)
        st = a.stats().as_dict()
        assert st["ship_stopped"] and "lease" in st["ship_error"]
        assert a.synced_lsn == a.last_lsn
    finally:
        a.close()


def test_a_restored_wal_ships_on_a_new_timeline(seaweed: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Restore to an LSN, write on: timeline 2 holds the new history, timeline 1 is untouched."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    url, client = seaweed.url(), seaweed.client()
    store = open_store(url, client)
    pfx = parse_url(url).prefix
    with lsnwal.open(tmp_path / "a", cfg(url, client)) as a:
        write(a, 120)
        shipped(a)
    old = {o.key: store.get(o.key) for o in store.list(pfx + "/tl-00000001/")}
    history_a = records(url, client)
    branch = history_a[len(history_a) // 2][0]
    lsnwal.restore(url, tmp_path / "b", until_lsn=branch)
    with lsnwal.open(tmp_path / "b", cfg(url, client)) as b:
        write(b, 70, seed=8)
        shipped(b)
        assert b.stats().as_dict()["ship_timeline"] == 2
    assert {o.key: store.get(o.key) for o in store.list(pfx + "/tl-00000001/")} == old
    hist = json.loads(store.get(history_key(pfx, 2)))
    assert (hist["parent"], hist["branch_lsn"]) == (1, branch)
    new = records(url, client)  # the newest timeline by default
    assert new[:branch] == history_a[:branch] and new[branch:] != history_a[branch:]
    assert new == records(str(tmp_path / "b"))[: len(new)]
    assert records(url + "&timeline=1", client) == history_a
    assert store.head(segment_key(pfx, 2, "00000000000000000001.wal")) is not None
    lease = json.loads(store.get(lease_key(pfx)))
    assert lease["timeline"] == 2 and lease["released"] is True
