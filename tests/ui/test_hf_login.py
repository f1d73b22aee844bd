"""Sign in with Hugging Face on a Space (#14): the same accounts and roles as `studio users`, every route
behind the sign-in. The Space is simulated: its variables set, and the session Gradio's OAuth callback
would store (`oauth_info`) signed with the key the Space's OAuth secret gives; hf.co is never reached."""

import base64
import hashlib
import json
import time

import httpx
import pytest
from itsdangerous import TimestampSigner

from tests.ui.conftest import serving, test_registry

SECRET = "space-oauth-secret"
SPACE_ENV = {"SYSTEM": "spaces", "SPACE_ID": "owner/studio", "SPACE_AUTHOR_NAME": "owner",
             "OAUTH_CLIENT_ID": "client", "OAUTH_CLIENT_SECRET": SECRET, "OAUTH_SCOPES": "openid profile",
             "OPENID_PROVIDER_URL": "https://huggingface.co", "STUDIO_MEMBERS": "alice"}


def session_cookie(name: str, expires_in: float = 3600) -> str:
    """The cookie Starlette's SessionMiddleware sets after Gradio's OAuth callback stored the profile."""
    info = {"access_token": "t", "expires_at": int(time.time() + expires_in),
            "userinfo": {"preferred_username": name, "name": name.title()}}
    data = base64.b64encode(json.dumps({"oauth_info": info}).encode())
    key = hashlib.sha256((SECRET + "-v4").encode()).hexdigest()
    return TimestampSigner(key).sign(data).decode()


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    import gradio.http_server
    import gradio.oauth

    from studio.settings import Settings
    from studio.wiring import build_studio

    mp = pytest.MonkeyPatch()
    data = tmp_path_factory.mktemp("space") / "data"
    for k, v in {**SPACE_ENV, "GRADIO_TEMP_DIR": str(data / "tmp")}.items():
        mp.setenv(k, v)
    for k in ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OPENID_PROVIDER_URL"):
        mp.setattr(gradio.oauth, k, SPACE_ENV[k])  # read by Gradio at import, before the test set them
    mp.setattr(gradio.http_server, "get_space", lambda: None)  # no hot reloader (needs the platform's `spaces`)
    settings = Settings.from_env(data_dir=data, device="cpu")
    assert settings.hf_login and settings.accounts_on
    studio = build_studio(settings, test_registry())
    try:
        with serving(studio) as url:
            yield url, studio
    finally:
        mp.undo()


def client(url: str, name: str | None = None, **kw) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=60)
    if name is not None:
        c.cookies.set("session", session_cookie(name, **kw))
    return c


def generate(c: httpx.Client) -> tuple[str, object]:
    body = {"data": ["a red circle", "", "", 1, 1, 2, None, None, None, None, None, None, None]}
    r = c.post("/gradio_api/call/text_to_video", json=body)
    if r.status_code != 200:
        return "http", r.status_code
    stream = c.get(f"/gradio_api/call/text_to_video/{r.json()['event_id']}").text
    event = payload = None
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event in ("complete", "error"):
            payload = json.loads(line.split(":", 1)[1])
    return event, payload


def test_a_visitor_is_sent_to_sign_in_and_nothing_is_open(space):
    url, studio = space
    anon = client(url)
    r = anon.get("/?clip=abc", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/login/huggingface?_target_url=%2F%3Fclip%3Dabc"
    assert anon.get("/config").status_code == 401
    assert anon.get("/gradio_api/info").status_code == 401
    assert generate(anon) == ("http", 401)
    assert anon.post("/gradio_api/upload", files=[("files", ("a.png", b"\x89PNG\r\n\x1a\n"))]).status_code == 401
    assert client(url, "alice", expires_in=-10).get("/", follow_redirects=False).status_code == 302  # expired
    forged = client(url)
    forged.cookies.set("session", session_cookie("owner")[:-4] + "AAAA")  # a signature that does not match
    assert forged.get("/", follow_redirects=False).status_code == 302


def test_roles_come_from_the_space_and_map_to_accounts(space):
    url, studio = space
    owner, alice, mallory = client(url, "owner"), client(url, "alice"), client(url, "mallory")
    for c in (owner, alice, mallory):
        r = c.get("/", follow_redirects=False)
        assert r.status_code == 200 and "<html" in r.text.lower()
    roles = {a.name: a.role for a in studio.accounts.list()}
    assert roles == {"owner": "admin", "alice": "member", "mallory": "viewer"}
    assert not studio.accounts.login("alice", "")  # no password signs in an account Hugging Face made

    event, out = generate(mallory)
    assert event == "error" and "viewer" in str(out)
    event, out = generate(alice)
    assert event == "complete", out
    clip = out[1][0]
    assert clip["author"] == "alice"
    assert alice.get(clip["video_url"]).status_code == 200
    assert client(url).get(clip["video_url"]).status_code == 401  # clips by id need the sign-in too

    r = mallory.post("/gradio_api/call/delete_clip", json={"data": [clip["id"]]})
    stream = mallory.get(f"/gradio_api/call/delete_clip/{r.json()['event_id']}").text
    assert "event: error" in stream and studio.facade.clip(clip["id"]) is not None
    r = owner.post("/gradio_api/call/delete_clip", json={"data": [clip["id"]]})
    stream = owner.get(f"/gradio_api/call/delete_clip/{r.json()['event_id']}").text
    assert "event: complete" in stream and studio.facade.clip(clip["id"]) is None


def test_a_role_follows_the_space_settings(settings, registry):
    """Changing the Space's variables (which restarts it) changes the roles of those Hugging Face signed in;
    an account made with `studio users add` keeps its own role and its password."""
    import dataclasses

    from studio.settings import Settings
    from studio.wiring import build_studio

    env = {**SPACE_ENV, "STUDIO_DATA_DIR": str(settings.data_dir)}
    studio = build_studio(Settings.from_env(env, device="cpu"), registry)
    try:
        info = {"userinfo": {"preferred_username": "mallory"}, "expires_at": time.time() + 60}
        assert studio.facade.sign_in_hf(info) == "mallory" and studio.accounts.get("mallory").role == "viewer"
        studio.settings = dataclasses.replace(studio.settings, members=("alice", "mallory"))
        assert studio.facade.sign_in_hf(info) == "mallory" and studio.accounts.get("mallory").role == "member"
        studio.accounts.add("carol", "a long password", "viewer")
        assert studio.facade.sign_in_hf({"userinfo": {"preferred_username": "carol"}}) == "carol"
        assert studio.accounts.get("carol").role == "viewer" and studio.accounts.login("carol", "a long password")
        assert studio.facade.sign_in_hf({**info, "expires_at": time.time() - 1}) is None
        assert studio.facade.sign_in_hf({"userinfo": {"preferred_username": "no spaces allowed"}}) is None
        assert studio.facade.sign_in_hf(None) is None
    finally:
        studio.close()
