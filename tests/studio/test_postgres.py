"""DATABASE_URL pointing at PostgreSQL: migrations and a whole job, on a throwaway local cluster."""

import dataclasses
import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from pipelines.contract import TextToVideoRequest
from tests.support.fakes import TEST_SPEC


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries are not installed (scripts/setup.sh --test installs them)")
    root = os.geteuid() == 0
    as_user = ["runuser", "-u", "postgres", "--"] if root else []
    tmp = tempfile.mkdtemp(prefix="studio-pg-")
    os.chmod(tmp, 0o777)
    data = os.path.join(tmp, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", data, "-w", "-l", os.path.join(tmp, "log"), "-o",
                    f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def test_migrations_and_a_job_on_postgres(postgres_url, settings, registry):
    from storage.db import current_revision, downgrade, head_revision, make_engine
    from studio.wiring import build_studio

    studio = build_studio(dataclasses.replace(settings, database_url=postgres_url), registry)
    try:
        assert current_revision(studio.engine) == head_revision()
        sub = studio.jobs.submit(TextToVideoRequest(prompt="a red circle", model_id=TEST_SPEC.id, seed=9), seeds=2)
        statuses = studio.jobs.wait(sub.job_ids, timeout=60)
        assert [s.status for s in statuses] == ["done", "done"]
        clips = studio.gallery.list()
        assert sorted(c.seed for c in clips) == [9, 10] and clips[0].created_at
        assert studio.gallery.delete(clips[0].id) and len(studio.gallery.list()) == 1
    finally:
        studio.close()
    engine = make_engine(postgres_url)
    downgrade(engine)
    assert current_revision(engine) is None
    engine.dispose()


def test_gallery_search_tags_and_keyset_on_postgres(postgres_url):
    """The same GalleryQuery through PostgreSQL's own full-text search (tsvector GIN index)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from storage.db import downgrade, make_engine, make_session_factory, upgrade
    from storage.models import Base, include_name
    from storage.repositories import GalleryQuery, GalleryRepository
    from tests.storage.test_repositories import make_clip

    engine = make_engine(postgres_url)
    upgrade(engine)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": include_name})
            assert compare_metadata(ctx, Base.metadata) == []
        with make_session_factory(engine)() as s:
            repo = GalleryRepository(s)
            prompts = ["a red circle moving right", "a blue square", "red squares gliding", "a violet kite"]
            for n in range(12):
                repo.add(make_clip(n, prompt=prompts[n % 4], seed=n, batch_id="pg"))
            s.commit()
            assert len(repo.search(GalleryQuery(text="red", limit=50)).clips) == 6
            assert len(repo.search(GalleryQuery(text="red squ", limit=50)).clips) == 3  # prefixes, all words
            assert repo.search(GalleryQuery(text="!!!")).clips == []
            assert repo.search(GalleryQuery(text="a & b | !c:*", limit=50)).clips == []  # tsquery syntax is text
            first = repo.search(GalleryQuery(limit=5))
            rest = repo.search(GalleryQuery(limit=50, after=first.next_cursor))
            assert [c.seed for c in first.clips + rest.clips] == list(range(11, -1, -1))
            repo.add_tags(first.clips[0].id, ["keeper"])
            repo.set_starred(first.clips[0].id)
            s.commit()
            assert [c.id for c in repo.search(GalleryQuery(tag="keeper", starred=True)).clips] == [first.clips[0].id]
    finally:
        downgrade(engine)
        engine.dispose()
