"""The shared queue (#17): several front ends on one database and one cluster, each job run exactly once.

Status: built: the storage half (migration 0006, `QueueRepository` below, tests on SQLite and PostgreSQL), the
job service's shared path (`JobService(shared_queue=<front end name>)`), the setting (STUDIO_SHARED_QUEUE=1),
build_studio's shared lease and recovery with a grace period (tests/studio/test_shared_queue.py). Not built:
the UI's "running on <front end>" and the queue position of a job submitted elsewhere, a per-front-end
full-disk journal and temporary names, recovery that asks which front ends are alive (see below).

Front ends
    A front end is a process that takes jobs: `studio serve` (or a CLI run) with the job service started. At
    start it registers a row in `front_ends` (a random id, its name such as "studio serve on 10.0.0.5:7860",
    host, pid) and keeps `heartbeat_at` fresh; a clean stop sets `stopped_at`. The id is the claim's owner
    (`jobs.claimed_by`) and the fencing token for everything it writes about a job.

The queue lives in the database
    `jobs` rows with status "queued" are the queue; nothing else is authoritative. `submit()` only inserts rows
    (and wakes local workers); a worker's "what next" is `claim_next(front_end, lease_s)`, which in one
    transaction picks a job and marks it running: status "running", `claimed_by`, `lease_until = now +
    lease_s`, `started_at`, `attempts + 1` (attempts still count starts, as in 0003).

    Picking keeps today's round robin over authors without shared in-memory state: the authors with queued
    jobs are tried in order of who was served least recently (the newest `started_at` of their jobs; never
    served first, then by name, no author last, as `JobService._next_job` orders them), and for each author
    the oldest queued job (created_at, batch_index, id). Whoever last started a job is thereby last in line
    on every front end: the ring is the database's, not a process's.

    PostgreSQL: the candidate row is read with `SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1`, so two front
    ends claiming at once never wait for each other and never get the same row (a row another transaction
    has locked is skipped; one it has already committed as running fails the WHERE on recheck). Under such
    a race the second front end may take the same author's next job instead of the next author's; the ring
    corrects itself at the following claim (it reads the committed started_at).
    SQLite: no row locks (SQLAlchemy leaves FOR UPDATE out). The claim is still a compare-and-set (`UPDATE
    ... WHERE id = :id AND status = 'queued'`, one row or none), and SQLite serialises writers, so a job is
    never taken twice; but SQLite stays single-front-end: its database lives in the data dir and the
    data dir's writer lease (storage/lease.py) keeps refusing a second process, as today.

    Batches: the local executor runs a cell's seeds together; it claims each companion by id with
    `claim(front_end, job_id, lease_s)` (same locking; None when another front end took it first).

Leases
    While a front end runs jobs it calls `renew(front_end, job_ids, lease_s)` every lease_s / 4 or so (a
    thread of the job service, not the denoising loop): it pushes `lease_until` forward for the jobs still
    claimed by it, writes their step / total (`progress_step`, `progress_total`), refreshes the front end's
    heartbeat, and answers which jobs it still holds (`kept`), which it has lost (`lost`: reclaimed by
    another after a lapse, e.g. a long GC pause or a network partition), and which have a cancel request
    (`cancel`). A lost job must be abandoned at once: its clip would be the second copy. Times are the
    database's clock (`database_now`: statement_timestamp() on PostgreSQL), so front ends with skewed
    clocks agree on what has expired. The default lease is 60 s: long enough for a model load that blocks
    the renewer's thread for a moment, short enough that a dead front end's jobs restart within a minute.

    Fencing: the end of a job is written only by its claimant. `check_claim(front_end, job_id)` (in the
    transaction that commits the gallery row and `mark_done`, or the failure) locks the row and raises
    LostClaim when the job is no longer running under this front end; the service then removes the clip
    files it wrote, exactly as for a failed commit today. With the row lock held, a concurrent
    `reclaim_expired` waits for that commit and then sees the job done: a job ends once.

Reclaim
    Any front end calls `reclaim_expired(now)` periodically (each renew round; cheap: an index on
    (status, lease_until)). Every running job whose lease ran out is taken with FOR UPDATE SKIP LOCKED
    (two reclaimers never both handle a row) and:
      - cancel requested: becomes "cancelled" (nobody is left to stop);
      - attempts < max_attempts (studio.jobs.MAX_ATTEMPTS, 2): back to "queued", claim cleared; it runs
        again on whichever front end claims it next, and that start counts as another attempt;
      - otherwise: "failed", with a message that says its front end stopped while it ran, as start() words
        it today for a crash.
    This replaces start()'s "re-queue what was running" on the shared path: a front end starting up must
    not touch jobs other live front ends are running; the leases say which are orphaned.

Cancel across front ends
    `request_cancel(job_id)`: a queued job becomes "cancelled" at once (compare-and-set, so it cannot also
    be claimed); a running one gets `cancel_requested = true`. The front end running it learns of it at
    its next renew and sets the job's in-memory cancel event, which the backend checks at every denoising
    step as today (a cancel asked on the same front end still sets the event directly, with no delay).
    A claim never takes a job whose cancel was requested.

The data dir on a shared mount
    With the shared queue every front end mounts the same data dir (NFS or similar) and writes clips into it.
    - Writer lease (built): the exclusive flock on `.writer.lock` stays for SQLite and the default path; the
      front ends of a shared queue take it shared (LOCK_SH): any number of them together, and neither mode
      while the other runs on that host. NFS locks are advisory or host-local, so correctness comes from the
      database's claims, never from the file. The review links' secret and other write-once files are
      created with O_EXCL and read by all.
    - Files: clip files are named by a fresh uuid and written temp-then-rename, so front ends never write the
      same path; temporary names get the front end's id (".tmp-<fe>-<random>-<name>").
    - Crash recovery (studio/wiring.py recover) at a front end's start may no longer remove every temporary
      file and every clip file without a row: another live front end may be between writing a clip's files
      and committing its row. Built: with a shared queue it removes only temporary files and orphan clip files
      older than a grace period (SHARED_GRACE_S, an hour, far longer than a save). Later: also those of front
      ends whose heartbeat has lapsed, sooner. The full-disk journal (storage/space.py,
      `.job-ends.jsonl`) and the space reserve become per front end (`.job-ends-<fe>.jsonl`), and a
      journaled end is applied with the front end's fencing check.

What the UI shows for a job running elsewhere
    `JobService.status()` knows live state (previews, ETA) only for the jobs it runs. For any other job it
    reads the row: status, `progress_step` / `progress_total` (at most one renew period old), queue position
    from the database's queued rows, and "running on <front end name>" from `front_ends`; no preview (a
    preview is tens of MB and stays in the process that made it). `cancel()` of such a job goes through
    `request_cancel`, and its end shows up at the next poll.

Wiring (built)
    A setting, `STUDIO_SHARED_QUEUE=1` (refused with SQLite), turns the shared path on; without it the job
    service is exactly what it is today. On the shared path: register at start, one renewer thread (renew +
    reclaim_expired every few seconds, which also wakes idle workers for jobs other front ends submitted),
    workers call claim_next instead of `_next_job`/`_take`, `_finish`/`_store` run `check_claim` in their
    transaction, `stop()` sets `stopped_at`, and the per-user and global caps count the database's queued
    and running rows.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, false, func, select, update
from sqlalchemy.orm import Session

from storage.models import FrontEnd, Job, utcnow

MAX_ATTEMPTS = 2  # as studio.jobs.MAX_ATTEMPTS: a job whose front end died runs once more, then fails
DEFAULT_LEASE_S = 60.0


class LostClaim(RuntimeError):
    """The job is no longer running under this front end (its lease lapsed and another reclaimed it)."""


@dataclass(frozen=True)
class Renewal:
    kept: frozenset[str]  # still claimed by this front end, lease pushed forward
    lost: frozenset[str]  # no longer ours: abandon them, do not write their end
    cancel: frozenset[str]  # kept, and someone asked to cancel them


@dataclass
class Reclaimed:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


def database_now(session: Session) -> datetime:
    """The database's clock (PostgreSQL), so that every front end measures leases alike; SQLite: this
    machine's, the only one that uses it."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(select(func.statement_timestamp()))  # type: ignore[return-value]
    return utcnow()


