"""Nothing is written after a failure, every failure path closes what it opened, odd buffers.

Owns three families:

* **Writing after a failure.** After a failed write (ENOSPC: the kernel writes
  part of the buffer, the retry fails) or a failed fsync, lsnwal writes nothing
  more to that file — ``close()`` included — and a reopen after space is freed
  recovers every acknowledged record byte for byte (and nothing but what was
  appended). Enumerated at every write (partial) and every file/directory fsync
  of a workload on a real small tmpfs; on a genuinely full tmpfs at several
  fill levels; and in ``SimFileSystem`` at a sweep of capacities, reopened both
  in place and after the harshest crash.
* **Leaks.** Open descriptors are the same before opening a WAL and after it
  failed (create, write, rename before/after, fsync, directory fsync) and closed.
* **Odd inputs.** ``array.array``, ``ctypes`` arrays, multi-dimensional and
  cast ``memoryview`` objects are accepted (the record holds their bytes);
  non-contiguous views get a ``TypeError`` saying so; a refused call uses no LSN
  and writes no byte.
"""

from __future__ import annotations

import array
import ctypes
import errno
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _commit_helpers import (
    open_fds,
    payload,
    stress_enabled,
)
from _fault_fs import FailAt, RecordingFs, mount_tmpfs

import lsnwal
from lsnwal.testing import SimFileSystem

CFG = lsnwal.WalConfig(segment_max_bytes=4096)


