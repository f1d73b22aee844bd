"""Frame interpolation by RIFE through the studio: weights from a local file only (STUDIO_RIFE_WEIGHTS, else
<data dir>/models/rife/flownet.pkl), chosen automatically where the file exists, named by --method on the
CLI; the recipe records the method, the weights' file name and sha256; wrong or missing weights are refused
with a message naming the file (or the setting and path) and the version expected. Random weights in the
published layout: their frames mean nothing, so these tests check the plumbing, not the picture
(tests/pipelines/test_rife.py checks what the network computes)."""

import dataclasses
import hashlib
import json

import pytest
import torch

from pipelines.contract import RequestError
from studio.settings import Settings
from tests.support.fakes import rife_weights_file
from tests.studio.test_interpolate import cli_source, generate, registry  # noqa: F401  (a fixture)


def finished(facade, submission):
    [status] = facade.wait(submission.job_ids, timeout=120)
    return status


def test_the_settings_default_and_the_variable():
    s = Settings.from_env({"STUDIO_DATA_DIR": "/srv/studio"})
    assert s.rife_weights is None and str(s.rife_weights_path) == "/srv/studio/models/rife/flownet.pkl"
    s = Settings.from_env({"STUDIO_DATA_DIR": "/srv/studio", "STUDIO_RIFE_WEIGHTS": "/w/rife46.pkl"})
    assert str(s.rife_weights_path) == "/w/rife46.pkl"


def test_with_the_weights_file_in_the_data_dir_rife_is_used_and_recorded(studio):
    from studio.media.video import read_mp4_metadata, read_video

    weights = rife_weights_file(studio.settings.data_dir / "models" / "rife" / "flownet.pkl")
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    facade = studio.facade
    source = generate(facade)
    source_frames, _ = read_video(source.video, studio.settings.media_limits)
    for factor in (2, 4):
        status = finished(facade, facade.interpolate(source.id, factor))  # no method named: rife, the file exists
        assert status.status == "done", status.error
        clip = facade.clip(status.clip_id)
        assert (clip.frames, clip.fps, clip.width, clip.height) == ((4 - 1) * factor + 1, 8 * factor, 96, 64)
        step = {"factor": factor, "method": "rife", "rife_version": "4.6", "weights": "flownet.pkl",
                "weights_sha256": sha, "source": source.id, "source_fps": 8, "source_frames": 4}
        assert clip.params == {**source.params, "interpolation": step}
        assert {k: clip.manifest["interpolation"][k] for k in step} == step
        assert read_mp4_metadata(clip.video)["interpolation"] == step
        assert json.loads(clip.video.with_suffix(".json").read_text())["params"]["interpolation"] == step
        frames, fps = read_video(clip.video, studio.settings.media_limits)
        assert (len(frames), round(fps)) == (clip.frames, 8 * factor)
        kept = frames[::factor].astype(int) - source_frames  # the source frames at their places (through H.264)
        assert abs(kept).mean() < 3
    # a method named wins over the automatic choice
    status = finished(facade, facade.interpolate(source.id, 2, method="dis-flow"))
    assert status.status == "done" and facade.clip(status.clip_id).params["interpolation"]["method"] == "dis-flow"


def test_weights_of_another_layout_fail_the_job_naming_the_file_and_the_version(settings, registry):
    from studio.wiring import build_studio

    path = settings.data_dir.parent / "weights" / "rife422.pkl"

    def newer(state):  # a RIFE 4.2x file: a feature head, wider last convs
        state["module.encode.cnn0.weight"] = torch.zeros(16, 3, 3, 3)

    rife_weights_file(path, edit=newer)
    built = build_studio(dataclasses.replace(settings, rife_weights=path), registry)
    try:
        source = generate(built.facade)
        status = finished(built.facade, built.facade.interpolate(source.id, 2))
        assert status.status == "failed"
        assert status.error.startswith("method: the RIFE weights rife422.pkl (STUDIO_RIFE_WEIGHTS): not RIFE 4.6 "
                                       "weights (Practical-RIFE 4.6 flownet.pkl")
        assert "encode.cnn0.weight" in status.error and str(path.parent) not in status.error  # no server path
        assert [c.id for c in built.gallery.list()] == [source.id]
    finally:
        built.close()


def test_naming_rife_without_the_file_is_refused_before_queueing(studio):
    source = generate(studio.facade)
    expected = str(studio.settings.data_dir / "models" / "rife" / "flownet.pkl")
    with pytest.raises(RequestError, match="rife needs a RIFE 4.6 weights file") as e:
        studio.facade.interpolate(source.id, 2, method="rife")
    assert "STUDIO_RIFE_WEIGHTS" in str(e.value) and repr(expected) in str(e.value)
    status = finished(studio.facade, studio.facade.interpolate(source.id, 2))  # none named, no file: optical flow
    assert status.status == "done", status.error
    assert studio.facade.clip(status.clip_id).params["interpolation"]["method"] == "dis-flow"


def test_cli_method_rife_without_and_with_the_file(settings, registry, capsys, monkeypatch):
    from studio.cli import main

    source = cli_source(settings, registry, monkeypatch)
    monkeypatch.delenv("STUDIO_RIFE_WEIGHTS", raising=False)
    args = ["interpolate", "--clip", source.id[:8], "--method", "rife", "--data-dir", str(settings.data_dir)]
    assert main(args) == 2
    err = capsys.readouterr()[1]
    assert "STUDIO_RIFE_WEIGHTS" in err and str(settings.data_dir / "models" / "rife" / "flownet.pkl") in err

    weights = rife_weights_file(settings.data_dir.parent / "elsewhere" / "flownet.pkl", seed=5)
    monkeypatch.setenv("STUDIO_RIFE_WEIGHTS", str(weights))
    assert main([*args, "--factor", "4", "--json"]) == 0
    clip = json.loads(capsys.readouterr()[0])
    assert (clip["parent"], clip["fps"], clip["frames"]) == (source.id, 32, 13)
    assert clip["interpolation"]["method"] == "rife"
    assert clip["interpolation"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
