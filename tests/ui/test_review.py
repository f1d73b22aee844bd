"""Review links against a launched studio with accounts on (`--auth`): the page and its routes need no login
while everything else still does; a link reveals its own clips' videos, thumbnails and recipes and nothing else;
altered, expired and revoked tokens answer 404; posts must be same-origin JSON of bounded size, rate-limited per
link; and, in Chromium, the round trip: share from the gallery, review without a login (comment at a time, vote),
the owner sees both, resolves, sorts by votes, revokes, and the link answers 404. Comment markup never runs."""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.error
import urllib.request
from datetime import timedelta

import pytest

from pipelines.contract import SweepRequest, TextToVideoRequest
from storage.db import make_session_factory
from storage.models import Review, utcnow
from studio.accounts import Account
from studio.reviews import COMMENTS_PER_MINUTE, VOTES_PER_MINUTE
from tests.ui.conftest import launch

PASSWORDS = {"ann": "ann-password", "bob": "bob-password"}
SECRET_PROMPT = "a hidden violet decagon nobody outside may read"
MARKUP = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script><b>bold?</b>"


@pytest.fixture
def review_app(settings, registry, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-tmp"))
    from studio.wiring import build_studio

    studio = build_studio(dataclasses.replace(settings, auth=True), registry)
    studio.accounts.add("ann", PASSWORDS["ann"], "admin")
    studio.accounts.add("bob", PASSWORDS["bob"], "member")
    f = studio.facade
    bob = Account("bob", "member")
    sub = f.submit_sweep(SweepRequest(TextToVideoRequest(prompt="a red circle moving right", seed=1, frames=16), 3),
                         account=bob)
    clips = [f.clip(s.clip_id) for s in f.wait(sub.job_ids)]
    other = f.submit(TextToVideoRequest(prompt=SECRET_PROMPT, seed=9), account=Account("ann", "admin"))
    [done] = f.wait(other.job_ids)
    demo, url = launch(studio)
    try:
        yield url, studio, clips, f.clip(done.clip_id)
    finally:
        demo.close()
        studio.close()


def http(url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None):
    req = urllib.request.Request(url, data, headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def post(url: str, payload, headers: dict | None = None):
    return http(url, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


def altered(token: str, at: int) -> str:
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1:]


def test_a_link_needs_no_login_and_shows_only_its_clips(review_app):
    url, studio, clips, other = review_app
    f = studio.facade
    review = f.share("compare", [c.id for c in clips[:2]], account=Account("bob", "member"))
    status, headers, body = http(url + review.path)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    csp = headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store" and headers["X-Frame-Options"] == "DENY"
    # one inline script, carrying the nonce; nothing loaded from anywhere
    assert page.count("<script") == 1 and f'<script nonce="{nonce}">' in page
    assert not re.search(r"(src|href)=['\"](https?:)?//", page)
    assert "a red circle moving right" in page  # its clips' recipes
    for secret in (SECRET_PROMPT, other.id, clips[2].id, clips[0].id, str(studio.settings.data_dir), "/media/",
                   "gallery.db", "bob"):
        assert secret not in page, secret
    # videos and thumbnails by place in the link, without a login
    for path, kind in (("/clip/0.mp4", "video/mp4"), ("/clip/1.mp4", "video/mp4"), ("/thumb/1.jpg", "image/jpeg")):
        status, headers, body = http(url + review.path + path)
        assert status == 200 and headers["Content-Type"] == kind and len(body) > 100, path
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    assert http(url + review.path + "/clip/0.mp4")[2] == clips[0].video.read_bytes()
    for path in ("/clip/2.mp4", "/thumb/2.jpg", "/clip/0.jpg", "/clip/999.mp4", "/clip/-1.mp4", f"/clip/{other.id}.mp4",
                 "/clip/../../media/clip/x.mp4", "/nope", "/state/../comment"):
        assert http(url + review.path + path)[0] == 404, path
    # the rest of the studio is still behind the login
    for path in ("/config", f"/media/clip/{clips[0].id}.mp4", f"/media/thumb/{other.id}.jpg", "/gradio_api/info"):
        assert http(url + path)[0] in (401, 403), path
    state = json.loads(http(url + review.path + "/state")[2])
    assert [c["clip"] for c in state["clips"]] == [0, 1]
    assert SECRET_PROMPT not in json.dumps(state) and clips[0].id not in json.dumps(state)


def test_altered_expired_and_revoked_tokens_answer_404(review_app):
    url, studio, clips, _ = review_app
    f = studio.facade
    live = f.share("clip", [clips[0].id])
    gone = f.share("clip", [clips[1].id])
    old = f.share("clip", [clips[2].id], expires="1h")
    with make_session_factory(studio.engine)() as s, s.begin():  # an hour later
        s.get(Review, old.id).expires_at = utcnow() - timedelta(seconds=1)
    f.revoke_review(gone.token)
    bad = [altered(live.token, 2), altered(live.token, 40), live.token[:-2], live.id, gone.token, old.token,
           "x" * 22 + "." + "y" * 22]
    for token in bad:
        for path, method in (("", "GET"), ("", "HEAD"), ("/clip/0.mp4", "GET"), ("/thumb/0.jpg", "GET"),
                             ("/state", "GET")):
            status, _, body = http(f"{url}/review/{token}{path}", method=method)
            assert status == 404, (token, path)
            assert live.token not in body.decode(errors="replace")
        for action, payload in (("comment", {"clip": 0, "name": "x", "text": "hi"}), ("vote", {"clip": 0, "name": "x"})):
            assert post(f"{url}/review/{token}/{action}", payload)[0] == 404, (token, action)
    pages = {http(f"{url}/review/{t}")[2] for t in bad}
    assert len(pages) == 1  # one answer for every reason: no telling which tokens ever existed
    assert http(url + live.path)[0] == 200
    assert f.clip_comments(clips[1].id) == [] and f.clip(clips[1].id).votes == 0


def test_posts_are_same_origin_json_of_bounded_size(review_app):
    url, studio, clips, _ = review_app
    review = studio.facade.share("clip", [clips[0].id])
    comment = url + review.path + "/comment"
    ok = {"clip": 0, "name": "Zoë", "text": "looks fine"}
    assert post(comment, ok)[0] == 201
    host = url.split("//", 1)[1]
    assert post(comment, ok, {"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"})[0] == 201
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": f"http://{host}.evil.example"}):
        status, _, body = post(comment, ok, headers)
        assert status == 403 and "review page only" in json.loads(body)["detail"], headers
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        assert http(comment, json.dumps(ok).encode(), {"Content-Type": ctype})[0] == 415, ctype
    assert http(comment, b"{not json", {"Content-Type": "application/json"})[0] == 400
    assert http(comment, b"[1, 2]", {"Content-Type": "application/json"})[0] == 400
    big = json.dumps({**ok, "text": "x" * 20000}).encode()
    assert http(comment, big, {"Content-Type": "application/json"})[0] == 413
    assert http(comment)[0] == 405 and http(url + review.path, b"{}", {"Content-Type": "application/json"})[0] == 405
    status, _, body = post(comment, {**ok, "at": 99})
    assert status == 400 and json.loads(body)["field"] == "at"
    status, _, body = post(comment, {**ok, "name": ""})
    assert status == 400 and json.loads(body)["field"] == "name" and "Traceback" not in body.decode()
    quiet = studio.facade.share("clip", [clips[0].id], comments=False)
    assert post(url + quiet.path + "/comment", ok)[0] == 403
    assert len(studio.facade.clip_comments(clips[0].id)) == 2


def test_comments_and_votes_are_rate_limited_per_link(review_app):
    url, studio, clips, _ = review_app
    a = studio.facade.share("compare", [c.id for c in clips[:2]])
    b = studio.facade.share("clip", [clips[2].id])
    for i in range(COMMENTS_PER_MINUTE):
        assert post(url + a.path + "/comment", {"clip": 0, "name": f"r{i}", "text": f"c{i}"})[0] == 201
    status, headers, body = post(url + a.path + "/comment", {"clip": 1, "name": "late", "text": "one more"})
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60 and "a minute" in json.loads(body)["detail"]
    assert post(url + b.path + "/comment", {"clip": 0, "name": "r", "text": "other link"})[0] == 201
    for i in range(VOTES_PER_MINUTE):
        assert post(url + a.path + "/vote", {"clip": i % 2, "name": "v", "vote": i % 4 < 2})[0] == 200
    assert post(url + a.path + "/vote", {"clip": 0, "name": "w"})[0] == 429


@pytest.mark.browser
def test_review_round_trip_in_chromium(review_app):
    from tests.ui.test_browser import ARGS, CHROMIUM

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    url, studio, clips, other = review_app
    ids = ",".join(c.id for c in clips)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, "--autoplay-policy=no-user-gesture-required"])
        # ---- the owner shares a comparison from the gallery ------------------------------------------------
        owner = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        owner.set_default_timeout(60_000)
        owner.goto(f"{url}/?compare={ids}")
        owner.fill("input[type=text]", "bob")
        owner.fill("input[type=password]", PASSWORDS["bob"])
        owner.click("button:has-text('Login')")
        owner.wait_for_selector("#compare-body video")
        owner.click("#compare-share")
        owner.wait_for_function("() => (document.querySelector('#compare-share-link textarea, "
                                "#compare-share-link input') || {}).value?.includes('/review/')")
        link = owner.eval_on_selector("#compare-share-link textarea, #compare-share-link input", "e => e.value")
        assert link.startswith(url + "/review/")
        [review] = studio.facade.reviews()
        assert review.author == "bob" and review.clip_ids == tuple(c.id for c in clips)

        # ---- a reviewer without a login ----------------------------------------------------------------------
        ctx = browser.new_context(viewport={"width": 1300, "height": 900})
        reviewer = ctx.new_page()
        reviewer.set_default_timeout(30_000)
        errors: list[str] = []
        reviewer.on("pageerror", lambda e: errors.append(str(e)))
        reviewer.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        assert reviewer.goto(link).status == 200
        reviewer.wait_for_function("[...document.querySelectorAll('video')].length === 3 && "
                                   "[...document.querySelectorAll('video')].every(v => v.readyState >= 2)")
        assert reviewer.locator(".studio-sync-bar button[aria-label='Play/Pause']").count() == 1
        assert SECRET_PROMPT not in reviewer.content() and other.id not in reviewer.content()
        reviewer.click(".card[data-pos='1'] .vote")  # no name yet: asked for one
        reviewer.wait_for_function("() => document.querySelector('#review-status').textContent.includes('name')")
        reviewer.fill("#reviewer-name", "Zoë")
        reviewer.dispatch_event("#reviewer-name", "change")
        form = ".card[data-pos='1'] .comment-form"
        reviewer.fill(f"{form} textarea", "at 1.2 s the object splits")
        reviewer.fill(f"{form} input[name=at]", "1.2")
        reviewer.click(f"{form} .send")
        reviewer.wait_for_selector(".card[data-pos='1'] .comment[data-at]")
        reviewer.fill(f"{form} textarea", MARKUP)
        reviewer.click(f"{form} .send")
        reviewer.wait_for_function("() => document.querySelectorAll(\".card[data-pos='1'] .comment\").length === 2")
        reviewer.click(".card[data-pos='1'] .vote")
        reviewer.wait_for_function("() => document.querySelector(\".card[data-pos='1'] .count\").textContent === '1'")
        assert reviewer.get_attribute(".card[data-pos='1'] .vote", "aria-pressed") == "true"
        # clicking the comment puts every clip at 1.2 s
        reviewer.click(".card[data-pos='1'] .comment[data-at] p")
        reviewer.wait_for_function("() => [...document.querySelectorAll('video')].every(v => Math.abs(v.currentTime - 1.2) < 0.07)")
        assert reviewer.evaluate("() => [...document.querySelectorAll('video')].every(v => v.paused)")
        # markup is text: shown as typed, never run, on the page and after a reload
        for _ in range(2):
            texts = reviewer.eval_on_selector_all(".card[data-pos='1'] .comment p", "ps => ps.map(p => p.textContent)")
            assert MARKUP in texts
            assert reviewer.evaluate("() => window.__pwned") is None
            assert reviewer.locator(".comments img, .comments script, .comments b:has-text('bold?')").count() == 0
            reviewer.reload()
            reviewer.wait_for_selector(".card[data-pos='1'] .comment[data-at]")
            reviewer.wait_for_function("() => document.querySelector(\".card[data-pos='1'] .vote\")"
                                       ".getAttribute('aria-pressed') === 'true'")  # the name is remembered
        assert not errors, errors

        # ---- the owner sees both, resolves, and sorts by votes -------------------------------------------
        owner.click("button[role=tab]:has-text('Gallery')")
        owner.wait_for_selector("#gallery-grid .studio-tile")
        owner.click("#gallery-has-votes input")
        owner.wait_for_function(f"() => {{ const t = [...document.querySelectorAll('#gallery-grid .studio-tile')]; "
                                f"return t.length === 1 && t[0].dataset.clip === '{clips[1].id}'; }}")
        owner.click(f"#gallery-grid .studio-tile[data-clip='{clips[1].id}'] figcaption")
        owner.wait_for_function("() => document.querySelector('#gallery-feedback')?.innerText.includes('object splits')")
        feedback = owner.inner_text("#gallery-feedback")
        assert "1 vote" in feedback and "Zoë" in feedback and "(guest)" in feedback and MARKUP in feedback
        assert owner.evaluate("() => window.__pwned") is None
        assert owner.locator("#gallery-feedback img, #gallery-feedback script").count() == 0
        owner.click("#gallery-feedback .studio-comment-at")
        owner.wait_for_function("() => Math.abs(document.querySelector('#gallery-player video').currentTime - 1.2) < 0.07")
        owner.click("#gallery-feedback .studio-resolve >> nth=0")
        owner.wait_for_function("() => document.querySelector('#gallery-feedback').innerText.includes('resolved by bob')")
        assert [c.resolved for c in studio.facade.clip_comments(clips[1].id)] == [True, False]
        owner.click("#gallery-has-votes input")  # every clip again, most votes first
        owner.click("#gallery-sort input")
        owner.click("ul[role=listbox] li:has-text('Most votes')")
        owner.wait_for_function(f"() => {{ const t = [...document.querySelectorAll('#gallery-grid .studio-tile')]; "
                                f"return t.length === 4 && t[0].dataset.clip === '{clips[1].id}'; }}")

        # ---- revoked: the link answers 404 --------------------------------------------------------------
        owner.click("#gallery-reviews-box button:has-text('Review links')")
        owner.wait_for_selector("#gallery-revoke-pick input")
        owner.click("#gallery-revoke-pick input")
        owner.click("ul[role=listbox] li >> nth=0")
        owner.click("#gallery-revoke")
        owner.wait_for_function("() => document.querySelector('#gallery-review-links').innerText.includes('revoked')")
        assert studio.facade.find_review(link).state == "revoked"
        assert reviewer.goto(link).status == 404
        assert "does not exist" in reviewer.inner_text("body")
        browser.close()


