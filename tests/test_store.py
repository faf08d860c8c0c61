"""The store seam: every implementation keeps the same contract, checked on a real server.

``LocalStore`` and ``S3Store`` (on SeaweedFS started by the suite) run the same
cases; the capability check is run against SeaweedFS, a directory, and a real
``rclone serve s3`` that silently ignores conditions and checksums.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _seaweed import Server

from lsnwal.store import (
    LocalStore,
    ObjectStore,
    StoreConfigError,
    StoreConflictError,
    StoreIntegrityError,
    check_store,
    open_store,
    parse_url,
)
from lsnwal.store.base import crc32c


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ObjectStore, str]]:
    """A store and a fresh prefix in it: a directory, or a bucket prefix on SeaweedFS."""
    if request.param == "local":
        yield LocalStore(str(tmp_path)), "pfx"
        return
    server: Any = request.getfixturevalue("seaweed")
    url = server.url()
    yield open_store(url, server.client()), parse_url(url).prefix


SIZES = [0, 1, 17, 4096, 65537]


def test_put_if_absent_creates_once_and_never_replaces(store: tuple[ObjectStore, str]) -> None:
    """For every size, the first create-only put wins and a second one changes nothing."""
    st, pfx = store
    for n in SIZES:
        key = f"{pfx}/obj-{n}"
        data = os.urandom(n)
        assert st.put_if_absent(key, data, crc32c(data), {"lsnwal-first-lsn": str(n)}) is True
        other = os.urandom(n) + b"x"
        assert st.put_if_absent(key, other, crc32c(other)) is False
        assert st.get(key) == data
        info = st.head(key)
        assert info is not None and info.size == n
        assert info.crc32c in (None, crc32c(data))
        assert info.metadata.get("lsnwal-first-lsn") == str(n)


def test_wrong_checksum_is_refused_and_nothing_stored(store: tuple[ObjectStore, str]) -> None:
    """A put whose CRC32C differs from its bytes (any single flipped bit) stores nothing."""
    st, pfx = store
    data = os.urandom(1000)
    good = crc32c(data)
    for bit in (0, 7, 15, 31):
        key = f"{pfx}/bad-{bit}"
        with pytest.raises(StoreIntegrityError):
            st.put_if_absent(key, data, good ^ (1 << bit))
        assert st.head(key) is None


def test_ranged_reads_match_slices(store: tuple[ObjectStore, str]) -> None:
    """Every range over a small object, and suffixes, equal the Python slice of its bytes."""
    st, pfx = store
    data = bytes(range(256)) * 3
    key = f"{pfx}/ranged"
    st.put_if_absent(key, data, crc32c(data))
    bounds = [0, 1, 2, 255, 256, 511, 767, 768]
    for a in bounds:
        for b in bounds:
            if a < b:
                assert st.get(key, a, b) == data[a:b], (a, b)
        assert st.get(key, a) == data[a:]
    for n in (1, 16, 700, 768):
        assert st.get(key, -n) == data[-n:]
    assert st.get(key, 900, 1000) == b""


def test_list_is_sorted_filtered_and_starts_after(store: tuple[ObjectStore, str]) -> None:
    """Listing returns the prefix's keys in order, and ``start_after`` each key drops the rest."""
    st, pfx = store
    keys = [f"{pfx}/d/{i:020d}.wal" for i in (1, 5, 40, 41, 300)]
    for k in reversed(keys):
        st.put_if_absent(k, k.encode(), crc32c(k.encode()))
    st.put_if_absent(f"{pfx}/e/x", b"x", crc32c(b"x"))
    assert [o.key for o in st.list(f"{pfx}/d/")] == keys
    for i, k in enumerate(keys):
        assert [o.key for o in st.list(f"{pfx}/d/", start_after=k)] == keys[i + 1 :]
    assert [o.size for o in st.list(f"{pfx}/d/")] == [len(k) for k in keys]


def test_compare_and_swap(store: tuple[ObjectStore, str]) -> None:
    """Only the current ETag may replace an object; "absent" is a condition too."""
    st, pfx = store
    key = f"{pfx}/lease"
    etag = st.put_if_match(key, b"1", None)
    with pytest.raises(StoreConflictError):
        st.put_if_match(key, b"2", None)
    with pytest.raises(StoreConflictError):
        st.put_if_match(key, b"2", '"not-the-etag"')
    etag2 = st.put_if_match(key, b"3", etag)
    assert st.get(key) == b"3"
    with pytest.raises(StoreConflictError):
        st.put_if_match(key, b"4", etag)  # stale now
    st.put_if_match(key, b"5", etag2)
    assert st.get(key) == b"5"


