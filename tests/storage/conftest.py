from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storage.db import make_engine, make_session_factory, upgrade


@pytest.fixture
def engine(tmp_path: Path):
    eng = make_engine(f"sqlite:///{tmp_path / 'gallery.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


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
