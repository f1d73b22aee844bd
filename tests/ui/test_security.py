"""The middleware in front of Gradio, without a server: what it answers for uploads and clips by id (#14)."""

import asyncio
import errno
import json
from pathlib import Path

import pytest

from studio.ui.security import SafeFiles, sniff


def _call(app, path: str, method: str = "GET", headers=()) -> tuple[int, dict, bytes]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers), "query_string": b"",
             "app": app.gradio, "asgi": {"version": "3.0", "spec_version": "2.4"}}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


class FakeGradio:
    """Stands for Gradio's app: answers an upload with the stored paths, or fails as told."""

    def __init__(self, stored: list[str] | None = None, error: Exception | None = None, auth=None):
        self.stored, self.error, self.auth, self.auth_dependency = stored or [], error, auth, None
        self.cookie_id, self.tokens = "c", {"good": "ann"}

    async def __call__(self, scope, receive, send):
        if self.error is not None:
            raise self.error
        body = json.dumps(self.stored).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def _middleware(gradio: FakeGradio, media=None) -> SafeFiles:
    mw = SafeFiles(gradio, media=media)
    mw.gradio = gradio
    return mw


@pytest.mark.parametrize("head, kind", [
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "image"), (b"\xff\xd8\xff\xe0" + b"\0" * 12, "image"),
    (b"RIFF\0\0\0\0WEBPVP8 ", "image"), (b"GIF89a" + b"\0" * 10, "image"),
    (b"\0\0\0\x18ftypisom\0\0\0\0", "video"), (b"\0\0\0\x14ftypqt  \0\0\0\0", "video"),
    (b"\x1a\x45\xdf\xa3" + b"\0" * 12, "video"), (b"PK\x03\x04" + b"\0" * 12, "zip"),
    (b"<html><script>", None), (b"<?xml version=", None), (b"<svg xmlns=", None), (b"", None),
    (b"\x7fELF\x02\x01\x01\0", None),
])
def test_sniff_judges_by_content(head, kind):
    assert sniff(head) == kind


def test_an_upload_that_is_not_media_is_deleted_and_refused(tmp_path):
    page, image = tmp_path / "a" / "cat.png", tmp_path / "b" / "ok.png"
    page.parent.mkdir(), image.parent.mkdir()
    page.write_bytes(b"<html><script>alert(1)</script>")
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    status, headers, body = _call(_middleware(FakeGradio([str(image), str(page)])), "/gradio_api/upload", "POST")
    assert status == 415 and "'cat.png' is not an image, a video or a zip" in json.loads(body)["detail"]
    assert not page.exists() and not image.exists()  # one bad file refuses the whole upload
    assert not page.parent.exists() and headers["x-content-type-options"] == "nosniff"
    image.parent.mkdir()
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    status, _, body = _call(_middleware(FakeGradio([str(image)])), "/gradio_api/upload", "POST")
    assert status == 200 and json.loads(body) == [str(image)] and image.exists()


def test_a_full_disk_answers_507_not_500():
    full = FakeGradio(error=OSError(errno.ENOSPC, "No space left on device"))
    status, _, body = _call(_middleware(full), "/gradio_api/upload", "POST")
    assert status == 507 and "disk is full" in json.loads(body)["detail"]
    with pytest.raises(RuntimeError):  # anything else is Gradio's to answer
        _call(_middleware(FakeGradio(error=RuntimeError("boom"))), "/gradio_api/upload", "POST")


def test_clips_by_id_need_a_login_when_accounts_are_on(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0\0\0\x18ftypisom" + b"\0" * 100)
    clip_id = "a" * 32
    media = lambda kind, cid: video if cid == clip_id else None  # noqa: E731
    open_app = _middleware(FakeGradio(), media)
    assert _call(open_app, f"/media/clip/{clip_id}.mp4")[0] == 200
    assert _call(open_app, f"/media/clip/{'b' * 32}.mp4")[0] == 404
    assert _call(open_app, f"/media/clip/{clip_id}.json")[0] == 404
    assert _call(open_app, "/media/clip/../../gallery.db")[0] == 404
    assert _call(open_app, f"/media/clip/{clip_id}.mp4", "POST")[0] == 404
    locked = _middleware(FakeGradio(auth=lambda u, p: True), media)
    assert _call(locked, f"/media/clip/{clip_id}.mp4")[0] == 401
    assert _call(locked, f"/media/clip/{clip_id}.mp4", headers=[(b"cookie", b"access-token-c=bad")])[0] == 401
    status, headers, body = _call(locked, f"/media/clip/{clip_id}.mp4", headers=[(b"cookie", b"access-token-c=good")])
    assert status == 200 and headers["content-type"] == "video/mp4" and body == video.read_bytes()
    # gradio_client fetches a file output given as a URL through file=<url>: served by id, nothing fetched
    assert _call(open_app, f"/gradio_api/file=http://127.0.0.1:1/media/clip/{clip_id}.mp4")[0] == 200
    assert _call(locked, f"/gradio_api/file=http://evil.example/media/clip/{clip_id}.mp4")[0] == 401
    assert Path(video).exists()


def test_review_routes_are_answered_before_gradio_and_its_login():
    """`/review/...` goes to the review routes (which need no login: the token is the key), never to Gradio;
    without review routes it is 404; a path that only starts alike is Gradio's. The routes learn who is signed in."""
    import asyncio as _asyncio

    from studio.ui.security import signed_in_name

    seen = []

    async def routes(scope, receive, send, path):
        seen.append((path, await signed_in_name(scope)))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"review"})

    locked = FakeGradio(auth=lambda u, p: True)
    mw = SafeFiles(locked, reviews=routes)
    mw.gradio = locked
    assert _call(mw, "/review/abc.def")[:3:2] == (200, b"review")
    assert _call(mw, "/review/abc.def/vote", "POST", headers=[(b"cookie", b"access-token-c=good")])[0] == 200
    assert seen == [("/review/abc.def", None), ("/review/abc.def/vote", "ann")]
    assert _call(mw, "/reviewers")[2] == b"[]"  # Gradio's (the fake answers every other path with [])
    no_routes = SafeFiles(locked)
    no_routes.gradio = locked
    assert _call(no_routes, "/review/abc.def")[0] == 404
    open_app = FakeGradio()
    scope = {"type": "http", "headers": [(b"cookie", b"access-token-c=good")], "app": open_app}
    assert _asyncio.run(signed_in_name(scope)) is None  # without accounts nobody is signed in
