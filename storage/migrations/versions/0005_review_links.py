"""review links: reviews (a token's clips, expiry, revocation), reviewers' comments and votes, and a vote count
on every clip (kept in step with review_votes) so the gallery sorts and pages by votes over an index

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

`clips.votes` is a plain ADD COLUMN (no table rebuild on SQLite), so clips keep their rowids and the FTS5
index of migration 0002 stays valid.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("clips", sa.Column("votes", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_clips_votes", "clips", ["votes", "id"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("clip_ids", sa.JSON(), nullable=False),
        sa.Column("author", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comments_allowed", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
    )
    op.create_index("ix_reviews_author", "reviews", ["author"])
    op.create_table(
        "review_comments",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("review_id", sa.String(32), nullable=False),
        sa.Column("clip_id", sa.String(32), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], name="fk_review_comments_review_id_reviews",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], name="fk_review_comments_clip_id_clips",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_review_comments"),
    )
    op.create_index("ix_review_comments_review_id", "review_comments", ["review_id"])
    op.create_index("ix_review_comments_clip_id", "review_comments", ["clip_id", "created_at"])
    op.create_table(
        "review_votes",
        sa.Column("clip_id", sa.String(32), nullable=False),
        sa.Column("voter", sa.String(160), nullable=False),
        sa.Column("review_id", sa.String(32), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], name="fk_review_votes_review_id_reviews",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], name="fk_review_votes_clip_id_clips", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("clip_id", "voter", name="pk_review_votes"),
    )
    op.create_index("ix_review_votes_review_id", "review_votes", ["review_id"])


def downgrade() -> None:
    op.drop_table("review_votes")
    op.drop_table("review_comments")
    op.drop_index("ix_reviews_author", "reviews")
    op.drop_table("reviews")
    op.drop_index("ix_clips_votes", "clips")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite (3.35+) drops a column in place; batch mode would rebuild the table, giving clips new rowids
        # and dropping the full-text triggers of migration 0002
        op.execute("ALTER TABLE clips DROP COLUMN votes")
    else:
        op.drop_column("clips", "votes")
