"""Repositories over a Session. They flush but NEVER commit: the job service owns the transaction."""

from __future__ import annotations

import base64
import builtins
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, delete, exists, func, select, text, tuple_, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from storage.models import (
    FINISHED_STATUSES,
    JOB_STATUSES,
    MAX_TAG_CHARS,
    Clip,
    ClipTag,
    Job,
    Review,
    ReviewComment,
    ReviewVote,
    User,
    utcnow,
)

MAX_PAGE = 500
# sort name -> (column, descending); ties broken by id in the same direction, so pages never overlap
SORTS = {
    "newest": (Clip.created_at, True),
    "oldest": (Clip.created_at, False),
    "cfg": (Clip.cfg_scale, False),
    "steps": (Clip.steps, False),
    "seed": (Clip.seed, False),
    "votes": (Clip.votes, True),  # most votes first (reviewers' votes through review links)
}


class QueryError(ValueError):
    """A gallery query field is invalid. `field` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, kw_only=True)
class GalleryQuery:
    """What the gallery page, the CLI and the API ask for. Every filter is optional."""

    text: str = ""  # full text over prompt and negative prompt; words match as prefixes, all must match
    mode: str | None = None
    model_id: str | None = None
    seed: int | None = None
    cfg_min: float | None = None
    cfg_max: float | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    starred: bool | None = None
    tag: str | None = None
    sweep_id: str | None = None
    batch_id: str | None = None
    author: str | None = None  # "Mine": the clips this user made
    has_votes: bool | None = None  # True: clips reviewers voted for; False: clips without a vote
    sort: str = "newest"
    limit: int = 50
    after: str | None = None  # the cursor of the previous page (Page.next_cursor)


@dataclass(frozen=True)
class Page:
    clips: list[Clip]
    next_cursor: str | None  # None on the last page


def check_text(field: str, value: object) -> str:
    """`value` if every database can hold it; else QueryError naming `field`. PostgreSQL refuses a NUL
    character in any text (the whole statement fails) where SQLite stored it; a lone surrogate cannot be
    encoded for either."""
    if not isinstance(value, str):
        raise QueryError(field, f"must be text, not {type(value).__name__}")
    if "\x00" in value:
        raise QueryError(field, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryError(field, "contains an unpaired surrogate (text that is not valid Unicode)") from None
    return value


def _is_key(value: object) -> bool:
    """Could a row have this text key? A NUL or a lone surrogate cannot be stored, so no row has it, and
    asking PostgreSQL would fail the query instead of finding nothing."""
    try:
        check_text("id", value)
    except QueryError:
        return False
    return True


def _is_whole(value: object, bits: int) -> bool:
    """A whole number a signed `bits`-bit column can hold (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def normalise_tag(tag: str) -> str:
    """Tags are free text, trimmed, inner whitespace collapsed, at most MAX_TAG_CHARS characters."""
    clean = " ".join(check_text("tag", str(tag)).split())
    if not clean:
        raise QueryError("tag", "is empty")
    if len(clean) > MAX_TAG_CHARS:
        raise QueryError("tag", f"{clean[:20]!r}... is longer than {MAX_TAG_CHARS} characters")
    return clean


class NotFound(LookupError):
    """No row with that id."""


class InvalidTransition(ValueError):
    """A job cannot move from its current status to the requested one."""


class UserRepository:
    def __init__(self, session: Session):
        self.session = session

    def add(self, user: User) -> User:
        if self.get(user.name) is not None:
            raise QueryError("name", f"a user {user.name!r} already exists")
        self.session.add(user)
        self.session.flush()
        return user

    def get(self, name: str) -> User | None:
        return self.session.get(User, name) if _is_key(name) else None

    def list(self) -> builtins.list[User]:
        return list(self.session.scalars(select(User).order_by(User.name)))

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(User)) or 0

    def remove(self, name: str) -> bool:
        user = self.get(name)
        if user is None:
            return False
        self.session.delete(user)
        self.session.flush()
        return True