@pytest.fixture(scope="module")
def tmpfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small real tmpfs mounted for this module (root needed; fails loudly without)."""
    yield from mount_tmpfs(tmp_path_factory.mktemp("tmpfs"), "8m")


class _Run:
    """One workload: what was appended, attempted and acknowledged, and the error it ended on."""

    def __init__(self) -> None:
        self.written: dict[int, bytes] = {}
        self.attempted: dict[int, bytes] = {}
        self.told = 0
        self.error: lsnwal.WalError | None = None


def _workload(wal: lsnwal.AsyncWalWriter, ops: int, size: int = 300) -> _Run:
    """Appends (single and batches) and commits (sync and wait) until lsnwal refuses."""
    run = _Run()
    rng = random.Random(7)
    try:
        for i in range(ops):
            n = 3 if i % 4 == 3 else 1
            ps = [payload("w", i * 10 + k, rng.randint(size // 4, size)) for k in range(n)]
            first = wal.current_lsn
            run.attempted.update(zip(range(first, first + n), ps, strict=True))
            lsns = [wal.append(ps[0])] if n == 1 else list(wal.append_batch(ps))
            run.written.update(zip(lsns, ps, strict=True))
            if i % 3 == 2:
                run.told = max(run.told, wal.sync())
            elif i % 5 == 4:
                h = wal.sync_async()
                assert h.wait(30)
                run.told = max(run.told, h.target_lsn)
    except lsnwal.WalError as exc:
        run.error = exc
    run.told = max(run.told, wal.synced_lsn)
    return run


def _no_write_after_failure(fs: RecordingFs, failed_ino: int) -> None:
    """No write, pwrite or truncate reached the failed file after its failure."""
    muts = fs.mutations
    at = next((k for k, (ino, _, ok) in enumerate(muts) if ino == failed_ino and not ok), -1)
    start = at + 1 if at >= 0 else 0
    later = [(op, ok) for ino, op, ok in muts[start:] if ino == failed_ino]
    assert not later, f"lsnwal wrote to the failed file again: {later}"


def _check_reopen(path: str | Path, run: _Run, fs: lsnwal.FileSystem | None = None) -> None:
    """Reopen: every acknowledged record byte for byte; nothing that was not appended."""
    with lsnwal.open(path, CFG, fs=fs) as wal:
        last = wal.last_lsn
        assert last >= run.told, f"reopen ends at {last}, below acknowledged {run.told}"
    got = {r.lsn: r.payload for r in lsnwal.replay(path, config=CFG, fs=fs)}
    assert sorted(got) == list(range(1, last + 1)), "LSNs are not 1..last"
    for lsn in range(1, run.told + 1):
        assert got[lsn] == run.written[lsn], f"acknowledged LSN {lsn} changed"
    for lsn, p in got.items():
        assert p == run.attempted.get(lsn), f"LSN {lsn} holds bytes nobody appended"
    report = lsnwal.verify(path, config=CFG, fs=fs)
    assert report.ok, report.problems


def _clean_counts(root: Path) -> tuple[int, int, int]:
    """(writes, file fsyncs, dir fsyncs) of the workload when nothing fails."""
    fs = RecordingFs()
    files, dirs = FailAt(None, "file", 10**9), FailAt(None, "dir", 10**9)

    class Both:
        def sync_file(self, fd: int) -> None:
            files.sync_file(fd)

        def sync_dir(self, fd: int) -> None:
            dirs.sync_dir(fd)

    with lsnwal.open(root / "clean", CFG, fs=fs, sync_backend=Both()) as wal:
        fs.counts.clear()
        files.calls = dirs.calls = 0
        assert _workload(wal, 40).error is None
        writes = fs.counts.get("anywrite", 0)
    return writes, files.calls, dirs.calls


def _points(n: int) -> list[int]:
    """Failure points 1..n in the stress run; a spread sample of them otherwise."""
    if stress_enabled() or n <= 24:
        return list(range(1, n + 1))
    return sorted({1, 2, 3, n, n - 1, *range(4, n, max(1, n // 20))})


def test_every_partial_write_stops_writing_to_that_file(tmpfs: Path) -> None:
    """ENOSPC after half of the k-th write, for every k: no later write there, reopen is exact."""
    root = tmpfs / "partial"
    writes, _, _ = _clean_counts(root)
    assert writes > 20
    for k in _points(writes):
        fs = RecordingFs()
        wal = lsnwal.open(root / f"k{k}", CFG, fs=fs)
        fs.fail_on("anywrite", k, "partial", errno.ENOSPC)
        run = _workload(wal, 40)
        assert isinstance(run.error, lsnwal.WalSyncError), f"write {k}: {run.error!r}"
        wal.close()
        assert fs.failed and fs.failed[0][0] in ("write", "pwrite")
        _no_write_after_failure(fs, fs.failed[0][1])
        _check_reopen(root / f"k{k}", run)


@pytest.mark.parametrize("what", ["file", "dir"])
def test_every_failed_fsync_stops_writing_to_that_file(tmpfs: Path, what: str) -> None:
    """The k-th file (or directory) fsync fails, for every k: fail-stop, nothing written after."""
    root = tmpfs / f"fsync-{what}"
    _, files, dirs = _clean_counts(root)
    points = _points(files if what == "file" else dirs)
    unreached = 0
    for k in points:
        fs = RecordingFs()
        backend = FailAt(None, what, 10**9, fs=fs)
        wal = lsnwal.open(root / f"k{k}", CFG, fs=fs, sync_backend=backend)
        backend.nth = backend.calls + k  # the k-th fsync after opening fails
        run = _workload(wal, 40)
        if backend.failed:
            assert isinstance(run.error, lsnwal.WalSyncError), f"fsync {k}: {run.error!r}"
            assert wal.synced_lsn == run.told, "synced_lsn moved after the failure"
        wal.close()  # the k-th fsync may also come from close(): checked the same way
        if not backend.failed:
            unreached += 1  # background directory fsyncs are batched: their count varies
            continue
        _no_write_after_failure(fs, backend.failed[0][1])
        _check_reopen(root / f"k{k}", run)
    assert unreached <= len(points) // 4, f"{unreached} of {len(points)} fsyncs never happened"


@pytest.mark.parametrize("fill", range(8))
def test_a_really_full_tmpfs_stops_writing_and_reopens_exactly(tmpfs: Path, fill: int) -> None:
    """A genuinely full tmpfs (several fill levels): partial write, fail-stop, exact reopen."""
    root = tmpfs / f"full{fill}"
    root.mkdir()
    free = os.statvfs(tmpfs).f_bavail * os.statvfs(tmpfs).f_frsize
    ballast = root / "ballast"
    ballast.write_bytes(b"\xaa" * (free - 96 * 1024 - fill * 5 * 1024 - fill * 333))
    fs = RecordingFs()
    wal = lsnwal.open(root / "wal", CFG, fs=fs)
    run = _workload(wal, 10_000, size=1500)
    try:
        assert isinstance(run.error, lsnwal.WalSyncError), "the disk never filled"
        cause = run.error.cause
        assert isinstance(cause, OSError) and cause.errno == errno.ENOSPC, cause
    finally:
        wal.close()
    failed = [ino for ino, _, ok in fs.mutations if not ok]
    if failed:  # a write failed (not a create): nothing more reached that file
        _no_write_after_failure(fs, failed[0])
    ballast.unlink()
    _check_reopen(root / "wal", run)


class _PartialSim(SimFileSystem):
    """``SimFileSystem`` whose full disk writes what fits (halving) before ENOSPC, and logs."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity_bytes=capacity)
        self.muts: list[tuple[int, bool]] = []

    def _ino(self, fd: int) -> int:
        return self._fds[fd].ino

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Write; on ENOSPC first write the largest halved prefix that fits, then fail."""
        try:
            super().write(fd, data)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            part = bytes(data)[: len(data) // 2]
            while part:
                try:
                    super().write(fd, part)
                    break
                except OSError:
                    part = part[: len(part) // 2]
            self.muts.append((self._ino(fd), False))
            raise
        self.muts.append((self._ino(fd), True))

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write at an offset (logged)."""
        try:
            super().pwrite(fd, data, offset)
        except OSError:
            self.muts.append((self._ino(fd), False))
            raise
        self.muts.append((self._ino(fd), True))

    def truncate(self, fd: int, size: int) -> None:
        """Truncate (logged)."""
        ino = self._ino(fd)
        super().truncate(fd, size)
        self.muts.append((ino, True))


