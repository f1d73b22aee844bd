"""shared queue (#17): front ends (identity and heartbeat) and, on every job, who claimed it, until when, a
cancel request any front end can set, and the step it is at (so another front end can show its progress)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Plain ADD COLUMNs and a new table: no table rebuild on either database. See storage/claims.py for the design.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_COLUMNS = ("claimed_by", "lease_until", "cancel_requested", "progress_step", "progress_total")


def upgrade() -> None:
    op.create_table(
        "front_ends",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_front_ends"),
    )
    op.add_column("jobs", sa.Column("claimed_by", sa.String(32), nullable=True))
    op.add_column("jobs", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("jobs", sa.Column("progress_step", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("progress_total", sa.Integer(), nullable=True))
    # reclaim_expired: the running jobs whose lease ran out
    op.create_index("ix_jobs_status_lease_until", "jobs", ["status", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_lease_until", "jobs")
    with op.batch_alter_table("jobs") as batch:
        for name in JOB_COLUMNS:
            batch.drop_column(name)
    op.drop_table("front_ends")
