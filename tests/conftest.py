"""Shared fixtures: one torch thread, temp data dirs, a deterministic test backend, a built studio, and the
database: SQLite in the data dir by default; PostgreSQL too where a folder or module asks for both
(`pytest_generate_tests = parametrize_backends`, see tests/support/postgres.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


from pipelines.contract import ModelRegistry, RegistryEntry  # noqa: E402
from tests.support.fakes import TEST_SPEC, GradientBackend  # noqa: E402,F401
from tests.support.postgres import PostgresCluster, missing_reason  # noqa: E402


@pytest.fixture(scope="session")
def postgres_cluster():
    """One throwaway PostgreSQL cluster for the whole run, started by the first test that needs it."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster):
    """A fresh PostgreSQL database at the migrations' head, for this test only (dropped after it)."""
    name = postgres_cluster.create_database()
    yield postgres_cluster.url(name)
    postgres_cluster.drop_database(name)


@pytest.fixture
def blank_postgres_url(postgres_cluster):
    """A fresh PostgreSQL database with no tables at all (for migration tests), dropped after the test."""
    name = postgres_cluster.create_database(blank=True)
    yield postgres_cluster.url(name)
    postgres_cluster.drop_database(name)


@pytest.fixture
def db_backend(request) -> str:
    """"sqlite" unless the test is parametrized over both backends (`parametrize_backends`)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url(request, db_backend):
    """What `settings.database_url` is: None (the default, SQLite in the data dir) or a fresh PostgreSQL database."""
    if db_backend == "postgresql":
        return request.getfixturevalue("postgres_url")
    return None


@pytest.fixture
def backend():
    return GradientBackend()


@pytest.fixture
def registry(backend):
    return ModelRegistry({TEST_SPEC.id: RegistryEntry(TEST_SPEC, lambda device, profile: backend)},
                         default_id=TEST_SPEC.id)


@pytest.fixture
def settings(tmp_path: Path, database_url):
    from studio.settings import Settings

    return Settings(data_dir=tmp_path / "data", device="cpu", database_url=database_url)


@pytest.fixture
def studio(settings, registry):
    from studio.wiring import build_studio

    s = build_studio(settings, registry)
    yield s
    s.close()


@pytest.fixture
def sample_video(tmp_path: Path) -> Path:
    """A 12-frame 32x32 mp4: a white square sliding right on black."""
    from studio.media.video import write_mp4

    frames = np.zeros((12, 32, 32, 3), np.uint8)
    for i in range(12):
        frames[i, 12:20, 2 + 2 * i: 10 + 2 * i] = 255
    path = tmp_path / "input.mp4"
    write_mp4(frames, 8, path, {})
    return path


@pytest.fixture
def sample_image(tmp_path: Path) -> Path:
    from PIL import Image

    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 8:24] = (220, 40, 40)
    path = tmp_path / "first.png"
    Image.fromarray(img).save(path)
    return path


@pytest.fixture
def sample_mask(tmp_path: Path) -> Path:
    from PIL import Image

    m = np.zeros((32, 32), np.uint8)
    m[:, 16:] = 255
    path = tmp_path / "mask.png"
    Image.fromarray(m).save(path)
    return path
