"""The review page: what a review link (`/review/<token>`) opens, served by the middleware in front of Gradio
(security.SafeFiles), with no login and no Gradio.

    GET  /review/<token>                 the page: the link's clips in lock-step, each with its recipe, votes
                                         and comments; server-rendered, every text escaped
    GET  /review/<token>/clip/<n>.mp4    the video of the link's n-th clip (0-based); thumb/<n>.jpg its thumbnail
    GET  /review/<token>/state[?name=]   votes and comments as JSON (and which clips `name` voted for)
    POST /review/<token>/comment         {"clip": n, "name": "...", "text": "...", "at": 1.2 | null}
    POST /review/<token>/vote            {"clip": n, "name": "...", "vote": true | false}

Clips are addressed by their place in the link, never by id, so a link cannot name any other clip. Any token
that is altered, unknown, expired or revoked answers the same 404. The page allows no resource from elsewhere
and runs only its one inline script (a Content-Security-Policy nonce); it sends no Referer, so the token does not
leak to other sites. Posts must be JSON (`Content-Type: application/json`, which a cross-site form cannot send
without a CORS preflight this server never grants) from this origin (`Origin`, when sent), at most 16 KB.
"""

from __future__ import annotations

import html
import json
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool

from studio.clips import review_recipe
from studio.facade import RateLimited, ReviewError, ReviewNotFound, duration
from studio.ui.common import MODE_NAMES, axes_label, differing
from studio.ui.security import signed_in_name

if TYPE_CHECKING:
    from studio.facade import ClipView, ReviewView, StudioFacade

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

STATIC = Path(__file__).resolve().parent / "static"
ROUTE = re.compile(r"^/review/(?P<token>[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{22})"
                   r"(?:/(?:(?P<kind>clip|thumb)/(?P<pos>\d{1,3})\.(?P<ext>mp4|jpg)|(?P<action>state|comment|vote)))?/?$")
FILES = {"clip": ("mp4", "video/mp4"), "thumb": ("jpg", "image/jpeg")}
MAX_BODY = 16 * 1024
LABEL_KEYS = {"prompt": "prompt", "negative_prompt": "negative", "seed": "seed", "model_id": "model", "mode": "mode",
              "steps": "steps", "cfg_scale": "CFG", "frames": "frames", "fps": "fps", "width": "width",
              "height": "height", "strength": "strength", "profile": "profile"}
BASE_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                (b"x-robots-tag", b"noindex, nofollow"), (b"cross-origin-resource-policy", b"same-origin")]
NOT_FOUND_PAGE = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Not found</title></head><body>"
                  "<h1>Not found</h1><p>This review link does not exist, has expired or was revoked.</p></body></html>")


def letter(position: int) -> str:
    """A, B, ..., Z, AA, AB, ...: how the page names its clips."""
    out = ""
    position += 1
    while position:
        position, rest = divmod(position - 1, 26)
        out = chr(65 + rest) + out
    return out