class JobRepository:
    def __init__(self, session: Session, clock: Callable[[], datetime] = utcnow):
        self.session = session
        self.clock = clock

    def add(self, job: Job) -> Job:
        """Insert a job (status "queued" unless set); flushed, so defaults such as `id` are filled."""
        if job.created_at is None:
            job.created_at = self.clock()
        self.session.add(job)
        self.session.flush()
        return job

    def get(self, job_id: str) -> Job | None:
        return self.session.get(Job, job_id) if _is_key(job_id) else None

    def list_by_status(self, status: str) -> list[Job]:
        """Jobs with that status, oldest first (batch order within a batch)."""
        if status not in JOB_STATUSES:
            raise ValueError(f"job status {status!r} is not one of {', '.join(JOB_STATUSES)}")
        q = select(Job).where(Job.status == status).order_by(Job.created_at, Job.batch_index, Job.id)
        return list(self.session.scalars(q))

    def by_batch(self, batch_id: str) -> list[Job]:
        q = select(Job).where(Job.batch_id == batch_id).order_by(Job.batch_index, Job.created_at)
        return list(self.session.scalars(q))

    def mark_running(self, job_id: str) -> Job:
        job = self._transition(job_id, "running", allowed_from=("queued",))
        job.started_at = self.clock()
        job.attempts = (job.attempts or 0) + 1
        return job

    def mark_done(self, job_id: str, clip_id: str) -> Job:
        job = self._transition(job_id, "done", allowed_from=("running",))
        job.clip_id = clip_id
        return self._finish(job)

    def mark_failed(self, job_id: str, error: str) -> Job:
        job = self._transition(job_id, "failed", allowed_from=("queued", "running"))
        job.error = error
        return self._finish(job)

    def mark_cancelled(self, job_id: str) -> Job:
        job = self._transition(job_id, "cancelled", allowed_from=("queued", "running"))
        return self._finish(job)

    def _transition(self, job_id: str, status: str, allowed_from: Sequence[str]) -> Job:
        job = self.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        if job.status not in allowed_from:
            raise InvalidTransition(f"job {job_id} is {job.status}; it cannot become {status}")
        job.status = status
        return job

    def _finish(self, job: Job) -> Job:
        assert job.status in FINISHED_STATUSES
        job.finished_at = self.clock()
        self.session.flush()
        return job


