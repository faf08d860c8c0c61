"""The ``lsnwal`` command line, driven through ``lsnwal.cli.main(argv)``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import lsnwal
from lsnwal.cli import main

SMALL = lsnwal.WalConfig(segment_max_bytes=4096)
COMMANDS = ["info", "dump", "verify", "replay", "restore", "prune", "marks", "bench", "demo", "top"]


@dataclass
class Built:
    """A closed WAL made for these tests, and what was written into it."""

    path: Path
    last_lsn: int
    mark_lsn: int
    checkpoint_lsn: int
    checkpoint_record: int


def _build(path: Path) -> Built:
    with lsnwal.open(path, SMALL) as wal:
        for i in range(120):
            wal.append(f"first-{i:04d}-".encode() * 3)
        wal.sync()
        cp_record = wal.checkpoint(120, b'{"snapshot": true}')
        mark = wal.mark("m1")
        for i in range(80):
            wal.append(f"second-{i:04d}".encode() * 3)
        wal.rotate()  # everything archived: the active segment is left empty
        wal.sync()
        wal.wait_archived()
        last = wal.last_lsn
    return Built(path, last, mark, 120, cp_record)


@pytest.fixture
def built(tmp_path: Path) -> Built:
    """A closed WAL of 202 records over several archived segments, with a checkpoint and a mark."""
    return _build(tmp_path / "wal")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command line; return (exit status, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def tree_hash(root: Path) -> str:
    """A digest of every name, size, mtime and content under ``root`` (directories too)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        h.update(f"D {os.path.relpath(dirpath, root)}\n".encode())
        for name in sorted(filenames):
            p = Path(dirpath) / name
            st = p.stat()
            h.update(f"F {p.relative_to(root)} {st.st_size} {st.st_mtime_ns}\n".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def assert_one_line_error(rc: int, err: str) -> None:
    """A failure: non-zero status and exactly one line on stderr, no traceback."""
    assert rc != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def flip_byte(path: Path, offset: int) -> None:
    """Damage one byte of a file in place."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- help and usage


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_help_has_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each subcommand's --help exits 0 and shows usage examples."""
    rc, out, _ = run(capsys, command, "--help")
    assert rc == 0
    assert "examples:" in out
    assert f"lsnwal {command}" in out


def test_python_dash_m_runs_the_cli(built: Built) -> None:
    """``python -m lsnwal info PATH`` works like the ``lsnwal`` script."""
    proc = subprocess.run([sys.executable, "-m", "lsnwal", "info", str(built.path), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["last_lsn"] == built.last_lsn


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        [],
        ["dump"],
        ["dump", "X", "--from", "abc"],
        ["dump", "X", "--from", "0"],
        ["dump", "X", "--kind", "banana"],
        ["replay", "X", "--until-time", "2024-05-01T12:00:00"],
        ["replay", "X", "--until-lsn", "5", "--until-mark", "m"],
        ["prune", "X", "--max-bytes", "lots"],
        ["bench", "X", "--seconds", "-1"],
    ],
)
def test_bad_arguments_give_one_line_and_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad usage prints one line (no usage dump, no traceback) and exits with status 2."""
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert_one_line_error(rc, err)
    assert "error:" in err


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("command", ["info", "dump", "verify", "replay", "marks", "prune"])
def test_missing_directory_is_one_line_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A WAL path that does not exist is reported in one line, and nothing is created there."""
    missing = tmp_path / "nope"
    rc, _, err = run(capsys, command, missing)
    assert_one_line_error(rc, err)
    assert "no WAL directory" in err
    assert not missing.exists()


def test_directory_that_is_not_a_wal_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing directory without segments is not mistaken for an empty WAL."""
    (tmp_path / "notes.txt").write_text("hello")
    rc, _, err = run(capsys, "info", tmp_path)
    assert_one_line_error(rc, err)
    assert "not an lsnwal directory" in err
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_corruption_in_the_log_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flipped byte mid-way in the active segment is a one-line error naming the file."""
    path = tmp_path / "wal"
    with lsnwal.open(path, SMALL) as wal:
        for i in range(40):
            wal.append(f"record-{i:03d}".encode())
        wal.sync()
    active = path / "active.wal"
    flip_byte(active, 48 + 28 * 5 + 10 * 5 + 30)  # inside the 6th record
    for command in ("info", "dump", "replay"):
        rc, _, err = run(capsys, command, path)
        assert_one_line_error(rc, err)
        assert "active.wal" in err


def test_locked_wal_is_one_line_error_for_prune(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """prune (which opens the WAL) fails in one line while another writer holds the LOCK."""
    with lsnwal.open(built.path, SMALL):
        before = sorted(os.listdir(built.path / "archive"))
        rc, _, err = run(capsys, "prune", built.path, "--max-segments", "1", "--yes")
        assert_one_line_error(rc, err)
        assert "locked" in err
        assert sorted(os.listdir(built.path / "archive")) == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--until-mark", "no-such-mark"], "no mark named"),
        (["--until-lsn", "100000"], "past the end"),
        (["--until-time", "2000-01-01T00:00:00Z"], "before the first record"),
    ],
)
def test_unreachable_targets_are_one_line_errors(
    built: Built, args: list[str], needle: str, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """replay and restore refuse a target that cannot be met, and restore creates nothing."""
    rc, _, err = run(capsys, "replay", built.path, *args)
    assert_one_line_error(rc, err)
    assert needle in err
    dst = tmp_path / "restored"
    rc, _, err = run(capsys, "restore", built.path, dst, *args)
    assert_one_line_error(rc, err)
    assert needle in err
    assert not dst.exists()


# --------------------------------------------------------------------------- read-only


def test_read_only_commands_change_nothing_and_take_no_lock(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read-only commands and every --dry-run leave the directory byte-identical, LOCK absent."""
    (built.path / "LOCK").unlink()
    before = tree_hash(built.path)
    dst = tmp_path / "never-created"
    commands = [
        ["info", built.path, "--segments"],
        ["info", built.path, "--json"],
        ["dump", built.path],
        ["dump", built.path, "--json", "--hex"],
        ["verify", built.path, "--json"],
        ["replay", built.path],
        ["replay", built.path, "--until-mark", "m1", "--dry-run"],
        ["restore", built.path, dst, "--until-lsn", "50", "--dry-run"],
        ["marks", built.path],
        ["prune", built.path, "--max-segments", "1", "--dry-run"],
        ["prune", built.path, "--no-archive", "--dry-run"],
    ]
    for argv in commands:
        rc, _, err = run(capsys, *argv)
        assert rc == 0, (argv, err)
        assert not (built.path / "LOCK").exists(), argv
        assert tree_hash(built.path) == before, argv
    assert not dst.exists()


def test_read_only_commands_work_while_a_writer_is_running(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """info reports the live writer's pid and no synced LSN; dump sees the records it wrote."""
    with lsnwal.open(built.path, SMALL) as wal:
        lsn = wal.append(b"live record")
        wal.sync()
        rc, out, _ = run(capsys, "info", built.path, "--json")
        assert rc == 0
        info = json.loads(out)
        assert info["writer_pid"] == os.getpid()
        assert info["synced_lsn"] is None
        assert info["last_lsn"] == lsn
        rc, out, _ = run(capsys, "dump", built.path, "--from", lsn, "--json")
        assert rc == 0
        assert json.loads(out)["payload_utf8"] == "live record"


# --------------------------------------------------------------------------- info and marks


def test_info_json_shape_and_values(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """info --json gives LSNs, synced == last for a closed WAL, segments per state and marks."""
    rc, out, _ = run(capsys, "info", built.path, "--json", "--segments")
    assert rc == 0
    info = json.loads(out)
    assert info["format_version"] == lsnwal.FORMAT_VERSION
    assert info["segment_format_versions"] == [lsnwal.FORMAT_VERSION]
    assert info["last_lsn"] == built.last_lsn
    assert info["synced_lsn"] == built.last_lsn
    assert info["checkpoint_lsn"] == built.checkpoint_lsn
    assert info["oldest_lsn"] == 1
    assert info["records"] == built.last_lsn
    assert info["writer_pid"] is None
    assert set(info["segments"]) == {"archive", "pending", "active"}
    archived = sorted(os.listdir(built.path / "archive"))
    assert info["segments"]["archive"]["count"] == len(archived) >= 2
    assert info["segments"]["archive"]["bytes"] == sum(
        (built.path / "archive" / n).stat().st_size for n in archived)
    assert info["segments"]["active"]["count"] == 1
    assert [m["name"] for m in info["marks"]] == ["m1"]
    assert info["marks"][0]["lsn"] == built.mark_lsn
    listed = [s for s in info["segment_list"] if s["state"] == "archive"]
    assert [os.path.basename(s["path"]) for s in listed] == archived
    assert info["first_time"] <= info["last_time"]


def test_info_text_names_every_figure(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """The text form shows last, synced and checkpoint LSNs, segment states, marks, format."""
    rc, out, _ = run(capsys, "info", built.path)
    assert rc == 0
    assert f"last LSN         {built.last_lsn}" in out
    assert f"synced LSN       {built.last_lsn}" in out
    assert f"checkpoint LSN   {built.checkpoint_lsn}" in out
    assert f"format version   {lsnwal.FORMAT_VERSION}" in out
    for state in ("archive", "pending", "active"):
        assert f"    {state}" in out
    assert f"'m1' at LSN {built.mark_lsn}" in out


def test_marks_text_and_json(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """marks lists each named restore point with its LSN, as text or JSON."""
    with lsnwal.open(built.path, SMALL) as wal:
        second = wal.mark("second mark")
    rc, out, _ = run(capsys, "marks", built.path, "--json")
    assert rc == 0
    marks = json.loads(out)
    assert [(m["name"], m["lsn"]) for m in marks] == [("m1", built.mark_lsn),
                                                       ("second mark", second)]
    assert all(m["time"].endswith("Z") for m in marks)
    rc, out, _ = run(capsys, "marks", built.path)
    assert rc == 0
    assert out.splitlines()[1].split()[0] == str(second)
    assert out.splitlines()[1].endswith("second mark")


# --------------------------------------------------------------------------- dump


def test_dump_text_range(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """dump --from/--until prints exactly that LSN range, checkpoint and mark included."""
    lo, hi = built.checkpoint_record - 2, built.mark_lsn + 2
    rc, out, _ = run(capsys, "dump", built.path, "--from", lo, "--until", hi)
    assert rc == 0
    lines = out.splitlines()
    assert [int(line.split()[0]) for line in lines] == list(range(lo, hi + 1))
    cp_line = lines[built.checkpoint_record - lo]
    assert "CHECKPOINT" in cp_line
    assert f"covers LSN <= {built.checkpoint_lsn}" in cp_line
    assert "mark 'm1'" in lines[built.mark_lsn - lo]


def test_dump_json_lines_shape(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """dump --json prints one object per record: LSN, kind, time, length and the whole payload."""
    rc, out, _ = run(capsys, "dump", built.path, "--json")
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["lsn"] for r in rows] == list(range(1, built.last_lsn + 1))
    expected = {r.lsn: r for r in lsnwal.replay(built.path)}
    for row in rows:
        rec = expected[row["lsn"]]
        assert row["kind"] == rec.kind.name
        assert row["timestamp"] == rec.timestamp
        assert row["length"] == len(rec.payload)
        assert base64.b64decode(row["payload_b64"]) == rec.payload  # lossless by default
        assert row["truncated"] is False
    assert rows[built.checkpoint_record - 1]["checkpoint_lsn"] == built.checkpoint_lsn
    assert rows[built.mark_lsn - 1]["name"] == "m1"


def test_dump_hex_and_preview(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """--hex shows the whole payload in hex; --preview N cuts the text preview at N bytes."""
    payload = next(lsnwal.replay(built.path, from_lsn=3)).payload
    rc, out, _ = run(capsys, "dump", built.path, "--from", 3, "--limit", 1, "--json", "--hex")
    assert rc == 0
    assert bytes.fromhex(json.loads(out)["payload_hex"]) == payload
    rc, out, _ = run(capsys, "dump", built.path, "--from", 3, "--limit", 1, "--hex")
    assert rc == 0
    hex_lines = out.splitlines()[1:]  # "      OFFSET    HEX BYTES (47 columns)   TEXT"
    assert bytes.fromhex("".join(line[16:63] for line in hex_lines)) == payload
    rc, out, _ = run(capsys, "dump", built.path, "--from", 3, "--limit", 1, "--preview", 5)
    assert rc == 0
    assert repr(payload[:5]) in out
    assert f"(+{len(payload) - 5} B)" in out


def test_dump_time_window_and_kinds(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """--from-time/--until-time select records by timestamp; --kind filters by kind."""
    records = list(lsnwal.replay(built.path))
    t_from, t_until = records[30].timestamp, records[150].timestamp
    want = [r.lsn for r in records if t_from <= r.timestamp <= t_until]
    rc, out, _ = run(capsys, "dump", built.path, "--json", "--from-time", repr(t_from),
                     "--until-time", repr(t_until))
    assert rc == 0
    assert [json.loads(line)["lsn"] for line in out.splitlines()] == want
    rc, out, _ = run(capsys, "dump", built.path, "--json", "--kind", "mark", "--kind",
                     "checkpoint")
    assert rc == 0
    kinds = [(json.loads(line)["lsn"], json.loads(line)["kind"]) for line in out.splitlines()]
    assert kinds == [(built.checkpoint_record, "CHECKPOINT"), (built.mark_lsn, "MARK")]


def test_dump_until_past_the_end_prints_what_there_is(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """--until beyond the last LSN is not an error for dump: it stops at the end."""
    rc, out, _ = run(capsys, "dump", built.path, "--from", built.last_lsn - 1, "--until", 10**9)
    assert rc == 0
    assert len(out.splitlines()) == 2


# --------------------------------------------------------------------------- verify


def test_verify_intact_wal(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """verify exits 0 and its JSON report counts every record and segment."""
    rc, out, _ = run(capsys, "verify", built.path, "--json")
    assert rc == 0
    report = json.loads(out)
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["records"] == built.last_lsn
    assert (report["first_lsn"], report["last_lsn"]) == (1, built.last_lsn)
    assert report["segments"] == len(os.listdir(built.path / "archive"))
    rc, out, _ = run(capsys, "verify", built.path)
    assert rc == 0
    assert ": OK:" in out


def test_verify_damaged_archive_exits_1_and_names_the_file(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flipped byte in an archived segment makes verify exit 1 with a problem naming it."""
    seg = sorted((built.path / "archive").iterdir())[0]
    flip_byte(seg, 48 + 28 + 10)  # the first record's payload
    rc, out, _ = run(capsys, "verify", built.path, "--json")
    assert rc == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert report["problems"]
    assert set(report["problems"][0]) == {"file", "offset", "lsn", "message"}
    assert report["problems"][0]["file"] == str(seg)
    rc, out, _ = run(capsys, "verify", built.path)
    assert rc == 1
    assert "DAMAGED" in out
    assert seg.name in out


def test_replay_of_damaged_archive_is_one_line_error(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """replay stops with WalCorruptionError's one line when it reaches a damaged record."""
    seg = sorted((built.path / "archive").iterdir())[0]
    flip_byte(seg, 48 + 28 + 10)
    rc, out, err = run(capsys, "replay", built.path)
    assert_one_line_error(rc, err)
    assert seg.name in err
    assert out.startswith("plan: replay")  # the plan came first, then the damage was found


# --------------------------------------------------------------------------- replay


def test_replay_until_mark_reads_up_to_the_mark(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """replay --until-mark prints the plan, then reads exactly the records up to the mark."""
    rc, out, _ = run(capsys, "replay", built.path, "--until-mark", "m1")
    assert rc == 0
    assert out.startswith(f"plan: replay until mark 'm1' (LSN {built.mark_lsn}, inclusive)")
    assert f"replayed {built.mark_lsn} records (LSN 1..{built.mark_lsn})" in out
    assert f"covers LSN <= {built.checkpoint_lsn}" in out


def test_replay_json_plan_and_result(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """replay --json gives the plan and the result; --exclusive leaves the target out."""
    rc, out, _ = run(capsys, "replay", built.path, "--from", 10, "--until-lsn", 100,
                     "--exclusive", "--json")
    assert rc == 0
    doc = json.loads(out)
    plan, result = doc["plan"], doc["result"]
    assert (plan["start_lsn"], plan["stop_lsn"], plan["records"]) == (10, 99, 90)
    assert plan["segments"][0]["first_lsn"] <= 10 <= plan["segments"][0]["last_lsn"]
    assert plan["segments"][-1]["first_lsn"] <= 99 <= plan["segments"][-1]["last_lsn"]
    assert (result["first_lsn"], result["last_lsn"], result["records"]) == (10, 99, 90)
    assert result["by_kind"]["DATA"] == 90


def test_replay_dry_run_plan_lists_the_segments_and_reads_nothing(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints exactly the segments that hold the target range, and does no replay."""
    rc, out, _ = run(capsys, "replay", built.path, "--until-mark", "m1", "--dry-run", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["dry_run"] is True and "result" not in doc
    plan = doc["plan"]
    assert (plan["start_lsn"], plan["stop_lsn"]) == (1, built.mark_lsn)
    segs = lsnwal.collect_all_segments(built.path)
    want = [s.path for s in segs if s.first_lsn <= built.mark_lsn and s.last_lsn >= s.first_lsn]
    assert [s["path"] for s in plan["segments"]] == want
    mark_ts = lsnwal.list_marks(built.path)[0][2]
    assert plan["last_time"] == mark_ts


def test_replay_until_time_stops_where_the_library_does(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """--until-time (ISO 8601 with a timezone) ends at the last record at or before that time."""
    records = list(lsnwal.replay(built.path))
    t = records[99].timestamp
    iso = lsnwal.cli._fmt_time(t)
    want = list(lsnwal.replay(built.path, until_time=float(iso_to_epoch(iso))))[-1].lsn
    rc, out, _ = run(capsys, "replay", built.path, "--until-time", iso, "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["result"]["last_lsn"] == want
    assert doc["plan"]["stop_lsn"] >= want  # an upper bound from the segment seals


def iso_to_epoch(iso: str) -> float:
    """Parse the CLI's own time format back to epoch seconds."""
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- restore


def test_restore_until_lsn_builds_a_wal_that_ends_there(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """restore writes a new WAL holding exactly LSN 1..target; the source is unchanged."""
    before = tree_hash(built.path)
    dst = tmp_path / "restored"
    rc, out, _ = run(capsys, "restore", built.path, dst, "--until-lsn", 150)
    assert rc == 0
    assert out.startswith("plan: restore until LSN 150")
    assert "restored 150 records (LSN 1..150)" in out
    assert [r.lsn for r in lsnwal.replay(dst)] == list(range(1, 151))
    assert [r.payload for r in lsnwal.replay(dst)] == [
        r.payload for r in lsnwal.replay(built.path, until_lsn=150)]
    with lsnwal.open(dst) as wal:
        assert wal.current_lsn == 151
    assert tree_hash(built.path) == before


def test_restore_dry_run_creates_nothing(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """restore --dry-run prints the plan, creates no target and leaves the source as it was."""
    before = tree_hash(built.path)
    dst = tmp_path / "restored"
    rc, out, _ = run(capsys, "restore", built.path, dst, "--until-mark", "m1", "--dry-run")
    assert rc == 0
    assert f"LSN 1..{built.mark_lsn} ({built.mark_lsn} records)" in out
    assert str(dst) in out
    assert "dry run" in out
    assert not dst.exists()
    assert tree_hash(built.path) == before


def test_restore_json_and_long_plans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """restore --json reports plan and result; a text plan of many segments is abbreviated."""
    path = tmp_path / "wal"
    with lsnwal.open(path, SMALL) as wal:
        for i in range(15):
            wal.append(bytes([i]) * 3000)  # one record per 4 KiB segment
        wal.rotate()
        wal.sync()
        wal.wait_archived()
    n_segs = len(os.listdir(path / "archive"))
    assert n_segs >= 14
    rc, out, _ = run(capsys, "restore", path, tmp_path / "r1", "--until-lsn", 15, "--dry-run")
    assert rc == 0
    assert f"segments  {n_segs} to read" in out
    assert f"... {n_segs - 10} more (--json lists every one)" in out
    assert len([ln for ln in out.splitlines() if ln.startswith("    archive")]) == 10
    rc, out, _ = run(capsys, "restore", path, tmp_path / "r2", "--until-lsn", 12, "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["dry_run"] is False
    assert doc["target"] == str(tmp_path / "r2")
    assert len(doc["plan"]["segments"]) == 12
    assert (doc["result"]["records"], doc["result"]["last_lsn"]) == (12, 12)
    assert [r.payload for r in lsnwal.replay(tmp_path / "r2")][-1] == bytes([11]) * 3000


@pytest.mark.parametrize("where", ["non-empty", "inside-source", "a-file"])
def test_restore_bad_target_is_refused(
    built: Built, tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target that is not empty, lies inside the source, or is a file is refused untouched."""
    if where == "non-empty":
        dst = tmp_path / "busy"
        dst.mkdir()
        (dst / "keep.txt").write_text("x")
    elif where == "inside-source":
        dst = built.path / "restored"
    else:
        dst = tmp_path / "file"
        dst.write_text("x")
    before = tree_hash(tmp_path)
    rc, _, err = run(capsys, "restore", built.path, dst)
    assert_one_line_error(rc, err)
    assert "restore target" in err
    assert tree_hash(tmp_path) == before


# --------------------------------------------------------------------------- prune


def test_prune_dry_run_lists_exactly_what_prune_then_deletes(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """prune --dry-run deletes nothing and names the segments a real prune then removes."""
    archive = built.path / "archive"
    before = sorted(os.listdir(archive))
    rc, out, _ = run(capsys, "prune", built.path, "--max-segments", 1, "--dry-run")
    assert rc == 0
    listed = [line.split()[0] for line in out.splitlines()[1:]]
    assert listed, out
    assert sorted(os.listdir(archive)) == before
    # Only segments wholly at or below the checkpoint may go.
    for name in listed:
        seg = next(s for s in lsnwal.collect_all_segments(built.path)
                   if os.path.basename(s.path) == name)
        assert seg.last_lsn <= built.checkpoint_lsn
    rc, out, _ = run(capsys, "prune", built.path, "--max-segments", 1, "--yes")
    assert rc == 0
    assert sorted(set(before) - set(os.listdir(archive))) == listed
    assert f"pruned {len(listed)} segment(s)" in out
    assert lsnwal.verify(built.path).ok


def test_prune_without_limits_deletes_nothing(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a retention limit prune says so and keeps every segment."""
    before = sorted(os.listdir(built.path / "archive"))
    rc, out, err = run(capsys, "prune", built.path, "--yes")
    assert rc == 0
    assert "no retention limit" in err
    assert "pruned 0" in out
    assert sorted(os.listdir(built.path / "archive")) == before


# --------------------------------------------------------------------------- bench


def test_bench_prints_the_limit_line_and_cleans_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench prints rates and the line fsyncs/s x commits per fsync, and leaves no files."""
    rc, out, _ = run(capsys, "bench", tmp_path, "--seconds", "0.1", "--threads", 4,
                     "--tasks", 16)
    assert rc == 0
    assert "fsyncs/s" in out and "commits/s" in out
    limit = [line for line in out.splitlines() if line.startswith("limit:")]
    assert len(limit) == 1
    assert "fsyncs/s x" in limit[0] and "commits per fsync" in limit[0]
    assert os.listdir(tmp_path) == []
    rc, out, _ = run(capsys, "bench", tmp_path, "--seconds", "0.1", "--threads", 2,
                     "--tasks", 8, "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["disk"]["fsyncs_per_s"] > 0
    assert set(doc["lsnwal"]) == {"sync", "threads", "asyncio"}
    assert all(r["commits"] > 0 for r in doc["lsnwal"].values())
    lim = doc["limit"]
    assert lim["commits_per_s"] == pytest.approx(lim["fsyncs_per_s"] * lim["commits_per_fsync"])
    assert os.listdir(tmp_path) == []


def test_bench_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """bench on a directory that does not exist fails in one line and creates nothing."""
    rc, _, err = run(capsys, "bench", tmp_path / "nope")
    assert_one_line_error(rc, err)
    assert not (tmp_path / "nope").exists()


# --------------------------------------------------------------------------- progress


def test_progress_bar_only_on_a_terminal(
    built: Built, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal verify draws a tqdm bar on stderr, and stdout stays the same."""
    pytest.importorskip("tqdm")
    rc, plain_out, plain_err = run(capsys, "verify", built.path)
    assert rc == 0 and plain_err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    rc, out, err = run(capsys, "verify", built.path)
    assert rc == 0
    assert out == plain_out
    assert "verify" in err  # the bar's description, drawn by tqdm


def test_missing_tqdm_degrades_silently(
    built: Built, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the optional tqdm, a terminal gets no bar and no complaint."""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `from tqdm import tqdm` fail
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    rc, out, err = run(capsys, "replay", built.path)
    assert rc == 0
    assert err == ""
    assert f"replayed {built.last_lsn} records" in out
