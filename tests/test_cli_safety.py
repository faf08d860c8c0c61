"""The ``lsnwal`` command is lossless and safe: exact JSON payloads, JSON errors, EPIPE,
ages with units, destructive commands only with ``--yes``, a prune plan that is exactly
what prune deletes, record time ranges after a restore, and reused mark names.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import lsnwal
from lsnwal.cli import main
from lsnwal.cli._common import _age

SMALL = lsnwal.WalConfig(segment_max_bytes=4096)


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run the command line; return (exit status, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _payloads() -> list[bytes]:
    """Every byte value, empty, invalid and valid UTF-8, NULs, large, and seeded random bytes."""
    rng = random.Random(13)
    fixed = [b"", bytes(range(256)), b"\xff", b"\xc3\x28", b"\xe2\x82", "héllo ✓".encode(),
             b"\x00" * 100, b"x" * 70_000, b'"quoted" \\ back\nslash', b"\xed\xa0\x80"]
    return fixed + [rng.randbytes(rng.randrange(0, 300)) for _ in range(60)]


@pytest.fixture(scope="module")
def payload_wal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    """A closed WAL holding every payload of ``_payloads`` at LSNs 1..n."""
    path = tmp_path_factory.mktemp("payloads") / "wal"
    payloads = _payloads()
    with lsnwal.open(path, SMALL) as wal:
        wal.append_batch(payloads)
    return path, payloads


# --------------------------------------------------------------------------- lossless dump


def test_dump_json_is_lossless_for_every_payload(
    payload_wal: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every payload comes back byte for byte from ``payload_b64`` (and ``payload_hex``)."""
    path, payloads = payload_wal
    rc, out, _ = run(capsys, "dump", path, "--json")
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [base64.b64decode(r["payload_b64"], validate=True) for r in rows] == payloads
    for r, p in zip(rows, payloads, strict=True):
        assert r["truncated"] is False and r["length"] == len(p)
    for r, p in zip(rows, payloads, strict=True):
        try:
            text: str | None = p.decode("utf-8")
        except UnicodeDecodeError:
            text = None  # never a lossy "\\xff" text
        assert r.get("payload_utf8") == text
    rc, out, _ = run(capsys, "dump", path, "--json", "--hex")
    assert [bytes.fromhex(json.loads(line)["payload_hex"]) for line in out.splitlines()] == payloads


@pytest.mark.parametrize("preview", [0, 1, 5, 48, 300])
def test_dump_json_preview_cuts_and_says_so(
    payload_wal: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str], preview: int
) -> None:
    """``--preview N`` keeps the first N bytes exactly and sets ``truncated`` when it cut."""
    path, payloads = payload_wal
    rc, out, _ = run(capsys, "dump", path, "--json", "--preview", preview)
    assert rc == 0
    for line, p in zip(out.splitlines(), payloads, strict=True):
        row = json.loads(line)
        assert base64.b64decode(row["payload_b64"]) == p[:preview]
        assert row["truncated"] == (len(p) > preview)
        assert row["length"] == len(p)