def test_a_signed_in_reviewer_is_their_account(review_app):
    import http.cookiejar
    import urllib.parse

    url, studio, clips, _ = review_app
    review = studio.facade.share("clip", [clips[0].id])
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(url + "/login", urllib.parse.urlencode({"username": "ann", "password": PASSWORDS["ann"]}).encode(),
                timeout=30)
    with opener.open(url + review.path, timeout=30) as r:
        assert "Commenting and voting as <b>ann</b> (signed in)" in r.read().decode()
    for action, payload in (("comment", {"clip": 0, "name": "bob", "text": "signed"}), ("vote", {"clip": 0, "name": "bob"})):
        req = urllib.request.Request(url + review.path + "/" + action, json.dumps(payload).encode(),
                                     {"Content-Type": "application/json"})
        with opener.open(req, timeout=30) as r:
            assert r.status in (200, 201)
    [comment] = studio.facade.clip_comments(clips[0].id)
    assert (comment.author, comment.signed_in) == ("ann", True)  # not the name typed into the body
    [vote] = studio.facade.clip_votes(clips[0].id)
    assert (vote.reviewer, vote.signed_in) == ("ann", True)
    # the same name typed by a guest is a guest, shown as one
    assert post(url + review.path + "/comment", {"clip": 0, "name": "ann", "text": "guest"})[0] == 201
    assert [(c.author, c.signed_in) for c in studio.facade.clip_comments(clips[0].id)] == [("ann", True), ("ann", False)]
