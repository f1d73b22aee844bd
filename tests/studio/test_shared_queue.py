"""#17: several front ends on one PostgreSQL database take jobs from the shared queue: every job runs once,
wherever it was submitted; a cancel reaches the front end running the job; a front end that dies leaves its
jobs to another once their lease lapses. The front ends here are job services in one process, each with its
own data dir (the shared mount's handling is designed in storage/claims.py, not built yet)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from pipelines.contract import TextToVideoRequest
from storage.claims import QueueRepository
from storage.db import Job, JobRepository, make_session_factory
from studio.jobs import JobService
from tests.support.fakes import TEST_SPEC
from tests.support.postgres import parametrize_backends

pytest_generate_tests = parametrize_backends


def front_end(studio, name: str, **kw) -> JobService:
    """Another job service on the studio's database and data dir pieces, on the shared queue."""
    return JobService(studio.registry, make_session_factory(studio.engine), studio.files, studio.media,
                      shared_queue=name, poll_s=0.05, **kw)


@pytest.fixture
def pair(settings, registry, db_backend):
    if db_backend != "postgresql":
        pytest.skip("the shared queue needs PostgreSQL's row locks; SQLite keeps one front end")
    from studio.wiring import build_studio

    studio = build_studio(settings, registry, start=False)
    a, b = front_end(studio, "front end a"), front_end(studio, "front end b")
    yield studio, a, b
    a.stop(5)
    b.stop(5)
    studio.close()


def test_two_front_ends_run_every_job_once(pair, backend):
    studio, a, b = pair
    a.start()
    b.start()
    subs = [svc.submit(TextToVideoRequest(prompt="a red circle", model_id=TEST_SPEC.id, seed=i), seeds=3,
                       author=f"user{i % 2}") for i, svc in enumerate([a, b, a, b])]
    ids = [j for sub in subs for j in sub.job_ids]
    for svc, sub in zip([a, b, a, b], subs):  # each waits for its own, whoever ran them
        assert {s.status for s in svc.wait(sub.job_ids, timeout=60)} == {"done"}
    with make_session_factory(studio.engine)() as s:
        jobs = [JobRepository(s).get(j) for j in ids]
        runners = Counter(j.claimed_by for j in jobs)
        clips = s.query(Job).filter(Job.clip_id.is_not(None)).count()
    assert {j.status for j in jobs} == {"done"} and {j.attempts for j in jobs} == {1}
    assert clips == len(ids) == len({j.clip_id for j in jobs})  # one clip each, none twice
    assert len(backend.calls) == len(ids)  # generated once each
    assert set(runners) == {a._front_end, b._front_end}, runners  # both took part


def test_a_running_job_is_cancelled_from_the_other_front_end(pair, backend):
    studio, a, b = pair
    backend.step_delay = 0.2
    a.start()
    b.start()
    sub = b.submit(TextToVideoRequest(prompt="slow", model_id=TEST_SPEC.id, seed=1, steps=50))
    assert backend.started.wait(30)
    factory = make_session_factory(studio.engine)
    with factory() as s:
        runner = JobRepository(s).get(sub.job_ids[0]).claimed_by
    running, other = (a, b) if runner == a._front_end else (b, a)
    other.cancel(sub.job_ids[0])  # through the database: the runner learns of it at its next renew
    [status] = running.wait(sub.job_ids, timeout=30)
    assert status.status == "cancelled"
    assert len(backend.calls) == 1
    with factory() as s:
        assert JobRepository(s).get(sub.job_ids[0]).status == "cancelled"
    assert b.wait(sub.job_ids, timeout=10)[0].status == "cancelled"  # the submitter sees it too


def test_a_dead_front_ends_job_is_reclaimed_by_another(pair, backend):
    studio, a, b = pair
    factory = make_session_factory(studio.engine)
    with factory() as s, s.begin():  # a front end that claimed a job and died: its lease lapses
        q = QueueRepository(s)
        dead = q.register("dead front end").id
    sub = b.submit(TextToVideoRequest(prompt="orphan", model_id=TEST_SPEC.id, seed=3))
    with factory() as s, s.begin():
        assert QueueRepository(s).claim_next(dead, lease_s=0.5).id == sub.job_ids[0]
    time.sleep(0.6)
    a.start()  # reclaims it and runs it
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with factory() as s:
            job = JobRepository(s).get(sub.job_ids[0])
        if job.status == "done":
            break
        time.sleep(0.05)
    assert (job.status, job.attempts, job.claimed_by) == ("done", 2, a._front_end)
