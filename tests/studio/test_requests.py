import pytest

from pipelines.contract import (
    ImageToVideoRequest,
    InpaintRequest,
    RequestError,
    TextToVideoRequest,
    VideoToVideoRequest,
    request_from_params,
)
from studio.ui.widgets import request_from_widgets, widgets_from_request
from tests.support.fakes import TEST_SPEC


def resolved(req, seed=7):
    r = req.resolve(TEST_SPEC, seed)
    r.validate(TEST_SPEC)
    return r


def test_resolve_fills_model_defaults_and_pins_seed():
    r = resolved(TextToVideoRequest(prompt="a red circle", model_id=TEST_SPEC.id))
    assert (r.seed, r.steps, r.frames, r.width, r.height) == (7, 4, 8, 32, 32)
    assert r.cfg_scale == 2.0


def test_explicit_seed_is_kept():
    assert resolved(TextToVideoRequest(prompt="x", seed=123)).seed == 123


@pytest.mark.parametrize(
    "kwargs, field, words",
    [
        (dict(prompt=""), "prompt", "empty"),
        (dict(prompt="x", width=63), "width", "multiple of 8"),
        (dict(prompt="x", width=8), "width", "outside"),
        (dict(prompt="x", steps=0), "steps", "outside"),
        (dict(prompt="x", frames=1000), "frames", "outside"),
        (dict(prompt="x", cfg_scale=float("nan")), "cfg_scale", "not a number"),
        (dict(prompt="x", seed=-5), "seed", "not an integer"),
        (dict(prompt="x" * 3000), "prompt", "limit"),
        (dict(prompt="x", profile="turbo"), "profile", "not a profile"),
        (dict(prompt="a red\x00circle"), "prompt", "NUL"),
        (dict(prompt="a red \ud800 circle"), "prompt", "unpaired surrogate"),
        (dict(prompt="x", negative_prompt="\udfff"), "negative_prompt", "unpaired surrogate"),
        (dict(prompt=["x"]), "prompt", "must be text"),
        (dict(prompt="x", seed="abc"), "seed", "not an integer"),
        (dict(prompt="x", seed=True), "seed", "not an integer"),
        (dict(prompt="x", cfg_scale=[5]), "cfg_scale", "[5]"),
        (dict(prompt="x", steps="4"), "steps", "not a whole number"),
    ],
)
def test_validation_names_the_bad_field(kwargs, field, words):
    with pytest.raises(RequestError) as e:
        resolved(TextToVideoRequest(**kwargs))
    assert e.value.field == field
    assert words in str(e.value)


def test_media_and_strength_are_checked():
    with pytest.raises(RequestError, match="strength"):
        resolved(VideoToVideoRequest(prompt="x", video="v.mp4", strength=1.5))
    with pytest.raises(RequestError, match="image: is required"):
        resolved(ImageToVideoRequest(prompt="x", image=""))


def test_strength_defaults_per_mode():
    import dataclasses

    from studio.ui.common import setting_props

    assert resolved(VideoToVideoRequest(prompt="x", video="v.mp4")).strength == 0.6
    assert resolved(InpaintRequest(prompt="x", video="v.mp4", mask="m.png")).strength == 1.0
    # a model may start inpainting from the input (the embedded model does, at 0.75); a given strength wins
    spec = dataclasses.replace(TEST_SPEC, defaults=dataclasses.replace(TEST_SPEC.defaults, inpaint_strength=0.8))
    assert InpaintRequest(prompt="x", video="v.mp4", mask="m.png").resolve(spec, 1).strength == 0.8
    assert InpaintRequest(prompt="x", video="v.mp4", mask="m.png", strength=1.0).resolve(spec, 1).strength == 1.0
    assert VideoToVideoRequest(prompt="x", video="v.mp4").resolve(spec, 1).strength == 0.6
    assert setting_props(spec, "inpaint")["strength"]["value"] == 0.8
    assert setting_props(None, "inpaint")["strength"]["value"] == 1.0  # no model registered
    assert setting_props(None, "v2v")["strength"]["value"] == 0.6


