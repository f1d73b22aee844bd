"""initial schema: clips (the gallery) and jobs (the queue)

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Migrations spell out their types instead of importing storage.models, which moves on.
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "clips",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("negative_prompt", sa.Text(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("cfg_scale", sa.Float(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("fps", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("strength", sa.Float(), nullable=True),
        sa.Column("profile", sa.String(64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("video_path", sa.String(512), nullable=False),
        sa.Column("thumb_path", sa.String(512), nullable=False),
        sa.Column("sidecar_path", sa.String(512), nullable=False),
        sa.Column("generation_seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_clips"),
    )
    for column in ("batch_id", "created_at", "mode", "model_id"):
        op.create_index(f"ix_clips_{column}", "clips", [column])

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("batch_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("clip_id", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], name="fk_jobs_clip_id_clips", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    for column in ("batch_id", "status", "clip_id"):
        op.create_index(f"ix_jobs_{column}", "jobs", [column])


def downgrade() -> None:
    op.drop_table("jobs")  # drops its indexes too
    op.drop_table("clips")
