from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from storage.db import current_revision, default_database_url, downgrade, head_revision, make_engine, upgrade
from storage.models import Base, include_name


def test_upgrade_from_empty_creates_tables_and_columns(blank_url: str) -> None:
    engine = make_engine(blank_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    insp = inspect(engine)
    assert {"jobs", "clips", "alembic_version"} <= set(insp.get_table_names())
    jobs = {c["name"] for c in insp.get_columns("jobs")}
    assert jobs == {"id", "batch_id", "batch_index", "status", "mode", "model_id", "params", "error",
                    "created_at", "started_at", "finished_at", "clip_id", "sweep_id", "axes", "parent_id", "attempts", "author",
                    "claimed_by", "lease_until", "cancel_requested", "progress_step", "progress_total"}
    clips = {c["name"] for c in insp.get_columns("clips")}
    assert {"id", "job_id", "batch_id", "created_at", "mode", "model_id", "model_version", "prompt",
            "negative_prompt", "seed", "steps", "cfg_scale", "frames", "fps", "width", "height", "strength",
            "profile", "params", "manifest", "inputs", "video_path", "thumb_path", "sidecar_path",
            "generation_seconds", "starred", "note", "parent_id", "sweep_id", "axes", "author", "votes"} == clips
    assert {"reviews", "review_comments", "review_votes", "front_ends"} <= set(insp.get_table_names())
    fks = insp.get_foreign_keys("jobs")
    assert fks[0]["referred_table"] == "clips" and fks[0]["options"].get("ondelete") == "SET NULL"
    assert {"ix_jobs_status", "ix_jobs_batch_id"} <= {i["name"] for i in insp.get_indexes("jobs")}
    assert {"ix_clips_created_at", "ix_clips_mode", "ix_clips_model_id", "ix_clips_batch_id"} <= {
        i["name"] for i in insp.get_indexes("clips")
    }
    upgrade(engine)  # idempotent at head
    engine.dispose()


def test_models_match_migrations(engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": include_name})
        assert compare_metadata(ctx, Base.metadata) == []


def test_downgrade_to_base_and_up_again(engine) -> None:
    from storage.db import GalleryRepository, Job, JobRepository, make_session_factory
    from tests.storage.test_repositories import make_clip

    with make_session_factory(engine)() as s, s.begin():  # rows in every table: the downgrade takes them along
        clip = GalleryRepository(s).add(make_clip(1))
        GalleryRepository(s).add_tags(clip.id, ["keeper"])
        JobRepository(s).add(Job(batch_id="b", mode="t2v", model_id="m", params={}, clip_id=clip.id))
    downgrade(engine)
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}, inspect(engine).get_table_names()
    upgrade(engine)
    assert {"jobs", "clips"} <= set(inspect(engine).get_table_names())


@pytest.mark.sqlite_only("PRAGMAs are SQLite's own connection settings")
def test_sqlite_pragmas(engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_default_url_and_memory_engine(tmp_path: Path) -> None:
    assert default_database_url(tmp_path) == f"sqlite:///{(tmp_path / 'gallery.db').resolve().as_posix()}"
    engine = make_engine("sqlite://")
    upgrade(engine)
    assert "clips" in inspect(engine).get_table_names()
