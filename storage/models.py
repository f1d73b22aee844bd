"""SQLAlchemy models: `jobs` (the queue and its history) and `clips` (the gallery).

Typed columns hold what the gallery filters and sorts on; `params` keeps the whole request
(with its schema_version) so a clip can be recalled exactly. Every schema change is an
Alembic migration in storage/migrations/versions/ with a test.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    PrimaryKeyConstraint,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
# Full-text search lives outside the ORM metadata (SQLite FTS5 table and triggers, a PostgreSQL GIN
# expression index; see migration 0002). Schema comparisons skip these names.
FTS_OBJECTS = ("clips_fts", "ix_clips_fts")
MAX_TAG_CHARS = 64


def include_name(name: str | None, type_: str, _parent_names: object = None) -> bool:
    """For Alembic's comparisons: leave out the full-text objects that live outside the ORM metadata."""
    return not (name and (name in FTS_OBJECTS or name.startswith("clips_fts_")))
FINISHED_STATUSES = ("done", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime(), float: Float(), dict[str, Any]: JSON()}  # noqa: RUF012 (SQLAlchemy reads it)


class Clip(Base):
    """A finished clip in the gallery. File paths are relative to the data dir."""

    __tablename__ = "clips"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str | None] = mapped_column(String(32))
    batch_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True, default=utcnow)
    mode: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text, default="")
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger)
    steps: Mapped[int]
    cfg_scale: Mapped[float]
    frames: Mapped[int]
    fps: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    strength: Mapped[float | None]
    profile: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]  # request.to_params(), schema_version inside
    manifest: Mapped[dict[str, Any]] = mapped_column(default=dict)  # library versions, device, dtype
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"image": {"path", "sha256"}}
    video_path: Mapped[str] = mapped_column(String(512))
    thumb_path: Mapped[str] = mapped_column(String(512))
    sidecar_path: Mapped[str] = mapped_column(String(512))
    generation_seconds: Mapped[float | None]
    starred: Mapped[bool] = mapped_column(default=False, server_default=false())
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    parent_id: Mapped[str | None] = mapped_column(String(32), index=True)  # the clip this one branched from
    sweep_id: Mapped[str | None] = mapped_column(String(32), index=True)
    axes: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # a sweep cell's values, e.g. {"seed": 7, "cfg": 5.0}
    author: Mapped[str | None] = mapped_column(String(64), index=True)  # who made it (None: before accounts)
    # reviewers' votes for it (review links): a count kept in step with `review_votes` by ReviewRepository, in
    # the same transaction, so "most votes" sorts and pages by keyset over an index like the other sorts
    votes: Mapped[int] = mapped_column(default=0, server_default="0")
    tag_rows: Mapped[list["ClipTag"]] = relationship(
        back_populates="clip", cascade="all, delete-orphan", passive_deletes=True, lazy="selectin",
        order_by="ClipTag.tag",
    )

    # keyset pagination, newest first, optionally within one mode / model / star state (see migration 0002)
    __table_args__ = (
        Index("ix_clips_created_at_id", "created_at", "id"),
        Index("ix_clips_mode", "mode", "created_at", "id"),
        Index("ix_clips_model_id", "model_id", "created_at", "id"),
        Index("ix_clips_starred", "starred", "created_at", "id"),
        Index("ix_clips_votes", "votes", "id"),
    )

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tag_rows]

    PARAM_COLUMNS: ClassVar[tuple[str, ...]] = (
        "mode", "model_id", "prompt", "negative_prompt", "seed", "steps", "cfg_scale",
        "frames", "fps", "width", "height", "strength", "profile",
    )

    @classmethod
    def from_params(cls, params: dict[str, Any], **fields: Any) -> Clip:
        """A Clip whose typed columns are copied from a resolved request's `to_params()`."""
        cols = {k: params.get(k) for k in cls.PARAM_COLUMNS if k in params}
        cols.update(fields)
        return cls(params=dict(params), **cols)

    def file_paths(self) -> tuple[str, str, str]:
        return (self.video_path, self.thumb_path, self.sidecar_path)

    def __repr__(self) -> str:
        return f"Clip(id={self.id!r}, mode={self.mode!r}, model_id={self.model_id!r})"


class ClipTag(Base):
    """A free-text tag on a clip (one row per clip and tag)."""

    __tablename__ = "clip_tags"

    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(MAX_TAG_CHARS), primary_key=True, index=True)
    clip: Mapped[Clip] = relationship(back_populates="tag_rows")


