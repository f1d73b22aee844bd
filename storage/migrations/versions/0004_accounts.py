"""accounts: a users table (name, role, argon2 password hash) and the author of every job and clip

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_users"),
    )
    op.add_column("jobs", sa.Column("author", sa.String(64), nullable=True))
    op.add_column("clips", sa.Column("author", sa.String(64), nullable=True))
    op.create_index("ix_clips_author", "clips", ["author"])


def downgrade() -> None:
    op.drop_index("ix_clips_author", "clips")
    with op.batch_alter_table("clips") as batch:
        batch.drop_column("author")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("author")
    op.drop_table("users")
