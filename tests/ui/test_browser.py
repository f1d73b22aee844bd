"""A real browser: Playwright drives Debian's Chromium against a launched studio (test backend)."""

import shutil

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
def page(app_url, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    url, studio = app_url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(30_000)
        pg.goto(url)
        pg.wait_for_selector("#t2v-prompt textarea")
        yield pg, studio
        browser.close()


def test_generate_play_and_find_in_gallery(page):
    pg, studio = page
    pg.fill("#t2v-prompt textarea", "a red circle moving right")
    pg.click("#t2v-generate")
    video = pg.wait_for_selector("#t2v-results video", timeout=60_000)
    playing = pg.wait_for_function(
        """(v) => { v.muted = true; v.play(); return v.readyState >= 2 && v.currentTime > 0; }""",
        arg=video, timeout=20_000,
    )
    assert playing
    assert "Done: 1 of 1" in pg.inner_text("#t2v-status")
    [clip] = studio.gallery.list()
    assert clip.prompt == "a red circle moving right"

    pg.click("button[role=tab]:has-text('Gallery')")
    item = pg.wait_for_selector("#gallery-grid video, #gallery-grid img")
    item.click()
    pg.wait_for_selector("#gallery-player video")
    assert str(clip.seed) in pg.inner_text("body")
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
