"""Frame interpolation (2x / 4x by optical flow): the algorithm on a rendered moving square, then the job
through the studio (lineage, recipe, recall, limits, viewers, cancel) and `studio interpolate`."""

import dataclasses
import json

import cv2
import numpy as np
import pytest

from pipelines.contract import ModelRegistry, RegistryEntry, RequestError, TextToVideoRequest
from studio.media.interpolate import interpolate, output_frames
from tests.support.fakes import SQUARE_RGB, SQUARE_SPEC, SquareBackend, moving_square

SIZE, STEP, X0, Y0 = 32, 8, 8, 16  # moving_square's defaults: a 32 px square, 8 px a frame, on 64x96 frames


def square_blobs(frame: np.ndarray, tolerance: int = 60) -> tuple[int, int, float, float]:
    """(connected blobs of square-coloured pixels, their area, centroid x, centroid y)."""
    mask = (np.abs(frame.astype(int) - SQUARE_RGB).max(axis=-1) < tolerance).astype(np.uint8)
    blobs = cv2.connectedComponents(mask, connectivity=8)[0] - 1
    ys, xs = np.nonzero(mask)
    return blobs, int(mask.sum()), float(xs.mean()) if len(xs) else -1.0, float(ys.mean()) if len(ys) else -1.0


def assert_square_at(frame: np.ndarray, x: float, what: str) -> None:
    """One blob of about the square's area (no ghosts), centred within 1 px of where the square is at x."""
    blobs, area, cx, cy = square_blobs(frame)
    assert blobs == 1, f"{what}: {blobs} blobs of the square's colour (ghosts)"
    assert abs(area - SIZE * SIZE) <= 0.1 * SIZE * SIZE, f"{what}: area {area}, the square has {SIZE * SIZE}"
    assert abs(cx - (x + (SIZE - 1) / 2)) <= 1.0 and abs(cy - (Y0 + (SIZE - 1) / 2)) <= 1.0, \
        f"{what}: centroid ({cx:.1f}, {cy:.1f}), expected x {x + (SIZE - 1) / 2:.1f}"


@pytest.mark.parametrize("method", ["dis-flow", "farneback"])
@pytest.mark.parametrize("factor", [2, 4])
def test_the_square_moves_in_even_steps_as_one_blob(factor, method):
    source = moving_square(4)
    out = interpolate(source, factor, method)
    assert out.shape == (output_frames(4, factor), 64, 96, 3) == ((4 - 1) * factor + 1, 64, 96, 3)
    assert (out[::factor] == source).all()  # the source frames are kept at their places
    for j, frame in enumerate(out):  # 2x: half steps (4 px); 4x: quarter steps (2 px)
        assert_square_at(frame, X0 + STEP * j / factor, f"output frame {j} of {len(out)}")