class ReviewRoutes:
    """The `/review/...` routes (called by SafeFiles with the decoded path)."""

    def __init__(self, studio: "StudioFacade",
                 who: Callable[[Scope], Awaitable[str | None]] = signed_in_name):
        self.studio = studio
        self.who = who
        self._script = (STATIC / "syncgrid.js").read_text(encoding="utf-8") + "\n" + REVIEW_JS

    async def __call__(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        match = ROUTE.match(path)
        method = scope.get("method", "GET")
        if match is None:
            await _not_found(send, method)
            return
        token, action = match.group("token"), match.group("action")
        if match.group("kind"):
            await self._file(scope, receive, send, token, match.group("kind"), int(match.group("pos")),
                             match.group("ext"))
        elif action in ("comment", "vote"):
            if method != "POST":
                await _json(send, 405, {"detail": "POST a JSON body"}, [(b"allow", b"POST")])
                return
            await self._post(scope, receive, send, token, action)
        elif method not in ("GET", "HEAD"):
            await _json(send, 405, {"detail": "Method not allowed"}, [(b"allow", b"GET, HEAD")])
        elif action == "state":
            await self._state(scope, send, token)
        else:
            await self._page(scope, send, token)

    # ---- the page ------------------------------------------------------------------------------------
    async def _page(self, scope: Scope, send: Send, token: str) -> None:
        user = await self.who(scope)
        try:
            review, views, state = await run_in_threadpool(self._load, token, user)
        except ReviewNotFound:
            await _not_found(send, scope.get("method", "GET"))
            return
        nonce = secrets.token_urlsafe(18)
        body = render_page(review, views, state, nonce, self._script, user).encode("utf-8")
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self'; "
               "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-security-policy", csp.encode()),
                   (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store")]
        await _send(send, 200, headers, body, head=scope.get("method") == "HEAD")

    def _load(self, token: str, user: str | None):  # type: ignore[no-untyped-def]
        review = self.studio.open_review(token)
        return review, self.studio.review_clips(review), self.studio.review_state(token, signed_in_as=user)

    async def _file(self, scope: Scope, receive: Receive, send: Send, token: str, kind: str, position: int,
                    ext: str) -> None:
        from starlette.responses import FileResponse

        found = None
        if scope.get("method") in ("GET", "HEAD") and ext == FILES[kind][0]:
            found = await run_in_threadpool(self.studio.review_file, token, kind, position)
        if found is None or not found.is_file():
            await _json(send, 404, {"detail": "Not found"})
            return
        response = FileResponse(found, media_type=FILES[kind][1],
                                headers={"cache-control": "private, max-age=300", "referrer-policy": "no-referrer",
                                         "cross-origin-resource-policy": "same-origin"})
        await response(scope, receive, _with_nosniff(send))

    async def _state(self, scope: Scope, send: Send, token: str) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        name = (query.get("name") or [None])[0]
        user = await self.who(scope)
        try:
            state = await run_in_threadpool(lambda: self.studio.review_state(token, name, signed_in_as=user))
        except ReviewNotFound:
            await _json(send, 404, {"detail": "Not found"})
            return
        await _json(send, 200, state)

    # ---- comments and votes --------------------------------------------------------------------------
    async def _post(self, scope: Scope, receive: Receive, send: Send, token: str, action: str) -> None:
        refused = _cross_site(scope)
        if refused:
            await _json(send, 403, {"detail": refused})
            return
        if _header(scope, b"content-type").split(";")[0].strip().lower() != "application/json":
            await _json(send, 415, {"detail": "send JSON (Content-Type: application/json)"})
            return
        body = await _read_body(scope, receive)
        if body is None:
            await _json(send, 413, {"detail": f"the body is larger than {MAX_BODY // 1024} KB"})
            return
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            await _json(send, 400, {"detail": "the body is not JSON"})
            return
        if not isinstance(data, dict):
            await _json(send, 400, {"detail": "the body must be a JSON object"})
            return
        user = await self.who(scope)

        def act() -> dict:
            if action == "comment":
                comment = self.studio.review_comment(token, data.get("clip"), data.get("name"), data.get("text"),
                                                     data.get("at"), signed_in_as=user)
                return {"comment": comment.to_json()}
            votes, mine = self.studio.review_vote(token, data.get("clip"), data.get("name"), data.get("vote", True),
                                                  signed_in_as=user)
            return {"clip": data.get("clip"), "votes": votes, "mine": mine}

        try:
            answer = await run_in_threadpool(act)
        except ReviewNotFound:
            await _json(send, 404, {"detail": "Not found"})
        except RateLimited as e:
            await _json(send, 429, {"detail": str(e)}, [(b"retry-after", str(e.retry_after).encode())])
        except ReviewError as e:
            await _json(send, 403 if e.field == "comments" else 400, {"detail": str(e), "field": e.field})
        else:
            await _json(send, 201 if action == "comment" else 200, answer)


def render_page(review: "ReviewView", views: list["ClipView | None"], state: dict, nonce: str, script: str,
                user: str | None) -> str:
    """The review page: self-contained, every text escaped."""
    e = html.escape
    present = [v for v in views if v is not None]
    diff = differing(present) if len(present) > 1 else set()
    keys = [k for k in LABEL_KEYS if k in diff and k not in ("prompt", "negative_prompt")][:4]
    by_pos = {c["clip"]: c for c in state["clips"]}
    cards = []
    for position, view in enumerate(views):
        if view is None:
            cards.append(f"<section class='card gone'><h2>{letter(position)}</h2><p>This clip was deleted.</p></section>")
            continue
        cards.append(_card(review, position, view, keys, by_pos.get(position, {}), state["comments_allowed"]))
    count = len(present)
    what = {"clip": "a clip", "compare": f"a comparison of {count} clips", "sweep": f"a sweep of {count} clips",
            "batch": f"a batch of {count} clips"}.get(review.kind, f"{count} clips")
    expires = (f"This link works until <time datetime='{e(review.expires_at)}'>{e(review.expires_at.replace('T', ' ').replace('+00:00', ''))}"
               "</time> UTC." if review.expires_at else "")
    if user:
        who = (f"<p class='who'>Commenting and voting as <b>{e(user)}</b> (signed in).</p>"
               "<input type='hidden' id='reviewer-name' value=''>")
    else:
        who = ("<p class='who'><label>Your name <input id='reviewer-name' maxlength='64' autocomplete='name' "
               "placeholder='shown with your comments and votes'></label></p>")
    comments_note = "" if review.comments_allowed else "<p class='note'>Comments are turned off for this link.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex, nofollow">
<title>Review: {e(what)}</title><style nonce="{nonce}">{CSS}</style></head>
<body data-base="/review/{e(review.token)}" data-signed-in="{'1' if user else '0'}">
<header><h1>Review</h1><p>You are looking at {e(what)} from a video diffusion studio, shared for review: play them
together, vote for the ones you prefer, and comment (at a time in a clip, or on the whole clip). {expires}</p>
{who}{comments_note}<p id="review-status" role="status" aria-live="polite"></p></header>
<main id="review-grid" class="studio-sync">{''.join(cards)}</main>
<script nonce="{nonce}">{script}</script>
</body></html>"""


def _card(review: "ReviewView", position: int, view: "ClipView", keys: list[str], state: dict,
          comments_allowed: bool) -> str:
    e = html.escape
    name = letter(position)
    label = " · ".join(f"{LABEL_KEYS[k]} {_shown(getattr(view, k))}" for k in keys)
    if review.kind == "sweep" and view.axes:
        label = axes_label(view.axes) + f" · seed {view.seed}"
    recipe = review_recipe(view)
    rows = [("Prompt", recipe["prompt"]), ("Negative prompt", recipe["negative_prompt"]),
            ("Mode", MODE_NAMES.get(recipe["mode"], recipe["mode"])),
            ("Model", f"{recipe['model']}@{recipe['model_version']}"), ("Seed", recipe["seed"]),
            ("Steps", recipe["steps"]), ("CFG", recipe["cfg"]), ("Frames", f"{recipe['frames']} @ {recipe['fps']} fps"),
            ("Size", f"{recipe['width']}x{recipe['height']}"), ("Strength", recipe["strength"]),
            ("Profile", recipe["profile"])]
    if recipe["axes"]:
        rows.append(("Sweep cell", axes_label(recipe["axes"]) + f" · seed {view.seed}"))
    table = "".join(f"<tr><th scope='row'>{e(k)}</th><td>{e(_shown(v))}</td></tr>" for k, v in rows)
    base = f"/review/{e(review.token)}"
    length = duration(view)
    votes, mine = int(state.get("votes", 0)), bool(state.get("mine"))
    comments = "".join(comment_html(c) for c in state.get("comments", []))
    form = "" if not comments_allowed else (
        f"<form class='comment-form' data-pos='{position}' autocomplete='off'>"
        f"<label class='text'>Comment on {name} <textarea name='text' maxlength='2000' rows='2' required "
        f"placeholder='e.g. at 1.2 s the object splits'></textarea></label>"
        f"<label class='at'>at <input name='at' type='number' min='0' max='{length:.3f}' step='0.01' "
        f"inputmode='decimal' placeholder='whole clip'> s</label>"
        f"<button type='button' class='at-now' title='The time the players show now'>Now</button>"
        f"<button type='submit' class='send'>Comment</button></form>")
    return (f"<section class='card' id='clip-{name}' data-pos='{position}' data-duration='{length:.3f}'>"
            f"<h2>{name}<span class='label'>{e(label)}</span></h2>"
            f"<video src='{base}/clip/{position}.mp4' poster='{base}/thumb/{position}.jpg' data-fps='{view.fps}' "
            f"muted playsinline preload='auto' aria-label='Clip {name}'></video>"
            f"<div class='votes'><button type='button' class='vote' data-pos='{position}' aria-pressed='{str(mine).lower()}'>"
            f"{'★ Preferred' if mine else '☆ Prefer'}</button> <span class='count'>{votes}</span> "
            f"<span class='unit'>vote{'' if votes == 1 else 's'}</span></div>"
            f"<details class='recipe'><summary>Recipe</summary><table>{table}</table></details>"
            f"<ol class='comments' aria-label='Comments on {name}'>{comments}</ol>{form}</section>")


def comment_html(c: dict) -> str:
    """One comment, as the page's script builds it too (text only, never markup)."""
    e = html.escape
    at = c.get("at")
    seek = (f"<button type='button' class='seek' data-at='{float(at):.3f}' title='Show every clip at this time'>"
            f"{float(at):.2f} s</button> " if at is not None else "")
    guest = "" if c.get("signed_in") else "<span class='guest'> (guest)</span>"
    resolved = "<span class='resolved-mark'> · resolved</span>" if c.get("resolved") else ""
    attrs = f" data-at='{float(at):.3f}'" if at is not None else ""
    return (f"<li class='comment{' resolved' if c.get('resolved') else ''}'{attrs}>{seek}<b>{e(c['author'])}</b>"
            f"{guest}{resolved}<p>{e(c['text'])}</p></li>")


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---- HTTP helpers ----------------------------------------------------------------------------------------
def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _cross_site(scope: Scope) -> str | None:
    """Why a post does not come from a page of this studio, or None. A browser sends `Origin` with every
    POST; scripts (curl, tests) may leave it out, and then there is no page to forge one from."""
    site = _header(scope, b"sec-fetch-site").lower()
    if site and site not in ("same-origin", "none"):
        return "comments and votes are taken from the review page only"
    origin = _header(scope, b"origin")
    if not origin:
        return None
    host = (_header(scope, b"x-forwarded-host") or _header(scope, b"host")).split(",")[0].strip().lower()
    if origin == "null" or urlsplit(origin).netloc.lower() != host:
        return "comments and votes are taken from the review page only"
    return None


async def _read_body(scope: Scope, receive: Receive) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY (read no further)."""
    declared = _header(scope, b"content-length")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body.extend(message.get("body", b""))
        if len(body) > MAX_BODY:
            return None
        if not message.get("more_body"):
            break
    return bytes(body)


def _with_nosniff(send: Send) -> Send:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
            message = {**message, "headers": headers + [(b"x-content-type-options", b"nosniff")]}
        await send(message)

    return wrapped


async def _send(send: Send, status: int, headers: list, body: bytes, head: bool = False) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + BASE_HEADERS + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _json(send: Send, status: int, data: dict, extra: list | None = None) -> None:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    await _send(send, status, [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
                + (extra or []), body)


async def _not_found(send: Send, method: str = "GET") -> None:
    await _send(send, 404, [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"),
                            (b"content-security-policy", b"default-src 'none'")],
                NOT_FOUND_PAGE.encode(), head=method == "HEAD")


CSS = """
:root { color-scheme: light dark; --accent: #5b6ee1; --muted: #888; --card: rgba(127,127,127,.08); }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 12px 16px 40px; }
h1 { margin: 4px 0; font-size: 1.4em; }
header p { margin: 4px 0; }
.who input { font: inherit; padding: 3px 6px; min-width: 16em; }
#review-status { min-height: 1.3em; color: var(--accent); }
#review-status.bad { color: #d33; }
.note { color: var(--muted); }
#review-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 14px; }
.studio-sync-bar { grid-column: 1 / -1; display: flex; gap: 6px; align-items: center; flex-wrap: wrap;
  position: sticky; top: 0; z-index: 2; padding: 6px; background: Canvas; border-bottom: 1px solid var(--card); }
.studio-sync-scrub { flex: 1; min-width: 120px; }
.card { background: var(--card); border-radius: 8px; padding: 8px 10px; min-width: 0; }
.card h2 { font-size: 1.1em; margin: 0 0 6px; }
.card h2 .label { font-weight: normal; font-size: .8em; color: var(--muted); margin-left: .6em; }
.card video { width: 100%; display: block; border-radius: 4px; image-rendering: pixelated; background: #000; }
.votes { margin: 6px 0; }
button { font: inherit; cursor: pointer; }
.vote[aria-pressed=true] { background: var(--accent); color: #fff; border-color: var(--accent); }
.recipe table { border-collapse: collapse; font-size: .85em; }
.recipe th { text-align: left; padding: 1px 8px 1px 0; vertical-align: top; white-space: nowrap; }
.recipe td { word-break: break-word; }
.comments { list-style: none; padding: 0; margin: 6px 0; }
.comment { border-top: 1px solid rgba(127,127,127,.25); padding: 4px 0; }
.comment[data-at] { cursor: pointer; }
.comment p { margin: 2px 0 0; white-space: pre-wrap; word-break: break-word; }
.comment.resolved { opacity: .6; }
.guest, .resolved-mark { color: var(--muted); font-size: .85em; }
.seek { font-size: .85em; padding: 0 4px; }
.comment-form { display: flex; flex-wrap: wrap; gap: 4px 8px; align-items: end; }
.comment-form .text { flex: 1 1 100%; display: flex; flex-direction: column; font-size: .85em; }
.comment-form textarea { font: inherit; width: 100%; box-sizing: border-box; }
.comment-form .at input { width: 7em; font: inherit; }
"""

REVIEW_JS = r"""
(function () {
  "use strict";
  const body = document.body;
  const base = body.dataset.base;
  const signedIn = body.dataset.signedIn === "1";
  const grid = document.getElementById("review-grid");
  const nameBox = document.getElementById("reviewer-name");
  const status = document.getElementById("review-status");
  const KEY = "studio-review-name";
  const player = () => window.StudioSync.attach(grid);
  player();
  const say = (text, bad) => { status.textContent = text; status.classList.toggle("bad", !!bad); };
  if (nameBox && !signedIn) { try { nameBox.value = localStorage.getItem(KEY) || ""; } catch (e) { /* private mode */ } }
  const name = () => (signedIn || !nameBox ? "" : nameBox.value.trim());
  const needName = () => {
    if (signedIn || name()) return false;
    say("Type your name first (it is shown with your comments and votes).", true);
    nameBox.focus();
    return true;
  };

  async function post(what, payload) {
    const r = await fetch(`${base}/${what}`, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
    let data = {};
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) throw new Error(data.detail || `the studio answered ${r.status}`);
    return data;
  }

  // one comment, built from text nodes only: nothing a reviewer types becomes markup
  function commentItem(c) {
    const li = document.createElement("li");
    li.className = "comment" + (c.resolved ? " resolved" : "");
    if (c.at !== null && c.at !== undefined) {
      li.dataset.at = Number(c.at).toFixed(3);
      const b = document.createElement("button");
      b.type = "button"; b.className = "seek"; b.dataset.at = li.dataset.at;
      b.title = "Show every clip at this time"; b.textContent = `${Number(c.at).toFixed(2)} s`;
      li.append(b, " ");
    }
    const who = document.createElement("b");
    who.textContent = c.author;
    li.append(who);
    if (!c.signed_in) { const g = document.createElement("span"); g.className = "guest"; g.textContent = " (guest)"; li.append(g); }
    if (c.resolved) { const m = document.createElement("span"); m.className = "resolved-mark"; m.textContent = " · resolved"; li.append(m); }
    const p = document.createElement("p");
    p.textContent = c.text;
    li.append(p);
    return li;
  }

  function showVotes(card, votes, mine) {
    const button = card.querySelector(".vote");
    button.setAttribute("aria-pressed", mine ? "true" : "false");
    button.textContent = mine ? "★ Preferred" : "☆ Prefer";
    card.querySelector(".count").textContent = String(votes);
    card.querySelector(".unit").textContent = votes === 1 ? "vote" : "votes";
  }

  function render(state) {
    for (const c of state.clips) {
      const card = grid.querySelector(`.card[data-pos="${c.clip}"]`);
      if (!card) continue;
      showVotes(card, c.votes, c.mine);
      card.querySelector(".comments").replaceChildren(...c.comments.map(commentItem));
    }
  }

  async function refresh() {
    const q = name() ? `?name=${encodeURIComponent(name())}` : "";
    try {
      const r = await fetch(`${base}/state${q}`, { credentials: "same-origin" });
      if (r.ok) render(await r.json());
    } catch (e) { /* keep what the page shows */ }
  }

  grid.addEventListener("click", async (e) => {
    const at = e.target.closest("[data-at]");
    if (at && !e.target.closest("form")) {  // a comment at a time: every clip goes there
      const p = player();
      p.pause();
      p.seek(parseFloat(at.dataset.at));
      return;
    }
    const now = e.target.closest(".at-now");
    if (now) {
      const card = now.closest(".card");
      const t = Math.min(player().now(), parseFloat(card.dataset.duration));
      now.closest("form").elements.at.value = t.toFixed(2);
      return;
    }
    const vote = e.target.closest(".vote");
    if (vote) {
      if (needName()) return;
      const card = vote.closest(".card");
      const want = vote.getAttribute("aria-pressed") !== "true";
      vote.disabled = true;
      try {
        const r = await post("vote", { clip: Number(card.dataset.pos), name: name(), vote: want });
        showVotes(card, r.votes, r.mine);
        say(r.mine ? "Vote counted." : "Vote taken back.");
      } catch (err) { say(err.message, true); }
      vote.disabled = false;
    }
  });

  grid.addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    if (needName()) return;
    const text = form.elements.text.value;
    const atText = form.elements.at.value.trim();
    const send = form.querySelector(".send");
    send.disabled = true;
    try {
      const r = await post("comment", { clip: Number(form.dataset.pos), name: name(), text,
                                        at: atText === "" ? null : parseFloat(atText) });
      form.closest(".card").querySelector(".comments").append(commentItem(r.comment));
      form.reset();
      say("Comment posted.");
    } catch (err) { say(err.message, true); }
    send.disabled = false;
  });

  if (nameBox && !signedIn) {
    nameBox.addEventListener("change", () => {
      try { localStorage.setItem(KEY, name()); } catch (e) { /* private mode */ }
      refresh();
    });
  }
  if (name()) refresh();
})();
"""
