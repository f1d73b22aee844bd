"""A real browser: Playwright drives Debian's Chromium against a launched studio (test backend)."""

import shutil

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
def page(app_url, backend, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    url, studio = app_url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(30_000)
        pg.goto(url, timeout=60_000)
        pg.wait_for_selector("#t2v-prompt textarea", timeout=60_000)  # a loaded machine takes a while
        pg.backend = backend
        yield pg, studio
        browser.close()


def test_generate_play_and_find_in_gallery(page):
    pg, studio = page
    pg.fill("#t2v-prompt textarea", "a red circle moving right")
    pg.click("#t2v-generate")
    video = pg.wait_for_selector("#t2v-results video", timeout=60_000)
    pg.wait_for_function("(v) => v.readyState >= 2", arg=video, timeout=20_000)
    pg.click("#t2v-grid button[aria-label='Play/Pause']")
    t0 = pg.evaluate("(v) => v.currentTime", video)
    pg.wait_for_timeout(400)
    assert pg.evaluate("(v) => v.currentTime", video) > t0  # it plays
    assert "Done: 1 of 1" in pg.inner_text("#t2v-status")
    assert not pg.is_visible("#t2v-preview img")  # no intermediate frame left over after Done
    [clip] = studio.gallery.list()
    assert clip.prompt == "a red circle moving right"

    pg.click("button[role=tab]:has-text('Gallery')")
    item = pg.wait_for_selector("#gallery-grid video")
    item.hover()  # thumbnails play on hover
    pg.wait_for_function("(v) => !v.paused && v.currentTime > 0", arg=item, timeout=10_000)
    item.click()
    pg.wait_for_selector("#gallery-player video")
    assert str(clip.seed) in pg.inner_text("body")
    pg.click("#gallery-format label:has-text('gif')")
    pg.click("#gallery-export")
    link = pg.wait_for_selector("#gallery-download a[href*='.gif']", timeout=60_000)
    assert f"a-red-circle-moving-right-seed{clip.seed}" in link.get_attribute("href")  # named, not a hash
    pg.click("#gallery-recall")
    pg.wait_for_function(
        "(seed) => [...document.querySelectorAll('input')].some(i => i.value === String(seed))", arg=clip.seed
    )


def test_bad_value_shows_a_message_and_the_page_keeps_working(page):
    pg, studio = page
    pg.click("#t2v-generate")  # empty prompt
    pg.wait_for_function("() => document.querySelector('#t2v-status').innerText.includes('prompt')")
    assert "empty" in pg.inner_text("#t2v-status")
    pg.fill("#t2v-prompt textarea", "blue square")
    pg.click("#t2v-generate")
    pg.wait_for_function("() => document.querySelector('#t2v-status').innerText.includes('Done')", timeout=60_000)
    assert len(studio.gallery.list()) == 1


def test_inpaint_with_a_painted_mask(page, sample_video):
    pg, studio = page
    pg.click("button[role=tab]:has-text('Inpaint')")
    pg.set_input_files("#inpaint-video input[type=file]", str(sample_video))
    canvas = pg.wait_for_selector("#inpaint-mask-editor canvas")
    # the first frame becomes the editor's background: the editor zooms from its empty 25% to fit it
    pg.wait_for_function("() => !document.querySelector('#inpaint-mask-editor').innerText.includes('25%')")
    pg.wait_for_timeout(500)
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    pg.mouse.move(cx - 30, cy)
    pg.mouse.down()
    for dx in range(-30, 31, 6):
        pg.mouse.move(cx + dx, cy + dx / 4, steps=3)
        pg.wait_for_timeout(30)
    pg.mouse.up()
    pg.wait_for_timeout(500)
    pg.fill("#inpaint-prompt textarea", "a yellow circle")
    pg.click("#inpaint-generate")
    pg.wait_for_function("() => document.querySelector('#inpaint-status').innerText.includes('Done')", timeout=60_000)
    [clip] = studio.gallery.list()
    assert clip.mode == "inpaint" and clip.inputs["mask"]["path"].startswith("inputs/")
    from studio.media import MediaLimits
    from studio.media.masks import read_mask

    mask = read_mask(studio.files.resolve(clip.inputs["mask"]["path"]), MediaLimits())
    assert 0 < mask.mean() < 0.5  # a stroke, not the whole frame


def test_cancel_stops_the_job_and_saves_nothing(page):
    pg, studio = page
    pg.backend.step_delay = 0.2
    pg.fill("#t2v-prompt textarea", "a slow clip")
    pg.click("button:has-text('Settings')")
    pg.fill("#t2v-steps input[type=number]", "40")
    pg.press("#t2v-steps input[type=number]", "Enter")
    pg.click("#t2v-generate")
    pg.wait_for_function("() => document.querySelector('#t2v-status').innerText.includes('step')")
    pg.click("#t2v-cancel")
    pg.wait_for_function("() => document.querySelector('#t2v-status').innerText.includes('cancelled')")
    assert studio.gallery.list() == []
    assert not any((studio.settings.data_dir / "clips").glob("*.mp4"))