def test_the_check_tells_a_cross_fade_and_a_duplicate_from_motion():
    """The checks above would fail the shortcuts the issue rules out."""
    a, b = moving_square(2)
    cross_fade = ((a.astype(np.uint16) + b) // 2).astype(np.uint8)
    with pytest.raises(AssertionError, match="area"):
        assert_square_at(cross_fade, X0 + STEP / 2, "cross-fade")
    with pytest.raises(AssertionError, match="centroid"):
        assert_square_at(a, X0 + STEP / 2, "duplicate")


def test_on_a_textured_background_it_beats_a_cross_fade_most_where_the_square_moved():
    """On a textured background the flow is imperfect at the square's edges (thin strips there keep errors
    of 15-30 levels): the whole frame must be far closer to the truth than a cross-fade, the square itself
    right, and the background it uncovers closer than the cross-fade's ghost."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (64, 96, 3)).astype(np.float32), (0, 0), 2)
    texture = ((texture - texture.mean()) * 3 + 110).clip(0, 255).astype(np.uint8)
    source = moving_square(3, background=texture)
    out = interpolate(source, 2)
    for j in (1, 3):
        x = X0 + STEP * j // 2  # where the square is at the in-between frame
        truth = moving_square(1, background=texture, x0=x)[0]
        fade = ((source[j // 2].astype(np.uint16) + source[j // 2 + 1]) // 2)

        def err(frame, where=np.s_[:, :]):
            return np.abs(frame[where].astype(int) - truth[where]).mean()

        assert err(out[j]) < 0.6 * err(fade), (err(out[j]), err(fade))
        square = np.s_[Y0:Y0 + SIZE, x:x + SIZE]
        assert err(out[j], square) < 2.0 < 10 < err(fade, square)
        uncovered = np.s_[Y0:Y0 + SIZE, x - STEP // 2:x]
        assert err(out[j], uncovered) < 0.75 * err(fade, uncovered)


def test_cancel_between_pairs():
    from pipelines.contract import Cancelled

    with pytest.raises(Cancelled):
        interpolate(moving_square(3), 2, should_cancel=lambda: True)


# ---- through the studio -----------------------------------------------------------------------------


@pytest.fixture
def registry():
    backend = SquareBackend()
    return ModelRegistry({SQUARE_SPEC.id: RegistryEntry(SQUARE_SPEC, lambda device, profile: backend)},
                         default_id=SQUARE_SPEC.id)


def generate(facade, account=None, **fields):
    sub = facade.submit(TextToVideoRequest(prompt="a yellow square moving right", seed=3, **fields), account=account)
    [status] = facade.wait(sub.job_ids, timeout=60)
    assert status.status == "done", status.error
    return facade.clip(status.clip_id)


def cli_source(settings, registry, monkeypatch):
    """A clip made in the data dir, then the CLI's registry swapped for `registry` (no model is needed)."""
    from studio.wiring import build_studio

    built = build_studio(settings, registry)
    try:
        source = generate(built.facade)
    finally:
        built.close()
    monkeypatch.setattr("studio.wiring.build_registry", lambda s, extra=None: registry)
    return source


def interpolated(facade, clip_id, factor, account=None):
    sub = facade.interpolate(clip_id, factor, account=account)
    [status] = facade.wait(sub.job_ids, timeout=60)
    assert status.status == "done", status.error
    return facade.clip(status.clip_id)


def test_interpolating_a_clip_makes_a_child_clip_with_the_source_recipe_and_the_step(studio):
    from studio.media.video import read_mp4_metadata, read_video

    facade = studio.facade
    source = generate(facade)
    assert (source.frames, source.fps) == (4, 8)
    for factor in (2, 4):
        clip = interpolated(facade, source.id[:8], factor)  # a prefix works, as on the page
        assert clip.parent_id == source.id and clip.id in {c.id for c in facade.children(source.id)}
        assert (clip.frames, clip.fps, clip.width, clip.height) == ((4 - 1) * factor + 1, 8 * factor, 96, 64)
        assert (clip.mode, clip.model_id, clip.seed, clip.prompt) == ("t2v", SQUARE_SPEC.id, 3, source.prompt)
        step = {"factor": factor, "method": "dis-flow", "source": source.id, "source_fps": 8, "source_frames": 4}
        assert clip.params == {**source.params, "interpolation": step}
        assert clip.manifest["interpolation"]["opencv"] == cv2.__version__
        assert facade.recall(clip.id) == facade.recall(source.id)  # recall gives the source's generation request
        meta = read_mp4_metadata(clip.video)
        assert meta["interpolation"] == step and meta["parent"] == source.id
        assert json.loads(clip.video.with_suffix(".json").read_text())["params"]["interpolation"] == step
        frames, fps = read_video(clip.video, studio.settings.media_limits)
        assert (len(frames), round(fps)) == (clip.frames, 8 * factor)
        for j, frame in enumerate(frames):  # through H.264 and back
            assert_square_at(frame, X0 + STEP * j / factor, f"{factor}x frame {j}")
    from studio.clips import clip_json

    assert clip_json(clip)["interpolation"] == step and clip_json(source)["interpolation"] is None


def test_refused_before_queueing(studio):
    facade = studio.facade
    one = generate(facade, frames=1)
    with pytest.raises(RequestError, match="factor: 3 is not one of 2, 4"):
        facade.interpolate(one.id, 3)
    with pytest.raises(RequestError, match="no clip 'nope'"):
        facade.interpolate("nope", 2)
    with pytest.raises(RequestError, match="1 frame"):
        facade.interpolate(one.id, 2)
    studio.media.limits = dataclasses.replace(studio.media.limits, max_frames=10)
    four = generate(facade)
    with pytest.raises(RequestError, match="4 frames x4 make 13 frames; the limit is 10"):
        facade.interpolate(four.id, 4)
    [status] = facade.wait(facade.interpolate(four.id, 2).job_ids, timeout=60)  # 7 frames: within
    assert status.status == "done" and facade.clip(status.clip_id).frames == 7


def test_viewers_cannot_interpolate_and_members_become_the_author(settings, registry):
    from studio.accounts import NotAllowed
    from studio.wiring import build_studio

    built = build_studio(dataclasses.replace(settings, auth=True), registry)
    try:
        built.accounts.add("vic", "vic-password", "viewer")
        built.accounts.add("bob", "bob-password", "member")
        vic, bob = built.accounts.get("vic"), built.accounts.get("bob")
        source = generate(built.facade, account=bob)
        with pytest.raises(NotAllowed, match="viewers cannot interpolate"):
            built.facade.interpolate(source.id, 2, account=vic)
        clip = interpolated(built.facade, source.id, 2, account=bob)
        assert clip.author == "bob" and json.loads(clip.video.with_suffix(".json").read_text())["author"] == "bob"
    finally:
        built.close()


def test_a_queued_interpolation_can_be_cancelled_and_a_deleted_source_fails_the_job(settings, registry):
    from studio.wiring import build_studio

    built = build_studio(settings, registry, start=False)  # no worker yet: jobs wait in the queue
    try:
        facade = built.facade
        sub = facade.submit(TextToVideoRequest(prompt="x", seed=1))
        built.jobs.start()
        source = facade.clip(facade.wait(sub.job_ids, timeout=60)[0].clip_id)
        built.jobs.stop()
        cancelled = facade.interpolate(source.id, 2)
        doomed = facade.interpolate(source.id, 2)
        facade.cancel(cancelled.job_ids)
        facade.delete(source.id)
        built.jobs.start()
        [a, b] = facade.wait([*cancelled.job_ids, *doomed.job_ids], timeout=60)
        assert a.status == "cancelled"
        assert b.status == "failed" and "was deleted" in b.error
        assert built.gallery.list() == []
    finally:
        built.close()


def test_cli_interpolate_prints_the_new_clip_as_gallery_show_does(settings, registry, capsys, monkeypatch):
    from studio.cli import main

    source = cli_source(settings, registry, monkeypatch)
    code = main(["interpolate", "--clip", source.id[:8], "--factor", "4", "--json", "--data-dir", str(settings.data_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    clip = json.loads(out)
    assert (clip["parent"], clip["fps"], clip["frames"]) == (source.id, 32, 13)
    assert clip["interpolation"]["factor"] == 4 and clip["mode"] == "t2v"
    assert main(["gallery", "show", clip["id"], "--json", "--data-dir", str(settings.data_dir)]) == 0
    shown = json.loads(capsys.readouterr()[0])
    assert shown.keys() == clip.keys() and {k: v for k, v in shown.items() if k != "seconds"} == \
        {k: v for k, v in clip.items() if k != "seconds"}
    with pytest.raises(SystemExit) as bad:
        main(["interpolate", "--clip", source.id, "--factor", "3", "--data-dir", str(settings.data_dir)])
    assert bad.value.code == 2 and "invalid choice: 3" in capsys.readouterr()[1]
    code = main(["interpolate", "--clip", "nope", "--data-dir", str(settings.data_dir)])
    assert code == 2 and "no clip 'nope'" in capsys.readouterr()[1]
