"""One writer per data dir: the process that runs jobs holds an exclusive lock on `<data dir>/.writer.lock`.

A second process (the CLI next to a running server, a second server) gets `DataDirBusy` naming the
holder, instead of taking jobs out of the other's queue. Front ends of a shared queue (storage/claims.py: the
queue lives in PostgreSQL, claims keep each job to one of them) take the lock shared instead: any number of
them together, and no single writer while one of them runs (nor they while a single writer runs). On a
network mount flock may be advisory or local to a host; there the database's claims are what keep a job to
one front end, and the lock only guards against mixing modes on one host. The lock is the operating system's (flock), so
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
        self._shared = False

    def acquire(self, holder: str, *, shared: bool = False) -> None:
        """Take the lease for `holder` (e.g. "studio serve on 127.0.0.1:7860"), or raise DataDirBusy.
        `shared`: a front end of a shared queue (others like it may hold the lease too)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise DataDirBusy(f"{self.path.parent} is in use by {self.describe_holder()}; "
                                  "stop it first, or use another --data-dir") from None
        if shared:  # the file names the single writer only; the shared queue's front ends are in the database
            self._fd, self._shared = fd, True
            if os.fstat(fd).st_size == 0:
                os.write(fd, json.dumps({"holder": "front ends of a shared queue", "pid": os.getpid(),
                                         "since": time.time()}).encode())
            return
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
            if not self._shared:  # others may still hold a shared lease: the file is theirs too
                os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
