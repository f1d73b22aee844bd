"""Room on the data dir's disk (#14): how much is free, and a small reserve to fall back on.

When the disk fills up, the database cannot record even that a job failed, and a job the caller was told
had failed would stay `queued` or `running` and run again at the next start. The studio therefore keeps
a reserve file (a few MB of real blocks) in the data dir; when a write of the job's state fails because
the disk is full, the reserve is given up so that the state can be written, and it is taken again once
there is room. Should the database still refuse, the end is written to a small journal file (the reserve
made room for it) that the next start applies before it re-queues anything.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

RESERVE_NAME = ".space-reserve"
JOURNAL_NAME = ".job-ends.jsonl"
RESERVE_BYTES = 8 << 20
MIN_FREE_BYTES = 64 << 20  # below this a job is refused before it runs: a clip and its thumbnail need room


def is_disk_full(error: BaseException | None) -> bool:
    """Whether an error (or one it was raised from) says the disk is full."""
    seen = 0
    while error is not None and seen < 16:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "disk is full" in str(error) or "No space left" in str(error):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


class DiskSpace:
    def __init__(self, root: Path | str, *, min_free: int = MIN_FREE_BYTES, reserve_bytes: int = RESERVE_BYTES):
        self.root = Path(root)
        self.min_free = min_free
        self.reserve_bytes = reserve_bytes

    @property
    def reserve_path(self) -> Path:
        return self.root / RESERVE_NAME

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def shortage(self) -> str | None:
        """A sentence when the disk has too little room for a clip, else None."""
        try:
            free = self.free_bytes()
        except OSError:
            return None
        if free >= self.min_free:
            return None
        return (f"the data dir's disk is full ({free / 2**20:.0f} MB free, a clip needs at least "
                f"{self.min_free / 2**20:.0f} MB): free some space, then generate again")

    def hold(self) -> bool:
        """Make sure the reserve exists (real blocks, not a sparse file). False when there is no room."""
        path = self.reserve_path
        try:
            if path.exists() and path.stat().st_size >= self.reserve_bytes:
                return True
            with open(path, "wb") as f:
                try:
                    os.posix_fallocate(f.fileno(), 0, self.reserve_bytes)  # real blocks, no writing
                except (AttributeError, OSError) as e:
                    if is_disk_full(e):
                        raise
                    block = b"\0" * (1 << 20)  # a file system without fallocate: write the blocks
                    for _ in range(self.reserve_bytes // len(block)):
                        f.write(block)
            return True
        except OSError as e:
            path.unlink(missing_ok=True)
            log.warning("no room for the disk reserve in the data dir: %s", e.strerror or e)
            return False

    def release(self) -> bool:
        """Give the reserve up so a small write can succeed on a full disk. False when there was none."""
        try:
            self.reserve_path.unlink()
            return True
        except FileNotFoundError:
            return False

    # ---- ends of jobs the database could not take ------------------------------------------------
    @property
    def journal_path(self) -> Path:
        return self.root / JOURNAL_NAME

    def journal(self, job_id: str, status: str, error: str | None) -> bool:
        """Append a job's end to the journal (flushed to disk). False when even that cannot be written."""
        line = json.dumps({"job": job_id, "status": status, "error": error}) + "\n"
        try:
            with open(self.journal_path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            return True
        except OSError as e:
            log.error("could not journal the end of job %s: %s", job_id, e.strerror or e)
            return False

    def journaled(self) -> list[tuple[str, str, str | None]]:
        """The journal's entries (job id, status, error), oldest first; a torn last line is skipped."""
        try:
            text = self.journal_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                d = json.loads(line)
                out.append((str(d["job"]), str(d["status"]), d.get("error")))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def clear_journal(self) -> None:
        self.journal_path.unlink(missing_ok=True)
