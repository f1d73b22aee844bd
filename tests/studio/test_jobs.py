"""The job service end to end on the test backend: queue, progress, cancel, failure, persistence; each test that
builds a studio (the `settings` fixture) runs on SQLite and on PostgreSQL (`[sqlite]`, `[postgresql]`)."""

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from pipelines.contract import ModelDefaults
from pipelines.contract import ImageToVideoRequest, InpaintRequest, RequestError, TextToVideoRequest, VideoToVideoRequest
from tests.support.fakes import TEST_SPEC
from tests.support.postgres import parametrize_backends

pytest_generate_tests = parametrize_backends

T2V = dict(prompt="a red circle", model_id=TEST_SPEC.id)


def run(studio, request, seeds=1, timeout=60):
    sub = studio.jobs.submit(request, seeds=seeds)
    return sub, studio.jobs.wait(sub.job_ids, timeout=timeout)


def clip_files(data_dir: Path) -> list[str]:
    folder = data_dir / "clips"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_t2v_writes_files_then_row_with_full_recipe(studio, settings):
    sub, [status] = run(studio, TextToVideoRequest(**T2V, seed=42))
    assert status.status == "done", status.error
    clip = studio.gallery.get(status.clip_id)
    assert (clip.seed, clip.mode, clip.model_id, clip.model_version) == (42, "t2v", TEST_SPEC.id, "1")
    assert (clip.frames, clip.width, clip.height, clip.steps) == (8, 32, 32, 4)
    assert clip.video.is_file() and clip.thumb.is_file() and clip.video.is_relative_to(settings.data_dir.resolve())
    sidecar = json.loads(clip.video.with_suffix(".json").read_text())
    assert sidecar["params"]["seed"] == 42 and sidecar["manifest"]["backend"] == "gradient"
    assert "torch" in sidecar["manifest"]
    from studio.media.video import read_mp4_metadata

    assert read_mp4_metadata(clip.video)["params"]["prompt"] == "a red circle"


def test_seeds_make_a_batch_of_consecutive_seeds(studio):
    sub, statuses = run(studio, TextToVideoRequest(**T2V, seed=10), seeds=3)
    assert sub.seeds == (10, 11, 12)
    clips = [studio.gallery.get(s.clip_id) for s in statuses]
    assert [c.seed for c in clips] == [10, 11, 12]
    assert len({c.batch_id for c in clips}) == 1


def test_random_seed_is_resolved_and_stored(studio):
    sub, [status] = run(studio, TextToVideoRequest(**T2V))
    assert studio.gallery.get(status.clip_id).seed == sub.seeds[0] >= 0


def test_same_seed_same_frames(studio):
    from studio.media import MediaLimits
    from studio.media.video import read_video

    _, [a] = run(studio, TextToVideoRequest(**T2V, seed=5))
    _, [b] = run(studio, TextToVideoRequest(**T2V, seed=5))
    _, [c] = run(studio, TextToVideoRequest(**T2V, seed=6))
    fa, fb, fc = (read_video(studio.gallery.get(s.clip_id).video, MediaLimits())[0] for s in (a, b, c))
    assert np.array_equal(fa, fb)
    assert not np.array_equal(fa, fc)


def test_invalid_request_queues_nothing(studio, settings):
    with pytest.raises(RequestError, match="width"):
        studio.jobs.submit(TextToVideoRequest(**T2V, width=33))
    with pytest.raises(RequestError, match="seeds"):
        studio.jobs.submit(TextToVideoRequest(**T2V), seeds=9)
    with pytest.raises(RequestError, match="unknown model"):
        studio.jobs.submit(TextToVideoRequest(prompt="x", model_id="no-such-model"))
    assert studio.gallery.list() == [] and clip_files(settings.data_dir) == []


def test_cancel_running_job_leaves_nothing(studio, backend, settings):
    backend.step_delay = 0.2
    sub = studio.jobs.submit(TextToVideoRequest(**T2V, steps=40))
    assert backend.started.wait(10)
    studio.jobs.cancel(sub.job_ids[0])
    [status] = studio.jobs.wait(sub.job_ids, timeout=10)
    assert status.status == "cancelled"
    assert studio.gallery.list() == [] and clip_files(settings.data_dir) == []


def test_cancel_queued_job_and_queue_positions(studio, backend):
    backend.step_delay = 0.05
    first = studio.jobs.submit(TextToVideoRequest(**T2V, steps=20))
    second = studio.jobs.submit(TextToVideoRequest(**T2V), seeds=2)
    assert studio.jobs.status(second.job_ids[1]).queue_position == 2
    studio.jobs.cancel(second.job_ids[0])
    assert studio.jobs.status(second.job_ids[0]).status == "cancelled"
    statuses = studio.jobs.wait(first.job_ids + second.job_ids, timeout=30)
    assert [s.status for s in statuses] == ["done", "cancelled", "done"]


