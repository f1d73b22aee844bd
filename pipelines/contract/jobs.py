"""What anyone outside the job service may know about a job: its status, as a frozen value."""

from __future__ import annotations

from dataclasses import dataclass

TERMINAL = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    status: str  # "queued", "running", "done", "failed" or "cancelled"
    step: int
    total: int
    queue_position: int | None  # 0 = running, 1 = next, ...; None when finished
    eta_seconds: float | None
    clip_id: str | None
    error: str | None
    preview_version: int

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL
