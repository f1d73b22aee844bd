"""Review links: some clips shown read-only, in lock-step, to whoever holds an unguessable link, who may comment
on them (at a time in a clip, or on the whole clip) and vote for the ones they prefer.

A link is `/review/<id>.<signature>`: `id` is 16 random bytes (the row's key), `signature` an HMAC-SHA256 of it
under a secret kept in the data dir (`review-links.key`, mode 0600, never served). An altered token fails the
signature before any database lookup; an expired or revoked one is refused after it; all three look the same
to the caller (not found). A row alone, read from a copy of the database, does not make a working link.

Reviewers are who they say they are (a name, 1 to 64 characters) unless they are signed in to the studio, when
they are their account. Votes: one per reviewer and clip (see `storage.models.ReviewVote` for who counts as the
same reviewer). Comments and votes are limited per link and minute, in this process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import threading
import time
import unicodedata
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy.exc import IntegrityError

from storage.models import (
    MAX_COMMENT_CHARS,
    MAX_REVIEWER_CHARS,
    REVIEW_KINDS,
    Review,
    ReviewComment,
    ReviewVote,
    utcnow,
)
from storage.repositories import GalleryRepository, NotFound, QueryError, ReviewRepository, check_text
from studio.gallery import ClipView, GalleryService

SECRET_NAME = "review-links"
TOKEN = re.compile(r"^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{22})$")
_SIGNING = b"studio review link v1\x00"
MAX_CLIPS = 64  # a sweep's most
MAX_COMPARE = 9
MAX_EXPIRY = timedelta(days=366)
EXPIRY = re.compile(r"^\s*(\d{1,6})\s*([dhm])\s*$", re.IGNORECASE)
EXPIRY_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
COMMENTS_PER_MINUTE = 20  # per link
VOTES_PER_MINUTE = 60  # per link
RATE_WINDOW_S = 60.0


class ReviewError(QueryError):
    """A comment, vote or link the studio refuses; `field` names what is wrong."""


class CommentsOff(ReviewError):
    """The link was made with comments turned off."""

    def __init__(self) -> None:
        super().__init__("comments", "are turned off for this link")


class RateLimited(ReviewError):
    """Too many comments or votes through one link within a minute; `retry_after` in seconds."""

    def __init__(self, what: str, limit: int, retry_after: float):
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(what, f"at most {limit} a minute through one link; try again in {self.retry_after} s")


class ReviewNotFound(LookupError):
    """No such link, or it expired or was revoked, or its token was altered: callers answer 404 to all four."""


def parse_expiry(text: str | None) -> timedelta | None:
    """`7d`, `12h`, `30m` (None, "" or "never": the link does not expire); ReviewError naming `expires`."""
    if text is None or not str(text).strip() or str(text).strip().lower() in ("never", "none", "0"):
        return None
    match = EXPIRY.match(str(text))
    if match is None:
        raise ReviewError("expires", f"{str(text)[:20]!r} is not a duration like 7d, 12h or 30m")
    span = int(match.group(1)) * EXPIRY_UNITS[match.group(2).lower()]
    if not timedelta(0) < span <= MAX_EXPIRY:
        raise ReviewError("expires", f"{str(text)[:20]!r}: a link lasts from 1 minute to {MAX_EXPIRY.days} days")
    return span


def new_review_id() -> str:
    """A random id for a new link that never begins with `-`, so its token reads as an argument on a command line
    (`studio share revoke <token>`), not as an option. Links made before this keep working: ids are looked up, not parsed."""
    while True:
        review_id = secrets.token_urlsafe(16)
        if not review_id.startswith("-"):
            return review_id


def sign(secret: bytes, review_id: str) -> str:
    digest = hmac.new(secret, _SIGNING + review_id.encode("ascii"), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def duration(view: ClipView) -> float:
    """A clip's length in seconds."""
    return view.frames / view.fps if view.fps else 0.0


@dataclass(frozen=True)
class ReviewView:
    id: str
    token: str  # what the link carries: `<id>.<signature>`
    kind: str
    subject: str | None
    clip_ids: tuple[str, ...]
    author: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    comments_allowed: bool
    state: str  # "active", "expired" or "revoked"

    @property
    def path(self) -> str:
        return f"/review/{self.token}"


@dataclass(frozen=True)
class CommentView:
    id: str
    review_id: str
    clip_id: str
    author: str  # the name the reviewer gave, or their account's
    signed_in: bool  # they were signed in to the studio (else: a name typed on the link)
    text: str
    at: float | None
    created_at: str
    resolved: bool
    resolved_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "author": self.author, "signed_in": self.signed_in, "text": self.text, "at": self.at,
                "created_at": self.created_at, "resolved": self.resolved}