def test_mode_the_model_cannot_do_is_refused():
    from dataclasses import replace

    t2v_only = replace(TEST_SPEC, modes=("t2v",))
    r = VideoToVideoRequest(prompt="x", video="v.mp4").resolve(t2v_only, 1)
    with pytest.raises(RequestError, match="cannot do v2v"):
        r.validate(t2v_only)


@pytest.mark.parametrize(
    "req",
    [
        TextToVideoRequest(prompt="a", seed=1, steps=3),
        ImageToVideoRequest(prompt="b", image="inputs/aa/x.png", seed=2),
        VideoToVideoRequest(prompt="c", video="inputs/bb/y.mp4", strength=0.3, seed=3),
        InpaintRequest(prompt="d", video="inputs/bb/y.mp4", mask="inputs/cc/m.png", strength=0.9, seed=4),
    ],
)
def test_params_round_trip_and_widgets_round_trip(req):
    assert request_from_params(req.to_params()) == req
    assert request_from_widgets(req.mode, widgets_from_request(req)) == req


def test_widgets_map_random_seed_and_reject_fractions():
    r = request_from_widgets("t2v", {"prompt": "x", "seed": -1, "steps": 5.0, "profile": "default"})
    assert r.seed is None and r.steps == 5 and r.profile is None
    with pytest.raises(RequestError, match="width"):
        request_from_widgets("t2v", {"prompt": "x", "width": 32.5})
    with pytest.raises(RequestError, match="upload an image"):
        request_from_widgets("i2v", {"prompt": "x"})
    with pytest.raises(RequestError, match="paint the region to regenerate on the first frame, or upload a mask"):
        request_from_widgets("inpaint", {"prompt": "x", "video": "v.mp4"})


def test_model_change_updates_every_setting_from_the_spec():
    import dataclasses

    from studio.ui.common import SETTINGS, setting_props

    spec = dataclasses.replace(TEST_SPEC, profiles=("quality", "low-vram"),
                               defaults=dataclasses.replace(TEST_SPEC.defaults, strength=0.7))
    props = setting_props(spec, "v2v")
    assert set(props) == set(SETTINGS)
    assert props["steps"]["value"] == spec.defaults.steps
    # steps are not clamped by the widget: an out-of-range value reaches validation, which names it
    assert "maximum" not in props["steps"] and f"to {spec.limits.steps.max:g}" in props["steps"]["info"]
    assert props["cfg_scale"]["value"] == spec.defaults.cfg_scale
    assert props["width"]["value"] == spec.defaults.width and "to" in props["width"]["info"]
    assert props["profile"]["choices"] == ["quality", "low-vram"] and props["profile"]["interactive"]
    assert props["strength"]["value"] == 0.7  # the model's strength, not a constant of the page
    assert setting_props(spec, "inpaint")["strength"]["value"] == 1.0
    plain = setting_props(TEST_SPEC, "t2v")["profile"]
    assert plain == {"choices": ["default"], "value": "default", "interactive": False}
    assert setting_props(None, "t2v")["steps"]["value"] == 20  # no model registered: still buildable


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {"HOME": "/home/ann"}, "/home/ann/.local/share/video-diffusion-studio"),
    ("linux", {"HOME": "/home/ann", "XDG_DATA_HOME": "/data"}, "/data/video-diffusion-studio"),
    ("darwin", {"HOME": "/Users/ann"}, "/Users/ann/Library/Application Support/video-diffusion-studio"),
    ("win32", {"HOME": "C:/Users/ann", "LOCALAPPDATA": "C:/Users/ann/AppData/Local"},
     "C:/Users/ann/AppData/Local/video-diffusion-studio"),
])
def test_the_default_data_dir_is_per_user_not_per_working_directory(platform, env, expected):
    from pathlib import Path

    from studio.settings import Settings, default_data_dir

    assert default_data_dir(env, platform) == Path(expected)
    assert Settings.from_env({**env, "STUDIO_DATA_DIR": "/srv/studio"}).data_dir == Path("/srv/studio")


def test_a_refusal_shows_further_lines_as_copyable_lines():
    from studio.ui.generate import error_markdown

    text = error_markdown(RequestError("model_id", "wan is not available offline.\nDownload it:\n  hf download Wan"))
    assert text.startswith("⚠️ **model_id: wan is not available offline.**")
    assert "```\nDownload it:\nhf download Wan\n```" in text
