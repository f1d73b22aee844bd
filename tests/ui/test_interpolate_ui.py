"""Frame interpolation through a launched studio: the `interpolate_clip` API endpoint, the gallery's
"Interpolate 2x" button and the generation tabs' "Then interpolate" setting, in Chromium (moving-square backend)."""

import os
import shutil
from pathlib import Path

import pytest
from gradio_client import Client

from pipelines.contract import ModelRegistry, RegistryEntry, TextToVideoRequest
from tests.support.fakes import SQUARE_SPEC, SquareBackend
from tests.ui.test_browser import page  # noqa: F401  (the launched studio in Chromium)


@pytest.fixture
def registry():
    backend = SquareBackend()
    return ModelRegistry({SQUARE_SPEC.id: RegistryEntry(SQUARE_SPEC, lambda device, profile: backend)},
                         default_id=SQUARE_SPEC.id)


def _source(studio):
    sub = studio.facade.submit(TextToVideoRequest(prompt="a yellow square moving right", seed=3))
    [status] = studio.facade.wait(sub.job_ids, timeout=60)
    return studio.facade.clip(status.clip_id)


def test_interpolate_clip_endpoint_returns_the_mp4_and_the_clip(app_url):
    url, studio = app_url
    source = _source(studio)
    c = Client(url, verbose=False)
    video, [clip] = c.predict(clip_id=source.id, factor=2, api_name="/interpolate_clip")
    assert (clip["parent"], clip["fps"], clip["frames"], clip["mode"]) == (source.id, 16, 7, "t2v")
    assert clip["interpolation"] == {"factor": 2, "method": "dis-flow", "source": source.id, "source_fps": 8,
                                     "source_frames": 4}
    assert clip["video_url"] == f"/media/clip/{clip['id']}.mp4" and "path" not in clip
    assert Path(video).read_bytes() == studio.gallery.get(clip["id"]).video.read_bytes()
    with pytest.raises(Exception, match="factor: 3 is not one of 2, 4"):
        c.predict(clip_id=source.id, factor=3, api_name="/interpolate_clip")
    with pytest.raises(Exception, match="no clip 'nope'"):
        c.predict(clip_id="nope", api_name="/interpolate_clip")
    api = c.view_api(return_format="dict", print_info=False)["named_endpoints"]["/interpolate_clip"]
    assert [r["python_type"]["type"] for r in api["returns"]] == ["filepath", "list[dict(str, Any)]"]


@pytest.mark.browser
def test_gallery_button_interpolates_and_shows_the_new_clip(page):
    pg, studio = page
    source = _source(studio)
    pg.click("button[role=tab]:has-text('Gallery')")
    pg.click(f"#gallery-grid .studio-tile[data-clip='{source.id}'] figcaption")
    pg.wait_for_selector("#gallery-player video")
    pg.click("#gallery-interpolate-2")
    pg.wait_for_function("() => document.querySelector('#gallery-info').innerText.includes('interpolated 2x')",
                         timeout=60_000)
    [child] = studio.facade.children(source.id)
    assert (child.fps, child.frames) == (16, 7)
    assert pg.get_attribute("#gallery-player video", "data-clip") == child.id
    assert "7 frames @ 16 fps" in pg.inner_text("#gallery-info")
    shots = os.environ.get("STUDIO_SHOTS")  # where to keep a screenshot of the detail, to look at
    if shots:
        pg.wait_for_function("() => document.querySelector('#gallery-player video').readyState >= 2")
        pg.locator("#gallery-detail").screenshot(path=str(Path(shots) / "gallery-detail-interpolated.png"))
        pg.screenshot(path=str(Path(shots) / "gallery-page.png"), full_page=True)


@pytest.mark.browser
def test_then_interpolate_after_generating(page):
    pg, studio = page
    pg.fill("#t2v-prompt textarea", "a yellow square moving right")
    pg.click("#t2v-settings button:has-text('Settings')")
    pg.click("#t2v-then-interpolate input")
    pg.click("ul[role=listbox] li:has-text('×2 frame rate')")
    pg.click("#t2v-generate")
    pg.wait_for_function("() => document.querySelector('#t2v-status').innerText.includes('Interpolated 1 of 1')",
                         timeout=90_000)
    clips = studio.gallery.list()
    [child] = [c for c in clips if c.parent_id]
    assert (child.fps, child.frames) == (16, 7) and child.parent_id in {c.id for c in clips}
    assert pg.locator("#t2v-grid video").count() == 2