def test_delete_is_idempotent(store: tuple[ObjectStore, str]) -> None:
    """Deleting removes the object; deleting it again is not an error."""
    st, pfx = store
    key = f"{pfx}/gone"
    st.put_if_absent(key, b"abc", crc32c(b"abc"))
    st.delete(key)
    assert st.head(key) is None
    st.delete(key)
    assert st.put_if_absent(key, b"new", crc32c(b"new")) is True


def test_concurrent_creates_have_one_winner(seaweed: Any) -> None:
    """Racing create-only puts of different bytes: exactly one wins, its bytes stay.

    SeaweedFS makes losers wait on a lock (about 1 s each), so the normal run
    races 4 writers twice; ``LSNWAL_STRESS=1`` races 8 writers 10 times.
    """
    st = open_store(seaweed.url(), seaweed.client())
    pfx = "race-" + os.urandom(4).hex()
    n, rounds = (8, 10) if os.environ.get("LSNWAL_STRESS") == "1" else (4, 2)
    for rnd in range(rounds):
        key = f"{pfx}/k{rnd}"
        results: dict[int, bool] = {}
        bodies = {i: os.urandom(64) + bytes([i]) for i in range(n)}
        barrier = threading.Barrier(n)

        def put(i: int, key: str = key, bodies: dict[int, bytes] = bodies,
                results: dict[int, bool] = results, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            results[i] = st.put_if_absent(key, bodies[i], crc32c(bodies[i]))

        threads = [threading.Thread(target=put, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, ok in results.items() if ok]
        assert len(winners) == 1
        assert st.get(key) == bodies[winners[0]]


def test_capability_check_accepts_real_stores(seaweed: Any, tmp_path: Path) -> None:
    """SeaweedFS and a directory pass every probe, and the probes leave nothing behind."""
    url = seaweed.url()
    s3 = open_store(url, seaweed.client())
    pfx = parse_url(url).prefix
    for st, p in ((s3, pfx), (LocalStore(str(tmp_path)), "x")):
        report = check_store(st, p)
        assert report.ok, report.failures()
        assert {pr.name for pr in report.probes} == {
            "create-if-absent", "refuse-overwrite", "checksum-enforced", "ranged-read",
            "list-after", "head", "compare-and-swap"}
        assert list(st.list(p + "/")) == []


def test_capability_check_refuses_rclone(tmp_path: Path) -> None:
    """``rclone serve s3`` ignores If-None-Match, If-Match and CRC32C: the check says so."""
    server = Server("rclone", str(tmp_path / "rc" / "data"))
    server.start()
    try:
        st = open_store(server.url(), server.client())
        report = check_store(st, "x")
        failed = {p.name for p in report.failures()}
        assert not report.ok
        assert {"refuse-overwrite", "checksum-enforced", "compare-and-swap"} <= failed
    finally:
        server.stop()


BAD_URLS = [
    "", "s3:/bucket", "s3://", "s3://B/upper", "s3://a/p", "s3://bucket/a//b", "s3://bucket/../x",
    "http://bucket/x", "s3://bucket/p?nope=1", "s3://bucket/p?endpoint=ftp://h",
    "s3://bucket/p?timeline=zero", "file://relative/dir", "gs://bucket/p",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_malformed_urls_are_refused(url: str) -> None:
    """Each malformed store URL raises ``StoreConfigError`` (a ``ValueError``)."""
    with pytest.raises(StoreConfigError):
        parse_url(url)
    with pytest.raises(ValueError):
        parse_url(url)


def test_credentials_in_a_url_are_refused_without_echo() -> None:
    """A URL carrying ``key:secret@`` is refused and the message repeats neither."""
    with pytest.raises(StoreConfigError) as exc:
        parse_url("s3://AKIAEXAMPLEKEY:hunter2secret@bucket/prefix")
    assert "hunter2secret" not in str(exc.value) and "AKIAEXAMPLEKEY" not in str(exc.value)


def test_good_urls_parse() -> None:
    """Bucket, prefix, endpoint, region and timeline come out of a URL as written."""
    u = parse_url("s3://my-bucket/a/b/?endpoint=http://127.0.0.1:9&region=eu-west-1&timeline=3")
    assert (u.bucket, u.prefix, u.endpoint, u.region, u.timeline) == (
        "my-bucket", "a/b", "http://127.0.0.1:9", "eu-west-1", 3)
    assert str(u) == "s3://my-bucket/a/b"
    assert parse_url("file:///tmp/x/").bucket == "/tmp/x"
