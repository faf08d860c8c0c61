"""Shared fixtures for the lsnwal test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import lsnwal


@pytest.fixture
def wal_dir(tmp_path: Path) -> Path:
    """A path (not yet created) for a WAL directory inside the test's temp dir."""
    return tmp_path / "wal"


@pytest.fixture
def small_config() -> lsnwal.WalConfig:
    """A config with 4 KiB segments so that tests rotate often."""
    return lsnwal.WalConfig(segment_max_bytes=4096)


@pytest.fixture
def open_wal(wal_dir: Path, small_config: lsnwal.WalConfig) -> Iterator[lsnwal.AsyncWalWriter]:
    """An open WAL with small segments, closed after the test."""
    wal = lsnwal.open(wal_dir, small_config)
    try:
        yield wal
    finally:
        wal.close()


def stress_enabled() -> bool:
    """True under ``make stress`` (long forms of crash and soak tests)."""
    return os.environ.get("LSNWAL_STRESS") == "1"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One SeaweedFS server (real S3 API on 127.0.0.1) for the whole run; see tests/_seaweed.py."""
    from _seaweed import Server

    server = Server("weed", str(tmp_path_factory.mktemp("seaweed") / "data"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
