"""The lock-step grid player (studio/ui/static/syncgrid.js) in a real Chromium, on a plain page of 3x3 clips
of different lengths and frame rates: one Play/Pause, one scrubber, frame stepping, speed and loop."""

import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        "--autoplay-policy=no-user-gesture-required"]
SCRIPT = Path(__file__).resolve().parents[2] / "studio" / "ui" / "static" / "syncgrid.js"
# (frames, fps) of the nine cells: most 2 s long, two shorter ones that must hold their last frame
CLIPS = [(16, 8), (16, 8), (32, 16), (16, 8), (8, 8), (16, 8), (32, 16), (16, 8), (12, 12)]


def write_clip(path: Path, frames: int, fps: int, shade: int) -> None:
    from studio.media.video import write_mp4

    video = np.full((frames, 32, 32, 3), shade, np.uint8)
    for i in range(frames):  # a bar whose position is the frame number
        video[i, :, (i * 32) // frames: (i * 32) // frames + 2] = 255
    write_mp4(video, fps, path, {})


@pytest.fixture
def grid_page(tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    cells = []
    for i, (frames, fps) in enumerate(CLIPS):
        write_clip(tmp_path / f"c{i}.mp4", frames, fps, 20 * i)
        cells.append(f'<video data-src="c{i}.mp4" data-fps="{fps}" width="96" height="96" muted preload="auto"></video>')
    (tmp_path / "syncgrid.js").write_text(SCRIPT.read_text())
    (tmp_path / "index.html").write_text(
        "<!doctype html><html><body><div id='grid' class='studio-sync' style='display:grid;"
        "grid-template-columns:repeat(3,100px)'>" + "".join(cells) + "</div>"
        "<script src='syncgrid.js'></script><script>StudioSync.auto();"
        # blob URLs are seekable without HTTP range requests, which this little server does not answer
        "document.querySelectorAll('video').forEach(async v => v.src = URL.createObjectURL("
        "await (await fetch(v.dataset.src)).blob()));</script></body></html>")
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.readyState >= 2)")
            yield page
            browser.close()
    finally:
        server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


SPREAD = """() => new Promise(done => requestAnimationFrame(() => {  // read just after the player's frame
  const vs = [...document.querySelectorAll('#grid video')];
  const t = Math.max(...vs.map(v => v.currentTime));
  // a clip shorter than the clock holds its last frame: compare it with where it must be
  const want = vs.map(v => Math.min(t, v.duration));
  done({times: vs.map(v => v.currentTime), spread: Math.max(...vs.map((v, i) => Math.abs(v.currentTime - want[i]))),
        paused: vs.map(v => v.paused), clock: parseFloat(document.querySelector('#grid').dataset.clock || '0')});
}))"""


def test_a_3x3_grid_plays_seeks_and_pauses_in_lock_step(grid_page):
    page = grid_page
    one_frame = 1 / 16  # the fastest clip's frame
    page.get_by_role("button", name="Play/Pause").click()
    page.wait_for_timeout(900)
    state = page.evaluate(SPREAD)
    assert state["clock"] > 0.5 and not state["paused"][0], state
    assert state["spread"] <= one_frame, state
    # past the shorter clips' ends (8 frames at 8 fps = 1 s; 12 at 12 fps = 1 s): they hold the last frame
    page.wait_for_function("parseFloat(document.querySelector('#grid').dataset.clock) > 1.3")
    state = page.evaluate(SPREAD)
    assert state["spread"] <= one_frame, state
    assert abs(state["times"][4] - 1.0) < one_frame and state["paused"][4], state

    page.get_by_role("button", name="Play/Pause").click()  # pause
    page.wait_for_timeout(300)
    paused = page.evaluate(SPREAD)
    assert all(paused["paused"]) and paused["spread"] <= one_frame, paused
    page.wait_for_timeout(400)
    assert page.evaluate(SPREAD)["times"] == paused["times"]  # nothing moves while paused

    scrub = page.get_by_role("slider", name="Position")
    scrub.evaluate("(s) => { s.value = 250; s.dispatchEvent(new Event('input')); }")  # a quarter: 0.5 s
    page.wait_for_timeout(300)
    seeked = page.evaluate(SPREAD)
    assert all(abs(t - 0.5) <= one_frame for t in seeked["times"]), seeked

    page.get_by_role("button", name="Next frame").click()
    page.get_by_role("button", name="Next frame").click()
    page.wait_for_timeout(300)
    stepped = page.evaluate(SPREAD)
    assert abs(stepped["clock"] - (0.5 + 2 / 8)) < 1e-6, stepped  # two frames of the slowest clip (8 fps)
    assert stepped["spread"] <= one_frame, stepped


def test_speed_and_loop(grid_page):
    page = grid_page
    page.get_by_role("combobox", name="Speed").select_option("2")
    page.get_by_role("button", name="Play/Pause").click()
    page.wait_for_timeout(600)
    fast = page.evaluate(SPREAD)
    assert fast["clock"] > 0.9 and all(abs(r - 2) < 1e-9 for r in page.evaluate(
        "[...document.querySelectorAll('#grid video')].map(v => v.playbackRate)")), fast
    # 2 s of clip at 2x wraps within ~1 s more and keeps playing, together
    page.wait_for_function("parseFloat(document.querySelector('#grid').dataset.clock) < 0.6", timeout=5_000)
    page.wait_for_timeout(200)
    looped = page.evaluate(SPREAD)
    assert not looped["paused"][0] and looped["spread"] <= 2 / 16, looped
    page.get_by_role("checkbox", name="Loop").uncheck()
    page.wait_for_function("[...document.querySelectorAll('#grid video')].every(v => v.paused)", timeout=5_000)
    end = page.evaluate(SPREAD)
    assert all(abs(t - d) < 0.05 for t, d in zip(end["times"], [f / r for f, r in CLIPS])), end
