"""The job service's side of a remote executor, without Ray: dispatch threads, saving in the front end, a
worker that dies (re-queued once, then failed), cancel, growth. The executor here runs the test backend in
the calling thread behind the same seam as RayExecutor (generate -> Generated, WorkerLost); the real Ray
cluster is tests/studio/test_ray_executor.py."""

from __future__ import annotations

import json
import threading
import time

import pytest

from pipelines.contract import TextToVideoRequest
from storage.repositories import GalleryRepository, JobRepository
from studio.executors import Generated, WorkerLost
from tests.support.fakes import TEST_SPEC

T2V = dict(prompt="a red circle", model_id=TEST_SPEC.id)


class InThreadExecutor:
    """Runs the backend in the dispatch thread; `die_on` holds the call numbers whose worker dies."""

    name = "in-thread"

    def __init__(self, backend, slots: int = 2, die_on=()):  # type: ignore[no-untyped-def]
        self.backend, self.slots, self.die_on = backend, slots, set(die_on)
        self.calls: list[int] = []
        self.running = self.most_running = 0
        self.lock = threading.Lock()
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    def close(self) -> None:
        self.events.append("close")

    def concurrency(self) -> int:
        return self.slots

    def warm_up(self, model_id, profile=None) -> None:  # type: ignore[no-untyped-def]
        self.events.append(f"warm_up {model_id}")

    def generate(self, request, media, seed, on_step, should_cancel, *, model_id, profile,  # type: ignore[no-untyped-def]
                 reserved=None):
        import torch

        with self.lock:
            n = len(self.calls)
            self.calls.append(seed)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if n in self.die_on:
                on_step(1, request.steps, None)
                raise WorkerLost(f"worker-{n} (pid 123) died while running it (killed)")
            frames = self.backend.generate(request, media, torch.Generator(device="cpu").manual_seed(seed),
                                           on_step, should_cancel)
            return Generated(frames, self.backend.spec, self.backend.manifest(), f"worker-{n}")
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def remote(settings, registry, backend):  # type: ignore[no-untyped-def]
    from studio.wiring import build_studio

    made = []

    def build(**kwargs):  # type: ignore[no-untyped-def]
        executor = InThreadExecutor(backend, **kwargs)
        s = build_studio(settings, registry, executor=executor)
        made.append(s)
        return s, executor

    yield build
    for s in made:
        s.close()


def _job(studio, job_id):  # type: ignore[no-untyped-def]
    with studio.jobs._session_factory() as session:
        job = JobRepository(session).get(job_id)
        return job.status, job.attempts, job.error


def _clip_rows(studio, job_id) -> int:  # type: ignore[no-untyped-def]
    with studio.jobs._session_factory() as session:
        return sum(1 for c in GalleryRepository(session).list() if c.job_id == job_id)


def test_a_remote_job_is_saved_by_the_front_end_with_the_full_recipe(remote):
    studio, executor = remote(slots=1)
    sub = studio.jobs.submit(TextToVideoRequest(**T2V, seed=42))
    [status] = studio.jobs.wait(sub.job_ids, timeout=60)
    assert status.status == "done", status.error
    clip = studio.gallery.get(status.clip_id)
    assert (clip.seed, clip.model_id, clip.frames, clip.width) == (42, TEST_SPEC.id, 8, 32)
    sidecar = json.loads(clip.video.with_suffix(".json").read_text())
    assert sidecar["manifest"]["backend"] == "gradient" and "torch" in sidecar["manifest"]
    assert executor.calls == [42] and executor.events[0] == "start"
    studio.jobs.stop()
    assert executor.events[-1] == "close"


def test_one_dispatch_thread_per_worker_runs_jobs_side_by_side(remote, backend):
    backend.step_delay = 0.02
    studio, executor = remote(slots=3)
    assert len(studio.jobs._workers) == 3
    sub = studio.jobs.submit(TextToVideoRequest(**T2V, seed=1), seeds=6)
    statuses = studio.jobs.wait(sub.job_ids, timeout=60)
    assert [s.status for s in statuses] == ["done"] * 6
    assert executor.most_running == 3  # never more than the workers, and all of them at once
    assert sorted(executor.calls) == [1, 2, 3, 4, 5, 6]  # each job once


def test_a_job_whose_worker_dies_runs_once_more_and_is_saved_once(remote):
    studio, executor = remote(slots=2, die_on={0})
    sub = studio.jobs.submit(TextToVideoRequest(**T2V, seed=7))
    [status] = studio.jobs.wait(sub.job_ids, timeout=60)
    assert status.status == "done", status.error
    assert executor.calls == [7, 7]
    assert _job(studio, sub.job_ids[0])[:2] == ("done", 2)
    assert _clip_rows(studio, sub.job_ids[0]) == 1


def test_a_job_whose_second_worker_dies_fails_with_the_reason(remote, settings):
    studio, executor = remote(slots=2, die_on={0, 1})
    sub = studio.jobs.submit(TextToVideoRequest(**T2V, seed=7))
    [status] = studio.jobs.wait(sub.job_ids, timeout=60)
    assert status.status == "failed"
    assert "worker-1 (pid 123) died while running it" in status.error and "re-queued once" in status.error
    assert _job(studio, sub.job_ids[0]) == ("failed", 2, status.error)
    assert _clip_rows(studio, sub.job_ids[0]) == 0
    clips = settings.data_dir / "clips"
    assert not clips.exists() or not any(clips.iterdir())  # no file of it either


def test_cancel_reaches_a_remote_job(remote, backend):
    backend.step_delay = 0.05
    studio, executor = remote(slots=1)
    sub = studio.jobs.submit(TextToVideoRequest(**T2V, seed=3, steps=50))
    deadline = time.monotonic() + 30
    while studio.jobs.status(sub.job_ids[0]).step < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    studio.jobs.cancel(sub.job_ids[0])
    [status] = studio.jobs.wait(sub.job_ids, timeout=30)
    assert status.status == "cancelled" and status.step < 10 and status.clip_id is None


def test_warm_up_goes_to_the_executor(remote):
    studio, executor = remote(slots=1)
    studio.jobs.warm_up()
    deadline = time.monotonic() + 10
    while f"warm_up {TEST_SPEC.id}" not in executor.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert f"warm_up {TEST_SPEC.id}" in executor.events


def test_dispatch_threads_follow_a_growing_cluster(remote):
    studio, executor = remote(slots=1)
    assert len(studio.jobs._workers) == 1
    executor.slots = 3
    studio.jobs._sized_at = 0.0  # as if 5 s had passed since it last asked
    sub = studio.jobs.submit(TextToVideoRequest(**T2V, seed=1))
    assert len(studio.jobs._workers) == 3
    assert studio.jobs.wait(sub.job_ids, timeout=60)[0].status == "done"
