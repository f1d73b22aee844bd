"""What the web server hands out, narrowed (#14): an ASGI middleware in front of Gradio's app.

- **Clips by id, never by path.** `/media/clip/<id>.mp4` and `/media/thumb/<id>.jpg` serve a finished
  clip's video and thumbnail to whoever may see the gallery (signed in, when accounts are on); the clips
  folder is not one of Gradio's allowed paths, so no URL of the page carries a server path to a clip.
- Other files (`/gradio_api/file=...`: uploads, recalled inputs, exports) are served only when they are
  media or an export (mp4, webm, gif, jpg, png, webp, zip): never the database, a sidecar, a lock or an
  uploaded page or script.
- **Uploads are checked by content**: a file Gradio accepted at `/gradio_api/upload` that is not an
  image, a video or a zip (by its first bytes, whatever its name) is deleted and the upload answered 415
  with the reason. A full disk answers 507 with one sentence instead of a traceback and a 500.
- Every answer carries `X-Content-Type-Options: nosniff`; a served file that is not image or video is
  sent as an attachment, so a browser never renders it as a page.
- **Calls name what exists**: a call to an API name or a function index the app does not have is answered
  404 with what is wrong (Gradio's own answer is a 500 and a traceback in the log).
- **Review links** (`/review/<token>...`, studio.ui.review) are answered here, before Gradio and without a
  login even when accounts are on: the token is the key, and it opens only its own clips. Every other route
  stays behind the login.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

from studio.facade import is_disk_full  # the one test for a full disk (storage.space)

log = logging.getLogger(__name__)

SERVED_SUFFIXES = (".mp4", ".webm", ".gif", ".jpg", ".jpeg", ".png", ".webp", ".zip")
INLINE_TYPES = (b"image/", b"video/")
FILE_ROUTE = "/file="
UPLOAD_ROUTE = "/gradio_api/upload"
MEDIA_PREFIX = "/media/"
REVIEW_PREFIX = "/review/"
MEDIA_ROUTE = re.compile(r"^/media/(clip|thumb)/([0-9a-f]{32})\.(mp4|jpg)$")
# `/gradio_api/file=http://<host>/media/...`: how gradio_client downloads a file output given as a URL
FILE_MEDIA_LINK = re.compile(r"/file=https?:/+[^/]+(/media/.*)$")
MEDIA_KINDS = {"clip": ("mp4", "video/mp4"), "thumb": ("jpg", "image/jpeg")}
MAX_UPLOAD_ANSWER = 1 << 20  # the upload route answers a list of paths: a few hundred bytes
# the routes that name what to run (an API name in the path, or fn_index in the body)
API_CALL = re.compile(r"^/gradio_api/(?:run|api|call|call/v2)/([^/]+)/?$")
QUEUE_JOIN = "/gradio_api/queue/join"
MAX_CALL_BODY = 1 << 20  # a call's body is JSON of the inputs (files go through the upload route): small

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
# (kind, clip id) -> the file to serve, or None when there is no such clip
MediaLookup = Callable[[str, str], "Path | None"]
# answers a `/review/...` request: (scope, receive, send, path)
ReviewRoutes = Callable[[Scope, Receive, Send, str], Awaitable[None]]


def media_url(kind: str, clip_id: str) -> str:
    """The URL a clip's video ("clip") or thumbnail ("thumb") is served at: by id, never by path."""
    return f"{MEDIA_PREFIX}{kind}/{clip_id}.{MEDIA_KINDS[kind][0]}"


def sniff(head: bytes) -> str | None:
    """What a file is by its first bytes: "image", "video", "zip", or None for anything else."""
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return "image"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):  # mp4, mov, m4v, 3gp
        return "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # matroska, webm
        return "video"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    return None


