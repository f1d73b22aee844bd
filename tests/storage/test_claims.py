"""The shared queue's storage half (storage/claims.py), on SQLite and PostgreSQL; the concurrency tests on
PostgreSQL, whose row locks (FOR UPDATE SKIP LOCKED) they are about."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from storage.claims import LostClaim, QueueRepository, database_now
from storage.db import Job, JobRepository, make_session_factory

T0 = datetime(2026, 6, 1, tzinfo=UTC)


class Clock:
    """Moves one second per reading, so every claim has its own started_at."""

    def __init__(self, start: datetime = T0):
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def add_jobs(session, n: int, author: str | None = None, start: int = 0) -> list[str]:
    repo = JobRepository(session)
    return [repo.add(Job(batch_id=f"b-{author}", batch_index=i, mode="t2v", model_id="m", params={}, author=author,
                         created_at=T0 - timedelta(hours=1) + timedelta(seconds=start + i))).id for i in range(n)]


def test_claim_next_marks_running_with_a_lease(session) -> None:
    ids = add_jobs(session, 3)
    clock = Clock()
    q = QueueRepository(session, clock)
    fe = q.register("studio serve on a:7860", host="a", pid=1).id
    job = q.claim_next(fe, lease_s=30)
    assert job.id == ids[0]
    assert (job.status, job.claimed_by, job.attempts) == ("running", fe, 1)
    assert job.lease_until == job.started_at + timedelta(seconds=30)
    assert [q.claim_next(fe).id for _ in range(2)] == ids[1:]
    assert q.claim_next(fe) is None
    session.commit()
    assert [f.id for f in q.live_front_ends(stale_s=3600)] == [fe]
    q.stopped(fe)
    assert q.live_front_ends(stale_s=3600) == []


def test_claims_go_round_robin_over_authors(session) -> None:
    add_jobs(session, 3, "alice")
    add_jobs(session, 2, "bob", start=10)
    add_jobs(session, 1, None, start=20)
    q = QueueRepository(session, Clock())
    fe = q.register("fe").id
    order = [q.claim_next(fe).author for _ in range(6)]
    # never served first (by name, no author last), then whoever was served least recently
    assert order == ["alice", "bob", None, "alice", "bob", "alice"]
    assert q.claim_next(fe) is None


def test_claim_by_id_takes_a_batch_companion_once(session) -> None:
    ids = add_jobs(session, 2)
    q = QueueRepository(session, Clock())
    fe = q.register("fe").id
    assert q.claim(fe, ids[1]).status == "running"
    assert q.claim(fe, ids[1]) is None  # already running
    assert q.claim_next(fe).id == ids[0]


def test_renew_keeps_the_lease_and_reports_progress(session) -> None:
    ids = add_jobs(session, 2)
    clock = Clock()
    q = QueueRepository(session, clock)
    fe, other = q.register("fe").id, q.register("other").id
    job = q.claim_next(fe, lease_s=10)
    first_lease = job.lease_until
    r = q.renew(fe, [ids[0], ids[1]], lease_s=10, progress={ids[0]: (3, 8)})
    assert r.kept == {ids[0]} and r.lost == {ids[1]} and not r.cancel
    session.expire_all()
    got = JobRepository(session).get(ids[0])
    assert got.lease_until > first_lease and (got.progress_step, got.progress_total) == (3, 8)
    assert q.renew(other, [ids[0]]).lost == {ids[0]}  # not its job: nothing extended
    assert q.renew(fe, []).kept == frozenset()


def test_an_expired_lease_is_reclaimed_once_then_the_job_fails(session) -> None:
    (job_id,) = add_jobs(session, 1)
    clock = Clock()
    q = QueueRepository(session, clock)
    dead, alive = q.register("dead").id, q.register("alive").id
    q.claim_next(dead, lease_s=5)
    assert q.reclaim_expired(clock.now).requeued == []  # not expired yet
    later = clock.now + timedelta(seconds=60)
    assert q.reclaim_expired(later).requeued == [job_id]
    assert q.reclaim_expired(later).requeued == []  # once
    job = JobRepository(session).get(job_id)
    assert (job.status, job.claimed_by, job.lease_until, job.attempts) == ("queued", None, None, 1)
    # the dead one wakes up: it has lost the job and may not write its end
    assert q.renew(dead, [job_id]).lost == {job_id}
    with pytest.raises(LostClaim):
        q.check_claim(dead, job_id)
    clock.now = later
    assert q.claim_next(alive, lease_s=5).attempts == 2
    assert q.check_claim(alive, job_id).id == job_id
    assert q.reclaim_expired(clock.now + timedelta(seconds=60)).failed == [job_id]  # MAX_ATTEMPTS reached
    job = JobRepository(session).get(job_id)
    assert job.status == "failed" and "interrupted 2 times" in job.error and job.finished_at is not None
    assert q.claim_next(alive) is None


def test_cancel_from_any_front_end(session) -> None:
    queued, running = add_jobs(session, 2)
    clock = Clock()
    q = QueueRepository(session, clock)
    fe = q.register("fe").id
    assert q.claim_next(fe, lease_s=5).id == queued
    session.flush()
    # swap roles: cancel the running one by flag, and a fresh queued one at once
    assert q.request_cancel(queued) == "running"
    assert q.request_cancel(running) == "cancelled"
    assert q.claim_next(fe) is None  # the cancelled one is not claimable
    assert q.renew(fe, [queued]).cancel == {queued}
    assert q.request_cancel(running) is None  # already ended
    assert q.reclaim_expired(clock.now + timedelta(seconds=60)).cancelled == [queued]  # its front end died
    assert JobRepository(session).get(queued).status == "cancelled"


def test_waiting_counts_per_author(session) -> None:
    add_jobs(session, 2, "alice")
    done = add_jobs(session, 1, "bob", 10)
    add_jobs(session, 1, None, 20)
    q = QueueRepository(session, Clock())
    q.claim_next(q.register("fe").id)
    JobRepository(session).mark_cancelled(done[0])
    assert q.waiting_counts() == {"alice": 2, None: 1}


def test_database_now_is_aware(session) -> None:
    assert database_now(session).tzinfo is not None


# ---- real concurrency: several connections at once (PostgreSQL) -------------------------------------------
def _postgres_only(db_backend: str) -> None:
    if db_backend != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite keeps one front end per database (the data dir's lease)")


def test_two_front_ends_claim_every_job_exactly_once(engine, db_backend) -> None:
    _postgres_only(db_backend)
    factory = make_session_factory(engine)
    n = 60
    with factory() as s, s.begin():
        ids = add_jobs(s, n // 3, "alice") + add_jobs(s, n // 3, "bob", 100) + add_jobs(s, n // 3, None, 200)
        fes = [QueueRepository(s).register(f"fe{i}").id for i in range(2)]
    claimed: dict[str, list[str]] = {fe: [] for fe in fes}
    start = threading.Barrier(len(fes))
    errors: list[BaseException] = []

    def front_end(fe: str) -> None:
        try:
            start.wait()
            while True:
                with factory() as s, s.begin():
                    job = QueueRepository(s).claim_next(fe, lease_s=60)
                    if job is None:
                        return
                    claimed[fe].append(job.id)
                    time.sleep(0.002)  # hold the row lock a moment: the other must skip it, not wait or take it
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=front_end, args=(fe,)) for fe in fes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    every = [j for fe in fes for j in claimed[fe]]
    assert sorted(every) == sorted(ids)  # every job, each once
    assert all(claimed[fe] for fe in fes), {fe: len(v) for fe, v in claimed.items()}  # both took part
    with factory() as s:
        jobs = {j.id: j for j in JobRepository(s).list_by_status("running")}
    assert len(jobs) == n
    assert {jobs[j].claimed_by for j in claimed[fes[0]]} == {fes[0]}
    assert {j.attempts for j in jobs.values()} == {1}


def test_a_locked_job_is_skipped_not_waited_for(engine, db_backend) -> None:
    _postgres_only(db_backend)
    factory = make_session_factory(engine)
    with factory() as s, s.begin():
        ids = add_jobs(s, 2)
        fe1, fe2 = (QueueRepository(s).register(n).id for n in ("fe1", "fe2"))
    with factory() as a, a.begin():
        assert QueueRepository(a).claim_next(fe1).id == ids[0]  # claimed, not committed: its row stays locked
        with factory() as b, b.begin():
            b.execute(text("SET LOCAL lock_timeout = '2s'"))  # a wait instead of a skip would fail here
            assert QueueRepository(b).claim_next(fe2).id == ids[1]
            assert QueueRepository(b).claim(fe2, ids[0]) is None


def test_concurrent_reclaimers_handle_each_expired_job_once(engine, db_backend) -> None:
    _postgres_only(db_backend)
    factory = make_session_factory(engine)
    with factory() as s, s.begin():
        ids = add_jobs(s, 30)
        q = QueueRepository(s)
        dead = q.register("dead").id
        for _ in ids:
            q.claim_next(dead, lease_s=1)
    later = datetime.now(UTC) + timedelta(hours=1)
    got: list[list[str]] = [[], [], []]
    start = threading.Barrier(len(got))

    def reclaimer(i: int) -> None:
        start.wait()
        with factory() as s, s.begin():
            got[i] = QueueRepository(s).reclaim_expired(later).requeued
            time.sleep(0.05)

    threads = [threading.Thread(target=reclaimer, args=(i,)) for i in range(len(got))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(j for part in got for j in part) == sorted(ids)
    with factory() as s:
        assert {(j.status, j.attempts) for j in s.query(Job)} == {("queued", 1)}


def test_a_finished_job_cannot_be_reclaimed_under_it(engine, db_backend) -> None:
    """The fencing check locks the row: a reclaim that comes while the end is being written waits, then
    finds the job done."""
    _postgres_only(db_backend)
    factory = make_session_factory(engine)
    with factory() as s, s.begin():
        (job_id,) = add_jobs(s, 1)
        q = QueueRepository(s)
        fe = q.register("fe").id
        q.claim_next(fe, lease_s=1)
    later = datetime.now(UTC) + timedelta(hours=1)
    result: list = []
    with factory() as a, a.begin():
        QueueRepository(a).check_claim(fe, job_id)
        JobRepository(a).mark_failed(job_id, "the model failed")  # any end; "done" needs a clip row

        def reclaim() -> None:
            with factory() as b, b.begin():
                result.append(QueueRepository(b).reclaim_expired(later))

        t = threading.Thread(target=reclaim)
        t.start()
        time.sleep(0.2)  # the reclaimer skips the locked row
    t.join(10)
    assert result and result[0].requeued == [] and result[0].failed == []
    with factory() as s:
        assert JobRepository(s).get(job_id).status == "failed"
