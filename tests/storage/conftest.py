"""Storage tests run on SQLite and on PostgreSQL (`[sqlite]`, `[postgresql]`): every test that takes the
`engine`, `session` or `blank_url` fixture runs once per backend, each time on a fresh database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storage.db import default_database_url, make_engine, make_session_factory, upgrade
from tests.support.postgres import parametrize_backends

pytest_generate_tests = parametrize_backends


@pytest.fixture
def engine(tmp_path: Path, database_url):
    """A migrated database: SQLite `gallery.db` in tmp_path, or a fresh PostgreSQL database."""
    eng = make_engine(database_url or default_database_url(tmp_path))
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def blank_url(request, tmp_path: Path, db_backend) -> str:
    """The URL of a database with no tables yet (for migration tests)."""
    if db_backend == "postgresql":
        return request.getfixturevalue("blank_postgres_url")
    return default_database_url(tmp_path / "blank")


@pytest.fixture
def session(engine):
    with make_session_factory(engine)() as s:
        yield s


@pytest.fixture
def frames() -> np.ndarray:
    """8 frames of 32x48: a horizontal gradient with a bright square moving right."""
    f = np.zeros((8, 32, 48, 3), np.uint8)
    f[..., 0] = np.linspace(0, 255, 48, dtype=np.uint8)[None, None, :]
    f[..., 2] = 80
    for i in range(8):
        f[i, 10:20, 4 * i: 4 * i + 10] = 255
    return f
