"""Repositories over a Session. They flush but NEVER commit: the job service owns the transaction."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from storage.models import FINISHED_STATUSES, JOB_STATUSES, Clip, Job, utcnow


class NotFound(LookupError):
    """No row with that id."""


class InvalidTransition(ValueError):
    """A job cannot move from its current status to the requested one."""


class JobRepository:
    def __init__(self, session: Session, clock: Callable[[], datetime] = utcnow):
        self.session = session
        self.clock = clock

    def add(self, job: Job) -> Job:
        """Insert a job (status "queued" unless set); flushed, so defaults such as `id` are filled."""
        if job.created_at is None:
            job.created_at = self.clock()
        self.session.add(job)
        self.session.flush()
        return job

    def get(self, job_id: str) -> Job | None:
        return self.session.get(Job, job_id)

    def list_by_status(self, status: str) -> list[Job]:
        """Jobs with that status, oldest first (batch order within a batch)."""
        if status not in JOB_STATUSES:
            raise ValueError(f"job status {status!r} is not one of {', '.join(JOB_STATUSES)}")
        q = select(Job).where(Job.status == status).order_by(Job.created_at, Job.batch_index, Job.id)
        return list(self.session.scalars(q))

    def by_batch(self, batch_id: str) -> list[Job]:
        q = select(Job).where(Job.batch_id == batch_id).order_by(Job.batch_index, Job.created_at)
        return list(self.session.scalars(q))

    def mark_running(self, job_id: str) -> Job:
        job = self._transition(job_id, "running", allowed_from=("queued",))
        job.started_at = self.clock()
        return job

    def mark_done(self, job_id: str, clip_id: str) -> Job:
        job = self._transition(job_id, "done", allowed_from=("running",))
        job.clip_id = clip_id
        return self._finish(job)

    def mark_failed(self, job_id: str, error: str) -> Job:
        job = self._transition(job_id, "failed", allowed_from=("queued", "running"))
        job.error = error
        return self._finish(job)

    def mark_cancelled(self, job_id: str) -> Job:
        job = self._transition(job_id, "cancelled", allowed_from=("queued", "running"))
        return self._finish(job)

    def _transition(self, job_id: str, status: str, allowed_from: Sequence[str]) -> Job:
        job = self.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        if job.status not in allowed_from:
            raise InvalidTransition(f"job {job_id} is {job.status}; it cannot become {status}")
        job.status = status
        return job

    def _finish(self, job: Job) -> Job:
        assert job.status in FINISHED_STATUSES
        job.finished_at = self.clock()
        self.session.flush()
        return job


class GalleryRepository:
    def __init__(self, session: Session):
        self.session = session

    def add(self, clip: Clip) -> Clip:
        self.session.add(clip)
        self.session.flush()
        return clip

    def get(self, clip_id: str) -> Clip | None:
        return self.session.get(Clip, clip_id)

    def list(
        self, mode: str | None = None, model_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[Clip]:
        """Clips, newest first, optionally filtered by mode and model id."""
        q = _filtered(select(Clip), mode, model_id).order_by(Clip.created_at.desc(), Clip.id.desc())
        return list(self.session.scalars(q.limit(max(0, limit)).offset(max(0, offset))))

    def count(self, mode: str | None = None, model_id: str | None = None) -> int:
        return self.session.scalar(_filtered(select(func.count()).select_from(Clip), mode, model_id)) or 0

    def delete(self, clip_id: str) -> tuple[str, str, str] | None:
        """Delete the row; return its (video, thumb, sidecar) paths for the caller to remove, or None.

        Jobs pointing at the clip get clip_id = NULL (ON DELETE SET NULL).
        """
        clip = self.get(clip_id)
        if clip is None:
            return None
        paths = clip.file_paths()
        # what ON DELETE SET NULL does, done through the ORM so loaded Job objects agree
        self.session.execute(update(Job).where(Job.clip_id == clip_id).values(clip_id=None))
        self.session.delete(clip)
        self.session.flush()
        return paths

    def by_batch(self, batch_id: str) -> builtins.list[Clip]:
        """Clips of one batch in the order they were made."""
        q = select(Clip).where(Clip.batch_id == batch_id).order_by(Clip.created_at, Clip.id)
        return list(self.session.scalars(q))

    def distinct_models(self) -> builtins.list[str]:
        """Model ids that have clips in the gallery, sorted."""
        return list(self.session.scalars(select(Clip.model_id).distinct().order_by(Clip.model_id)))

    def all_file_paths(self) -> dict[str, tuple[str, str, str]]:
        """{clip id: (video, thumb, sidecar)} for every row, for consistency checks."""
        rows = self.session.execute(select(Clip.id, Clip.video_path, Clip.thumb_path, Clip.sidecar_path))
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _filtered(q: Select, mode: str | None, model_id: str | None) -> Select:  # type: ignore[type-arg]
    if mode is not None:
        q = q.where(Clip.mode == mode)
    if model_id is not None:
        q = q.where(Clip.model_id == model_id)
    return q