@pytest.mark.parametrize("crash", [False, True])
def test_simulated_full_disk_at_every_capacity(crash: bool) -> None:
    """SimFileSystem filling at a sweep of capacities: nothing written after, exact reopen."""
    probe = SimFileSystem()
    with lsnwal.open("/wal", CFG, fs=probe) as wal:
        assert _workload(wal, 40).error is None
    total = sum(len(b) for b in probe.files().values())
    step = 97 if stress_enabled() else 499
    for cap in range(4096, total, step):
        fs = _PartialSim(cap)
        try:
            wal = lsnwal.open("/wal", CFG, fs=fs)
        except lsnwal.WalError:
            continue  # too small to even create the WAL: nothing was acknowledged
        run = _workload(wal, 40)
        wal.close()
        assert run.error is not None, f"capacity {cap}: the disk never filled"
        bad = [ino for ino, ok in fs.muts if not ok]
        if bad:
            at = fs.muts.index((bad[0], False))
            later = [m for m in fs.muts[at + 1 :] if m[0] == bad[0]]
            assert not later, f"capacity {cap}: wrote to the failed file again: {later}"
        after = fs.crash() if crash else fs
        after.capacity_bytes = None  # space is freed
        _check_reopen("/wal", run, fs=after)


# --------------------------------------------------------------------------- leaks


LEAK_PATHS = [
    ("create", "before"), ("anywrite", "before"), ("anywrite", "partial"),
    ("rename", "before"), ("rename", "after"), ("sync_file", ""), ("sync_dir", ""),
]


@pytest.mark.parametrize(("op", "mode"), LEAK_PATHS)
def test_failure_paths_close_every_descriptor(tmpfs: Path, op: str, mode: str) -> None:
    """N injected failures on one path, each followed by close(): descriptors are as before."""
    before = open_fds()
    hits = 0
    for k in range(1, 13):
        fs = RecordingFs()
        backend = FailAt(None, op.removeprefix("sync_"), 10**9)
        wal = lsnwal.open(tmpfs / f"leak-{op}-{mode}-{k}", CFG, fs=fs, sync_backend=backend)
        if op.startswith("sync_"):
            backend.nth = backend.calls + k
        else:
            fs.fail_on(op, k, mode, errno.EIO)
        run = _workload(wal, 150)
        wal.close()
        hits += bool(fs.failed or backend.failed)
        assert fs.failed or backend.failed or run.error is None
        leaked = open_fds() - before
        assert not leaked, f"{op}/{mode} failure {k}: leaked {[_link(fd) for fd in leaked]}"
    assert hits >= 6, f"only {hits} of 12 runs reached the injected {op} failure"


