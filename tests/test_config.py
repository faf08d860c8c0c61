"""WalConfig: a frozen, keyword-only dataclass validated when it is built."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import lsnwal
from lsnwal import WalConfig

# (field, bad value) — every one must raise ValueError naming the field.
BAD_VALUES: list[tuple[str, Any]] = [
    ("segment_max_bytes", 0),
    ("segment_max_bytes", -1),
    ("segment_max_bytes", 4095),
    ("segment_max_bytes", 4096.0),
    ("segment_max_bytes", "4096"),
    ("segment_max_bytes", True),
    ("segment_max_bytes", None),
    ("max_record_bytes", -1),
    ("max_record_bytes", 1.5),
    ("max_record_bytes", "10"),
    ("max_record_bytes", 1 << 40),
    ("pending_dir", ""),
    ("pending_dir", None),
    ("pending_dir", 7),
    ("pending_dir", "a\0b"),
    ("archive_dir", ""),
    ("archive_dir", None),
    ("archive_dir", b"archive"),
    ("archive_enabled", 1),
    ("archive_enabled", "yes"),
    ("archive_enabled", None),
    ("archive_max_segments", 0),
    ("archive_max_segments", -5),
    ("archive_max_segments", 2.0),
    ("archive_max_segments", "3"),
    ("archive_max_bytes", 0),
    ("archive_max_bytes", -1),
    ("archive_max_bytes", 1.0),
    ("archive_max_age_s", 0),
    ("archive_max_age_s", -1.0),
    ("archive_max_age_s", "60"),
    ("archive_max_age_s", True),
    ("max_pending_segments", 0),
    ("max_pending_segments", -1),
    ("max_pending_segments", 1.0),
    ("max_pending_segments", None),
    ("max_pending_bytes", 0),
    ("max_pending_bytes", -100),
    ("max_pending_bytes", "1"),
    ("backpressure_timeout_s", 0),
    ("backpressure_timeout_s", -0.5),
    ("backpressure_timeout_s", "1"),
    ("backpressure_timeout_s", None),
    ("backpressure_timeout_s", float("nan")),
    ("compression", "gzip"),
    ("compression", "ZSTD"),
    ("compression", ""),
    ("compression", True),
    ("compression_level", "3"),
    ("compression_level", 3.0),
    ("compression_level", 23),
    ("compression_level", -100),
    ("recovery_mode", "lenient"),
    ("recovery_mode", "STRICT"),
    ("recovery_mode", None),
    ("recovery_mode", ""),
    ("write_buffer_bytes", -1),
    ("write_buffer_bytes", 1.0),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=lambda v: repr(v))
def test_bad_value_raises_value_error_naming_the_field(field: str, value: Any) -> None:
    """Each invalid field value raises ValueError whose message names that field."""
    with pytest.raises(ValueError) as info:
        WalConfig(**{field: value})
    assert field in str(info.value)


def test_every_documented_field_is_covered_by_the_bad_value_table() -> None:
    """The table above exercises every field named in DESIGN.md."""
    documented = {
        "segment_max_bytes",
        "max_record_bytes",
        "pending_dir",
        "archive_dir",
        "archive_enabled",
        "archive_max_segments",
        "archive_max_bytes",
        "archive_max_age_s",
        "max_pending_segments",
        "max_pending_bytes",
        "backpressure_timeout_s",
        "compression",
        "compression_level",
        "recovery_mode",
    }
    names = {f.name for f in dataclasses.fields(WalConfig)}
    assert documented <= names
    assert documented <= {field for field, _ in BAD_VALUES}


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(WalConfig)])
def test_every_field_rejects_a_foreign_object(field: str) -> None:
    """Every field, including ones added later, refuses a value of a foreign type by name."""
    kwargs: dict[str, Any] = {field: object()}
    with pytest.raises(ValueError) as info:
        WalConfig(**kwargs)
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("pending", "archive"),
    [("same", "same"), ("same/", "same"), ("/abs/dir", "/abs/dir/")],
)
def test_pending_and_archive_dir_must_differ(pending: str, archive: str) -> None:
    """pending_dir equal to archive_dir (also up to a trailing slash) is rejected."""
    with pytest.raises(ValueError, match="pending_dir"):
        WalConfig(pending_dir=pending, archive_dir=archive)


def test_defaults() -> None:
    """A default config is valid and has the documented defaults."""
    cfg = WalConfig()
    assert cfg.compression is None
    assert cfg.recovery_mode == "tolerate_tail"
    assert cfg.pending_dir != cfg.archive_dir
    assert cfg.archive_enabled is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"segment_max_bytes": 4096},
        {"max_record_bytes": 0},
        {"compression": "zstd", "compression_level": 22},
        {"compression": None},
        {"recovery_mode": "strict"},
        {"recovery_mode": "tolerate_tail"},
        {"recovery_mode": "stop_at_corruption"},
        {"archive_max_segments": 1, "archive_max_bytes": 1, "archive_max_age_s": 0.5},
        {"archive_max_age_s": 10},
        {"backpressure_timeout_s": 0.001},
        {"pending_dir": "/tmp/p", "archive_dir": "/tmp/a"},
        {"archive_enabled": False},
    ],
)
def test_good_values_are_accepted(kwargs: dict[str, Any]) -> None:
    """Valid values (including 4 KiB segments and every recovery mode) are kept as given."""
    cfg = WalConfig(**kwargs)
    for k, v in kwargs.items():
        assert getattr(cfg, k) == v


def test_frozen() -> None:
    """Fields cannot be reassigned after construction."""
    cfg = WalConfig(segment_max_bytes=4096)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.segment_max_bytes = 8192  # type: ignore[misc]
    assert cfg.segment_max_bytes == 4096


def test_keyword_only() -> None:
    """Positional arguments are refused."""
    with pytest.raises(TypeError):
        WalConfig(4096)  # type: ignore[call-arg]


def test_replace_validates_again() -> None:
    """A copy made with replace() is validated like a new config."""
    cfg = WalConfig(segment_max_bytes=8192)
    assert cfg.replace(recovery_mode="strict").recovery_mode == "strict"
    with pytest.raises(ValueError, match="segment_max_bytes"):
        cfg.replace(segment_max_bytes=1)


def test_open_rejects_non_config(tmp_path: Any) -> None:
    """open() refuses a config that is not a WalConfig, before creating anything."""
    target = tmp_path / "wal"
    with pytest.raises(TypeError):
        lsnwal.open(target, {"segment_max_bytes": 4096})  # type: ignore[arg-type]
    assert not target.exists()


# --------------------------------------------------------------------------- odd numbers

#: numeric fields and whether they are seconds (inf allowed: "no limit") or counts/sizes
NUMERIC = {
    "segment_max_bytes": "int", "max_record_bytes": "int", "archive_max_segments": "int",
    "archive_max_bytes": "int", "max_pending_segments": "int", "max_pending_bytes": "int",
    "compression_level": "int", "write_buffer_bytes": "int",
    "archive_max_age_s": "seconds", "backpressure_timeout_s": "seconds",
    "segment_max_age_s": "seconds",
    "archive_ship_retry_max_s": "seconds", "archive_ship_close_timeout_s": "seconds",
    "store_max_segments": "int", "store_max_bytes": "int", "store_max_age_s": "seconds",
}
ODD: list[Any] = [float("inf"), float("-inf"), float("nan"), -1, -0.0, 0, True, False,
                  10**400, -(10**400), 2**63, "5", b"5", None, 1.5, complex(1, 0)]


def test_numeric_fields_cover_every_number_field() -> None:
    """The odd-number table names every int/float field of WalConfig."""
    numeric = {f.name for f in dataclasses.fields(WalConfig)
               if any(t in str(f.type) for t in ("int", "float"))}
    assert numeric == set(NUMERIC)


@pytest.mark.parametrize("field", sorted(NUMERIC))
@pytest.mark.parametrize("value", ODD, ids=repr)
def test_odd_numbers_are_refused_or_mean_what_they_say(field: str, value: Any) -> None:
    """inf, nan, negatives, bools, huge ints, strings and None either raise ValueError at
    construction (naming the field) or are kept as a value lsnwal can act on."""
    try:
        cfg = WalConfig(**{field: value})
    except ValueError as exc:
        assert field in str(exc)
        return
    kept = getattr(cfg, field)
    assert kept is value
    if kept is None:
        assert field in ("archive_max_segments", "archive_max_bytes", "archive_max_age_s",
                         "segment_max_age_s", "store_max_segments", "store_max_bytes",
                         "store_max_age_s")
    elif NUMERIC[field] == "seconds":
        assert isinstance(kept, (int, float)) and not isinstance(kept, bool)
        assert kept > 0 and float(kept) == kept  # positive, finite or +inf, never NaN
    else:
        assert type(kept) is int and kept >= -7  # counts, sizes, levels: plain ints
        if field == "compression_level":
            assert kept <= 22


def test_infinite_backpressure_timeout_waits_for_room(tmp_path: Any) -> None:
    """backpressure_timeout_s=inf (and handle.wait(inf)) waits until room appears instead of
    raising OverflowError: a size rotation blocked behind a held fsync completes once let go."""
    import threading

    release = threading.Event()

    def hold(point: str) -> None:
        if point == "before_file_fsync" and threading.current_thread().name == "lsnwal-sync":
            release.wait(30)

    cfg = WalConfig(segment_max_bytes=4096, max_pending_segments=1,
                    backpressure_timeout_s=float("inf"))
    wal = lsnwal.open(tmp_path / "wal", cfg, failpoint=hold)
    big = b"x" * 1500
    try:
        while wal.stats().rotations < 1:  # the first full segment: pending is full, fsync held
            wal.append(big)
        done = threading.Event()
        errors: list[BaseException] = []

        def append_more() -> None:
            try:
                for _ in range(6):  # needs another rotation: waits for room, without a limit
                    wal.append(big)
                wal.sync_async(timeout=float("inf")).wait(float("inf"))
            except BaseException as exc:  # reported below
                errors.append(exc)
            done.set()

        t = threading.Thread(target=append_more)
        t.start()
        assert not done.wait(0.3)  # still waiting for room, not failed
        release.set()
        t.join(30)
        assert done.is_set() and errors == []
        assert wal.synced_lsn == wal.last_lsn
    finally:
        release.set()
        wal.close()
