"""Test doubles: an in-memory file system with a crash model, and fault-injecting backends.

Owns ``SimFileSystem`` (the ``lsnwal.fs.FileSystem`` seam held in memory),
``CrashVariant``, the wrapping sync backends (``FailingSyncBackend``,
``BlockingSyncBackend``, ``SlowSyncBackend``, ``CountingSyncBackend``) and the
``crash_at`` failpoint hook. Nothing here touches the disk except the wrapped
default backend (``OsSyncBackend``).

The crash model
---------------
* **File data.** Each inode has *durable* bytes (its content at its last
  ``sync_file``) and a list of *volatile* operations since (writes at an offset,
  truncates). ``sync_file`` makes the current content durable, data and size;
  it does not persist the file's name.
* **Metadata.** create, mkdir, rename and unlink go into one global ordered log
  that persists in order: a crash keeps a prefix of it (an ordered journal, as
  on ext4 or XFS). ``sync_dir`` on directory D makes durable every entry up to
  and including the last one touching D (the parent of a create, mkdir or
  unlink; both parents of a rename). A rename is one entry, hence atomic.
* **After a crash** only inodes reachable by a surviving name exist: a file
  whose create was lost is absent, a file whose unlink survived is gone, and
  data survives only on a reachable inode. All descriptors and locks are gone.
* ``crash()`` gives the harshest state: durable metadata, every volatile write
  lost. ``crash_variants()`` lists the states the model allows: for every prefix
  of the volatile metadata log (a namespace already produced by a shorter
  prefix is skipped), (a) all volatile data lost, (b) all kept, then for each
  reachable inode with n volatile ops, the other inodes losing theirs: its
  first k ops kept (0 < k < n), and its first k ops plus op k+1 *torn* (the
  first half of that write's bytes; the file ends there) or *zero-filled*
  (its full length, all zero bytes). Torn writes that would keep nothing and
  zero-fills of all-zero writes are skipped: they duplicate a prefix variant.

Rules kept here: every mutating operation calls ``on_op`` (while holding the
model's lock, so a snapshot taken there is exact); descriptors start at 1000;
``rename`` never replaces; a lock is taken without waiting, even by its holder.
"""

from __future__ import annotations

import copy
import errno
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Concatenate, Literal, ParamSpec, TypeVar

from lsnwal.fs import FailpointHook, OsSyncBackend, SyncBackend

__all__ = [
    "BlockingSyncBackend",
    "CountingSyncBackend",
    "CrashVariant",
    "FailingSyncBackend",
    "SimFileSystem",
    "SimState",
    "SimulatedCrash",
    "SlowSyncBackend",
    "crash_at",
]

_ROOT = 1
_Op = tuple[str, int, bytes]  # ("w", offset, data) or ("t", size, b"")
_Ns = dict[int, dict[str, int]]  # directory inode -> {name: inode}
_P = ParamSpec("_P")
_R = TypeVar("_R")
_OPS = frozenset(
    {"create", "open_write", "open_read", "open_dir", "close", "dup", "write", "pread", "fsize"}
    | {"truncate", "rename", "unlink", "listdir", "mkdir", "lock", "unlock"}
    | {"sync_file", "sync_dir"}
)
_How = Literal["lost", "kept", "prefix", "torn", "zero"]


def _oserr(code: int, path: str = "") -> OSError:
    """An ``OSError`` of the right subclass (FileNotFoundError for ENOENT, ...)."""
    return OSError(code, os.strerror(code), path) if path else OSError(code, os.strerror(code))


@dataclass
class _Inode:
    is_dir: bool
    durable: bytes = b""
    data: bytearray = field(default_factory=bytearray)
    ops: list[_Op] = field(default_factory=list)
    mtime: float = field(default_factory=time.time)


@dataclass(frozen=True)
class _Meta:
    kind: str  # "create" | "mkdir" | "unlink" | "rename"
    dir: int
    name: str
    ino: int = 0
    dst_dir: int = 0
    dst_name: str = ""
    desc: str = ""

    def touches(self, d: int) -> bool:
        return d in (self.dir, self.dst_dir)

    def apply(self, ns: _Ns) -> None:
        if self.kind in ("create", "mkdir"):
            ns[self.dir][self.name] = self.ino
            if self.kind == "mkdir":
                ns[self.ino] = {}
        elif self.kind == "unlink":
            del ns[self.dir][self.name]
        else:
            ns[self.dst_dir][self.dst_name] = ns[self.dir].pop(self.name)


