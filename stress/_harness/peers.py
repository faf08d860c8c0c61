"""The peers of the benchmark harness: the stores lsnwal is measured against.

Each peer opens in a fresh directory and gives every committing thread a function that
makes one 100-byte record durable before it returns: the naive loop (one file, one lock,
``os.write`` + ``os.fsync``), SQLite (``journal_mode=WAL``, ``synchronous=FULL``), LMDB
(``sync=True``), LevelDB via plyvel and RocksDB via rocksdict (``sync=True``). LevelDB
and LMDB can also be filled and scanned. Beside them, the two hand-written reference
loops in lsnwal's record format: the naive buffered bulk writer and the naive scanner.
Rule: a peer module that is not installed raises ``ImportError`` when the peer is
opened, and the row is reported with that error, never replaced by something else.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import crc32c

PAYLOAD = bytes(i % 251 for i in range(100))  # the 100-byte record every workload writes
PEERS = ("naive", "sqlite", "lmdb", "leveldb", "rocksdb")
Commit = Callable[[], None]

# ----------------------------------------------------------------------------- peers


class Peer:
    """A store under test in one directory; ``committer()`` runs in the committing thread."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def committer(self) -> Commit:
        """A function that makes one 100-byte record durable before it returns."""
        raise NotImplementedError

    def fill(self, n: int) -> None:
        """Load ``n`` records quickly (no per-record sync) for a scan."""
        raise NotImplementedError(f"{type(self).__name__} has no scan workload")

    def scan(self) -> int:
        """Read every record back; return how many there were."""
        raise NotImplementedError(f"{type(self).__name__} has no scan workload")

    def close(self) -> None:
        """Close the store (every committer has returned)."""


class NaivePeer(Peer):
    """One append-only file, one lock, ``os.write`` + ``os.fsync`` per commit: no batching."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.fd = os.open(directory / "naive.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lock = threading.Lock()

    def committer(self) -> Commit:
        fd, lock, write, fsync = self.fd, self.lock, os.write, os.fsync

        def commit() -> None:
            with lock:
                write(fd, PAYLOAD)
                fsync(fd)
        return commit

    def close(self) -> None:
        os.close(self.fd)


class SqlitePeer(Peer):
    """SQLite, ``journal_mode=WAL``, ``synchronous=FULL``: every COMMIT fsyncs its WAL."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.path = directory / "bench.sqlite"
        self.conns: list[sqlite3.Connection] = []
        with contextlib.closing(sqlite3.connect(self.path)) as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, v BLOB)")
            c.commit()

    def committer(self) -> Commit:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA synchronous=FULL")
        self.conns.append(conn)

        def commit() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO log (v) VALUES (?)", (PAYLOAD,))
            conn.execute("COMMIT")
        return commit

    def close(self) -> None:
        for c in self.conns:
            c.close()


class LmdbPeer(Peer):
    """LMDB with ``sync=True``: one write transaction at a time, each flushed on commit."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        import lmdb

        self.env: Any = lmdb.open(str(directory), map_size=4 << 30, sync=True, metasync=True)
        self.seq = iter(range(1 << 62))

    def committer(self) -> Commit:
        env, seq = self.env, self.seq

        def commit() -> None:
            with env.begin(write=True) as txn:
                txn.put(b"%016d" % next(seq), PAYLOAD)
        return commit

    def fill(self, n: int) -> None:
        with self.env.begin(write=True) as txn:
            for i in range(n):
                txn.put(b"%016d" % i, PAYLOAD, append=True)

    def scan(self) -> int:
        n = 0
        with self.env.begin() as txn:
            for _k, _v in txn.cursor():
                n += 1
        return n

    def close(self) -> None:
        self.env.close()


class LevelDbPeer(Peer):
    """LevelDB through plyvel; ``put(..., sync=True)`` fsyncs its log per writer group."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        import plyvel

        self.db: Any = plyvel.DB(str(directory), create_if_missing=True)
        self.seq = iter(range(1 << 62))

    def committer(self) -> Commit:
        put, seq = self.db.put, self.seq
        return lambda: put(b"%016d" % next(seq), PAYLOAD, sync=True)

    def fill(self, n: int) -> None:
        with self.db.write_batch() as wb:
            for i in range(n):
                wb.put(b"%016d" % i, PAYLOAD)

    def scan(self) -> int:
        n = 0
        for _k, _v in self.db.iterator():
            n += 1
        return n

    def close(self) -> None:
        self.db.close()


