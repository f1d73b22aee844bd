"""One writer per data dir: the process that runs jobs holds an exclusive lock on `<data dir>/.writer.lock`.

A second process (the CLI next to a running server, a second server) gets `DataDirBusy` naming the
holder, instead of taking jobs out of the other's queue. The lock is the operating system's (flock), so
it goes away with the process, however it ends: a kill -9 leaves no stale lease.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; the lease is then advisory only (the file says who holds it)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".writer.lock"


class DataDirError(RuntimeError):
    """The data dir cannot be used: not writable, not a folder, a full disk, a database that will not open."""


class DataDirBusy(DataDirError):
    """Another process holds the data dir's lease."""


class DataDirLease:
    def __init__(self, root: Path | str):
        self.path = Path(root) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, holder: str) -> None:
        """Take the lease for `holder` (e.g. "studio serve on 127.0.0.1:7860"), or raise DataDirBusy."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise DataDirBusy(f"{self.path.parent} is in use by {self.describe_holder()}; "
                                  "stop it first, or use another --data-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"holder": holder, "pid": os.getpid(), "since": time.time()}).encode())
        self._fd = fd

    def describe_holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another studio process"
        return f"{info.get('holder', 'a studio process')} (pid {info.get('pid', '?')})"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
