"""Platform support: the macOS F_FULLFSYNC backend, the POSIX backend, and a clear
"unsupported platform" error on Windows, all exercised on Linux through the seam.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lsnwal
from lsnwal.fs import (
    F_FULLFSYNC,
    FullFsyncBackend,
    PosixSyncBackend,
    check_platform,
    sync_backend_for,
)

NOT_SUPPORTED = [errno.EINVAL, errno.ENOTSUP, errno.ENOTTY, errno.EOPNOTSUPP]
REAL_FAILURES = [errno.EIO, errno.ENOSPC, errno.EROFS, errno.EBADF, errno.EDQUOT]


class FakeFcntl:
    """Records F_FULLFSYNC calls; raises ``OSError(err)`` when given one, else fsyncs."""

    def __init__(self, err: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.err = err

    def __call__(self, fd: int, cmd: int, arg: int) -> int:
        self.calls.append((fd, cmd))
        if self.err is not None:
            raise OSError(self.err, os.strerror(self.err))
        os.fsync(fd)  # what F_FULLFSYNC does, and more, on macOS
        return 0


class FsyncSpy:
    """Counts plain fsync calls."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def __call__(self, fd: int) -> None:
        self.fds.append(fd)
        os.fsync(fd)


def _fd(tmp_path: Path) -> int:
    return os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)


def test_full_fsync_uses_f_fullfsync_for_files_and_dirs(tmp_path: Path) -> None:
    """Files and directories are flushed with F_FULLFSYNC (51), never plain fsync."""
    fake, spy = FakeFcntl(), FsyncSpy()
    backend = FullFsyncBackend(fcntl_call=fake, fsync=spy)
    fd = _fd(tmp_path)
    try:
        backend.sync_file(fd)
        backend.sync_dir(fd)
    finally:
        os.close(fd)
    assert F_FULLFSYNC == 51
    assert fake.calls == [(fd, 51), (fd, 51)]
    assert spy.fds == [] and backend.fallbacks == 0


@pytest.mark.parametrize("err", NOT_SUPPORTED)
def test_full_fsync_falls_back_only_when_not_supported(
    tmp_path: Path, err: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A file system that refuses F_FULLFSYNC gets fsync, with one structured warning."""
    spy = FsyncSpy()
    backend = FullFsyncBackend(fcntl_call=FakeFcntl(err), fsync=spy)
    fd = _fd(tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="lsnwal"):
            for _ in range(3):
                backend.sync_file(fd)
            backend.sync_dir(fd)
    finally:
        os.close(fd)
    assert spy.fds == [fd] * 4 and backend.fallbacks == 4
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "fullfsync_fallback"]
    assert len(warnings) == 1 and getattr(warnings[0], "errno", None) == err


@pytest.mark.parametrize("err", REAL_FAILURES)
def test_full_fsync_failure_is_never_papered_over(tmp_path: Path, err: int) -> None:
    """An I/O error from F_FULLFSYNC raises; plain fsync is not tried (fail-stop)."""
    spy = FsyncSpy()
    backend = FullFsyncBackend(fcntl_call=FakeFcntl(err), fsync=spy)
    fd = _fd(tmp_path)
    try:
        for call in (backend.sync_file, backend.sync_dir):
            with pytest.raises(OSError) as info:
                call(fd)
            assert info.value.errno == err
    finally:
        os.close(fd)
    assert spy.fds == []


def test_a_wal_runs_on_the_macos_backend(tmp_path: Path) -> None:
    """A WAL opened with the F_FULLFSYNC backend syncs through it and recovers every record."""
    fake = FakeFcntl()
    backend = FullFsyncBackend(fcntl_call=fake, fsync=FsyncSpy())
    with lsnwal.open(tmp_path / "wal", sync_backend=backend) as wal:
        lsns = [wal.append(b"r%d" % i) for i in range(20)]
        assert wal.sync() >= lsns[-1]
    assert len(fake.calls) >= 2 and all(cmd == 51 for _, cmd in fake.calls)
    assert [r.payload for r in lsnwal.replay(tmp_path / "wal")] == [b"r%d" % i for i in range(20)]


def test_a_failing_full_fsync_fail_stops_the_wal(tmp_path: Path) -> None:
    """EIO from F_FULLFSYNC is a failed fsync: WalSyncError, nothing acknowledged."""
    ok = FakeFcntl()

    class FailAfterOpen:
        failing = False

        def __call__(self, fd: int, cmd: int, arg: int) -> int:
            if self.failing:
                raise OSError(errno.EIO, "injected")
            return ok(fd, cmd, arg)

    call = FailAfterOpen()
    wal = lsnwal.open(tmp_path / "wal", sync_backend=FullFsyncBackend(fcntl_call=call))
    wal.append(b"x")
    call.failing = True
    with pytest.raises(lsnwal.WalSyncError):
        wal.sync()
    assert wal.synced_lsn == 0
    wal.close()


@pytest.mark.parametrize(("platform", "kind"), [
    ("linux", PosixSyncBackend), ("darwin", FullFsyncBackend), ("freebsd14", PosixSyncBackend),
    ("sunos5", PosixSyncBackend),
])
def test_backend_per_platform(platform: str, kind: type) -> None:
    """Each supported platform gets its durable backend."""
    assert type(sync_backend_for(platform)) is kind


@pytest.mark.parametrize("platform", ["win32", "cygwin", "msys"])
def test_windows_is_refused_clearly(platform: str) -> None:
    """Windows platforms raise UnsupportedPlatformError (a WalError) that names WSL 2."""
    with pytest.raises(lsnwal.UnsupportedPlatformError, match="WSL 2"):
        check_platform(platform)
    with pytest.raises(lsnwal.WalError):
        sync_backend_for(platform)


def test_no_fcntl_is_refused() -> None:
    """A POSIX-looking platform without fcntl is refused too."""
    with pytest.raises(lsnwal.UnsupportedPlatformError):
        check_platform("linux", have_fcntl=False)


def test_posix_backend_without_fdatasync_uses_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Python has no os.fdatasync, files are flushed with os.fsync."""
    monkeypatch.delattr(os, "fdatasync")
    assert PosixSyncBackend()._file is os.fsync


def test_default_backend_here_is_posix() -> None:
    """On this Linux test machine the default backend is the POSIX one."""
    assert sys.platform.startswith("linux")
    assert isinstance(lsnwal.OsSyncBackend()._impl, PosixSyncBackend)


def test_import_works_and_open_fails_clearly_without_fcntl(tmp_path: Path) -> None:
    """As on Windows (no fcntl): import succeeds; open, verify and the CLI say 'unsupported'."""
    script = textwrap.dedent(f"""
        import asyncio, sys                   # asyncio exists on Windows too: load the real one
        sys.modules["fcntl"] = None          # what Windows lacks
        sys.platform = "win32"
        import lsnwal                         # must not raise ImportError
        from lsnwal.cli import main
        try:
            lsnwal.open({str(tmp_path / "wal")!r})
        except lsnwal.UnsupportedPlatformError as exc:
            print("open:", exc)
        try:
            lsnwal.verify({str(tmp_path)!r})
        except lsnwal.WalError as exc:
            print("verify:", type(exc).__name__)
        print("cli:", main(["info", {str(tmp_path)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("open: lsnwal does not support this platform (win32)")
    assert lines[1] == "verify: UnsupportedPlatformError"
    assert lines[2] == "cli: 1"
    assert "does not support this platform" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "wal").exists()
