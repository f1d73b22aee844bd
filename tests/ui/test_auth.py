"""Accounts against a launched studio with `--auth` (#14): logins, roles and ownership, as an outsider and
as each role would try them, through raw HTTP and gradio_client."""

import dataclasses
import json
import urllib.error
import urllib.request

import pytest
from gradio_client import Client

from studio.accounts import MAX_FAILURES
from tests.ui.conftest import serving

PASSWORDS = {"ann": "ann-password", "bob": "bob-password", "vic": "vic-password"}


@pytest.fixture
def auth_app(settings, registry, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-tmp"))
    from studio.wiring import build_studio

    studio = build_studio(dataclasses.replace(settings, auth=True), registry)
    for name, role in (("ann", "admin"), ("bob", "member"), ("vic", "viewer")):
        studio.accounts.add(name, PASSWORDS[name], role)
    with serving(studio) as url:
        yield url, studio


def status(url: str, data: bytes | None = None) -> int:
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def client(url, name):
    return Client(url + "/", auth=(name, PASSWORDS[name]), verbose=False)


def test_an_outsider_gets_nothing(auth_app):
    url, studio = auth_app
    bob = client(url, "bob")
    _, [clip] = bob.predict(prompt="a red circle", api_name="/text_to_video")
    video = studio.gallery.get(clip["id"]).video
    for path in ("/config", "/gradio_api/info", f"/gradio_api/file={video}", "/gradio_api/queue/status"):
        assert status(url + path) in (401, 403), path
    body = json.dumps({"data": ["x"], "fn_index": 0, "session_hash": "abc"}).encode()
    assert status(url + "/gradio_api/queue/join", body) in (401, 403)
    assert status(url + "/gradio_api/call/delete_clip", json.dumps({"data": [clip["id"]]}).encode()) in (401, 403)
    with pytest.raises(Exception):
        Client(url + "/", verbose=False).predict(prompt="x", api_name="/text_to_video")
    with pytest.raises(Exception):
        Client(url + "/", auth=("bob", "wrong-password"), verbose=False)
    assert studio.gallery.get(clip["id"]) is not None


def test_roles_and_ownership(auth_app):
    url, studio = auth_app
    bob, ann, vic = client(url, "bob"), client(url, "ann"), client(url, "vic")
    _, [mine] = bob.predict(prompt="bob's clip", api_name="/text_to_video")
    _, [hers] = ann.predict(prompt="ann's clip", api_name="/text_to_video")
    assert mine["author"] == "bob" and hers["author"] == "ann"
    with pytest.raises(Exception, match="viewers cannot generate"):
        vic.predict(prompt="x", api_name="/text_to_video")
    assert [c["id"] for c in bob.predict(mine=True, api_name="/list_clips")] == [mine["id"]]
    assert {c["id"] for c in vic.predict(api_name="/list_clips")} == {mine["id"], hers["id"]}  # viewers see all
    assert vic.predict(clip_id=mine["id"], api_name="/get_clip")["prompt"] == "bob's clip"
    with pytest.raises(Exception, match="only ann or an admin"):
        bob.predict(clip_id=hers["id"], api_name="/delete_clip")
    with pytest.raises(Exception, match="only bob or an admin"):
        vic.predict(clip_id=mine["id"], api_name="/delete_clip")
    assert studio.gallery.get(hers["id"]) is not None and studio.gallery.get(mine["id"]) is not None
    assert bob.predict(clip_id=mine["id"], api_name="/delete_clip") is True
    _, [again] = bob.predict(prompt="bob's second", api_name="/text_to_video")
    assert ann.predict(clip_id=again["id"], api_name="/delete_clip") is True  # an admin may delete any
    assert [c.id for c in studio.gallery.list()] == [hers["id"]]


def test_logins_are_rate_limited(auth_app):
    url, studio = auth_app
    for _ in range(MAX_FAILURES):
        assert not studio.facade.login("bob", "not-it")
    assert not studio.facade.login("bob", PASSWORDS["bob"])  # locked for a while, right password or not
    assert studio.facade.login("ann", PASSWORDS["ann"])  # others are not


def test_every_handler_the_page_lists_is_refused_without_a_login(auth_app):
    import http.cookiejar
    import urllib.parse

    url, studio = auth_app
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = urllib.parse.urlencode({"username": "ann", "password": PASSWORDS["ann"]}).encode()
    opener.open(url + "/login", form, timeout=30)
    with opener.open(url + "/config", timeout=30) as r:  # what a signed-in browser sees
        config = json.loads(r.read())
    handlers = [d.get("id", i) for i, d in enumerate(config["dependencies"])]
    assert len(handlers) > 40  # the generation tabs, the gallery, the API
    for fn_index in handlers:
        body = json.dumps({"data": [], "fn_index": fn_index, "session_hash": "outsider"}).encode()
        assert status(url + "/gradio_api/queue/join", body) in (401, 403), fn_index
    for name in ("text_to_video", "list_clips", "get_clip", "delete_clip", "extend"):
        assert status(url + f"/gradio_api/call/{name}", json.dumps({"data": []}).encode()) in (401, 403), name


@pytest.mark.browser
def test_signed_in_on_the_page_a_member_generates_and_a_viewer_is_refused(auth_app):
    from tests.ui.test_browser import ARGS, CHROMIUM

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    url, studio = auth_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for name, words in (("vic", "viewers cannot generate"), ("bob", "Done: 1 of 1")):
            pg = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            pg.set_default_timeout(60_000)
            pg.goto(url + "/")
            pg.fill("input[type=text]", name)
            pg.fill("input[type=password]", PASSWORDS[name])
            pg.click("button:has-text('Login')")
            pg.fill("#t2v-prompt textarea", f"{name}'s circle")
            pg.click("#t2v-generate")
            pg.wait_for_function(f"() => document.querySelector('#t2v-status').innerText.includes({words!r})")
        browser.close()
    [clip] = studio.gallery.list()
    assert clip.author == "bob" and clip.prompt == "bob's circle"
