"""Sweeps through the job service: cells x seeds, validated before anything is queued, batched seeds."""

import numpy as np
import pytest

from pipelines.contract import (
    ModelRegistry,
    RegistryEntry,
    RequestError,
    SweepRequest,
    TextToVideoRequest,
    VideoToVideoRequest,
    make_axis,
    parse_axis,
)
from tests.support.fakes import SECOND_SPEC, TEST_SPEC, BatchingGradientBackend, GradientBackend


@pytest.mark.parametrize("text, name, values", [
    ("cfg=3,5,7", "cfg", (3.0, 5.0, 7.0)),
    ("steps= 10, 20", "steps", (10, 20)),
    ("prompt=a red circle|a red, square", "prompt", ("a red circle", "a red, square")),
    ("model=embedded-shapes,wan2.1-t2v-1.3b", "model", ("embedded-shapes", "wan2.1-t2v-1.3b")),
])
def test_parse_axis(text, name, values):
    axis = parse_axis(text)
    assert (axis.name, axis.values) == (name, values)


@pytest.mark.parametrize("text, match", [
    ("colour=red", "'colour' is not an axis"),
    ("cfg", "not NAME=VALUES"),
    ("cfg=3,x", "cfg='x' is not a number"),
    ("steps=2.5", "steps='2.5' is not a whole number"),
    ("cfg=3,,5", "cfg has an empty value"),
    ("cfg=3,3", "cfg lists 3.0 twice"),
    ("cfg=nan", "is not a number"),
])
def test_bad_axes_name_the_problem(text, match):
    with pytest.raises(RequestError, match=match) as e:
        parse_axis(text)
    assert e.value.field == "vary"


def test_cells_put_the_model_outermost():
    base = TextToVideoRequest(prompt="p")
    sweep = SweepRequest(base, 2, (make_axis("cfg", [1, 2]), make_axis("model", ["a", "b"])))
    cells = sweep.cells()
    assert [c.axes for c in cells] == [{"cfg": 1.0, "model": "a"}, {"cfg": 2.0, "model": "a"},
                                       {"cfg": 1.0, "model": "b"}, {"cfg": 2.0, "model": "b"}]
    assert [(c.request.model_id, c.request.cfg_scale) for c in cells] == [("a", 1.0), ("a", 2.0), ("b", 1.0), ("b", 2.0)]


@pytest.fixture
def two_models(backend):
    second = GradientBackend(spec=SECOND_SPEC)
    return ModelRegistry({TEST_SPEC.id: RegistryEntry(TEST_SPEC, lambda d, p: backend),
                          SECOND_SPEC.id: RegistryEntry(SECOND_SPEC, lambda d, p: second)}, default_id=TEST_SPEC.id)


def test_a_sweep_makes_every_cell_with_the_same_seeds(settings, two_models):
    from studio.wiring import build_studio

    studio = build_studio(settings, two_models)
    try:
        sweep = SweepRequest(TextToVideoRequest(prompt="a red circle", seed=40), 3,
                             (make_axis("steps", [2, 4]), make_axis("model", [TEST_SPEC.id, SECOND_SPEC.id])))
        sub = studio.jobs.submit_sweep(sweep)
        assert len(sub.cells) == 4 and len(sub.job_ids) == 12
        assert [c.axes["model"] for c in sub.cells] == [TEST_SPEC.id] * 2 + [SECOND_SPEC.id] * 2
        statuses = studio.jobs.wait(sub.job_ids, timeout=60)
        assert {s.status for s in statuses} == {"done"}
        clips = [studio.gallery.get(s.clip_id) for s in statuses]
        assert {c.sweep_id for c in clips} == {sub.sweep_id}
        assert sorted({c.seed for c in clips}) == [40, 41, 42]
        for cell in sub.cells:
            got = [studio.gallery.get(s.clip_id) for s in studio.jobs.wait(cell.job_ids)]
            assert [c.axes for c in got] == [{"seed": s, **cell.axes} for s in (40, 41, 42)]
            assert {(c.model_id, c.steps) for c in got} == {(cell.axes["model"], cell.axes["steps"])}
            assert len({c.batch_id for c in got}) == 1  # a cell is a batch (a stack in the gallery)
    finally:
        studio.close()


@pytest.mark.parametrize("axes, seeds, match", [
    ((("cfg", [1, 25]),), 1, r"vary: cfg=25.0: cfg_scale: 25.0 is outside the model's range 0 to 20"),
    ((("model", ["test-gradient", "nope"]),), 1, "vary: model='nope': model_id: unknown model 'nope'"),
    ((("frames", [8, 9, 10, 11, 12, 13, 14, 15, 16]),), 8, "72 clips; a sweep makes at most 64"),
    ((("cfg", [1]), ("steps", [2]), ("frames", [8])), 1, "3 axes"),
    ((("cfg", [1]), ("cfg", [2])), 1, "cfg is varied twice"),
    ((("strength", [0.2, 0.5]),), 1, "strength is not a setting of t2v"),
])
def test_an_invalid_sweep_queues_nothing(studio, axes, seeds, match):
    sweep = SweepRequest(TextToVideoRequest(prompt="a red circle", model_id=TEST_SPEC.id), seeds,
                         tuple(make_axis(n, v) for n, v in axes))
    with pytest.raises(RequestError, match=match):
        studio.jobs.submit_sweep(sweep)
    from storage.models import Job

    with studio.jobs._session_factory() as session:
        assert session.query(Job).count() == 0


def test_strength_axis_on_v2v(studio, sample_video):
    sweep = SweepRequest(VideoToVideoRequest(prompt="p", video=str(sample_video), model_id=TEST_SPEC.id), 1,
                         (make_axis("strength", [0.3, 0.9]),))
    sub = studio.jobs.submit_sweep(sweep)
    clips = [studio.gallery.get(s.clip_id) for s in studio.jobs.wait(sub.job_ids, timeout=60)]
    assert [c.strength for c in clips] == [0.3, 0.9]
    assert len({c.inputs["video"]["sha256"] for c in clips}) == 1  # the input stored once, shared


def test_seeds_of_a_cell_go_through_the_backend_as_one_batch(settings):
    from studio.wiring import build_studio

    batching = BatchingGradientBackend()
    registry = ModelRegistry({TEST_SPEC.id: RegistryEntry(TEST_SPEC, lambda d, p: batching)})
    studio = build_studio(settings, registry, start=False)  # queue everything first, then start
    try:
        sweep = SweepRequest(TextToVideoRequest(prompt="a red circle", model_id=TEST_SPEC.id, seed=3), 4,
                             (make_axis("cfg", [1, 2]),))
        sub = studio.jobs.submit_sweep(sweep)
        studio.jobs.start()
        statuses = studio.jobs.wait(sub.job_ids, timeout=60)
        assert batching.batch_sizes == [4, 4] and {s.status for s in statuses} == {"done"}
        assert all(s.step == s.total == TEST_SPEC.defaults.steps for s in statuses)
        # each clip of a batch is what a single generation of its seed gives
        import torch

        from pipelines.contract import MediaInputs

        for request, frames in batching.outputs:
            ref = GradientBackend().generate(request, MediaInputs(), torch.Generator().manual_seed(request.seed),
                                             lambda *a: None, lambda: False)
            assert np.array_equal(frames, ref)
        assert sorted(r.seed for r, _ in batching.outputs) == [3, 3, 4, 4, 5, 5, 6, 6]
    finally:
        studio.close()
