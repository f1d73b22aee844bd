"""Every tab generates on the embedded default model, driven through a real Chromium."""

from pathlib import Path

import pytest

from tests.ui.conftest import serving
from tests.ui.test_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.browser
WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "embedded" / "model.safetensors"


@pytest.fixture
def embedded_page(settings, tmp_path, monkeypatch):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed")
    if not WEIGHTS.is_file():
        pytest.skip("the embedded model's weights are not in assets/embedded yet")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-tmp"))
    from playwright.sync_api import sync_playwright

    from studio.wiring import build_studio

    studio = build_studio(settings)  # the app's own registry: the embedded model is the default
    with serving(studio) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        pg.goto(url + "/")
        pg.wait_for_selector("#t2v-prompt textarea")
        yield pg, studio
        browser.close()


def _generate(pg, mode: str, prompt: str) -> None:
    pg.fill(f"#{mode}-prompt textarea", prompt)
    pg.click(f"#{mode}-generate")
    pg.wait_for_function(f"() => document.querySelector('#{mode}-status').innerText.includes('Done')",
                         timeout=120_000)
    pg.wait_for_selector(f"#{mode}-results video")


def test_all_four_tabs_on_the_embedded_model(embedded_page, sample_image, sample_video, sample_mask):
    pg, studio = embedded_page
    _generate(pg, "t2v", "a red circle moving right on a navy background")

    pg.click("button[role=tab]:has-text('Image to video')")
    pg.set_input_files("#i2v-image input[type=file]", str(sample_image))
    pg.wait_for_selector("#i2v-image img")
    _generate(pg, "i2v", "the red square moves up")

    pg.click("button[role=tab]:has-text('Video to video')")
    pg.set_input_files("#v2v-video input[type=file]", str(sample_video))
    pg.wait_for_selector("#v2v-video video")
    _generate(pg, "v2v", "a green square on black")

    pg.click("button[role=tab]:has-text('Inpaint')")
    pg.set_input_files("#inpaint-video input[type=file]", str(sample_video))
    pg.wait_for_selector("#inpaint-video video")
    pg.set_input_files("#inpaint-mask input[type=file]", str(sample_mask))
    pg.wait_for_timeout(1000)
    _generate(pg, "inpaint", "a yellow circle")

    clips = studio.gallery.list()
    assert sorted(c.mode for c in clips) == ["i2v", "inpaint", "t2v", "v2v"]
    assert {c.model_id for c in clips} == {"embedded-shapes"}


def test_words_the_model_does_not_know_are_named_before_generating(embedded_page):
    pg, _ = embedded_page
    pg.fill("#t2v-prompt textarea", "a cat playing piano")
    pg.wait_for_function("() => document.querySelector('#t2v-prompt-note').innerText"
                         ".includes('unknown words: cat, playing, piano')", timeout=30_000)
    pg.fill("#t2v-prompt textarea", "a red circle moving right")
    pg.wait_for_function("() => !document.querySelector('#t2v-prompt-note').innerText.includes('unknown')",
                         timeout=30_000)


def test_an_i2v_prompt_that_says_only_the_motion_is_read_with_the_image(embedded_page, sample_image):
    """'moves up' on an image of a red square on black: the model is given the image's look with the motion,
    and the gallery's detail says so."""
    pg, studio = embedded_page
    pg.click("button[role=tab]:has-text('Image to video')")
    pg.set_input_files("#i2v-image input[type=file]", str(sample_image))
    pg.wait_for_selector("#i2v-image img")
    read_as = "a red square moves up on a black background"
    pg.fill("#i2v-prompt textarea", "moves up")  # told under the prompt before generating
    pg.wait_for_function("(s) => document.querySelector('#i2v-prompt-note').innerText.includes(s)",
                         arg=f"Read with the image as: {read_as}", timeout=30_000)
    pg.wait_for_timeout(1500)  # and it stays: the upload's own note (prompt still empty) does not land after it
    assert f"Read with the image as: {read_as}" in pg.inner_text("#i2v-prompt-note")
    _generate(pg, "i2v", "moves up")
    [clip] = studio.gallery.list()
    assert clip.prompt == "moves up" and clip.manifest["prompt_read_as"] == read_as
    pg.click("button[role=tab]:has-text('Gallery')")
    pg.wait_for_selector("#gallery-grid video").click()
    pg.wait_for_function("(s) => (document.querySelector('#gallery-info')?.innerText || '').includes(s)",
                         arg=f"read with its input as: {read_as}", timeout=30_000)


def test_a_v2v_prompt_that_says_only_the_change_is_read_with_the_source(embedded_page, sample_video):
    """'a pink triangle' on a video of a white square moving right on black: the page says before generating
    that the model is given the source's motion and background with the change; a full prompt is read as typed."""
    pg, _ = embedded_page
    pg.click("button[role=tab]:has-text('Video to video')")
    pg.set_input_files("#v2v-video input[type=file]", str(sample_video))
    pg.wait_for_selector("#v2v-video video")
    pg.fill("#v2v-prompt textarea", "a pink triangle")
    pg.wait_for_function("(s) => document.querySelector('#v2v-prompt-note').innerText.includes(s)",
                         arg="Read with the video as: a pink triangle moves right on a black background",
                         timeout=30_000)
    pg.fill("#v2v-prompt textarea", "a pink triangle moves left on a navy background")
    pg.wait_for_function("() => !document.querySelector('#v2v-prompt-note').innerText.includes('Read with')",
                         timeout=30_000)


def test_a_source_that_cannot_be_read_is_named_under_the_prompt_before_generating(embedded_page, sample_video,
                                                                                 tmp_path):
    """A truncated video (an mp4 by its content, so the upload is taken) as the v2v source: the note says why
    submitting would refuse it, instead of reading the prompt with nothing."""
    pg, studio = embedded_page
    broken = tmp_path / "holiday.mp4"
    data = sample_video.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    pg.click("button[role=tab]:has-text('Video to video')")
    pg.set_input_files("#v2v-video input[type=file]", str(broken))
    pg.fill("#v2v-prompt textarea", "a pink triangle")
    pg.wait_for_function("() => document.querySelector('#v2v-prompt-note').innerText.includes('holiday.mp4:')",
                         timeout=30_000)
    note = pg.inner_text("#v2v-prompt-note")
    assert "Read with" not in note and str(tmp_path) not in note  # the reason, not a server path
    assert studio.gallery.list() == []