def _link(fd: int) -> str:
    try:
        return f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}"
    except OSError:
        return str(fd)


# --------------------------------------------------------------------------- odd inputs


def _c_contiguous() -> list[tuple[str, object, bytes]]:
    ints = array.array("i", range(-5, 20))
    doubles = array.array("d", [0.5, -1.25, 3.0])
    c_ints = (ctypes.c_int32 * 4)(1, -2, 3, -4)
    raw = bytes(range(48))
    return [
        ("array-i", ints, ints.tobytes()),
        ("array-d", doubles, doubles.tobytes()),
        ("array-empty", array.array("q"), b""),
        ("ctypes", c_ints, bytes(c_ints)),
        ("memoryview-cast-i", memoryview(raw).cast("i"), raw),
        ("memoryview-2d", memoryview(raw).cast("B", (6, 8)), raw),
        ("memoryview-slice", memoryview(raw)[8:40], raw[8:40]),
        ("bytearray", bytearray(raw), raw),
    ]


def _not_contiguous() -> list[tuple[str, object]]:
    raw = bytes(range(64))
    return [
        ("step-2", memoryview(raw)[::2]),
        ("reversed", memoryview(raw)[::-1]),
        ("array-step", memoryview(array.array("i", range(16)))[::3]),
        ("2d-column", memoryview(raw).cast("B", (8, 8))[::2]),
    ]


def test_any_c_contiguous_buffer_is_stored_as_its_bytes(tmp_path: Path) -> None:
    """Every C-contiguous buffer kind is accepted by append and append_batch as its bytes."""
    cases = _c_contiguous()
    expected: dict[int, bytes] = {}
    with lsnwal.open(tmp_path / "wal", CFG) as wal:
        for _name, buf, raw in cases:
            expected[wal.append(buf)] = raw  # type: ignore[arg-type]
        lsns = wal.append_batch([buf for _, buf, _ in cases])  # type: ignore[misc]
        expected.update(zip(lsns, [raw for _, _, raw in cases], strict=True))
        wal.sync()
    got = {r.lsn: r.payload for r in lsnwal.replay(tmp_path / "wal", config=CFG)}
    assert got == expected


def test_buffer_size_limit_counts_bytes_not_items(tmp_path: Path) -> None:
    """max_record_bytes applies to a buffer's bytes: 26 int32 items are 104 bytes, too many."""
    cfg = lsnwal.WalConfig(segment_max_bytes=4096, max_record_bytes=100)
    with lsnwal.open(tmp_path / "wal", cfg) as wal:
        with pytest.raises(lsnwal.RecordTooLargeError):
            wal.append(array.array("i", range(26)))  # type: ignore[arg-type]
        assert wal.current_lsn == 1
        assert wal.append(array.array("i", range(25))) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "buf"), _not_contiguous(), ids=[n for n, _ in _not_contiguous()])
def test_non_contiguous_buffers_are_refused_without_a_trace(
    tmp_path: Path, name: str, buf: object
) -> None:
    """A non-contiguous buffer raises a TypeError naming contiguity; no LSN, no byte used."""
    fs = RecordingFs()
    with lsnwal.open(tmp_path / "wal", CFG, fs=fs) as wal:
        wal.append(b"before")
        wal.sync()
        lsn, writes = wal.current_lsn, fs.counts.get("anywrite", 0)
        odd: Any = buf
        for call in (lambda: wal.append(odd), lambda: wal.append_batch([b"ok", odd])):
            with pytest.raises(TypeError, match="contiguous"):
                call()
            assert wal.current_lsn == lsn, f"{name}: a refused payload used an LSN"
            assert fs.counts.get("anywrite", 0) == writes, f"{name}: a refused payload wrote"
        assert wal.append(b"after") == lsn
