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


def _until_done(factory, job_id: str, timeout: float = 30.0) -> Job:  # type: ignore[no-untyped-def]
    """The job's row once it is done (or as it is when the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        with factory() as s:
            job = JobRepository(s).get(job_id)
        if job.status == "done" or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


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
    job = _until_done(factory, sub.job_ids[0])
    assert (job.status, job.attempts, job.claimed_by) == ("done", 2, a._front_end)


class NoRoomExecutor:
    """A remote executor whose cluster is full (another front end's workers hold it): reserve finds nothing."""

    name = "no-room"

    def __init__(self) -> None:
        self.reserve_calls = 0
        self.generated = 0

    def start(self) -> None: ...

    def close(self) -> None: ...

    def concurrency(self) -> int:
        return 1

    def reserve(self, timeout: float):  # type: ignore[no-untyped-def]
        self.reserve_calls += 1
        time.sleep(timeout)
        return None

    def generate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.generated += 1
        raise AssertionError("a job was claimed without a worker to run it")


def test_a_front_end_without_a_free_worker_claims_nothing(pair, backend):
    """On one cluster, a front end whose pool cannot grow leaves the queue to those with a free worker,
    instead of claiming a job that would wait on it."""
    studio, _, b = pair
    full = NoRoomExecutor()
    a = front_end(studio, "front end with a full cluster", executor=full)
    try:
        a.start()
        sub = a.submit(TextToVideoRequest(prompt="elsewhere", model_id=TEST_SPEC.id, seed=8))
        deadline = time.monotonic() + 10
        while full.reserve_calls < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        factory = make_session_factory(studio.engine)
        with factory() as s:
            assert JobRepository(s).get(sub.job_ids[0]).status == "queued"  # asked for a worker, claimed nothing
        b.start()
        [status] = a.wait(sub.job_ids, timeout=30)  # the submitter sees it end, run by the other
        assert status.status == "done" and full.generated == 0
        with factory() as s:
            assert JobRepository(s).get(sub.job_ids[0]).claimed_by == b._front_end
    finally:
        a.stop(5)


def test_a_front_end_that_stops_gives_its_running_job_back_at_once(pair, backend):
    """Stopping (a restart, a scale-down) is not dying: the running job goes back to the queue now, its
    attempt not counted, and another front end runs it; nobody waits for a lease to lapse."""
    studio, a, b = pair
    backend.step_delay = 0.1
    a.start()
    sub = a.submit(TextToVideoRequest(prompt="handed over", model_id=TEST_SPEC.id, seed=4, steps=40))
    assert backend.started.wait(30)
    a.stop(10)
    factory = make_session_factory(studio.engine)
    with factory() as s:
        job = JobRepository(s).get(sub.job_ids[0])
        assert (job.status, job.attempts, job.claimed_by, job.lease_until) == ("queued", 0, None, None)
    b.start()
    job = _until_done(factory, sub.job_ids[0])
    assert (job.status, job.attempts, job.claimed_by) == ("done", 1, b._front_end)
    with factory() as s:
        assert s.query(Job).filter(Job.clip_id.is_not(None)).count() == 1


def test_a_front_end_that_loses_its_lease_leaves_the_job_to_the_other(pair, backend):
    """A front end that stops renewing (a long pause) while it runs a job: another reclaims and runs it; the
    first one's clip, made too late, is refused by the fencing check and its files removed. One clip, once."""
    studio, _, _ = pair
    slow = front_end(studio, "paused front end", lease_s=0.5)
    slow._renew_once = lambda: None  # its renewer is stuck
    fast = front_end(studio, "healthy front end")
    backend.step_delay = 0.3
    try:
        slow.start()
        sub = slow.submit(TextToVideoRequest(prompt="lease", model_id=TEST_SPEC.id, seed=5, steps=6))
        assert backend.started.wait(30)
        factory = make_session_factory(studio.engine)
        with factory() as s:
            assert JobRepository(s).get(sub.job_ids[0]).claimed_by == slow._front_end
        fast.start()  # reclaims the lapsed lease and runs the job again
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with factory() as s:
                job = JobRepository(s).get(sub.job_ids[0])
            if job.status == "done" and len(backend.calls) == 2 and not slow._mine:
                break
            time.sleep(0.05)
        assert (job.status, job.attempts, job.claimed_by) == ("done", 2, fast._front_end)
        assert not slow._mine  # the paused one gave it up
        with factory() as s:
            assert s.query(Job).filter(Job.clip_id.is_not(None)).count() == 1
        videos = sorted(p.stem for p in (studio.files.root / "clips").glob("*.mp4"))
        assert videos == [job.clip_id]  # the late clip's files are gone
    finally:
        slow.stop(5)
        fast.stop(5)


def test_the_caps_count_every_front_ends_jobs(pair):
    from pipelines.contract import RequestError

    _, a, b = pair  # not started: submissions only
    for svc in (a, b):
        svc.max_queued_per_user, svc.max_queued = 3, 5
    a.submit(TextToVideoRequest(prompt="x", model_id=TEST_SPEC.id, seed=1), seeds=2, author="alice")
    with pytest.raises(RequestError, match="alice has 2 clip"):
        b.submit(TextToVideoRequest(prompt="x", model_id=TEST_SPEC.id, seed=1), seeds=2, author="alice")
    b.submit(TextToVideoRequest(prompt="x", model_id=TEST_SPEC.id, seed=1), seeds=3, author="bob")
    with pytest.raises(RequestError, match="the queue is full"):
        a.submit(TextToVideoRequest(prompt="x", model_id=TEST_SPEC.id, seed=1), author="carol")


# ---- build_studio: the setting, the data dir's lease, recovery ------------------------------------------------
def test_front_ends_share_the_data_dirs_lease_and_a_single_writer_is_kept_out(tmp_path):
    from storage.lease import DataDirBusy, DataDirLease

    a, b = DataDirLease(tmp_path), DataDirLease(tmp_path)
    a.acquire("front end a", shared=True)
    b.acquire("front end b", shared=True)
    with pytest.raises(DataDirBusy, match="front ends of a shared queue"):
        DataDirLease(tmp_path).acquire("studio serve")
    a.release()
    b.release()
    single = DataDirLease(tmp_path)
    single.acquire("studio serve on 127.0.0.1:7860")
    with pytest.raises(DataDirBusy, match="studio serve on 127.0.0.1:7860"):
        DataDirLease(tmp_path).acquire("front end c", shared=True)
    single.release()


def test_a_shared_queue_is_refused_on_sqlite(tmp_path, registry):
    from studio.settings import Settings
    from studio.wiring import DataDirError, build_studio

    with pytest.raises(DataDirError, match="needs a PostgreSQL database"):
        build_studio(Settings(data_dir=tmp_path / "data", device="cpu", shared_queue=True), registry)


def test_two_studios_on_one_data_dir_and_database_run_every_job_once(settings, registry, backend, db_backend):
    if db_backend != "postgresql":
        pytest.skip("the shared queue needs PostgreSQL")
    from dataclasses import replace

    from studio.wiring import build_studio

    shared = replace(settings, shared_queue=True)
    one = build_studio(shared, registry, holder="studio serve on 10.0.0.1:7860")
    try:
        two = build_studio(shared, registry, holder="studio serve on 10.0.0.2:7860")  # the lease is shared
        try:
            subs = [svc.jobs.submit(TextToVideoRequest(prompt="a red circle", model_id=TEST_SPEC.id, seed=i), seeds=2)
                    for i, svc in enumerate([one, two, one, two])]
            for svc, sub in zip([one, two, one, two], subs):
                assert {s.status for s in svc.jobs.wait(sub.job_ids, timeout=60)} == {"done"}
            ids = [j for sub in subs for j in sub.job_ids]
            with make_session_factory(one.engine)() as s:
                jobs = [JobRepository(s).get(j) for j in ids]
            assert {j.attempts for j in jobs} == {1} and len({j.clip_id for j in jobs}) == len(ids)
            assert len(backend.calls) == len(ids)
        finally:
            two.close()
    finally:
        one.close()


def test_recovery_on_a_shared_data_dir_leaves_young_orphans(studio):
    from studio.wiring import recover

    files, factory = studio.files, make_session_factory(studio.engine)
    video = files.resolve(files.clip_paths("ab" * 16).video)
    video.parent.mkdir(parents=True, exist_ok=True)
    video.write_bytes(b"another front end is about to commit this clip's row")
    recover(files, factory, grace_s=3600)
    assert video.exists()
    recover(files, factory)  # a single writer: nobody else writes, it is a crash's leftover
    assert not video.exists()


def test_the_setting_comes_from_the_environment(tmp_path):
    from studio.settings import Settings

    assert Settings.from_env({"STUDIO_DATA_DIR": str(tmp_path), "STUDIO_SHARED_QUEUE": "1"}).shared_queue
    assert not Settings.from_env({"STUDIO_DATA_DIR": str(tmp_path)}).shared_queue
