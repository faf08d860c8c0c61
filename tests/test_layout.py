"""Directory aliasing: lsnwal refuses directories that resolve to one place, before a byte moves.

The family: every spelling that makes two of lsnwal's places (the WAL directory,
``pending_dir``, ``archive_dir``, the root's own files) one place, or one inside
another where that is unsafe — equal strings after normalisation (``./p``,
``p/``, ``a/../p``, doubled slashes), the root itself (``.``, ``..``, an
absolute path), absolute paths into the root, symlinks to a directory, symlink
chains, nesting. Strings that show it raise ``ValueError`` at ``WalConfig``;
the rest raise ``WalError`` at open, with the directory tree byte for byte
unchanged. Safe layouts (distinct directories inside or outside the root,
symlinked to another disk) keep working, and the archiver never deletes a
segment "copy" that is the only copy.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from _walstate import tree_hash

import lsnwal
from lsnwal import WalConfig, WalError
from lsnwal.layout import unlink_loses

SMALL = WalConfig(segment_max_bytes=4096)
DATA = [b"record-%d" % i * 20 for i in range(60)]


def spellings(name: str) -> list[str]:
    """Relative spellings of ``name`` inside the root that normalise to it."""
    return [name, f"./{name}", f"{name}/", f"{name}//", f"x/../{name}", f"./x/../{name}/",
            f".//{name}", f"{name}/."]


def make_wal(root: Path) -> None:
    """A WAL with archived segments and records in the active file."""
    with lsnwal.open(root, SMALL) as wal:
        wal.append_batch(DATA)
        wal.sync()
        assert wal.wait_archived(timeout=30)


def all_records(root: Path, config: WalConfig = SMALL) -> list[bytes]:
    """Every payload, replayed."""
    return [r.payload for r in lsnwal.replay(root, config=config)]


def test_equal_strings_are_refused_at_config() -> None:
    """Every pair of spellings of one directory, and every spelling of the root or of one of
    its files, is ValueError when the config is built."""
    cases = 0
    for name in ("pending", "archive", "deep/er"):
        for a, b in itertools.product(spellings(name), repeat=2):
            with pytest.raises(ValueError, match="same directory"):
                WalConfig(pending_dir=a, archive_dir=b)
            cases += 1
    for bad in (".", "./", "..", "../..", "x/..", "./x/../", "active.wal", "LOCK",
                "WATERMARK", "archive.index", "LOCK/sub", "./active.wal/"):
        for field in ("pending_dir", "archive_dir"):
            with pytest.raises(ValueError):
                WalConfig(**{field: bad})
            cases += 1
    for outer, inner in (("p", "p/a"), ("./p", "p/x/../a"), ("/srv/w", "/srv/w/a"),
                         ("/srv/w/", "/srv//w/a/b")):
        for p, a in ((outer, inner), (inner, outer)):
            with pytest.raises(ValueError, match="inside"):
                WalConfig(pending_dir=p, archive_dir=a)
            cases += 1
    assert cases > 200


def resolved_aliases(tmp: Path, root: Path) -> list[tuple[str, dict[str, str]]]:
    """Configs whose strings look fine but resolve to aliased places (symlinks made here)."""
    out: list[tuple[str, dict[str, str]]] = []
    for d in ("pending", "archive"):
        other = "archive" if d == "pending" else "pending"
        ab = str(root / other)
        out += [(f"absolute {other} as {d}", {f"{d}_dir": ab}),
                (f"absolute {other}/ as {d}", {f"{d}_dir": ab + "/"}),
                (f"../wal/{other} as {d}", {f"{d}_dir": f"../{root.name}/{other}"}),
                (f"root as {d}", {f"{d}_dir": str(root)}),
                (f"root/ via .. as {d}", {f"{d}_dir": f"../{root.name}"}),
                (f"parent of root as {d}", {f"{d}_dir": str(tmp)}),
                (f"active file as {d}", {f"{d}_dir": str(root / "active.wal")})]
    link = tmp / "link-to-pending"
    link.symlink_to(root / "pending")
    chain = tmp / "chain"
    chain.symlink_to(link)
    root_link = tmp / "root-link"
    root_link.symlink_to(root)
    (root / "archive" / "nested").mkdir(exist_ok=True)
    out += [("symlink to pending as archive", {"archive_dir": str(link)}),
            ("symlink chain to pending as archive", {"archive_dir": str(chain)}),
            ("symlinked root path to archive as pending",
             {"pending_dir": str(root_link / "archive")}),
            ("symlink inside root to pending", {"archive_dir": "alias"}),
            ("pending nested in the archive", {"pending_dir": str(root / "archive" / "nested")}),
            ("archive nested in pending via symlink", {"archive_dir": str(link / "sub")})]
    (root / "alias").symlink_to(root / "pending")
    return out


def test_resolved_aliases_are_refused_at_open_and_change_nothing(tmp_path: Path) -> None:
    """Absolute paths into the root, the root itself, its parent, symlinks and symlink chains,
    nesting: WalError at open (and at replay/verify), the tree unchanged byte for byte."""
    root = tmp_path / "wal"
    make_wal(root)
    cases = resolved_aliases(tmp_path, root)
    before = tree_hash(tmp_path)
    for label, fields in cases:
        cfg = SMALL.replace(**fields)
        with pytest.raises(WalError):
            lsnwal.open(root, cfg)
        with pytest.raises(WalError):
            lsnwal.replay(root, config=cfg)
        assert tree_hash(tmp_path) == before, f"{label}: a refused open changed files"
    assert len(cases) >= 18
    assert all_records(root) == DATA  # the default layout still opens and holds everything
    with lsnwal.open(root, SMALL) as wal:
        assert wal.last_lsn == len(DATA)


@pytest.mark.parametrize("layout", ["inside", "outside-absolute", "outside-relative",
                                    "symlinked-archive", "renamed-inside"])
def test_safe_layouts_keep_working(tmp_path: Path, layout: str) -> None:
    """Distinct directories inside or outside the root (also behind a symlink) open, archive,
    reopen and replay every record."""
    root = tmp_path / "wal"
    elsewhere = tmp_path / "disk2"
    elsewhere.mkdir()
    fields = {
        "inside": {},
        "outside-absolute": {"pending_dir": str(elsewhere / "p"),
                             "archive_dir": str(elsewhere / "a")},
        "outside-relative": {"pending_dir": "../sib-pending", "archive_dir": "../sib-archive"},
        "symlinked-archive": {"archive_dir": str(tmp_path / "arch-link")},
        "renamed-inside": {"pending_dir": "p1", "archive_dir": "a1/"},
    }[layout]
    if layout == "symlinked-archive":
        (tmp_path / "arch-link").symlink_to(elsewhere)
    cfg = SMALL.replace(**fields)
    for _ in range(2):
        with lsnwal.open(root, cfg) as wal:
            wal.append_batch(DATA)
            wal.sync()
            assert wal.wait_archived(timeout=30)
    assert all_records(root, cfg) == DATA + DATA
    assert lsnwal.verify(root, config=cfg).ok


def test_unlink_loses_compares_files_not_names(tmp_path: Path) -> None:
    """One entry under two directory spellings, or a symlink to the only copy, loses data;
    a second hard link, a symlink source or a real copy does not."""
    d = tmp_path / "d"
    d.mkdir()
    f = d / "seg.wal"
    f.write_bytes(b"only copy")
    (tmp_path / "dlink").symlink_to(d)
    (tmp_path / "flink").symlink_to(f)
    (tmp_path / "copy.wal").write_bytes(b"only copy")
    os.link(f, tmp_path / "hard.wal")
    assert unlink_loses(str(f), str(tmp_path / "dlink" / "seg.wal"))
    assert unlink_loses(str(f), str(d / "x" / ".." / "seg.wal"))
    assert unlink_loses(str(f), str(tmp_path / "flink"))
    assert not unlink_loses(str(f), str(tmp_path / "hard.wal"))
    assert not unlink_loses(str(tmp_path / "flink"), str(f))
    assert not unlink_loses(str(f), str(tmp_path / "copy.wal"))
    assert unlink_loses("/nonexistent/a/../b", "/nonexistent/b")


def test_archiver_never_deletes_the_only_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with the layout check bypassed (pending and archive one directory), archiving
    a segment onto itself stops with an error and the segment stays, byte for byte."""
    import lsnwal.layout

    monkeypatch.setattr(lsnwal.layout, "check_resolved", lambda *a: None)
    cfg = SMALL.replace()
    object.__setattr__(cfg, "archive_dir", "pending")  # what WalConfig itself refuses
    root = tmp_path / "wal"
    wal = lsnwal.open(root, cfg)
    try:
        wal.append_batch(DATA)
        wal.sync()
        wal.wait_archived(timeout=10)
    finally:
        wal.close()
    segs = sorted((root / "pending").glob("*.wal"))
    assert segs, "the only copies of the rotated segments were deleted"
    monkeypatch.undo()
    assert all_records(root) == DATA  # reopened with the default layout: nothing lost