class SafeFiles:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], media: MediaLookup | None = None,
                 reviews: ReviewRoutes | None = None):
        self.app = app
        self.media = media
        self.reviews = reviews

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = unquote(scope.get("path", ""))
        if path.startswith(REVIEW_PREFIX) or path == REVIEW_PREFIX.rstrip("/"):
            if self.reviews is None:
                await _answer(send, 404, "Not found")
            else:
                await self.reviews(scope, receive, send, path)
            return
        if path.startswith(MEDIA_PREFIX):
            await self._media(scope, receive, send, path)
            return
        linked = FILE_MEDIA_LINK.search(path)
        if linked:  # gradio_client fetches a URL output through `file=<url>`: serve it by id, fetch nothing
            await self._media(scope, receive, send, linked.group(1))
            return
        if path.rstrip("/") == UPLOAD_ROUTE and scope.get("method") == "POST":
            await self._upload(scope, receive, send)
            return
        named = API_CALL.match(path)
        if scope.get("method") == "POST" and (named or path.rstrip("/") == QUEUE_JOIN):
            await self._call(scope, receive, send, named.group(1) if named else None)
            return
        if path in ("/", "") and scope.get("method") == "GET" and await _must_sign_in_with_hf(scope):
            await _redirect(send, _login_url(scope))
            return
        is_file = FILE_ROUTE in path
        if is_file and not path.lower().endswith(SERVED_SUFFIXES):
            await _answer(send, 404, "Not found")
            return
        await self.app(scope, receive, _safe_headers(send, is_file))

    async def _media(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        from starlette.responses import FileResponse

        match = MEDIA_ROUTE.match(path)
        if match is None or self.media is None or scope.get("method") not in ("GET", "HEAD"):
            await _answer(send, 404, "Not found")
            return
        if not await _may_see(scope):
            await _answer(send, 401, "Not authenticated")
            return
        kind, clip_id = match.group(1), match.group(2)
        found = self.media(kind, clip_id)
        if found is None or not found.is_file():
            await _answer(send, 404, "Not found")
            return
        response = FileResponse(found, media_type=MEDIA_KINDS[kind][1],
                                headers={"cache-control": "private, max-age=3600"})
        await response(scope, receive, _safe_headers(send, False))

    async def _call(self, scope: Scope, receive: Receive, send: Send, api_name: str | None) -> None:
        """Gradio answers an API name or a function index the app does not have with a 500 and a traceback in
        the log: answer 404 (400 for a queue join naming nothing) with what is wrong. Only for a request
        that may see the app; anyone else gets Gradio's own 401. The body is read, then handed on as it was."""
        messages: list[dict] = []
        size, more = 0, True
        while more and size <= MAX_CALL_BODY:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        if not more and await _may_see(scope):
            body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
            refused = _unknown_target(scope, api_name, body)
            if refused is not None:
                await _answer(send, *refused)
                return

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, _safe_headers(send, False))

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let Gradio store the upload, then look at what was stored: keep media, delete the rest."""
        start: dict | None = None
        body = bytearray()

        async def hold(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        try:
            await self.app(scope, receive, hold)
        except Exception as e:
            if is_disk_full(e):
                log.error("an upload could not be stored: the disk is full")
                await _answer(send, 507, "The server's disk is full: the upload was not stored. Try again later.")
                return
            raise
        if start is None:
            await _answer(send, 500, "The upload failed.")
            return
        if start["status"] == 200 and len(body) <= MAX_UPLOAD_ANSWER:
            refused = _check_uploads(bytes(body))
            if refused:
                await _answer(send, 415, refused)
                return
        if start["status"] >= 500 and b"No space left" in body:
            await _answer(send, 507, "The server's disk is full: the upload was not stored. Try again later.")
            return
        await _safe_headers(send, False)(start)
        await send({"type": "http.response.body", "body": bytes(body)})


def _unknown_target(scope: Scope, api_name: str | None, body: bytes) -> tuple[int, str] | None:
    """(status, why) when a call names a function or an API endpoint (`api_name`, from the path; None for a
    queue join) the app does not have, else None (a malformed body is left to Gradio, which answers 422)."""
    app = scope.get("app")
    if app is None or not hasattr(app, "get_blocks"):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    fns = app.get_blocks().fns
    index = data.get("fn_index")
    listed = "the API's endpoints are listed at /gradio_api/info"
    if index is not None:
        if isinstance(index, int) and not isinstance(index, bool) and index not in fns:
            return 404, f"there is no function {index} in this app; {listed}"
        return None
    if api_name is None:
        return 400, "a queue join needs fn_index, the function to run"
    if any(fn.api_name == api_name for fn in fns.values()):
        return None
    shown = api_name if len(api_name) <= 60 else api_name[:57] + "..."
    return 404, f"there is no API endpoint {shown!r}; {listed}"


def _check_uploads(answer: bytes) -> str | None:
    """Gradio answers an upload with the stored paths. If any is not media, delete them all and say why."""
    try:
        paths = json.loads(answer)
    except ValueError:
        return None
    if not isinstance(paths, list):
        return None
    problem = None
    for p in paths:
        if not isinstance(p, str):
            continue
        try:
            with open(p, "rb") as f:
                head = f.read(16)
        except OSError:
            continue
        if sniff(head) is None:
            problem = (f"'{Path(p).name}' is not an image, a video or a zip (judged by its content, not its "
                       "name); only those can be uploaded")
            break
    if problem is None:
        return None
    for p in paths:
        if isinstance(p, str):
            Path(p).unlink(missing_ok=True)
            _remove_if_empty(Path(p).parent)
    return problem


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # Gradio stores each upload in a folder of its own
    except OSError:
        pass


async def _may_see(scope: Scope) -> bool:
    """Whether the request may see the gallery: always without accounts, else when signed in (a Gradio
    login cookie, or the user an auth dependency such as Sign in with Hugging Face names)."""
    app = scope.get("app")
    if app is None:
        return False
    auth, dependency = getattr(app, "auth", None), getattr(app, "auth_dependency", None)
    if auth is None and dependency is None:
        return True
    return await signed_in_name(scope) is not None


async def signed_in_name(scope: Scope) -> str | None:
    """The user a request is signed in as (a Gradio login cookie, or the user an auth dependency such as Sign in
    with Hugging Face names); None without accounts or without a login."""
    app = scope.get("app")
    if app is None:
        return None
    auth, dependency = getattr(app, "auth", None), getattr(app, "auth_dependency", None)
    if dependency is not None:
        from starlette.requests import Request

        user = dependency(Request(scope))
        if inspect.isawaitable(user):
            user = await user
        return user if isinstance(user, str) and user else None
    if auth is None:
        return None
    cookies = SimpleCookie()
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            try:
                cookies.load(value.decode("latin-1"))
            except Exception:
                return None
    cookie_id = getattr(app, "cookie_id", "")
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        morsel = cookies.get(name)
        user = getattr(app, "tokens", {}).get(morsel.value) if morsel is not None else None
        if isinstance(user, str) and user:
            return user
    return None


async def _must_sign_in_with_hf(scope: Scope) -> bool:
    """The page, asked for by someone not signed in, on a studio that signs in with Hugging Face."""
    app = scope.get("app")
    return getattr(app, "auth_dependency", None) is not None and not await _may_see(scope)


def _login_url(scope: Scope) -> str:
    """Sign in, then come back to the same page (a `?clip=` link stays a link to that clip)."""
    from urllib.parse import quote

    query = scope.get("query_string", b"").decode("latin-1")
    target = "/" + (f"?{query}" if query else "")
    return "/login/huggingface?_target_url=" + quote(target, safe="")


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 302,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0"),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": b""})


def _safe_headers(send: Send, is_file: bool) -> Send:
    async def send_safely(message: dict) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
            headers.append((b"x-content-type-options", b"nosniff"))
            if is_file:
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if not ctype.startswith(INLINE_TYPES):
                    headers = [(k, v) for k, v in headers
                               if k.lower() not in (b"content-type", b"content-disposition")]
                    headers += [(b"content-type", b"application/octet-stream"),
                                (b"content-disposition", b"attachment")]
            message = {**message, "headers": headers}
        await send(message)

    return send_safely


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})
