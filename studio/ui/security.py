"""What the web server hands out, narrowed (#14): an ASGI middleware in front of Gradio's app.

- Files (`/gradio_api/file=...`) are served only when they are media or an export (mp4, webm, gif,
  jpg, png, webp, zip): never the database, a sidecar, a lock or an uploaded page or script.
- Every answer carries `X-Content-Type-Options: nosniff`; a served file that is not image or video is
  sent as an attachment, so a browser never renders it as a page.

Gradio itself only serves files under the allowed paths (the data dir's clips/, exports/ and inputs/,
and its own upload cache); this narrows what is inside them.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable
from urllib.parse import unquote

SERVED_SUFFIXES = (".mp4", ".webm", ".gif", ".jpg", ".jpeg", ".png", ".webp", ".zip")
INLINE_TYPES = (b"image/", b"video/")
FILE_ROUTE = "/file="

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class SafeFiles:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = unquote(scope.get("path", ""))
        is_file = FILE_ROUTE in path
        if is_file and not path.lower().endswith(SERVED_SUFFIXES):
            await _not_found(send)
            return

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

        await self.app(scope, receive, send_safely)


async def _not_found(send: Send) -> None:
    body = b'{"detail":"Not found"}'
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})