def test_progress_reaches_total(studio, backend):
    backend.step_delay = 0.05
    sub = studio.jobs.submit(TextToVideoRequest(**T2V, steps=6))
    [job_id] = sub.job_ids
    seen = None
    for _ in range(400):  # poll while it runs, as the page does
        preview = studio.jobs.preview(job_id)
        if preview is not None:
            seen = preview
        if studio.jobs.status(job_id).finished:
            break
        threading.Event().wait(0.01)
    [status] = studio.jobs.wait(sub.job_ids, timeout=60)
    assert status.step == status.total == 6 and status.preview_version == 3
    assert seen is not None and seen.shape == (8, 32, 32, 3)
    assert studio.jobs.preview(job_id) is None  # dropped at the end: nobody shows a preview after Done


def test_finished_job_states_are_bounded(studio, monkeypatch):
    """Each finished job used to keep its state (and its last preview, ~97 MB at 832x480x81) forever."""
    from studio import jobs

    monkeypatch.setattr(jobs, "MAX_FINISHED_STATES", 3)
    sub, statuses = run(studio, TextToVideoRequest(**T2V), seeds=8)
    assert [s.status for s in statuses] == ["done"] * 8
    assert len(studio.jobs._states) == 3
    oldest = studio.jobs.status(sub.job_ids[0])  # retired: read back from the database
    assert oldest.status == "done" and oldest.clip_id == statuses[0].clip_id
    assert all(studio.jobs.preview(j) is None for j in sub.job_ids)


