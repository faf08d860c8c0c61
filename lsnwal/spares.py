"""``SparePool``: pre-created empty files for future active segments.

Creating a file can cost far more than renaming one (about 1 ms against 20 us
on the ext4 this was measured on, and creates are serialised by the file
system), and rotation happens under the writer lock; a spare turns that create
into a rename. Spares are plain empty files named ``spare-N.tmp`` in the WAL
directory: a crash leaves them behind and ``open()`` deletes them.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading

from .fs import FileSystem

SPARE_PREFIX = "spare-"
SPARE_SUFFIX = ".tmp"


class SparePool:
    """Pre-creates empty files for future active segments on a thread of its own.

    Creating a file can cost far more than renaming one (about 1 ms against
    20 us on the ext4 this was measured on), and rotation happens under the
    writer lock; a spare turns that create into a rename. Spares are plain empty
    files: a crash leaves them behind and ``open()`` deletes them.
    """

    def __init__(self, fs: FileSystem, directory: str, size: int = 2) -> None:
        self._fs = fs
        self._dir = directory
        self._size = size
        self._cv = threading.Condition(threading.Lock())
        self._ready: collections.deque[tuple[str, int]] = collections.deque()
        self._counter = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lsnwal-spare", daemon=True)
        self._thread.start()

    def take(self) -> tuple[str, int] | None:
        """A ready spare ``(path, fd)``, or None (the caller creates a file itself)."""
        with self._cv:
            spare = self._ready.popleft() if self._ready else None
            self._cv.notify_all()
            return spare

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopping or len(self._ready) < self._size)
                if self._stopping:
                    return
                self._counter += 1
                path = os.path.join(self._dir, f"{SPARE_PREFIX}{self._counter}{SPARE_SUFFIX}")
            try:
                fd = self._fs.create(path)
            except OSError:
                with self._cv:  # spares are an optimisation: the writer creates files itself
                    self._stopping = True
                    self._cv.notify_all()
                return
            with self._cv:
                self._ready.append((path, fd))
                self._cv.notify_all()

    def ready(self) -> bool:
        """True when a spare can be taken without waiting (or when there will be none)."""
        return bool(self._ready) or self._stopping

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a spare; True if one is ready."""
        with self._cv:
            return self._cv.wait_for(lambda: bool(self._ready) or self._stopping, timeout) \
                and bool(self._ready)

    def stop(self) -> None:
        """Stop the thread and delete unused spares."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join()
        while self._ready:
            path, fd = self._ready.popleft()
            with contextlib.suppress(OSError):
                self._fs.close(fd)
            with contextlib.suppress(OSError):
                self._fs.unlink(path)
