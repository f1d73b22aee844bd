"""`python app.py` with no arguments in a simulated Space (#15): the platform's variables set, a temp dir standing
for the persistent volume, hf.co never reached. It binds where the platform expects, keeps the data and the
model cache on the volume (or says on the page that the gallery is lost at restart), signs people in with
Hugging Face, defaults to the embedded model on a CPU, and shows which catalog models are downloaded."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ui.conftest import free_port
from tests.ui.test_browser import ARGS, CHROMIUM
from tests.ui.test_hf_login import SPACE_ENV, session_cookie

ROOT = Path(__file__).resolve().parents[2]
CACHED = ("wan2.1-t2v-1.3b", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")  # a catalog model "downloaded" on the volume
NOT_CACHED = "wan2.1-t2v-14b"


def fake_download(hf_home: Path, repo: str) -> None:
    """What `hf download` leaves in the cache, as far as the studio's lookup reads it."""
    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("a" * 40)


def start_space(tmp: Path, volume: Path | None) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("STUDIO_DATA_DIR", "GRADIO_TEMP_DIR", "HF_HOME", "HF_HUB_CACHE", "STUDIO_AUTH")}
    env.update(SPACE_ENV)
    env.update({"STUDIO_SPACE_VOLUME": str(volume or tmp / "no-volume"), "GRADIO_SERVER_PORT": str(port),
                "HOME": str(tmp / "home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                "STUDIO_TORCH_THREADS": "1", "STUDIO_DEVICE": "cpu"})
    log = tmp / f"space-{port}.log"
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url + "/gradio_api/info", timeout=2)
            return proc, url, log
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"app.py did not answer in 90 s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def page_config(url: str, name: str) -> dict:
    c = httpx.Client(base_url=url, timeout=30)
    c.cookies.set("session", session_cookie(name))
    r = c.get("/config")
    assert r.status_code == 200, r.text
    return r.json()


def texts(config: dict) -> str:
    return json.dumps([c.get("props", {}) for c in config["components"]])


def test_app_py_on_a_space_with_a_volume(tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    fake_download(volume / "huggingface", CACHED[1])
    proc, url, log = start_space(tmp_path, volume)
    try:
        r = httpx.get(url + "/", follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"].startswith("/login/huggingface")
        config = page_config(url, "owner")
        assert "0.0.0.0" in log.read_text()  # bound where the platform expects
        assert (volume / "studio" / "gallery.db").is_file()  # the data dir is on the volume
        assert "no persistent storage" not in texts(config)
        models = next(c["props"] for c in config["components"] if c.get("props", {}).get("elem_id") == "t2v-model")
        assert models["value"] == "embedded-shapes"  # a CPU Space: the embedded model
        labels = {value: label for label, value in models["choices"]}
        assert "not installed" not in labels[CACHED[0]]  # found in the model cache on the volume
        assert "not installed" in labels[NOT_CACHED]
        assert any(c.get("type") == "button" and "Hugging Face" in json.dumps(c.get("props", {}))
                   for c in config["components"])  # the sign-in (sign-out) button
    finally:
        stop(proc)


def test_app_py_on_a_space_without_storage_says_so(tmp_path):
    proc, url, _ = start_space(tmp_path, None)
    try:
        assert "no persistent storage" in texts(page_config(url, "owner"))
        assert (tmp_path / "home").is_dir()  # the data dir is the platform user's own, lost at restart
        if CHROMIUM is None:
            pytest.skip("Debian's chromium is not installed (scripts/setup.sh --test installs it)")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:  # what the signed-in owner sees in a browser
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(viewport={"width": 1300, "height": 700})
            context.add_cookies([{"name": "session", "value": session_cookie("owner"), "url": url}])
            pg = context.new_page()
            pg.goto(url + "/", timeout=60_000)
            pg.wait_for_selector("#t2v-prompt textarea", timeout=60_000)
            assert pg.locator("#studio-notice").inner_text().startswith("This Space has no persistent storage")
            pg.wait_for_function("() => (document.querySelector('#studio-login') || {}).innerText"
                                 "?.includes('owner')", timeout=20_000)  # "Logout (owner)", once the page asked
            pg.screenshot(path=str(tmp_path / "space.png"))
            browser.close()
    finally:
        stop(proc)


def test_a_space_without_sign_in_refuses_to_open_to_everyone(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OAUTH_") and k != "STUDIO_AUTH"}
    env.update({"SYSTEM": "spaces", "SPACE_ID": "a/b", "HOME": str(tmp_path), "GRADIO_SERVER_PORT": str(free_port()),
                "STUDIO_SPACE_VOLUME": str(tmp_path / "none")})
    out = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "hf_oauth: true" in out.stderr and "Traceback" not in out.stderr
