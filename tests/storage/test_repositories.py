from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from storage.db import Clip, GalleryRepository, InvalidTransition, Job, JobRepository, NotFound, make_session_factory


def params(**kw):
    p = {"schema_version": 1, "mode": "t2v", "prompt": "a red ball", "negative_prompt": "", "model_id": "m",
         "seed": 2**63 - 1, "steps": 4, "cfg_scale": 5.0, "frames": 8, "fps": 8, "width": 32, "height": 32,
         "profile": None}
    p.update(kw)
    return p


def make_clip(n: int = 0, **kw) -> Clip:
    p = params(**{k: v for k, v in kw.items() if k in ("mode", "model_id", "prompt")})
    fields = {
        "batch_id": "b1", "model_version": "1", "video_path": f"clips/{n}.mp4", "thumb_path": f"clips/{n}.jpg",
        "sidecar_path": f"clips/{n}.json", "created_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
    }
    fields.update({k: v for k, v in kw.items() if k not in ("mode", "model_id", "prompt")})
    return Clip.from_params(p, **fields)


def test_job_lifecycle(session) -> None:
    repo = JobRepository(session)
    job = repo.add(Job(batch_id="b1", batch_index=0, mode="t2v", model_id="m", params=params()))
    assert len(job.id) == 32 and job.status == "queued"
    assert job.created_at.tzinfo is not None
    repo.mark_running(job.id)
    assert repo.get(job.id).started_at is not None
    with pytest.raises(InvalidTransition, match="running; it cannot become running"):
        repo.mark_running(job.id)
    clip = GalleryRepository(session).add(make_clip())
    repo.mark_done(job.id, clip.id)
    session.commit()
    session.expire_all()
    got = repo.get(job.id)
    assert (got.status, got.clip_id) == ("done", clip.id)
    assert got.finished_at.tzinfo == UTC and got.finished_at >= got.started_at
    assert got.params["seed"] == 2**63 - 1
    with pytest.raises(InvalidTransition):
        repo.mark_cancelled(job.id)
    with pytest.raises(NotFound):
        repo.mark_failed("nope", "x")


def test_list_by_status_oldest_first_and_failures(session) -> None:
    repo = JobRepository(session)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [repo.add(Job(batch_id="b", batch_index=i, mode="t2v", model_id="m", params={},
                        created_at=t0 + timedelta(seconds=5 - i))).id for i in range(3)]
    assert [j.id for j in repo.list_by_status("queued")] == ids[::-1]
    repo.mark_failed(ids[0], "boom")
    repo.mark_cancelled(ids[1])
    assert repo.get(ids[0]).error == "boom"
    assert [j.id for j in repo.list_by_status("queued")] == [ids[2]]
    assert [j.id for j in repo.by_batch("b")] == ids
    with pytest.raises(ValueError, match="status"):
        repo.list_by_status("bogus")
    with pytest.raises(ValueError, match="status"):
        Job(status="bogus")


def test_repositories_never_commit(engine) -> None:
    factory = make_session_factory(engine)
    with factory() as s:
        JobRepository(s).add(Job(batch_id="b", mode="t2v", model_id="m", params={}))
        GalleryRepository(s).add(make_clip())
        s.rollback()
    with factory() as s:
        assert JobRepository(s).list_by_status("queued") == []
        assert GalleryRepository(s).count() == 0


def test_gallery_round_trip_filters_and_order(session) -> None:
    repo = GalleryRepository(session)
    for n, (mode, model) in enumerate([("t2v", "a"), ("i2v", "a"), ("t2v", "b"), ("t2v", "a")]):
        repo.add(make_clip(n, mode=mode, model_id=model, batch_id=f"b{n % 2}", id=f"{n:032x}",
                           manifest={"device": "cpu"}, inputs={"image": {"path": "inputs/ab/x.png", "sha256": "x"}},
                           strength=0.5 if mode == "i2v" else None, generation_seconds=1.5))
    session.commit()
    session.expunge_all()
    newest = repo.list()
    assert [c.id for c in newest] == [f"{n:032x}" for n in (3, 2, 1, 0)]
    c = repo.get(f"{1:032x}")
    assert (c.mode, c.model_id, c.seed, c.strength, c.cfg_scale) == ("i2v", "a", 2**63 - 1, 0.5, 5.0)
    assert c.params["schema_version"] == 1 and c.manifest == {"device": "cpu"}
    assert c.inputs["image"]["path"] == "inputs/ab/x.png"
    assert c.created_at.tzinfo == UTC
    assert [x.id for x in repo.list(mode="t2v", model_id="a")] == [f"{3:032x}", f"{0:032x}"]
    assert [x.id for x in repo.list(limit=2, offset=1)] == [f"{2:032x}", f"{1:032x}"]
    assert repo.count() == 4 and repo.count(mode="t2v") == 3 and repo.count(model_id="b") == 1
    assert [x.id for x in repo.by_batch("b1")] == [f"{1:032x}", f"{3:032x}"]
    assert repo.distinct_models() == ["a", "b"]


def test_delete_returns_paths_and_unlinks_jobs(session) -> None:
    gallery, jobs = GalleryRepository(session), JobRepository(session)
    clip = gallery.add(make_clip(7))
    job = jobs.add(Job(batch_id="b1", mode="t2v", model_id="m", params={}))
    jobs.mark_running(job.id)
    jobs.mark_done(job.id, clip.id)
    session.commit()
    assert gallery.delete(clip.id) == ("clips/7.mp4", "clips/7.jpg", "clips/7.json")
    session.commit()
    assert gallery.get(clip.id) is None and gallery.delete(clip.id) is None
    session.expire_all()
    assert jobs.get(job.id).clip_id is None and jobs.get(job.id).status == "done"


def test_naive_datetimes_are_refused(session) -> None:
    JobRepository(session).add(Job(batch_id="b", mode="t2v", model_id="m", params={}))
    job = JobRepository(session).list_by_status("queued")[0]
    job.started_at = datetime(2026, 1, 1)
    with pytest.raises(Exception, match="naive datetime"):
        session.flush()


def test_sessions_work_across_threads(engine) -> None:
    factory = make_session_factory(engine)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with factory() as s, s.begin():
                JobRepository(s).add(Job(batch_id="t", batch_index=i, mode="t2v", model_id="m", params={}))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with factory() as s:
        assert len(JobRepository(s).by_batch("t")) == 4