class RocksDbPeer(Peer):
    """RocksDB through rocksdict; ``WriteOptions.sync = True`` fsyncs its WAL per group."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        import rocksdict

        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        self.db: Any = rocksdict.Rdict(str(directory), opts)
        self.wo: Any = rocksdict.WriteOptions()
        self.wo.sync = True
        self.seq = iter(range(1 << 62))

    def committer(self) -> Commit:
        put, wo, seq = self.db.put, self.wo, self.seq
        return lambda: put(b"%016d" % next(seq), PAYLOAD, wo)

    def close(self) -> None:
        self.db.close()


PEER_CLASSES: dict[str, type[Peer]] = {"naive": NaivePeer, "sqlite": SqlitePeer,
                                       "lmdb": LmdbPeer, "leveldb": LevelDbPeer,
                                       "rocksdb": RocksDbPeer}

#: The record header of lsnwal's format (crc u32, length u32, lsn u64, time f64, kind,
#: flags, reserved), spelt out here so that the reference loops borrow nothing from lsnwal.
REC_TAIL = struct.Struct("<IQdBBH")
REC_HEADER = struct.Struct("<IIQdBBH")
SEGMENT_HEADER_BYTES = 48
SEAL_KIND = 0x53


def naive_bulk_write(path: Path, n: int) -> int:
    """The naive buffered bulk loop: build each record (clock, CRC32C), write 1 MiB at a
    time, one fsync at the end. No lock, no checks, no rotation; returns ``n``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    pack, u32, crc = REC_TAIL.pack, struct.Struct("<I").pack, crc32c.crc32c
    clock, p = time.time, PAYLOAD
    buf = bytearray()
    try:
        for lsn in range(1, n + 1):
            tail = pack(len(p), lsn, clock(), 1, 0, 0)
            buf += u32(crc(p, crc(tail)))
            buf += tail
            buf += p
            if len(buf) >= 1 << 20:
                os.write(fd, buf)
                buf = bytearray()
        os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
    return n


def naive_scan(paths: Sequence[str]) -> int:
    """The hand-written scan: 1 MiB reads, unpack each header, check its CRC32C, count.

    Reads plain lsnwal segments (skips the 48-byte segment header, stops at the seal
    record or at zeros); raises ``ValueError`` on a bad CRC so a wrong count cannot pass.
    Written as tight as a careful user would: one ``crc32c`` call per record over a
    ``memoryview`` slice (no copy), a record cut by a read carried into the next one.
    """
    unpack, crc, hsize = REC_HEADER.unpack_from, crc32c.crc32c, REC_HEADER.size
    count = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            f.seek(SEGMENT_HEADER_BYTES)
            carry = b""
            done = False
            while not done:
                chunk = f.read(1 << 20)
                if not chunk:
                    if carry:
                        raise ValueError(f"{path}: record cut at the end of the file")
                    break
                data = carry + chunk if carry else chunk
                mv = memoryview(data)
                n, pos = len(data), 0
                while pos + hsize <= n:
                    c, ln, _lsn, _ts, kind, _fl, _r = unpack(data, pos)
                    if kind == SEAL_KIND or (c == 0 and ln == 0):
                        done = True
                        break
                    end = pos + hsize + ln
                    if end > n:
                        break
                    if crc(mv[pos + 4 : end]) != c:
                        raise ValueError(f"{path}: bad CRC at record {count + 1}")
                    count += 1
                    pos = end
                mv.release()
                carry = b"" if done else data[pos:]
    return count
