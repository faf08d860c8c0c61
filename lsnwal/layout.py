"""Directory layout checks: lsnwal's directories never alias one another.

Owns the rule that the WAL directory (``root``), ``pending_dir``, ``archive_dir``
and the files lsnwal keeps in the root (``active.wal``, ``LOCK``, ``WATERMARK``,
``archive.index``) are distinct places, so that "move a segment from pending to
the archive" can never be a move of a file onto itself followed by the delete of
its only copy. Rules kept here:

* No two of root, pending and archive are the same directory.
* Neither pending nor archive is (or lies inside) one of the root's own files.
* Nothing lsnwal owns lies inside pending or archive: not the root, not the
  other directory. (Pending and archive inside the root — the default — or
  anywhere outside it are fine.)
* ``check_strings`` applies the rules to the configured strings alone
  (``ValueError`` when ``WalConfig`` is built: ``./pending``, ``pending/`` and
  ``a/../pending`` are one place); ``check_resolved`` applies them to the
  resolved paths when a WAL is opened (``WalError``): symlinks are followed, and
  where directories exist they are compared by ``st_dev``/``st_ino``, so a bind
  mount or a symlink chain is caught too.
* ``unlink_loses`` is the identity test every delete of a "second copy" uses
  (the directory entry, its directory by ``st_dev``/``st_ino``, never the spelling).
"""

from __future__ import annotations

import os
import posixpath

from .errors import WalError
from .names import ACTIVE_NAME, LOCK_NAME
from .seekindex import INDEX_NAME
from .watermark import WATERMARK_NAME

#: files lsnwal keeps in the WAL directory
ROOT_FILES = (ACTIVE_NAME, LOCK_NAME, WATERMARK_NAME, INDEX_NAME)

_Id = tuple[int, int]


def _inside(path: str, other: str) -> bool:
    """True when normalised ``path`` is ``other`` or lies below it."""
    return path == other or path.startswith(other.rstrip("/") + "/")


def check_strings(pending_dir: str, archive_dir: str) -> None:
    """Refuse configured directory strings that alias (``ValueError``)."""
    p, a = posixpath.normpath(pending_dir), posixpath.normpath(archive_dir)
    for name, n in (("pending_dir", p), ("archive_dir", a)):
        if n.startswith("/"):
            continue
        if n == "." or set(n.split("/")) == {".."}:
            raise ValueError(f"{name}={n!r} is the WAL directory or contains it")
        for f in ROOT_FILES:
            if _inside(n, f):
                raise ValueError(f"{name}={n!r} is the WAL directory's own file {f!r}")
    if p.startswith("/") != a.startswith("/"):
        return  # one relative to a root not known yet: checked at open
    if p == a:
        raise ValueError(f"pending_dir and archive_dir are the same directory ({p!r})")
    if _inside(a, p) or _inside(p, a):
        raise ValueError(
            f"pending_dir={p!r} and archive_dir={a!r}: one lies inside the other")


def _ids(path: str) -> set[_Id]:
    """(st_dev, st_ino) of ``path`` and of each of its existing ancestors."""
    out: set[_Id] = set()
    cur = path
    while True:
        try:
            st = os.stat(cur)
        except OSError:
            pass
        else:
            out.add((st.st_dev, st.st_ino))
        parent = os.path.dirname(cur)
        if parent == cur:
            return out
        cur = parent


def _own_id(path: str) -> _Id | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _is_within(path: str, other: str) -> bool:
    """``path`` is ``other`` or lies inside it: by inode where ``other`` exists."""
    rp, ro = os.path.realpath(path), os.path.realpath(other)
    if _inside(rp, ro):
        return True
    oid = _own_id(ro)
    return oid is not None and oid in _ids(rp)


def check_resolved(root: str, pending: str, archive: str) -> None:
    """Refuse resolved directories that alias (``WalError``), before anything is written."""
    named = (("pending_dir", pending), ("archive_dir", archive))
    for name, d in named:
        if _is_within(d, root) and _is_within(root, d):
            raise WalError(f"{name} {d} is the WAL directory {root} itself")
        for f in ROOT_FILES:
            if _is_within(d, os.path.join(root, f)):
                raise WalError(f"{name} {d} is the WAL directory's own file {f}")
        if _is_within(root, d):
            raise WalError(f"the WAL directory {root} lies inside {name} {d}")
    if _is_within(pending, archive) or _is_within(archive, pending):
        what = ("the same directory" if _is_within(pending, archive) and
                _is_within(archive, pending) else "nested (one inside the other)")
        raise WalError(f"pending_dir {pending} and archive_dir {archive} are {what}")


def _entry(path: str) -> tuple[object, str]:
    """A directory entry: its directory (by inode where it exists) and its name."""
    parent = os.path.realpath(os.path.dirname(path) or ".")
    return (_own_id(parent) or parent, os.path.basename(path))


def unlink_loses(src: str, dst: str) -> bool:
    """True when deleting ``src`` as "the other copy" of ``dst`` would take ``dst`` away too.

    That is when ``dst`` is the very directory entry ``src`` names — the same
    name in the same directory, the directory compared by ``st_dev``/``st_ino``
    (aliased directories, symlinked or bind-mounted ones) — or resolves to it
    through symlinks. Another hard link to the same bytes, or ``src`` being only
    a symlink to ``dst``, leaves ``dst`` in place.
    """
    me = _entry(src)
    return me == _entry(dst) or me == _entry(os.path.realpath(dst))
