"""Tests of lsnwal.testing: the in-memory file system's crash model and the fault backends."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from lsnwal.fs import FileSystem, OsFileSystem, SyncBackend
from lsnwal.testing import (
    BlockingSyncBackend,
    CountingSyncBackend,
    FailingSyncBackend,
    SimFileSystem,
    SimulatedCrash,
    SlowSyncBackend,
    crash_at,
)


@pytest.fixture
def fs() -> SimFileSystem:
    """A model with a durable, empty /wal directory."""
    sim = SimFileSystem()
    sim.makedirs("/wal")
    sim.write_file("/wal/.keep", b"")
    return sim


def _durable_file(fs: SimFileSystem, path: str, data: bytes) -> int:
    """Create ``path`` with ``data``, sync file and directory; return the open descriptor."""
    fd = fs.create(path)
    fs.write(fd, data)
    backend = fs.sync_backend()
    backend.sync_file(fd)
    dfd = fs.open_dir(os.path.dirname(path))
    backend.sync_dir(dfd)
    fs.close(dfd)
    return fd


def test_satisfies_protocols(fs: SimFileSystem) -> None:
    """SimFileSystem is a FileSystem and its backend a SyncBackend."""
    sim: FileSystem = fs
    assert isinstance(sim.sync_backend(), SyncBackend)
    assert isinstance(FailingSyncBackend(), SyncBackend)
    real: FileSystem = OsFileSystem()
    assert real.exists("/")


def test_unsynced_writes_are_lost(fs: SimFileSystem) -> None:
    """Bytes written after the last sync_file are gone after crash()."""
    fd = _durable_file(fs, "/wal/a", b"hello")
    fs.write(fd, b" world")
    assert fs.read_file("/wal/a") == b"hello world"
    assert fs.crash().read_file("/wal/a") == b"hello"


def test_synced_writes_survive(fs: SimFileSystem) -> None:
    """Data and size made durable by sync_file survive crash()."""
    fd = _durable_file(fs, "/wal/a", b"hello")
    fs.write(fd, b" world")
    fs.sync_backend().sync_file(fd)
    after = fs.crash()
    assert after.read_file("/wal/a") == b"hello world"
    assert after.files() == {"/wal/.keep": b"", "/wal/a": b"hello world"}


def test_create_without_dir_sync_is_lost(fs: SimFileSystem) -> None:
    """A synced file whose directory was never synced does not exist after crash()."""
    fd = fs.create("/wal/new")
    fs.write(fd, b"data")
    fs.sync_backend().sync_file(fd)
    assert not fs.crash().exists("/wal/new")


def test_rename_without_dir_sync_reverts(fs: SimFileSystem) -> None:
    """An un-synced rename is undone by crash(); a dir sync makes it stick."""
    _durable_file(fs, "/wal/a", b"x")
    fs.makedirs("/wal/archive")
    fs.rename("/wal/a", "/wal/archive/a")
    after = fs.crash()
    assert after.exists("/wal/a") and not after.exists("/wal/archive")
    dfd = fs.open_dir("/wal/archive")
    fs.sync_backend().sync_dir(dfd)
    after = fs.crash()
    assert after.read_file("/wal/archive/a") == b"x" and not after.exists("/wal/a")


def test_sync_dir_persists_the_prefix(fs: SimFileSystem) -> None:
    """Syncing one directory also persists every earlier metadata change elsewhere."""
    fs.makedirs("/other")
    fs.close(fs.create("/other/first"))
    fs.close(fs.create("/wal/second"))
    fs.close(fs.create("/other/third"))
    dfd = fs.open_dir("/wal")
    fs.sync_backend().sync_dir(dfd)
    after = fs.crash()
    assert after.exists("/other/first") and after.exists("/wal/second")
    assert not after.exists("/other/third")


def test_unlink_and_recreate(fs: SimFileSystem) -> None:
    """A persisted unlink removes the file; an un-persisted one leaves it."""
    _durable_file(fs, "/wal/a", b"x")
    fs.unlink("/wal/a")
    assert not fs.exists("/wal/a")
    assert fs.crash().read_file("/wal/a") == b"x"
    dfd = fs.open_dir("/wal")
    fs.sync_backend().sync_dir(dfd)
    assert not fs.crash().exists("/wal/a")


def test_crash_variants_cover_metadata_prefixes(fs: SimFileSystem) -> None:
    """Every prefix of the unsynced metadata log appears as a crash variant."""
    for name in ("a", "b", "c"):
        fs.close(fs.create(f"/wal/{name}"))
    seen = {frozenset(fs.crash(v).listdir("/wal")) for v in fs.crash_variants()}
    assert seen == {
        frozenset({".keep"}),
        frozenset({".keep", "a"}),
        frozenset({".keep", "a", "b"}),
        frozenset({".keep", "a", "b", "c"}),
    }


def test_crash_variants_include_torn_and_zero_writes(fs: SimFileSystem) -> None:
    """crash_variants() offers lost, kept, prefix, torn and zero-filled tails."""
    fd = _durable_file(fs, "/wal/a", b"base")
    fs.write(fd, b"1111")
    fs.write(fd, b"2222")
    variants = list(fs.crash_variants())
    contents: dict[str, set[bytes]] = {v.data: set() for v in variants}
    for v, after in fs.crash_states():
        contents[v.data].add(after.read_file("/wal/a"))
        assert v.describe()
    assert contents["lost"] == {b"base"}
    assert contents["kept"] == {b"base11112222"}
    assert contents["prefix"] == {b"base1111"}
    assert contents["torn"] == {b"base11", b"base111122"}
    assert contents["zero"] == {b"base\0\0\0\0", b"base1111\0\0\0\0"}
    assert len(variants) == len(set(variants))


def test_data_on_unreachable_inode_is_lost(fs: SimFileSystem) -> None:
    """Synced data of a file whose create was not persisted appears in no variant."""
    fd = fs.create("/wal/tmp")
    fs.write(fd, b"data")
    fs.sync_backend().sync_file(fd)
    states = [after.files() for _, after in fs.crash_states()]
    assert {"/wal/.keep": b""} in states
    assert {"/wal/.keep": b"", "/wal/tmp": b"data"} in states


def test_checkpoint_state_and_on_op(fs: SimFileSystem) -> None:
    """on_op fires after each mutating op and a checkpointed state replays its crashes."""
    states = []
    fs.on_op = lambda op: states.append((op, fs.checkpoint_state()))
    fd = fs.create("/wal/a")
    fs.write(fd, b"abc")
    assert [op for op, _ in states] == ["create", "write"]
    fs.write(fd, b"def")
    old = SimFileSystem.from_state(states[1][1])
    assert old.read_file("/wal/a") == b"abc"
    assert not old.crash().exists("/wal/a")
    assert any(s.files().get("/wal/a") == b"abc" for _, s in old.crash_states())


def test_trace_records_events() -> None:
    """SimFileSystem(trace=True) records mutating operations in order."""
    sim = SimFileSystem(trace=True)
    sim.makedirs("/d")
    fd = sim.create("/d/f")
    sim.write(fd, b"xy")
    assert sim.events is not None
    assert [op for op, _ in sim.events] == ["mkdir", "create", "write"]


def test_rename_never_replaces(fs: SimFileSystem) -> None:
    """rename raises FileExistsError for an existing target and FileNotFoundError for no source."""
    fs.write_file("/wal/a", b"a")
    fs.write_file("/wal/b", b"b")
    with pytest.raises(FileExistsError):
        fs.rename("/wal/a", "/wal/b")
    with pytest.raises(FileNotFoundError):
        fs.rename("/wal/missing", "/wal/c")
    assert fs.read_file("/wal/b") == b"b"


def test_lock_twice_raises(fs: SimFileSystem) -> None:
    """A second lock, even by the same holder, raises BlockingIOError until unlock."""
    handle = fs.lock("/wal/LOCK")
    with pytest.raises(BlockingIOError):
        fs.lock("/wal/LOCK")
    fs.unlock(handle)
    fs.unlock(fs.lock("/wal/LOCK"))


def test_descriptor_semantics(fs: SimFileSystem) -> None:
    """open_write appends, dup shares the position, truncate moves it, closed fds fail."""
    fs.write_file("/wal/a", b"abc")
    fd = fs.open_write("/wal/a")
    fd2 = fs.dup(fd)
    fs.write(fd, b"d")
    fs.write(fd2, b"e")
    fs.truncate(fd, 2)
    fs.write(fd, b"Z")
    rfd = fs.open_read("/wal/a")
    assert fs.pread(rfd, 10, 0) == b"abZ" and fs.pread(rfd, 10, 2) == b"Z"
    assert fs.fsize(rfd) == fs.size("/wal/a") == 3
    fs.close(fd)
    with pytest.raises(OSError) as info:
        fs.write(fd, b"x")
    assert info.value.errno == errno.EBADF
    fs.write(fd2, b"!")
    assert fs.read_file("/wal/a") == b"abZ!"
    with pytest.raises(FileNotFoundError):
        fs.create("/nodir/f")


def test_enospc_writes_nothing() -> None:
    """A write past capacity raises ENOSPC and leaves the file unchanged."""
    sim = SimFileSystem(capacity_bytes=10)
    fd = sim.create("/f")
    sim.write(fd, b"12345678")
    with pytest.raises(OSError) as info:
        sim.write(fd, b"abc")
    assert info.value.errno == errno.ENOSPC
    assert sim.read_file("/f") == b"12345678"


def test_fail_next(fs: SimFileSystem) -> None:
    """fail_next makes the next matching operations raise without applying them."""
    fd = fs.create("/wal/a")
    fs.fail_next("write", count=2)
    for _ in range(2):
        with pytest.raises(OSError) as info:
            fs.write(fd, b"x")
        assert info.value.errno == errno.EIO
    fs.write(fd, b"y")
    fs.fail_next("sync_file", errno.ENOSPC)
    with pytest.raises(OSError):
        fs.sync_backend().sync_file(fd)
    assert fs.read_file("/wal/a") == b"y"
    with pytest.raises(ValueError):
        fs.fail_next("frobnicate")


def test_failing_backend_raises_on_nth_call(fs: SimFileSystem) -> None:
    """FailingSyncBackend fails from the Nth matching call on and counts calls."""
    backend = FailingSyncBackend(fs.sync_backend(), fail_on_call=2, what="file")
    fd = fs.create("/wal/a")
    backend.sync_file(fd)
    dfd = fs.open_dir("/wal")
    backend.sync_dir(dfd)
    for _ in range(2):
        with pytest.raises(OSError) as info:
            backend.sync_file(fd)
        assert info.value.errno == errno.EIO
    assert backend.calls == 3 and backend.failures == 2


def test_failing_backend_not_sticky(fs: SimFileSystem) -> None:
    """With sticky=False only the Nth matching call fails."""
    backend = FailingSyncBackend(fs.sync_backend(), what="dir", sticky=False)
    dfd = fs.open_dir("/wal")
    with pytest.raises(OSError):
        backend.sync_dir(dfd)
    backend.sync_dir(dfd)


def test_blocking_backend_blocks_until_release(fs: SimFileSystem) -> None:
    """BlockingSyncBackend holds the first sync_file until release()."""
    backend = BlockingSyncBackend(fs.sync_backend())
    fd = fs.create("/wal/a")
    fs.write(fd, b"x")
    done = threading.Event()

    def sync() -> None:
        backend.sync_file(fd)
        done.set()

    thread = threading.Thread(target=sync)
    thread.start()
    assert backend.entered.wait(5)
    assert not done.wait(0.05)
    backend.release()
    thread.join(5)
    assert done.is_set() and backend.calls == 1
    backend.sync_file(fd)
    assert backend.calls == 2


def test_counting_and_slow_backends(fs: SimFileSystem) -> None:
    """CountingSyncBackend counts file and dir syncs through a SlowSyncBackend."""
    counting = CountingSyncBackend(SlowSyncBackend(fs.sync_backend(), delay_s=0.001))
    fd = fs.create("/wal/a")
    counting.sync_file(fd)
    counting.sync_dir(fs.open_dir("/wal"))
    assert (counting.file_syncs, counting.dir_syncs) == (1, 1)


def test_crash_at_raises_at_named_point() -> None:
    """crash_at raises SimulatedCrash only for its failpoint name."""
    hook = crash_at("after_rename")
    hook("before_rename")
    with pytest.raises(SimulatedCrash):
        hook("after_rename")
