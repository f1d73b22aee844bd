"""Engine, sessions and migrations. Nothing here runs at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

# The models and repositories are re-exported so callers can import them from one place.
from storage.models import JOB_STATUSES, Base, Clip, Job, utcnow
from storage.repositories import GalleryRepository, InvalidTransition, JobRepository, NotFound

__all__ = [
    "JOB_STATUSES",
    "MIGRATIONS_DIR",
    "Base",
    "Clip",
    "GalleryRepository",
    "InvalidTransition",
    "Job",
    "JobRepository",
    "NotFound",
    "current_revision",
    "default_database_url",
    "downgrade",
    "head_revision",
    "make_engine",
    "make_session_factory",
    "upgrade",
    "utcnow",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def default_database_url(data_dir: Path) -> str:
    """SQLite file `gallery.db` in the data dir (absolute path)."""
    return f"sqlite:///{(Path(data_dir).resolve() / 'gallery.db').as_posix()}"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. SQLite gets WAL, foreign keys on and cross-thread connections."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    connect_args = {"check_same_thread": False, "timeout": 30}
    if u.database in (None, "", ":memory:"):
        # one shared connection, or each thread would see its own empty database
        kwargs.setdefault("poolclass", StaticPool)
    else:
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the job service passes them on)."""
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run Alembic migrations up to `revision` (default: the newest)."""
    from alembic import command

    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Run Alembic migrations down to `revision` (default: an empty database)."""
    from alembic import command

    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an unmigrated database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head