@dataclass
class _OpenFile:
    ino: int
    path: str
    readable: bool
    writable: bool
    pos: int = 0


@dataclass(frozen=True)
class SimState:
    """A deep snapshot of a ``SimFileSystem``'s durable, volatile and log state."""

    inodes: dict[int, _Inode]
    base: _Ns
    log: tuple[_Meta, ...]
    next_ino: int
    capacity_bytes: int | None


@dataclass(frozen=True)
class CrashVariant:
    """One surviving state the crash model allows, as listed by ``crash_variants``."""

    meta_kept: int  # volatile metadata-log entries that survive (a prefix)
    meta_total: int
    data: _How = "lost"
    ino: int | None = None  # the inode whose volatile ops are partly kept
    ops_kept: int = 0
    path: str = ""
    last_meta: str = ""

    def describe(self) -> str:
        """A one-line human-readable account of what survived."""
        meta = f"metadata: {self.meta_kept}/{self.meta_total} unsynced ops kept"
        if self.meta_kept:
            meta += f" (last: {self.last_meta})"
        k = self.ops_kept
        data = {
            "lost": "all unsynced data lost",
            "kept": "all unsynced data kept",
            "prefix": f"{self.path}: first {k} unsynced ops kept, others lost",
            "torn": f"{self.path}: first {k} unsynced ops kept, next write torn (half)",
            "zero": f"{self.path}: first {k} unsynced ops kept, next write zero-filled",
        }[self.data]
        return f"{meta}; data: {data}"


def _apply_op(buf: bytearray, op: _Op) -> None:
    kind, n, data = op
    if kind == "t":
        del buf[n:]
        buf.extend(bytes(n - len(buf)))
        return
    if n > len(buf):
        buf.extend(bytes(n - len(buf)))
    buf[n : n + len(data)] = data


def _walk(ns: _Ns) -> dict[int, str]:
    """Path of every inode reachable from the root of ``ns``."""
    paths = {_ROOT: "/"}
    todo = [_ROOT]
    while todo:
        d = todo.pop()
        for name, ino in ns.get(d, {}).items():
            if ino not in paths:
                paths[ino] = os.path.join(paths[d], name)
                if ino in ns:
                    todo.append(ino)
    return paths


