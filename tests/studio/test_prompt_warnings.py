"""Words the model will not follow are named (#16): before generating (the page), and with every clip
(`generate --json`, the API), instead of a clip that silently ignores them."""

import json

import pytest

from pipelines.embedded.backend import embedded_entry
from pipelines.embedded.text import Tokenizer
from tests.studio.test_cli import studio as run_studio


def test_the_tokenizer_names_unknown_and_unread_words():
    tok = Tokenizer(max_len=8)
    assert tok.warnings("a red circle moving right") == []
    assert tok.warnings("a cat playing piano near a cat") == ["unknown words: cat, playing, piano, near"]
    assert tok.warnings("Ruby CIRCLES on a grey disk") == []  # aliases, plurals and case are understood
    assert tok.warnings("red " * 8) == ["only the first 7 words are read; the rest is ignored"]
    assert tok.warnings("") == []


def test_the_shipped_model_knows_the_readme_examples():
    warn = embedded_entry().prompt_warnings
    for prompt in ("a red circle moving right on a navy background", "moves up", "a pink triangle",
                   "Square. Blue. Moves to the bottom. Gray background."):
        assert warn(prompt) == [], prompt
    assert warn("a cat playing piano") == ["unknown words: cat, playing, piano"]


def test_a_model_without_weights_or_unknown_says_nothing(tmp_path, studio):
    assert embedded_entry(tmp_path).prompt_warnings("a cat") == []  # loading says what is missing
    assert studio.facade.prompt_warnings("no-such-model", "a cat") == []


def test_generate_json_gives_each_clip_its_warnings(tmp_path):
    out = run_studio("generate", "--prompt", "a cat playing piano", "--steps", "2", "--seeds", "2", "--json",
                     data_dir=tmp_path, check=True)
    rows = json.loads(out.stdout)
    assert [r["warnings"] for r in rows] == [["unknown words: cat, playing, piano"]] * 2
    plain = run_studio("generate", "--prompt", "a red piano", "--steps", "2", data_dir=tmp_path, check=True)
    assert "warning: unknown words: piano" in plain.stderr and plain.stdout.strip().endswith(".mp4")


@pytest.fixture
def app_studio(settings):
    from studio.wiring import build_studio

    s = build_studio(settings)  # the app's own registry: the embedded model is the default
    yield s
    s.close()


def test_what_an_i2v_or_v2v_prompt_is_read_as_is_told_before_generating(app_studio, sample_image, sample_video,
                                                                          tmp_path):
    """The page shows it under the prompt (the clip's prompt_read_as, known before anything is queued)."""
    read = app_studio.facade.prompt_read_as
    size = dict(frames=16, width=64, height=64)
    assert read(None, "i2v", "moves up", str(sample_image), **size) == "a red square moves up on a black background"
    assert read(None, "v2v", "a pink triangle", str(sample_video), **size) == \
        "a pink triangle moves right on a black background"
    # read as typed: a prompt that names everything, another mode, no input yet
    assert read(None, "i2v", "a red square moves up on a black background", str(sample_image), **size) is None
    assert read(None, "t2v", "moves up", str(sample_image), **size) is None
    assert read(None, "i2v", "moves up", None, **size) is None
    # a model that is not there: nothing to tell (said where the model is picked)
    assert read("no-such-model", "i2v", "moves up", str(sample_image), **size) is None
    # an input that cannot be read: the reason submitting would give, before it is tried
    from pipelines.contract import RequestError
    from studio.media.limits import MediaError

    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(MediaError, match="image"):
        read(None, "i2v", "moves up", str(tmp_path / "broken.png"), **size)
    with pytest.raises(MediaError):
        read(None, "i2v", "moves up", str(tmp_path / "absent.png"), **size)
    # a size the model refuses is named and not decoded at all (a 4096x4096 preview would be gigabytes)
    with pytest.raises(RequestError, match="width|height|frames"):
        read(None, "v2v", "a pink triangle", str(sample_video), frames=200, width=4096, height=4096)
    assert app_studio.gallery.list() == []  # nothing was stored or queued


def test_the_preview_is_what_the_model_is_given(app_studio, sample_video):
    """The same reading as generating: the clip's prompt_read_as equals the preview."""
    from pipelines.contract import VideoToVideoRequest

    size = dict(frames=16, width=64, height=64)
    before = app_studio.facade.prompt_read_as(None, "v2v", "make it blue", str(sample_video), **size)
    sub = app_studio.facade.submit(VideoToVideoRequest(prompt="make it blue", video=str(sample_video), steps=2),
                                   local_paths=True)
    app_studio.facade.wait(sub.job_ids, timeout=120)
    [clip] = app_studio.gallery.list()
    assert before == "a blue square moves right on a black background" == clip.manifest["prompt_read_as"]


def test_the_words_an_edit_or_motion_prompt_is_phrased_with_are_not_called_unknown():
    """'make it blue' names blue; 'make' and 'it' name nothing to follow, and the reader takes the prompt as meant."""
    warn = embedded_entry().prompt_warnings
    for prompt in ("make it blue", "a triangle instead", "it just moves up", "replace it with a pink square this time",
                   "on a black background"):
        assert warn(prompt) == [], prompt
    assert warn("a triangle instead plus a black background") == []
    assert warn("make it a cat") == ["unknown words: cat"]


def test_a_model_that_reads_prompts_as_typed_decodes_nothing_for_the_preview(studio, sample_video, monkeypatch):
    """The test backend has no prompt_read_as: the page's note never decodes the upload for it."""
    monkeypatch.setattr(studio.facade._media, "preview", lambda *a: pytest.fail("decoded for a model that cannot read it"))
    assert studio.facade.prompt_read_as(None, "v2v", "a pink triangle", str(sample_video), frames=8, width=32,
                                        height=32) is None