class QueueRepository:
    """Claims, leases and reclaim over the `jobs` rows. Flushes, never commits: a caller commits each claim at
    once (the row lock of a claim is held until then)."""

    def __init__(self, session: Session, clock: Callable[[], datetime] | None = None):
        self.session = session
        self.clock = clock or (lambda: database_now(session))

    # ---- front ends ----------------------------------------------------------------------------------
    def register(self, name: str, *, host: str | None = None, pid: int | None = None) -> FrontEnd:
        now = self.clock()
        fe = FrontEnd(name=name[:200], host=(host or socket.gethostname())[:255], pid=os.getpid() if pid is None else pid,
                      started_at=now, heartbeat_at=now)
        self.session.add(fe)
        self.session.flush()
        return fe

    def stopped(self, front_end: str) -> None:
        self.session.execute(update(FrontEnd).where(FrontEnd.id == front_end).values(stopped_at=self.clock()))

    def live_front_ends(self, stale_s: float = DEFAULT_LEASE_S) -> list[FrontEnd]:
        """Front ends not stopped whose heartbeat is newer than `stale_s` seconds."""
        since = self.clock() - timedelta(seconds=stale_s)
        q = select(FrontEnd).where(FrontEnd.stopped_at.is_(None), FrontEnd.heartbeat_at >= since)
        return list(self.session.scalars(q.order_by(FrontEnd.started_at, FrontEnd.id)))

    def waiting_counts(self) -> dict[str | None, int]:
        """Jobs queued or running, per author, across every front end (for the caps on waiting clips)."""
        q = (select(Job.author, func.count()).where(Job.status.in_(("queued", "running"))).group_by(Job.author))
        return {author: n for author, n in self.session.execute(q).all()}

    # ---- claiming ------------------------------------------------------------------------------------
    def claimable(self) -> bool:
        """Whether any job waits to be claimed (a cheap look before a front end reserves a worker for one)."""
        q = select(Job.id).where(Job.status == "queued", Job.cancel_requested.is_(false())).limit(1)
        return self.session.scalar(q) is not None

    def authors_in_turn(self) -> list[str | None]:
        """Authors with claimable jobs, the one served least recently first (round robin over authors)."""
        waiting = set(self.session.scalars(
            select(Job.author).where(Job.status == "queued", Job.cancel_requested.is_(false())).distinct()))
        if not waiting:
            return []
        last = dict(self.session.execute(
            select(Job.author, func.max(Job.started_at)).where(Job.started_at.is_not(None)).group_by(Job.author)
        ).all())
        never = datetime.min.replace(tzinfo=UTC)
        return sorted(waiting, key=lambda a: (last.get(a) is not None, last.get(a) or never, a is None, a or ""))

    def claim_next(self, front_end: str, lease_s: float = DEFAULT_LEASE_S) -> Job | None:
        """Take the next job in turn for `front_end` (running, leased for `lease_s` s); None when none is free."""
        for author in self.authors_in_turn():
            who = Job.author.is_(None) if author is None else Job.author == author
            q = (select(Job.id).where(Job.status == "queued", Job.cancel_requested.is_(false()), who)
                 .order_by(Job.created_at, Job.batch_index, Job.id).limit(1).with_for_update(skip_locked=True))
            job_id = self.session.scalar(q)
            if job_id is not None and self._take(job_id, front_end, lease_s):
                return self._fresh(job_id)
        return None

    def claim(self, front_end: str, job_id: str, lease_s: float = DEFAULT_LEASE_S) -> Job | None:
        """Take this queued job (a batch companion); None when it is not queued or another is taking it."""
        q = (select(Job.id).where(Job.id == job_id, Job.status == "queued", Job.cancel_requested.is_(false()))
             .with_for_update(skip_locked=True))
        if self.session.scalar(q) is None or not self._take(job_id, front_end, lease_s):
            return None
        return self._fresh(job_id)

    def _take(self, job_id: str, front_end: str, lease_s: float) -> bool:
        now = self.clock()
        done = self.session.execute(
            update(Job).where(Job.id == job_id, Job.status == "queued")
            .values(status="running", claimed_by=front_end, lease_until=now + timedelta(seconds=lease_s),
                    started_at=now, attempts=Job.attempts + 1, progress_step=None, progress_total=None)
            .execution_options(synchronize_session=False))
        return done.rowcount == 1  # type: ignore[attr-defined]

    def _fresh(self, job_id: str) -> Job:
        job = self.session.get(Job, job_id, populate_existing=True)
        assert job is not None
        return job

    # ---- while running -------------------------------------------------------------------------------
    def renew(self, front_end: str, job_ids: Iterable[str], lease_s: float = DEFAULT_LEASE_S, *,
              progress: dict[str, tuple[int, int]] | None = None) -> Renewal:
        """Extend the leases of `job_ids` that `front_end` still holds, write their progress, beat the heart."""
        now = self.clock()
        ids = list(dict.fromkeys(job_ids))
        self.session.execute(update(FrontEnd).where(FrontEnd.id == front_end).values(heartbeat_at=now))
        if not ids:
            return Renewal(frozenset(), frozenset(), frozenset())
        mine = (Job.id.in_(ids), Job.claimed_by == front_end, Job.status == "running")
        self.session.execute(update(Job).where(*mine).values(lease_until=now + timedelta(seconds=lease_s))
                             .execution_options(synchronize_session=False))
        for job_id, (step, total) in (progress or {}).items():
            self.session.execute(update(Job).where(Job.id == job_id, *mine[1:])
                                 .values(progress_step=step, progress_total=total)
                                 .execution_options(synchronize_session=False))
        rows = self.session.execute(select(Job.id, Job.cancel_requested).where(*mine)).all()
        kept = frozenset(r[0] for r in rows)
        return Renewal(kept, frozenset(ids) - kept, frozenset(r[0] for r in rows if r[1]))

    def states(self, job_ids: Iterable[str]) -> list[tuple]:
        """(id, status, step, total, clip id, error) of jobs a front end watches that run elsewhere."""
        ids = list(job_ids)
        if not ids:
            return []
        q = select(Job.id, Job.status, Job.progress_step, Job.progress_total, Job.clip_id, Job.error)
        return [tuple(r) for r in self.session.execute(q.where(Job.id.in_(ids))).all()]

    def lock(self, job_id: str) -> Job | None:
        """The job, locked until the transaction ends (no claim or reclaim changes it meanwhile)."""
        q = select(Job).where(Job.id == job_id).with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(q).first()

    def check_claim(self, front_end: str, job_id: str) -> Job:
        """The job, locked until the transaction ends, if it is running under `front_end`; else LostClaim.
        Call it in the transaction that writes the job's end."""
        q = select(Job).where(Job.id == job_id, Job.claimed_by == front_end, Job.status == "running")
        job = self.session.scalars(q.with_for_update().execution_options(populate_existing=True)).first()
        if job is None:
            raise LostClaim(f"job {job_id} is no longer running under front end {front_end}")
        return job

    def hand_back(self, front_end: str, job_id: str) -> str | None:
        """A front end that stops gives a job it was running back to the queue at once (not after its lease),
        its attempt not counted: "queued", or "cancelled" if a cancel was asked meanwhile; None if the job is
        no longer running under `front_end`."""
        q = (select(Job.cancel_requested).where(Job.id == job_id, Job.claimed_by == front_end,
                                                Job.status == "running").with_for_update())
        cancel = self.session.scalar(q)
        if cancel is None:
            return None
        if cancel:
            values: dict = {"status": "cancelled", "finished_at": self.clock(), "lease_until": None}
        else:
            values = {"status": "queued", "claimed_by": None, "lease_until": None, "started_at": None,
                      "progress_step": None, "progress_total": None,
                      "attempts": case((Job.attempts > 0, Job.attempts - 1), else_=0)}
        self.session.execute(update(Job).where(Job.id == job_id).values(**values)
                             .execution_options(synchronize_session=False))
        return values["status"]

    # ---- cancel and reclaim --------------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> str | None:
        """Cancel from any front end: a queued job is cancelled now ("cancelled"); a running one is flagged for
        its front end ("running"); None if it has ended or does not exist."""
        now = self.clock()
        done = self.session.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                                    .values(status="cancelled", finished_at=now, cancel_requested=True)
                                    .execution_options(synchronize_session=False))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            return "cancelled"
        done = self.session.execute(update(Job).where(Job.id == job_id, Job.status == "running")
                                    .values(cancel_requested=True).execution_options(synchronize_session=False))
        return "running" if done.rowcount == 1 else None  # type: ignore[attr-defined]

    def reclaim_expired(self, now: datetime | None = None, *, max_attempts: int = MAX_ATTEMPTS) -> Reclaimed:
        """Running jobs whose lease ran out: cancelled if a cancel was asked, re-queued while attempts are left,
        else failed. Each is handled by one reclaimer only (SKIP LOCKED; a compare-and-set on SQLite)."""
        now = now or self.clock()
        q = (select(Job.id, Job.claimed_by, Job.attempts, Job.cancel_requested)
             .where(Job.status == "running", Job.lease_until.is_not(None), Job.lease_until < now)
             .order_by(Job.lease_until, Job.id).with_for_update(skip_locked=True))
        out = Reclaimed()
        for job_id, owner, attempts, cancel in self.session.execute(q).all():
            same = (Job.id == job_id, Job.status == "running", Job.claimed_by == owner, Job.lease_until < now)
            if cancel:
                values: dict = {"status": "cancelled", "finished_at": now, "lease_until": None}
                bucket = out.cancelled
            elif (attempts or 0) < max_attempts:
                values = {"status": "queued", "claimed_by": None, "lease_until": None, "started_at": None,
                          "progress_step": None, "progress_total": None}
                bucket = out.requeued
            else:
                values = {"status": "failed", "finished_at": now, "lease_until": None,
                          "error": f"interrupted {attempts} times (the front end running it stopped answering); "
                                   "not run again"}
                bucket = out.failed
            done = self.session.execute(update(Job).where(*same).values(**values)
                                        .execution_options(synchronize_session=False))
            if done.rowcount == 1:  # type: ignore[attr-defined]
                bucket.append(job_id)
        self.session.expire_all()  # loaded Job objects would show the old status
        return out