@pytest.mark.parametrize("error, hint", [
    ("ours", "try the low-vram profile"),
    ("cuda", "try a lower-memory profile"),
])
def test_out_of_memory_unloads_and_words_the_advice_once(studio, backend, registry, error, hint):
    from pipelines.contract import OutOfMemory

    unloaded = []
    backend.unload = lambda: unloaded.append(True)
    backend.fail_with = (OutOfMemory("try the low-vram profile") if error == "ours"
                         else RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    _, [bad] = run(studio, TextToVideoRequest(**T2V))
    assert bad.status == "failed" and unloaded == [True]
    assert bad.error.count("out of memory") == 1 and hint in bad.error
    assert "Tried to allocate" not in bad.error


def test_backend_failure_is_reported_and_worker_survives(studio, backend):
    backend.fail_with = RuntimeError("boom")
    _, [bad] = run(studio, TextToVideoRequest(**T2V))
    assert bad.status == "failed" and "boom" in bad.error
    backend.fail_with = None
    _, [good] = run(studio, TextToVideoRequest(**T2V))
    assert good.status == "done"


def test_database_failure_removes_the_files(studio, settings, monkeypatch):
    from storage import repositories

    def broken_add(self, clip):
        raise RuntimeError("disk full")

    monkeypatch.setattr(repositories.GalleryRepository, "add", broken_add)
    _, [status] = run(studio, TextToVideoRequest(**T2V))
    assert status.status == "failed" and "disk full" in status.error
    assert clip_files(settings.data_dir) == []


def test_queued_jobs_survive_a_restart(settings, registry):
    from studio.wiring import build_studio

    first = build_studio(settings, registry, start=False)
    sub = first.jobs.submit(TextToVideoRequest(**T2V, seed=3))
    first.close()
    second = build_studio(settings, registry)
    try:
        [status] = second.jobs.wait(sub.job_ids, timeout=30)
        assert status.status == "done"
        assert second.gallery.get(status.clip_id).seed == 3
    finally:
        second.close()


def test_i2v_v2v_inpaint_with_inputs(studio, sample_image, sample_video, sample_mask):
    _, [i2v] = run(studio, ImageToVideoRequest(**T2V, image=str(sample_image), seed=1))
    assert i2v.status == "done", i2v.error
    clip = studio.gallery.get(i2v.clip_id)
    assert clip.inputs["image"]["path"].startswith("inputs/") and len(clip.inputs["image"]["sha256"]) == 64
    _, [v2v] = run(studio, VideoToVideoRequest(**T2V, video=str(sample_video), strength=0.4))
    assert v2v.status == "done", v2v.error
    assert studio.gallery.get(v2v.clip_id).strength == 0.4
    _, [inp] = run(studio, InpaintRequest(**T2V, video=str(sample_video), mask=str(sample_mask)))
    assert inp.status == "done", inp.error


def test_bad_inputs_are_refused_before_queueing(studio, tmp_path, sample_video):
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(RequestError, match="video"):
        studio.jobs.submit(VideoToVideoRequest(**T2V, video=str(fake)))
    with pytest.raises(RequestError, match="file not found"):
        studio.jobs.submit(ImageToVideoRequest(**T2V, image=str(tmp_path / "missing.png")))
    from PIL import Image

    wrong = tmp_path / "wide-mask.png"
    Image.fromarray(np.full((10, 40), 255, np.uint8)).save(wrong)
    with pytest.raises(RequestError, match="mask"):
        studio.jobs.submit(InpaintRequest(**T2V, video=str(sample_video), mask=str(wrong)))
    black = tmp_path / "black-mask.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(black)
    with pytest.raises(RequestError, match="all black"):
        studio.jobs.submit(InpaintRequest(**T2V, video=str(sample_video), mask=str(black)))
    assert studio.gallery.list() == []


def test_delete_removes_row_and_files(studio, settings):
    _, [status] = run(studio, TextToVideoRequest(**T2V))
    assert clip_files(settings.data_dir)
    assert studio.gallery.delete(status.clip_id)
    assert studio.gallery.get(status.clip_id) is None
    assert clip_files(settings.data_dir) == []


def test_recall_gives_back_the_exact_request(studio, sample_video):
    req = VideoToVideoRequest(**T2V, video=str(sample_video), seed=77, steps=3, strength=0.5)
    _, [status] = run(studio, req)
    recalled = studio.gallery.recall(status.clip_id)
    assert recalled.seed == 77 and recalled.steps == 3 and recalled.strength == 0.5
    assert recalled.video.startswith("inputs/")
    _, [again] = run(studio, recalled)  # re-running a recalled request needs no re-upload
    assert again.status == "done"


def test_batch_lists_the_seeds_side_by_side(studio):
    sub, statuses = run(studio, TextToVideoRequest(**T2V, seed=20), seeds=3)
    run(studio, TextToVideoRequest(**T2V, seed=99))
    batch = studio.gallery.batch(sub.batch_id)
    assert [c.seed for c in batch] == [20, 21, 22]


def test_a_refused_mask_leaves_no_input_behind(studio, sample_video, tmp_path):
    from PIL import Image

    wrong = tmp_path / "wrong-shape-mask.png"  # 2:1, the video is square
    Image.fromarray(np.full((16, 32), 255, np.uint8)).save(wrong)
    with pytest.raises(RequestError, match="mask"):
        studio.jobs.submit(InpaintRequest(prompt="x", video=str(sample_video), mask=str(wrong)))
    inputs = studio.settings.data_dir / "inputs"
    assert not inputs.exists() or not [p for p in inputs.rglob("*") if p.is_file()]
    # an input that was already stored (by an earlier request) stays
    ok = studio.jobs.submit(VideoToVideoRequest(prompt="x", video=str(sample_video)))
    studio.jobs.wait(ok.job_ids)
    with pytest.raises(RequestError, match="mask"):
        studio.jobs.submit(InpaintRequest(prompt="x", video=str(sample_video), mask=str(wrong)))
    assert len([p for p in inputs.rglob("*") if p.is_file()]) == 1


def test_jobs_of_different_authors_take_turns(settings, registry, backend):
    from studio.wiring import build_studio

    backend.step_delay = 0.01
    studio = build_studio(settings, registry, start=False)
    try:
        ann = [studio.jobs.submit(TextToVideoRequest(prompt="a", seed=i, steps=2), author="ann").job_ids[0]
               for i in range(4)]
        bob = [studio.jobs.submit(TextToVideoRequest(prompt="b", seed=i, steps=2), author="bob").job_ids[0]
               for i in range(2)]
        studio.jobs.start()
        studio.jobs.wait(ann + bob, timeout=60)
        with studio.jobs._session_factory() as session:
            from storage.models import Job

            order = [j.author for j in session.query(Job).order_by(Job.started_at).all()]
        assert order == ["ann", "bob", "ann", "bob", "ann", "ann"]  # not all of ann's first
    finally:
        studio.close()


def test_queue_caps_are_refused_with_a_message(studio):
    studio.jobs.max_queued_per_user = 3
    studio.jobs.max_queued = 5
    with pytest.raises(RequestError, match="ann has 0 clip.* asks for 4 more; the limit is 3 waiting per user"):
        studio.jobs.submit(TextToVideoRequest(prompt="x", steps=2), 4, author="ann")
    studio.jobs.stop()  # nothing runs: the clips stay waiting
    studio.jobs.submit(TextToVideoRequest(prompt="x", steps=2), 3, author="ann")
    with pytest.raises(RequestError, match=r"the queue is full \(3 clips waiting, at most 5\)"):
        studio.jobs.submit(TextToVideoRequest(prompt="x", steps=2), 3, author="bob")
    assert len(studio.jobs.submit(TextToVideoRequest(prompt="x", steps=2), 2, author="bob").job_ids) == 2