@dataclass(frozen=True)
class VoteView:
    clip_id: str
    reviewer: str
    signed_in: bool
    review_id: str
    created_at: str


@dataclass(frozen=True)
class Reviewer:
    name: str  # shown
    account: str | None  # signed in as
    voter: str  # who counts as the same reviewer (ReviewVote.voter)


class RateLimiter:
    """At most `limit` events per key within a sliding window, in this process."""

    def __init__(self, limit: int, window_s: float = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._events: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Record one event and return 0, or return the seconds until one is allowed (recording nothing)."""
        now = self.clock()
        with self._lock:
            events = self._events[key]
            while events and now - events[0] >= self.window_s:
                events.popleft()
            if len(events) >= self.limit:
                return self.window_s - (now - events[0])
            events.append(now)
            if len(self._events) > 10_000:  # forget idle links
                for idle in [k for k, q in self._events.items() if not q or now - q[-1] >= self.window_s]:
                    del self._events[idle]
            return 0.0


class ReviewService:
    def __init__(self, session_factory: Callable, gallery: GalleryService, secret: bytes, *,
                 clock: Callable[[], datetime] = utcnow, monotonic: Callable[[], float] = time.monotonic):
        if len(secret) < 16:
            raise ValueError("the review links' secret must be at least 16 bytes")
        self._session_factory = session_factory
        self._gallery = gallery
        self._secret = secret
        self._clock = clock
        self._comments = RateLimiter(COMMENTS_PER_MINUTE, clock=monotonic)
        self._votes = RateLimiter(VOTES_PER_MINUTE, clock=monotonic)

    # ---- links ------------------------------------------------------------------------------------
    def create(self, kind: str, clip_ids: list[str], *, subject: str | None = None, author: str | None = None,
               expires: timedelta | None = None, comments: bool = True) -> ReviewView:
        """A new link to these clips (in this order). ReviewError names a bad kind, clip or expiry."""
        if kind not in REVIEW_KINDS:
            raise ReviewError("kind", f"{kind!r} is not one of {', '.join(REVIEW_KINDS)}")
        ids = list(dict.fromkeys(clip_ids))
        wanted = {"clip": (1, 1), "compare": (2, MAX_COMPARE)}.get(kind, (1, MAX_CLIPS))
        if not wanted[0] <= len(ids) <= wanted[1]:
            raise ReviewError("clips", f"a {kind} link shows {wanted[0]} to {wanted[1]} clips, not {len(ids)}")
        if expires is not None and not timedelta(0) < expires <= MAX_EXPIRY:
            raise ReviewError("expires", f"a link lasts from 1 minute to {MAX_EXPIRY.days} days")
        now = self._clock()
        with self._session_factory() as session, session.begin():
            gallery = GalleryRepository(session)
            for clip_id in ids:
                if gallery.get(clip_id) is None:
                    raise ReviewError("clips", f"no clip {str(clip_id)[:40]!r}")
            review = ReviewRepository(session, self._clock).add(Review(
                id=new_review_id(), kind=kind, subject=subject, clip_ids=ids, author=author, created_at=now,
                expires_at=now + expires if expires is not None else None, comments_allowed=bool(comments)))
            return self._view(review)

    def list(self, author: str | None = None, *, everyone: bool = False) -> list[ReviewView]:
        with self._session_factory() as session:
            return [self._view(r) for r in ReviewRepository(session).list(author, everyone=everyone)]

    def find(self, token: str) -> ReviewView | None:
        """The link this token (or a URL ending in it) names, if its signature holds: active, expired or revoked."""
        review_id = self._verified_id(token)
        if review_id is None:
            return None
        with self._session_factory() as session:
            review = ReviewRepository(session).get(review_id)
            return None if review is None else self._view(review)

    def by_id(self, review_id: str) -> ReviewView | None:
        with self._session_factory() as session:
            review = ReviewRepository(session).get(review_id)
            return None if review is None else self._view(review)

    def open(self, token: str) -> ReviewView:
        """The link, if it is one and still open; ReviewNotFound otherwise (altered, unknown, expired, revoked)."""
        view = self.find(token) if isinstance(token, str) and TOKEN.match(token) else None
        if view is None or view.state != "active":
            raise ReviewNotFound("no such review link")
        return view

    def revoke(self, token: str) -> ReviewView:
        review_id = self._verified_id(token)
        with self._session_factory() as session, session.begin():
            try:
                review = ReviewRepository(session, self._clock).revoke(review_id or "")
            except NotFound:
                raise ReviewNotFound("no such review link") from None
            return self._view(review)

    def clips(self, review: ReviewView) -> list[ClipView | None]:
        """The link's clips by position (None where a clip was deleted since)."""
        return [self._gallery.get(clip_id) for clip_id in review.clip_ids]

    def clip_at(self, review: ReviewView, position: object) -> ClipView:
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < len(review.clip_ids):
            raise ReviewError("clip", "is not one of this link's clips")
        view = self._gallery.get(review.clip_ids[position])
        if view is None:
            raise ReviewError("clip", "was deleted")
        return view

    # ---- reviewers --------------------------------------------------------------------------------
    def reviewer(self, review: ReviewView, name: object, account: str | None = None) -> Reviewer:
        """Who is commenting or voting: their account when signed in, else the name they gave (checked)."""
        if account:
            return Reviewer(account, account, f"account:{account}")
        if not isinstance(name, str):
            raise ReviewError("name", "give your name (1 to 64 characters)")
        clean = " ".join(_checked("name", name).split())
        if not clean:
            raise ReviewError("name", "give your name (1 to 64 characters)")
        if len(clean) > MAX_REVIEWER_CHARS:
            raise ReviewError("name", f"is longer than {MAX_REVIEWER_CHARS} characters")
        if any(unicodedata.category(c) in ("Cc", "Cf") for c in clean):
            raise ReviewError("name", "contains control or formatting characters")
        return Reviewer(clean, None, f"guest:{review.id}:{clean.casefold()}")

    # ---- comments ---------------------------------------------------------------------------------
    def comment(self, token: str, position: object, name: object, text: object, at: object = None, *,
                account: str | None = None) -> CommentView:
        review = self.open(token)
        if not review.comments_allowed:
            raise CommentsOff()
        clip = self.clip_at(review, position)
        who = self.reviewer(review, name, account)
        body = _comment_text(text)
        seconds = _at(at, clip)
        wait = self._comments.take(review.id)
        if wait:
            raise RateLimited("comments", COMMENTS_PER_MINUTE, wait)
        with self._session_factory() as session, session.begin():
            comment = ReviewRepository(session, self._clock).add_comment(ReviewComment(
                review_id=review.id, clip_id=clip.id, reviewer=who.name, account=who.account, text=body,
                at_seconds=seconds, created_at=self._clock()))
            return _comment_view(comment)

    def comments(self, *, clip_id: str | None = None, review_id: str | None = None) -> list[CommentView]:
        with self._session_factory() as session:
            return [_comment_view(c) for c in ReviewRepository(session).comments(clip_id=clip_id, review_id=review_id)]

    def get_comment(self, comment_id: str) -> CommentView | None:
        with self._session_factory() as session:
            c = ReviewRepository(session).get_comment(comment_id)
            return None if c is None else _comment_view(c)

    def resolve(self, comment_id: str, resolved: bool = True, by: str | None = None) -> CommentView:
        with self._session_factory() as session, session.begin():
            try:
                return _comment_view(ReviewRepository(session, self._clock).resolve(comment_id, resolved, by))
            except NotFound:
                raise KeyError(f"no comment {comment_id!r}") from None

    # ---- votes ------------------------------------------------------------------------------------
    def vote(self, token: str, position: object, name: object, on: object = True, *,
             account: str | None = None) -> tuple[int, bool]:
        """Vote for a clip of the link (`on`), or take the vote back. Returns (the clip's votes, voting now)."""
        review = self.open(token)
        clip = self.clip_at(review, position)
        who = self.reviewer(review, name, account)
        if not isinstance(on, bool):
            raise ReviewError("vote", "must be true (vote) or false (take the vote back)")
        wait = self._votes.take(review.id)
        if wait:
            raise RateLimited("votes", VOTES_PER_MINUTE, wait)
        for attempt in range(2):
            try:
                with self._session_factory() as session, session.begin():
                    repo = ReviewRepository(session, self._clock)
                    now_on = repo.set_vote(ReviewVote(clip_id=clip.id, voter=who.voter, review_id=review.id,
                                                      reviewer=who.name, account=who.account), on)
                break
            except IntegrityError:  # the same vote, cast at the same moment through another request
                if attempt:
                    raise ReviewError("clip", "was deleted") from None
        return self.vote_counts([clip.id]).get(clip.id, 0), now_on

    def votes(self, *, clip_id: str | None = None, review_id: str | None = None) -> list[VoteView]:
        with self._session_factory() as session:
            return [VoteView(v.clip_id, v.reviewer, v.account is not None, v.review_id, _iso(v.created_at) or "")
                    for v in ReviewRepository(session).votes(clip_id=clip_id, review_id=review_id)]

    def vote_counts(self, clip_ids: list[str]) -> dict[str, int]:
        with self._session_factory() as session:
            return ReviewRepository(session).vote_counts(clip_ids)

    def state(self, token: str, name: object = None, *, account: str | None = None) -> dict[str, Any]:
        """What a review page shows besides the clips: per position its votes, whether this reviewer voted for it,
        and its comments made through this link."""
        review = self.open(token)
        try:
            who = self.reviewer(review, name, account) if (account or name) else None
        except ReviewError:
            who = None
        with self._session_factory() as session:
            repo = ReviewRepository(session)
            counts = repo.vote_counts(list(review.clip_ids))
            mine = repo.voted(who.voter, list(review.clip_ids)) if who else set()
            comments = [_comment_view(c) for c in repo.comments(review_id=review.id)]
        out = []
        for position, clip_id in enumerate(review.clip_ids):
            out.append({"clip": position, "votes": counts.get(clip_id, 0), "mine": clip_id in mine,
                        "comments": [c.to_json() for c in comments if c.clip_id == clip_id]})
        return {"reviewer": who.name if who else None, "signed_in": bool(who and who.account),
                "comments_allowed": review.comments_allowed, "clips": out}

    # ---- tokens -----------------------------------------------------------------------------------
    def token(self, review_id: str) -> str:
        return f"{review_id}.{sign(self._secret, review_id)}"

    def _verified_id(self, token: object) -> str | None:
        """The review id of a well-formed token whose signature holds (checked in constant time), else None.
        A URL or path ending in the token is taken too (what `studio share list` prints)."""
        if not isinstance(token, str):
            return None
        token = token.strip().rstrip("/").rsplit("/", 1)[-1]
        match = TOKEN.match(token)
        if match is None:
            return None
        review_id, signature = match.groups()
        if not hmac.compare_digest(sign(self._secret, review_id), signature):
            return None
        return review_id

    def _view(self, r: Review) -> ReviewView:
        now = self._clock()
        state = ("revoked" if r.revoked_at is not None else
                 "expired" if r.expires_at is not None and r.expires_at <= now else "active")
        return ReviewView(id=r.id, token=self.token(r.id), kind=r.kind, subject=r.subject,
                          clip_ids=tuple(r.clip_ids or ()), author=r.author, created_at=_iso(r.created_at) or "",
                          expires_at=_iso(r.expires_at), revoked_at=_iso(r.revoked_at),
                          comments_allowed=bool(r.comments_allowed), state=state)


def _checked(field: str, value: object) -> str:
    """`check_text`, refusing as a ReviewError (what the review routes answer 400 to)."""
    try:
        return check_text(field, value)
    except QueryError as e:
        raise ReviewError(field, str(e).split(": ", 1)[-1]) from None


def _comment_view(c: ReviewComment) -> CommentView:
    return CommentView(id=c.id, review_id=c.review_id, clip_id=c.clip_id, author=c.reviewer,
                       signed_in=c.account is not None, text=c.text, at=c.at_seconds,
                       created_at=_iso(c.created_at) or "", resolved=bool(c.resolved), resolved_by=c.resolved_by)


def _comment_text(text: object) -> str:
    if not isinstance(text, str):
        raise ReviewError("text", "write a comment (1 to 2000 characters)")
    body = _checked("text", text).replace("\r\n", "\n").replace("\r", "\n").strip()
    if not body:
        raise ReviewError("text", "is empty")
    if len(body) > MAX_COMMENT_CHARS:
        raise ReviewError("text", f"is longer than {MAX_COMMENT_CHARS} characters ({len(body)})")
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in body):
        raise ReviewError("text", "contains control characters")
    return body


def _at(at: object, clip: ClipView) -> float | None:
    """A time in the clip, in seconds (None: the whole clip)."""
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise ReviewError("at", "must be a time in seconds")
    length = duration(clip)
    if not 0 <= at <= length + 1e-6:
        raise ReviewError("at", f"{at:g} s is outside the clip (0 to {length:.2f} s)")
    return round(float(min(at, length)), 3)


__all__ = ["CommentView", "CommentsOff", "RateLimited", "ReviewError", "ReviewNotFound", "ReviewService",
           "ReviewView", "Reviewer", "VoteView", "duration", "parse_expiry"]