class GalleryRepository:
    def __init__(self, session: Session):
        self.session = session

    def add(self, clip: Clip) -> Clip:
        self.session.add(clip)
        self.session.flush()
        return clip

    def get(self, clip_id: str) -> Clip | None:
        return self.session.get(Clip, clip_id) if _is_key(clip_id) else None

    def list(
        self, mode: str | None = None, model_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[Clip]:
        """Clips, newest first, optionally filtered by mode and model id."""
        q = _filtered(select(Clip), mode, model_id).order_by(Clip.created_at.desc(), Clip.id.desc())
        return list(self.session.scalars(q.limit(max(0, limit)).offset(max(0, offset))))

    def search(self, query: GalleryQuery) -> Page:
        """One page of clips matching `query`, by keyset (the cursor names the last row seen), not offset."""
        if query.sort not in SORTS:
            raise QueryError("sort", f"{query.sort!r} is not one of {', '.join(SORTS)}")
        if not 1 <= query.limit <= MAX_PAGE:
            raise QueryError("limit", f"{query.limit} is not from 1 to {MAX_PAGE}")
        column, desc = SORTS[query.sort]
        q = self._where(select(Clip), query)
        if query.after:
            value, last_id = _decode_cursor(query.after, column)
            key, bound = tuple_(column, Clip.id), tuple_(value, last_id)  # SQL row values
            q = q.where(key < bound if desc else key > bound)
        order = (column.desc(), Clip.id.desc()) if desc else (column.asc(), Clip.id.asc())
        rows = list(self.session.scalars(q.order_by(*order).limit(query.limit + 1)))
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        cursor = _encode_cursor(getattr(rows[-1], column.key), rows[-1].id) if more and rows else None
        return Page(rows, cursor)

    def _where(self, q: Select, query: GalleryQuery) -> Select:  # type: ignore[type-arg]
        for name in ("mode", "model_id", "author", "sweep_id", "batch_id"):
            if getattr(query, name) is not None:
                check_text(name, getattr(query, name))
        if query.seed is not None and not _is_whole(query.seed, 64):
            raise QueryError("seed", f"{query.seed!r} is not a whole number a seed can be")
        for name in ("cfg_min", "cfg_max"):
            value = getattr(query, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise QueryError(name, f"{value!r} is not a number")
        q = _filtered(q, query.mode, query.model_id)
        if query.text.strip():
            q = q.where(self._matches(query.text))
        if query.seed is not None:
            q = q.where(Clip.seed == query.seed)
        if query.author is not None:
            q = q.where(Clip.author == query.author)
        if query.cfg_min is not None:
            q = q.where(Clip.cfg_scale >= query.cfg_min)
        if query.cfg_max is not None:
            q = q.where(Clip.cfg_scale <= query.cfg_max)
        if query.since is not None:
            q = q.where(Clip.created_at >= query.since)
        if query.until is not None:
            q = q.where(Clip.created_at < query.until)
        if query.starred is not None:
            q = q.where(Clip.starred == query.starred)
        if query.has_votes is not None:
            q = q.where(Clip.votes > 0 if query.has_votes else Clip.votes == 0)
        if query.tag:
            tag = normalise_tag(query.tag)
            q = q.where(exists().where(ClipTag.clip_id == Clip.id, ClipTag.tag == tag))
        if query.sweep_id:
            q = q.where(Clip.sweep_id == query.sweep_id)
        if query.batch_id:
            q = q.where(Clip.batch_id == query.batch_id)
        return q

    def _matches(self, words: str):  # type: ignore[no-untyped-def]
        """A WHERE clause for full-text search, in the database's own engine (FTS5 or tsvector)."""
        terms = [t for t in re.findall(r"\w+", words.lower()) if t][:16]
        if not terms:
            return Clip.id.is_(None)  # only punctuation: nothing matches
        dialect = self.session.get_bind().dialect.name
        if dialect == "sqlite":
            match = " ".join(f'"{t}"*' for t in terms)  # quoted: no FTS5 syntax reaches the engine
            return text("clips.rowid IN (SELECT rowid FROM clips_fts WHERE clips_fts MATCH :match)").bindparams(
                match=match)
        if dialect == "postgresql":
            tsquery = " & ".join(f"{t}:*" for t in terms)
            return text("to_tsvector('simple', clips.prompt || ' ' || clips.negative_prompt) "
                        "@@ to_tsquery('simple', :tsquery)").bindparams(tsquery=tsquery)
        return and_(*[Clip.prompt.ilike(f"%{t}%") | Clip.negative_prompt.ilike(f"%{t}%") for t in terms])

    def set_starred(self, clip_id: str, starred: bool = True) -> Clip:
        clip = self._require(clip_id)
        clip.starred = bool(starred)
        self.session.flush()
        return clip

    def set_note(self, clip_id: str, note: str) -> Clip:
        clip = self._require(clip_id)
        clip.note = check_text("note", str(note))
        self.session.flush()
        return clip

    def add_tags(self, clip_id: str, tags: Sequence[str]) -> Clip:
        clip = self._require(clip_id)
        have = set(clip.tags)
        for tag in dict.fromkeys(normalise_tag(t) for t in tags):
            if tag not in have:
                clip.tag_rows.append(ClipTag(tag=tag))
        self.session.flush()
        return clip

    def remove_tags(self, clip_id: str, tags: Sequence[str]) -> Clip:
        clip = self._require(clip_id)
        gone = {normalise_tag(t) for t in tags}
        self.session.execute(delete(ClipTag).where(ClipTag.clip_id == clip_id, ClipTag.tag.in_(gone)))
        self.session.expire(clip, ["tag_rows"])
        self.session.flush()
        return clip

    def resolve_prefix(self, text: str) -> str | None:
        """The id `text` names: itself, or the only id starting with it (hex, 6 characters or more)."""
        if self.get(text) is not None:
            return text
        if len(text) < 6 or not all(c in "0123456789abcdef" for c in text):
            return None
        found = list(self.session.scalars(select(Clip.id).where(Clip.id.startswith(text)).limit(2)))
        return found[0] if len(found) == 1 else None

    def children(self, clip_id: str) -> builtins.list[Clip]:
        """Clips branched from this one, oldest first."""
        q = select(Clip).where(Clip.parent_id == clip_id).order_by(Clip.created_at, Clip.id)
        return list(self.session.scalars(q))

    def ancestors(self, clip_id: str, limit: int = 100) -> builtins.list[Clip]:
        """The chain of parents, nearest first (a parent deleted since ends the chain)."""
        out: builtins.list[Clip] = []
        clip = self.get(clip_id)
        seen = {clip_id}
        while clip is not None and clip.parent_id and clip.parent_id not in seen and len(out) < limit:
            seen.add(clip.parent_id)
            clip = self.get(clip.parent_id)
            if clip is not None:
                out.append(clip)
        return out

    def _require(self, clip_id: str) -> Clip:
        clip = self.get(clip_id)
        if clip is None:
            raise NotFound(f"no clip with id {clip_id!r}")
        return clip

    def count(self, mode: str | None = None, model_id: str | None = None) -> int:
        return self.session.scalar(_filtered(select(func.count()).select_from(Clip), mode, model_id)) or 0

    def delete(self, clip_id: str) -> tuple[str, str, str] | None:
        """Delete the row; return its (video, thumb, sidecar) paths for the caller to remove, or None.

        Jobs pointing at the clip get clip_id = NULL (ON DELETE SET NULL).
        """
        clip = self.get(clip_id)
        if clip is None:
            return None
        paths = clip.file_paths()
        # what ON DELETE SET NULL does, done through the ORM so loaded Job objects agree
        self.session.execute(update(Job).where(Job.clip_id == clip_id).values(clip_id=None))
        self.session.delete(clip)
        self.session.flush()
        return paths

    def by_batch(self, batch_id: str) -> builtins.list[Clip]:
        """Clips of one batch in the order they were made."""
        q = select(Clip).where(Clip.batch_id == batch_id).order_by(Clip.created_at, Clip.id)
        return list(self.session.scalars(q))

    def distinct_models(self) -> builtins.list[str]:
        """Model ids that have clips in the gallery, sorted."""
        return list(self.session.scalars(select(Clip.model_id).distinct().order_by(Clip.model_id)))

    def all_file_paths(self) -> dict[str, tuple[str, str, str]]:
        """{clip id: (video, thumb, sidecar)} for every row, for consistency checks."""
        rows = self.session.execute(select(Clip.id, Clip.video_path, Clip.thumb_path, Clip.sidecar_path))
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _encode_cursor(value, clip_id: str) -> str:  # type: ignore[no-untyped-def]
    raw = value.isoformat() if isinstance(value, datetime) else value
    return base64.urlsafe_b64encode(json.dumps([raw, clip_id]).encode()).decode().rstrip("=")


# what a cursor's value must be for each sort column: the column's type and range. PostgreSQL refuses to
# compare a column with a value of another type (a server error); SQLite compared anyway.
_CURSOR_VALUE_OK: dict[str, Callable[[object], bool]] = {
    "seed": lambda v: _is_whole(v, 64),
    "steps": lambda v: _is_whole(v, 32),
    "cfg_scale": _is_real,
    "votes": lambda v: _is_whole(v, 32),
}


def _decode_cursor(cursor: str, column):  # type: ignore[no-untyped-def]
    try:
        raw, clip_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if column.key == "created_at":
            value = datetime.fromisoformat(raw)
            if value.tzinfo is None:
                raise ValueError("naive time")
        elif _CURSOR_VALUE_OK[column.key](raw):
            value = raw
        else:
            raise ValueError("not a value of the sort column")
        if not _is_key(clip_id):
            raise ValueError("shape")
    except (ValueError, TypeError) as e:
        raise QueryError("after", f"{cursor[:40]!r} is not a cursor this gallery gave out") from e
    return value, clip_id


def _filtered(q: Select, mode: str | None, model_id: str | None) -> Select:  # type: ignore[type-arg]
    if mode is not None:
        q = q.where(Clip.mode == mode)
    if model_id is not None:
        q = q.where(Clip.model_id == model_id)
    return q


class ReviewRepository:
    """Review links, their comments and votes. A vote changes `clips.votes` in the same flush, so the count the
    gallery sorts by always equals the clip's rows in `review_votes`."""

    def __init__(self, session: Session, clock: Callable[[], datetime] = utcnow):
        self.session = session
        self.clock = clock

    def add(self, review: Review) -> Review:
        if review.created_at is None:
            review.created_at = self.clock()
        self.session.add(review)
        self.session.flush()
        return review

    def get(self, review_id: str) -> Review | None:
        return self.session.get(Review, review_id) if _is_key(review_id) else None

    def list(self, author: str | None = None, *, everyone: bool = False) -> builtins.list[Review]:
        """Newest first: every review (`everyone`), or those `author` made."""
        q = select(Review).order_by(Review.created_at.desc(), Review.id.desc())
        if not everyone:
            q = q.where(Review.author.is_(None) if author is None else Review.author == check_text("author", author))
        return list(self.session.scalars(q))

    def for_clip(self, clip_id: str) -> builtins.list[Review]:
        """Reviews whose clips include this one (a JSON list: read and filtered here, reviews are few)."""
        return [r for r in self.session.scalars(select(Review).order_by(Review.created_at))
                if clip_id in (r.clip_ids or [])]

    def revoke(self, review_id: str) -> Review:
        review = self.get(review_id)
        if review is None:
            raise NotFound(f"no review {review_id!r}")
        if review.revoked_at is None:
            review.revoked_at = self.clock()
            self.session.flush()
        return review

    # ---- comments --------------------------------------------------------------------------------
    def add_comment(self, comment: ReviewComment) -> ReviewComment:
        check_text("reviewer", comment.reviewer)
        check_text("text", comment.text)
        if comment.created_at is None:
            comment.created_at = self.clock()
        self.session.add(comment)
        self.session.flush()
        return comment

    def comments(self, *, clip_id: str | None = None, review_id: str | None = None) -> builtins.list[ReviewComment]:
        """Oldest first, of one clip and/or one review."""
        q = select(ReviewComment).order_by(ReviewComment.created_at, ReviewComment.id)
        for column, value in ((ReviewComment.clip_id, clip_id), (ReviewComment.review_id, review_id)):
            if value is not None:
                if not _is_key(value):
                    return []
                q = q.where(column == value)
        return list(self.session.scalars(q))

    def count_comments(self, review_id: str) -> int:
        return self.session.scalar(select(func.count()).select_from(ReviewComment)
                                   .where(ReviewComment.review_id == review_id)) or 0

    def get_comment(self, comment_id: str) -> ReviewComment | None:
        return self.session.get(ReviewComment, comment_id) if _is_key(comment_id) else None

    def resolve(self, comment_id: str, resolved: bool = True, by: str | None = None) -> ReviewComment:
        comment = self.get_comment(comment_id)
        if comment is None:
            raise NotFound(f"no comment {comment_id!r}")
        comment.resolved = bool(resolved)
        comment.resolved_at = self.clock() if resolved else None
        comment.resolved_by = by if resolved else None
        self.session.flush()
        return comment

    # ---- votes -----------------------------------------------------------------------------------
    def set_vote(self, vote: ReviewVote, on: bool = True) -> bool:
        """Cast (`on`) or take back the vote of `vote.voter` for `vote.clip_id`: one per voter and clip,
        whatever link it comes through, so voting twice changes nothing. Returns whether the voter now votes
        for the clip. `clips.votes` moves by one in the same statement order on every backend (an increment,
        not a recount, so two votes committed at once both count); a second insert of the same vote at the
        same time fails on the primary key (IntegrityError) instead of counting twice."""
        check_text("voter", vote.voter)
        check_text("reviewer", vote.reviewer)
        if on:
            if self.session.get(ReviewVote, (vote.clip_id, vote.voter)) is not None:
                return True
            if vote.created_at is None:
                vote.created_at = self.clock()
            self.session.add(vote)
            self.session.flush()
            delta = 1
        else:
            gone = self.session.execute(
                delete(ReviewVote).where(ReviewVote.clip_id == vote.clip_id, ReviewVote.voter == vote.voter),
                execution_options={"synchronize_session": "fetch"})
            if not gone.rowcount:
                return False
            delta = -1
        self.session.execute(update(Clip).where(Clip.id == vote.clip_id).values(votes=Clip.votes + delta),
                             execution_options={"synchronize_session": False})
        loaded = self.session.identity_map.get(identity_key(Clip, vote.clip_id))
        if loaded is not None:
            self.session.expire(loaded, ["votes"])
        return on

    def votes(self, *, clip_id: str | None = None, review_id: str | None = None) -> builtins.list[ReviewVote]:
        """Oldest first, for one clip and/or cast through one review."""
        q = select(ReviewVote).order_by(ReviewVote.created_at, ReviewVote.voter)
        for column, value in ((ReviewVote.clip_id, clip_id), (ReviewVote.review_id, review_id)):
            if value is not None:
                if not _is_key(value):
                    return []
                q = q.where(column == value)
        return list(self.session.scalars(q))

    def voted(self, voter: str, clip_ids: Sequence[str]) -> set[str]:
        """Which of these clips `voter` votes for."""
        ids = [c for c in clip_ids if _is_key(c)]
        if not ids or not _is_key(voter):
            return set()
        q = select(ReviewVote.clip_id).where(ReviewVote.voter == voter, ReviewVote.clip_id.in_(ids))
        return set(self.session.scalars(q))

    def vote_counts(self, clip_ids: Sequence[str]) -> dict[str, int]:
        """{clip id: votes} for these clips (every voter, through any link)."""
        ids = [c for c in clip_ids if _is_key(c)]
        if not ids:
            return {}
        return dict(self.session.execute(select(Clip.id, Clip.votes).where(Clip.id.in_(ids))).all())