def _op(
    fn: Callable[Concatenate[SimFileSystem, _P], _R],
) -> Callable[Concatenate[SimFileSystem, _P], _R]:
    """Run a method under the model's lock, after any injected fault for its name."""
    name = fn.__name__.lstrip("_")

    @functools.wraps(fn)
    def wrapper(self: SimFileSystem, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._mu:
            fault = self._faults.get(name)
            if fault is not None and fault[1] > 0:
                fault[1] -= 1
                raise _oserr(fault[0])
            return fn(self, *args, **kwargs)

    return wrapper


class _SimSyncBackend:
    """The ``SyncBackend`` of one ``SimFileSystem``."""

    def __init__(self, fs: SimFileSystem) -> None:
        self._fs = fs

    def sync_file(self, fd: int) -> None:
        """Make the file's current content durable in the model."""
        self._fs._sync_file(fd)

    def sync_dir(self, fd: int) -> None:
        """Make the metadata log durable up to the last entry touching the directory."""
        self._fs._sync_dir(fd)


class SimFileSystem:
    """``FileSystem`` in memory, with the crash model described in this module."""

    def __init__(
        self,
        *,
        capacity_bytes: int | None = None,
        trace: bool = False,
        on_op: Callable[[str], None] | None = None,
    ) -> None:
        self.capacity_bytes = capacity_bytes
        self.on_op = on_op
        self.events: list[tuple[str, str]] | None = [] if trace else None
        self._mu = threading.RLock()
        self._inodes: dict[int, _Inode] = {_ROOT: _Inode(True)}
        self._base: _Ns = {_ROOT: {}}  # durable namespace
        self._log: list[_Meta] = []  # volatile metadata, oldest first
        self._ns: _Ns = {_ROOT: {}}  # current namespace = base + log
        self._next_ino = _ROOT + 1
        self._fds: dict[int, _OpenFile] = {}
        self._locks: dict[int, int] = {}  # handle -> inode
        self._next_fd = 1000
        self._faults: dict[str, list[int]] = {}

    # -- internals -----------------------------------------------------------

    def _done(self, op: str, detail: str) -> None:
        if self.events is not None:
            self.events.append((op, detail))
        if self.on_op is not None:
            self.on_op(op)

    def _resolve(self, path: str) -> tuple[str, int | None, int | None, str]:
        """(normalised path, parent dir inode or None, inode or None, last name)."""
        p = os.path.normpath(path if path.startswith("/") else "/" + path)
        parts = [x for x in p.split("/") if x]
        d: int | None = _ROOT
        for name in parts[:-1]:
            if d is None or d not in self._ns:
                return p, None, None, ""
            d = self._ns[d].get(name)
        if not parts:
            return p, None, _ROOT, ""
        if d is None or d not in self._ns:
            return p, None, None, parts[-1]
        return p, d, self._ns[d].get(parts[-1]), parts[-1]

    def _find(self, path: str, want_dir: bool | None = None) -> tuple[str, int]:
        p, _, ino, _ = self._resolve(path)
        if ino is None:
            raise _oserr(errno.ENOENT, p)
        if want_dir is True and ino not in self._ns:
            raise _oserr(errno.ENOTDIR, p)
        if want_dir is False and ino in self._ns:
            raise _oserr(errno.EISDIR, p)
        return p, ino

    def _new_entry(self, path: str, kind: str) -> tuple[str, int]:
        p, d, ino, name = self._resolve(path)
        if ino is not None:
            raise _oserr(errno.EEXIST, p)
        if d is None:
            raise _oserr(errno.ENOENT, p)
        ino = self._next_ino
        self._next_ino += 1
        self._inodes[ino] = _Inode(kind == "mkdir")
        self._log_meta(_Meta(kind, d, name, ino, desc=f"{kind} {p}"))
        return p, ino

    def _log_meta(self, m: _Meta) -> None:
        self._log.append(m)
        m.apply(self._ns)

    def _file(self, fd: int, write: bool = False) -> _OpenFile:
        of = self._fds.get(fd)
        if of is None or not (of.writable if write else of.readable):
            raise _oserr(errno.EBADF)
        return of

    def _open(self, path: str, ino: int, readable: bool, writable: bool, pos: int = 0) -> int:
        fd = self._next_fd
        self._next_fd += 1
        self._fds[fd] = _OpenFile(ino, path, readable, writable, pos)
        return fd

    def _reserve(self, growth: int) -> None:
        if self.capacity_bytes is None or growth <= 0:
            return
        live = set(_walk(self._ns)) | {of.ino for of in self._fds.values()}
        used = sum(len(self._inodes[i].data) for i in live)
        if used + growth > self.capacity_bytes:
            raise _oserr(errno.ENOSPC)

    def _change(self, of: _OpenFile, op: _Op) -> None:
        inode = self._inodes[of.ino]
        _apply_op(inode.data, op)
        inode.ops.append(op)
        inode.mtime = time.time()

    @_op
    def _sync_file(self, fd: int) -> None:
        of = self._fds.get(fd)
        if of is None:
            raise _oserr(errno.EBADF)
        inode = self._inodes[of.ino]
        if inode.is_dir:  # fsync of a directory descriptor works on Linux too
            return self._sync_dir(fd)
        inode.durable = bytes(inode.data)
        inode.ops.clear()
        self._done("sync_file", of.path)

    @_op
    def _sync_dir(self, fd: int) -> None:
        of = self._fds.get(fd)
        if of is None:
            raise _oserr(errno.EBADF)
        if not self._inodes[of.ino].is_dir:
            return self._sync_file(fd)
        upto = max((i + 1 for i, m in enumerate(self._log) if m.touches(of.ino)), default=0)
        for m in self._log[:upto]:
            m.apply(self._base)
        del self._log[:upto]
        if upto:  # forget inodes no state can reach any more
            keep = {i for d in self._base.values() for i in d.values()} | set(self._base)
            keep |= {m.ino for m in self._log} | {f.ino for f in self._fds.values()}
            keep |= set(self._locks.values())
            self._inodes = {i: n for i, n in self._inodes.items() if i in keep}
        self._done("sync_dir", of.path)

    # -- the FileSystem protocol ---------------------------------------------

    @_op
    def create(self, path: str) -> int:
        """Create a new file for writing (fails if it exists); return a descriptor."""
        p, ino = self._new_entry(path, "create")
        fd = self._open(p, ino, False, True)
        self._done("create", p)
        return fd

    @_op
    def open_write(self, path: str) -> int:
        """Open an existing file for writing at its end; return a descriptor."""
        p, ino = self._find(path, want_dir=False)
        return self._open(p, ino, False, True, len(self._inodes[ino].data))

    @_op
    def open_read(self, path: str) -> int:
        """Open an existing file for reading; return a descriptor."""
        p, ino = self._find(path, want_dir=False)
        return self._open(p, ino, True, False)

    @_op
    def open_dir(self, path: str) -> int:
        """Open a directory so that it can be synced; return a descriptor."""
        p, ino = self._find(path, want_dir=True)
        return self._open(p, ino, False, False)

    @_op
    def close(self, fd: int) -> None:
        """Close a descriptor."""
        if self._fds.pop(fd, None) is None:
            raise _oserr(errno.EBADF)

    @_op
    def dup(self, fd: int) -> int:
        """Duplicate a descriptor; both share one open file (and position)."""
        if fd not in self._fds:
            raise _oserr(errno.EBADF)
        new = self._next_fd
        self._next_fd += 1
        self._fds[new] = self._fds[fd]
        return new

    @_op
    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at the position; ENOSPC (nothing written) past capacity."""
        of = self._file(fd, write=True)
        chunk = bytes(data)
        self._reserve(of.pos + len(chunk) - len(self._inodes[of.ino].data))
        self._change(of, ("w", of.pos, chunk))
        of.pos += len(chunk)
        self._done("write", f"{of.path} off={of.pos - len(chunk)} len={len(chunk)}")

    @_op
    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``; the position is unchanged."""
        of = self._file(fd, write=True)
        chunk = bytes(data)
        self._reserve(offset + len(chunk) - len(self._inodes[of.ino].data))
        self._change(of, ("w", offset, chunk))
        self._done("write", f"{of.path} off={offset} len={len(chunk)}")

    @_op
    def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` (short at end of file)."""
        return bytes(self._inodes[self._file(fd).ino].data[offset : offset + size])

    @_op
    def fsize(self, fd: int) -> int:
        """Size of an open file."""
        if fd not in self._fds:
            raise _oserr(errno.EBADF)
        return len(self._inodes[self._fds[fd].ino].data)

    @_op
    def truncate(self, fd: int, size: int) -> None:
        """Cut (or extend) an open file to ``size`` bytes and move its position there."""
        of = self._file(fd, write=True)
        self._reserve(size - len(self._inodes[of.ino].data))
        self._change(of, ("t", size, b""))
        of.pos = size
        self._done("truncate", f"{of.path} size={size}")

    @_op
    def rename(self, src: str, dst: str) -> None:
        """Rename atomically without replacing: FileExistsError if ``dst`` exists."""
        s, sdir, ino, sname = self._resolve(src)
        d, ddir, dino, dname = self._resolve(dst)
        if sdir is None or ino is None:
            raise _oserr(errno.ENOENT, s)
        if dino is not None:
            raise _oserr(errno.EEXIST, d)
        if ddir is None:
            raise _oserr(errno.ENOENT, d)
        self._log_meta(_Meta("rename", sdir, sname, ino, ddir, dname, f"rename {s} -> {d}"))
        self._done("rename", f"{s} -> {d}")

    @_op
    def unlink(self, path: str) -> None:
        """Remove a file (open descriptors keep its inode)."""
        p, d, ino, name = self._resolve(path)
        if d is None or ino is None:
            raise _oserr(errno.ENOENT, p)
        if ino in self._ns:
            raise _oserr(errno.EISDIR, p)
        self._log_meta(_Meta("unlink", d, name, ino, desc=f"unlink {p}"))
        self._done("unlink", p)

    @_op
    def listdir(self, path: str) -> list[str]:
        """Names in a directory."""
        return list(self._ns[self._find(path, want_dir=True)[1]])

    @_op
    def mkdir(self, path: str) -> None:
        """Create one directory (its parent must exist)."""
        p, _ = self._new_entry(path, "mkdir")
        self._done("mkdir", p)

    def makedirs(self, path: str) -> bool:
        """Create a directory and missing parents; return True if anything was created."""
        with self._mu:
            p, _, ino, _ = self._resolve(path)
            if ino is not None:
                if ino not in self._ns:
                    raise _oserr(errno.EEXIST, p)
                return False
            self.makedirs(os.path.dirname(p))
            self.mkdir(p)
            return True

    def exists(self, path: str) -> bool:
        """True if the path exists."""
        with self._mu:
            return self._resolve(path)[2] is not None

    def isdir(self, path: str) -> bool:
        """True if the path is a directory."""
        with self._mu:
            return self._resolve(path)[2] in self._ns

    def size(self, path: str) -> int:
        """Size of a file by path (0 for a directory)."""
        with self._mu:
            return len(self._inodes[self._find(path)[1]].data)

    def mtime(self, path: str) -> float:
        """Modification time of a file by path."""
        with self._mu:
            return self._inodes[self._find(path)[1]].mtime

    def same_device(self, a: str, b: str) -> bool:
        """Always True for existing directories: the model is one file system."""
        with self._mu:
            self._find(a, want_dir=True)
            self._find(b, want_dir=True)
            return True

    @_op
    def lock(self, path: str) -> int:
        """Create ``path`` if needed and lock it; BlockingIOError if already locked."""
        p, _, ino, _ = self._resolve(path)
        if ino is None:
            fd = self.create(p)
            ino = self._fds.pop(fd).ino
        if ino in self._locks.values():
            raise _oserr(errno.EAGAIN, p)
        handle = self._next_fd
        self._next_fd += 1
        self._locks[handle] = ino
        return handle

    @_op
    def unlock(self, handle: int) -> None:
        """Release a lock taken with ``lock``."""
        if self._locks.pop(handle, None) is None:
            raise _oserr(errno.EBADF)

    def sync_backend(self) -> SyncBackend:
        """The backend whose syncs make this model durable."""
        return _SimSyncBackend(self)

    # -- helpers for tests ---------------------------------------------------

    def fail_next(self, op_name: str, err: int = errno.EIO, count: int = 1) -> None:
        """Make the next ``count`` calls of ``op_name`` raise ``OSError(err)`` unapplied."""
        if op_name not in _OPS:
            raise ValueError(f"unknown operation {op_name!r}; known: {sorted(_OPS)}")
        with self._mu:
            self._faults[op_name] = [err, count]

    def read_file(self, path: str) -> bytes:
        """Current (volatile) content of a file."""
        with self._mu:
            return bytes(self._inodes[self._find(path, want_dir=False)[1]].data)

    def write_file(self, path: str, data: bytes, durable: bool = True) -> None:
        """Create or replace a file's content (parents made); ``durable`` syncs all so far."""
        with self._mu:
            p = self._resolve(path)[0]
            self.makedirs(os.path.dirname(p))
            fd = self.open_write(p) if self.exists(p) else self.create(p)
            try:
                self.truncate(fd, 0)
                self.write(fd, data)
                if durable:
                    self._sync_file(fd)
                    for m in self._log:
                        m.apply(self._base)
                    self._log.clear()
            finally:
                self.close(fd)

    def files(self) -> dict[str, bytes]:
        """Every regular file's current content, by path."""
        with self._mu:
            return {
                p: bytes(self._inodes[i].data)
                for i, p in _walk(self._ns).items()
                if i not in self._ns
            }

    def checkpoint_state(self) -> SimState:
        """Deep-copy the whole model (durable data, volatile ops, metadata log)."""
        with self._mu:
            return SimState(
                copy.deepcopy(self._inodes),
                copy.deepcopy(self._base),
                tuple(self._log),
                self._next_ino,
                self.capacity_bytes,
            )

    @classmethod
    def from_state(cls, state: SimState) -> SimFileSystem:
        """A model in ``state`` (no open descriptors or locks), e.g. to list its crashes."""
        fs = cls(capacity_bytes=state.capacity_bytes)
        fs._inodes = copy.deepcopy(state.inodes)
        fs._base = copy.deepcopy(state.base)
        fs._log = list(state.log)
        fs._ns = copy.deepcopy(state.base)
        for m in fs._log:
            m.apply(fs._ns)
        fs._next_ino = state.next_ino
        return fs

    # -- crashes -------------------------------------------------------------

    def crash_variants(self) -> Iterator[CrashVariant]:
        """Every distinct surviving state the model allows now (see the module docstring)."""
        with self._mu:
            out: list[CrashVariant] = []
            ns = copy.deepcopy(self._base)
            seen: set[frozenset[tuple[int, frozenset[tuple[str, int]]]]] = set()
            total = len(self._log)
            for kept in range(total + 1):
                if kept:
                    self._log[kept - 1].apply(ns)
                paths = _walk(ns)
                key = frozenset((d, frozenset(ns[d].items())) for d in paths if d in ns)
                if key in seen:
                    continue
                seen.add(key)
                last = self._log[kept - 1].desc if kept else ""
                base = CrashVariant(kept, total, last_meta=last)
                out.append(base)
                dirty = sorted(
                    (p, i) for i, p in paths.items() if i not in ns and self._inodes[i].ops
                )
                if dirty:
                    out.append(CrashVariant(kept, total, "kept", last_meta=last))
                for p, i in dirty:
                    for k, (kind, _, data) in enumerate(self._inodes[i].ops):
                        wanted: tuple[tuple[_How, bool], ...] = (
                            ("prefix", k > 0),
                            ("torn", kind == "w" and len(data) > 1),
                            ("zero", kind == "w" and data.count(0) != len(data)),
                        )
                        out.extend(
                            CrashVariant(kept, total, how, i, k, p, last)
                            for how, ok in wanted
                            if ok
                        )
                    if len(dirty) > 1:
                        # this file keeps every unsynced write while the others lose theirs
                        n_ops = len(self._inodes[i].ops)
                        out.append(CrashVariant(kept, total, "prefix", i, n_ops, p, last))
            return iter(out)

    def crash(self, variant: CrashVariant | None = None) -> SimFileSystem:
        """A new model holding the state that survives a crash now (default: the harshest)."""
        with self._mu:
            v = variant or CrashVariant(0, len(self._log))
            if v.meta_total != len(self._log) or v.meta_kept > v.meta_total:
                raise ValueError("crash variant does not belong to this state of the model")
            ns = copy.deepcopy(self._base)
            for m in self._log[: v.meta_kept]:
                m.apply(ns)
            new = SimFileSystem(capacity_bytes=self.capacity_bytes)
            new._next_ino = self._next_ino
            for i in _walk(ns):
                old = self._inodes[i]
                if i in ns:
                    new._ns[i] = dict(ns[i])
                    new._inodes[i] = _Inode(True, mtime=old.mtime)
                    continue
                buf = bytearray(old.durable)
                if v.data == "kept" or (v.ino == i and v.data != "lost"):
                    n = len(old.ops) if v.data == "kept" else v.ops_kept
                    for op in old.ops[:n]:
                        _apply_op(buf, op)
                    if v.data in ("torn", "zero"):
                        _, off, data = old.ops[n]
                        cut = data[: len(data) // 2] if v.data == "torn" else bytes(len(data))
                        _apply_op(buf, ("w", off, cut))
                new._inodes[i] = _Inode(False, bytes(buf), buf, mtime=old.mtime)
            new._base = copy.deepcopy(new._ns)
            return new

    def crash_states(self) -> Iterator[tuple[CrashVariant, SimFileSystem]]:
        """Each crash variant with the model it leaves (built lazily)."""
        for v in self.crash_variants():
            yield v, self.crash(v)


# -- sync backends and failpoints for fault injection -------------------------


class FailingSyncBackend:
    """Raises ``OSError(err)`` on the Nth matching sync (and every later one if sticky)."""

    def __init__(
        self,
        inner: SyncBackend | None = None,
        fail_on_call: int = 1,
        err: int = errno.EIO,
        what: Literal["file", "dir", "any"] = "file",
        sticky: bool = True,
    ) -> None:
        self.inner: SyncBackend = inner or OsSyncBackend()
        self.fail_on_call, self.err, self.what, self.sticky = fail_on_call, err, what, sticky
        self.calls = 0  # matching calls, failed ones included
        self.failures = 0
        self._mu = threading.Lock()

    def _call(self, kind: str, fd: int, sync: Callable[[int], None]) -> None:
        if self.what in (kind, "any"):
            with self._mu:
                self.calls += 1
                n = self.calls
                fail = n == self.fail_on_call or (self.sticky and n > self.fail_on_call)
                self.failures += fail
            if fail:
                raise OSError(self.err, f"injected {kind} sync failure (call {n})")
        sync(fd)

    def sync_file(self, fd: int) -> None:
        """Sync a file, or fail as configured."""
        self._call("file", fd, self.inner.sync_file)

    def sync_dir(self, fd: int) -> None:
        """Sync a directory, or fail as configured."""
        self._call("dir", fd, self.inner.sync_dir)


class BlockingSyncBackend:
    """The first ``sync_file`` blocks until ``release()``; ``entered`` is set once it waits."""

    def __init__(self, inner: SyncBackend | None = None, timeout_s: float = 60.0) -> None:
        self.inner: SyncBackend = inner or OsSyncBackend()
        self.entered = threading.Event()
        self.calls = 0  # sync_file calls
        self.timeout_s = timeout_s
        self._released = threading.Event()
        self._mu = threading.Lock()

    def release(self) -> None:
        """Let the blocked (and every later) sync proceed."""
        self._released.set()

    def sync_file(self, fd: int) -> None:
        """Sync a file; the first call waits for ``release()`` (ETIMEDOUT after timeout_s)."""
        with self._mu:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.entered.set()
            if not self._released.wait(self.timeout_s):
                raise OSError(errno.ETIMEDOUT, "BlockingSyncBackend was never released")
        self.inner.sync_file(fd)

    def sync_dir(self, fd: int) -> None:
        """Sync a directory without blocking."""
        self.inner.sync_dir(fd)


class SlowSyncBackend:
    """Sleeps ``delay_s`` before each file sync (to make the sync thread the bottleneck)."""

    def __init__(self, inner: SyncBackend | None = None, delay_s: float = 0.01) -> None:
        self.inner: SyncBackend = inner or OsSyncBackend()
        self.delay_s = delay_s

    def sync_file(self, fd: int) -> None:
        """Sleep, then sync a file."""
        time.sleep(self.delay_s)
        self.inner.sync_file(fd)

    def sync_dir(self, fd: int) -> None:
        """Sync a directory at once."""
        self.inner.sync_dir(fd)


class CountingSyncBackend:
    """Counts file syncs (``file_syncs``) and directory syncs (``dir_syncs``)."""

    def __init__(self, inner: SyncBackend | None = None) -> None:
        self.inner: SyncBackend = inner or OsSyncBackend()
        self.file_syncs = 0
        self.dir_syncs = 0
        self._mu = threading.Lock()

    def sync_file(self, fd: int) -> None:
        """Sync a file and count it."""
        self.inner.sync_file(fd)
        with self._mu:
            self.file_syncs += 1

    def sync_dir(self, fd: int) -> None:
        """Sync a directory and count it."""
        self.inner.sync_dir(fd)
        with self._mu:
            self.dir_syncs += 1


class SimulatedCrash(Exception):
    """Raised by a ``crash_at`` hook to stop the code under test at a failpoint."""


def crash_at(name: str, nth: int = 1) -> FailpointHook:
    """A failpoint hook raising ``SimulatedCrash`` on the ``nth`` call with ``name``."""
    hits = 0

    def hook(point: str) -> None:
        nonlocal hits
        if point == name:
            hits += 1
            if hits == nth:
                raise SimulatedCrash(point)

    return hook