def test_dump_text_still_previews_48_bytes(
    payload_wal: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The text form (for people) shows 48 bytes and counts the rest."""
    path, payloads = payload_wal
    rc, out, _ = run(capsys, "dump", path, "--from", 8, "--limit", 1)
    assert rc == 0
    assert repr(payloads[7][:48]) in out and f"(+{len(payloads[7]) - 48} B)" in out


# --------------------------------------------------------------------------- JSON errors


def _missing(tmp: Path) -> Path:
    return tmp / "missing"


def _a_file(tmp: Path) -> Path:
    (tmp / "f").write_text("x")
    return tmp / "f"


def _foreign(tmp: Path) -> Path:
    (tmp / "d").mkdir()
    (tmp / "d" / "data.txt").write_text("x")
    return tmp / "d"


def _empty(tmp: Path) -> Path:
    (tmp / "e").mkdir()
    return tmp / "e"


@pytest.mark.parametrize("bad", [_missing, _a_file, _foreign, _empty])
@pytest.mark.parametrize("command", ["verify", "info", "dump", "marks", "replay"])
def test_json_commands_answer_a_bad_path_with_a_json_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
    bad: Callable[[Path], Path],
) -> None:
    """``--json`` on a bad path prints one JSON error object (exit 1) and a line on stderr."""
    path = bad(tmp_path)
    rc, out, err = run(capsys, command, path, "--json")
    assert rc == 1
    doc = json.loads(out)
    assert doc["ok"] is False and doc["path"] == str(path)
    assert doc["error"]["message"] and doc["error"]["type"] == "CliError"
    assert err.startswith("lsnwal: error:") and len(err.strip().splitlines()) == 1


def test_verify_json_reports_damage_as_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged archived segment is a problem object with file, offset, LSN and message."""
    with lsnwal.open(tmp_path / "wal", SMALL) as wal:
        for i in range(60):
            wal.append(b"%04d" % i * 50)
        wal.sync()
        wal.wait_archived()
    seg = sorted((tmp_path / "wal" / "archive").iterdir())[0]
    data = bytearray(seg.read_bytes())
    data[200] ^= 0xFF
    seg.write_bytes(bytes(data))
    rc, out, _ = run(capsys, "verify", tmp_path / "wal", "--json")
    assert rc == 1
    doc = json.loads(out)
    assert doc["ok"] is False and doc["problems"]
    assert {"file", "offset", "lsn", "message"} <= set(doc["problems"][0])
    assert doc["problems"][0]["file"] == str(seg)


# --------------------------------------------------------------------------- EPIPE


def test_dump_into_a_closed_pipe_exits_0_quietly(tmp_path: Path) -> None:
    """``lsnwal dump ... | head -1``: status 0 and nothing on stderr when the reader leaves."""
    with lsnwal.open(tmp_path / "wal") as wal:
        wal.append_batch([b"r" * 200] * 3000)
    proc = subprocess.Popen([sys.executable, "-m", "lsnwal", "dump", str(tmp_path / "wal")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert first.split()[0] == b"1"
    assert err == b""


# --------------------------------------------------------------------------- ages


@pytest.mark.parametrize("text", ["7", "0.5", "3600", "86400", " 12 "])
def test_bare_number_age_is_refused(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--max-age 7`` is an error (exit 2) that asks for a unit, never 7 seconds."""
    rc, _, err = run(capsys, "prune", tmp_path, "--max-age", text)
    assert rc == 2
    assert "no unit" in err


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("3600s", 3600.0), ("30m", 1800.0), ("12h", 43200.0), ("1.5h", 5400.0),
    ("7d", 604800.0), ("2w", 1209600.0), ("7D", 604800.0),
])
def test_age_units(text: str, seconds: float) -> None:
    """Every unit s, m, h, d, w converts to seconds."""
    assert _age(text) == seconds


@pytest.mark.parametrize("text", ["0d", "-1h", "7y", "d", "7 days", "h7"])
def test_bad_ages_are_refused(text: str) -> None:
    """Zero, negative, unknown units and missing numbers are refused."""
    with pytest.raises(argparse.ArgumentTypeError):
        _age(text)


# --------------------------------------------------------------------------- prune


def _scenario_wal(root: Path, segments: int, checkpoint_at: str, state: str) -> Path:
    """A WAL with archived segments, a checkpoint, records in the active segment, and:

    ``clean``: closed normally; ``crash-copy``: a copy taken while the writer ran (what
    a kill -9 leaves: an unsealed active file); ``pending``: the newest two archived
    segments moved back to ``pending/`` (synced, not yet archived when the writer died).
    """
    src = root / "live"
    wal = lsnwal.open(src, SMALL)
    for i in range(segments * 8):
        wal.append(b"%05d" % i * 100)
    wal.sync()
    wal.wait_archived()
    target = {"none": 0, "half": wal.last_lsn // 2, "end": wal.last_lsn}[checkpoint_at]
    if target:
        wal.checkpoint(target)
    for i in range(5):  # records in the active segment, sealed and archived by the next open
        wal.append(b"tail-%d" % i)
    wal.sync()
    wal.wait_archived()
    if state == "crash-copy":
        shutil.copytree(src, root / "wal", ignore=shutil.ignore_patterns("spare-*"))
        wal.close()
        return root / "wal"
    wal.close()
    if state == "pending":
        for seg in sorted((src / "archive").glob("*.wal"))[-2:]:
            seg.rename(src / "pending" / seg.name)
    return src


def _live_names(path: Path) -> set[str]:
    return {f"{s.first_lsn:020d}.wal" for s in lsnwal.collect_all_segments(path)
            if s.state != "archive" and s.last_lsn >= s.first_lsn}


LIMITS = [["--max-segments", "1"], ["--max-segments", "3"], ["--max-bytes", "9k"],
          ["--no-archive"], ["--max-age", "1000d"]]


@pytest.mark.parametrize("state", ["clean", "crash-copy", "pending"])
@pytest.mark.parametrize("checkpoint_at", ["none", "half", "end"])
@pytest.mark.parametrize("limit", LIMITS, ids=lambda a: "".join(a))
def test_prune_plan_is_exactly_what_prune_deletes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str, checkpoint_at: str,
    limit: list[str],
) -> None:
    """The listed segments, including those opening seals first, are exactly those deleted."""
    path = _scenario_wal(tmp_path, 5, checkpoint_at, state)
    archive = path / "archive"
    universe = {p.name for p in archive.iterdir()} | _live_names(path)
    moved = {p.name for p in (path / "pending").glob("*.wal")}
    rc, out, _ = run(capsys, "prune", path, *limit, "--dry-run")
    assert rc == 0
    listed = {line.split()[0] for line in out.splitlines()[1:]}
    rc, out2, _ = run(capsys, "prune", path, *limit)  # no --yes: the same list, nothing deleted
    assert rc == 0 and "--yes" in out2
    assert {line.split()[0] for line in out2.splitlines()[1:-1]} == listed
    assert {p.name for p in archive.iterdir()} | _live_names(path) == universe
    rc, out3, _ = run(capsys, "prune", path, *limit, "--yes")
    assert rc == 0
    deleted = universe - {p.name for p in archive.iterdir()}
    assert deleted == listed
    assert f"pruned {len(listed)} segment(s)" in out3
    if checkpoint_at == "none":
        assert listed == set()
    if state == "pending" and checkpoint_at == "end" and limit == ["--no-archive"]:
        assert moved and moved <= listed  # segments the open archives first are listed too
    assert lsnwal.verify(path).ok


def test_prune_confirm_is_an_alias_of_yes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--confirm`` deletes like ``--yes``; ``--dry-run`` with ``--yes`` is a usage error."""
    path = _scenario_wal(tmp_path, 4, "end", "clean")
    rc, _, _ = run(capsys, "prune", path, "--no-archive", "--dry-run", "--yes")
    assert rc == 2
    rc, out, _ = run(capsys, "prune", path, "--no-archive", "--confirm")
    assert rc == 0 and out.startswith("pruned ") and not out.startswith("pruned 0")


# --------------------------------------------------------------------------- info, marks


def test_info_shows_the_wal_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``info`` names the WAL by its identity; an old or damaged identity is said, not fatal."""
    from lsnwal.identity import IDENTITY_NAME, read_identity

    lsnwal.open(tmp_path / "wal").close()
    ident = read_identity(tmp_path / "wal")
    assert ident is not None
    rc, out, _ = run(capsys, "info", tmp_path / "wal", "--json")
    assert rc == 0 and json.loads(out)["wal_id"] == ident.wal_id
    rc, out, _ = run(capsys, "info", tmp_path / "wal")
    assert f"wal id           {ident.wal_id}" in out
    (tmp_path / "wal" / IDENTITY_NAME).write_bytes(b"junk")
    rc, out, _ = run(capsys, "info", tmp_path / "wal")
    assert rc == 0 and "not a valid lsnwal identity file" in out


def test_info_after_restore_shows_the_records_time_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A restored WAL's info shows its records' first and last times, not the restore time."""
    with lsnwal.open(tmp_path / "src", SMALL) as wal:
        for i in range(100):
            wal.append(b"%03d" % i * 20)
    recs = list(lsnwal.replay(tmp_path / "src"))
    lsnwal.restore(tmp_path / "src", tmp_path / "dst", until_lsn=60)
    for opened in (False, True):  # before and after the restored WAL's first open
        if opened:
            lsnwal.open(tmp_path / "dst", SMALL).close()
        rc, out, _ = run(capsys, "info", tmp_path / "dst", "--json")
        assert rc == 0
        info = json.loads(out)
        assert (info["first_time"], info["last_time"]) == (recs[0].timestamp, recs[59].timestamp)


def test_reused_mark_name_takes_the_first_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mark name used twice: ``until_mark`` (API and CLI) stops at the first; both are listed."""
    with lsnwal.open(tmp_path / "wal", SMALL) as wal:
        wal.append(b"a")
        first = wal.mark("deploy")
        wal.append(b"b")
        second = wal.mark("deploy")
        wal.append(b"c")
    assert [lsn for name, lsn, _ in lsnwal.list_marks(tmp_path / "wal")] == [first, second]
    assert [r.lsn for r in lsnwal.replay(tmp_path / "wal", until_mark="deploy")][-1] == first
    rc, out, _ = run(capsys, "replay", tmp_path / "wal", "--until-mark", "deploy", "--dry-run")
    assert rc == 0
    assert f"LSN {first}, the first of 2 marks with this name" in out
    rc, out, _ = run(capsys, "restore", tmp_path / "wal", tmp_path / "r", "--until-mark", "deploy")
    assert rc == 0
    assert [r.lsn for r in lsnwal.replay(tmp_path / "r")][-1] == first