ROLES = ("admin", "member", "viewer")


class User(Base):
    """An account of the studio (`studio users add`). The password is kept as an argon2 hash only."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="member")
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @validates("role")
    def _check_role(self, _key: str, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"role {value!r} is not one of {', '.join(ROLES)}")
        return value


class Job(Base):
    """One generation in the queue; a batch is several jobs with the same batch_id."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    batch_id: Mapped[str] = mapped_column(String(32), index=True)
    batch_index: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    mode: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    clip_id: Mapped[str | None] = mapped_column(
        ForeignKey("clips.id", ondelete="SET NULL"), index=True
    )
    sweep_id: Mapped[str | None] = mapped_column(String(32))
    axes: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"seed": 7, "cfg": 5.0}: its cell in the sweep
    parent_id: Mapped[str | None] = mapped_column(String(32))  # the clip it branches from
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")  # times it started running
    author: Mapped[str | None] = mapped_column(String(64))  # the user who asked for it (None: no accounts)
    # the shared queue (storage/claims.py): which front end runs it and until when its claim holds (renewed
    # while it runs; a lapsed one is reclaimed by another front end), a cancel any front end can ask for, and
    # the step it is at, for front ends that show a job running elsewhere
    claimed_by: Mapped[str | None] = mapped_column(String(32))  # a front_ends.id
    lease_until: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False, server_default=false())
    progress_step: Mapped[int | None]
    progress_total: Mapped[int | None]

    __table_args__ = (Index("ix_jobs_status_lease_until", "status", "lease_until"),)

    @validates("status")
    def _check_status(self, _key: str, value: str) -> str:
        if value not in JOB_STATUSES:
            raise ValueError(f"job status {value!r} is not one of {', '.join(JOB_STATUSES)}")
        return value

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, status={self.status!r}, batch={self.batch_id!r}#{self.batch_index})"


class FrontEnd(Base):
    """A `studio serve` (or CLI) process taking jobs from the shared queue (storage/claims.py). Its heartbeat is
    renewed with its jobs' leases; `stopped_at` is set by a clean stop."""

    __tablename__ = "front_ends"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))  # what it says it is: "studio serve on 10.0.0.5:7860"
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]


REVIEW_KINDS = ("clip", "compare", "sweep", "batch")
MAX_REVIEWER_CHARS = 64
MAX_COMMENT_CHARS = 2000


class Review(Base):
    """A review link: some clips, shown read-only to whoever holds its token (`/review/<token>`).

    `id` is the random half of the token; the other half is a signature the service computes from it with a
    secret that is not in the database, so a row alone does not make a working link."""

    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # clip, compare, sweep or batch
    subject: Mapped[str | None] = mapped_column(String(64))  # the sweep or batch id it was made from
    clip_ids: Mapped[list[str]] = mapped_column(JSON)  # in the order the page shows them
    author: Mapped[str | None] = mapped_column(String(64), index=True)  # who shared it (None: no accounts)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    comments_allowed: Mapped[bool] = mapped_column(default=True, server_default=true())

    @validates("kind")
    def _check_kind(self, _key: str, value: str) -> str:
        if value not in REVIEW_KINDS:
            raise ValueError(f"review kind {value!r} is not one of {', '.join(REVIEW_KINDS)}")
        return value


class ReviewComment(Base):
    """A reviewer's comment on one clip of a review, optionally at a time in it. Stored as plain text."""

    __tablename__ = "review_comments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    review_id: Mapped[str] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), index=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(MAX_REVIEWER_CHARS))  # the name they gave, or their account's
    account: Mapped[str | None] = mapped_column(String(64))  # set when they were signed in
    text: Mapped[str] = mapped_column(Text)
    at_seconds: Mapped[float | None]  # where in the clip (None: the whole clip)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved: Mapped[bool] = mapped_column(default=False, server_default=false())
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_review_comments_clip_id", "clip_id", "created_at"),)


class ReviewVote(Base):
    """One reviewer's vote for one clip: at most one per (clip, voter), whatever the link it came through.

    `voter` says who, as the studio can tell: `account:<name>` for someone signed in (the same person on
    every link), `guest:<review id>:<name, case-folded>` for a name typed on a link (a name is only a name
    within the link it was typed on)."""

    __tablename__ = "review_votes"

    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"))
    voter: Mapped[str] = mapped_column(String(160))
    review_id: Mapped[str] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(MAX_REVIEWER_CHARS))  # the name shown
    account: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (PrimaryKeyConstraint("clip_id", "voter"),)
