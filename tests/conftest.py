"""Shared fixtures: one torch thread, temp data dirs, a deterministic test backend, a built studio."""

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


@pytest.fixture
def backend():
    return GradientBackend()


@pytest.fixture
def registry(backend):
    return ModelRegistry({TEST_SPEC.id: RegistryEntry(TEST_SPEC, lambda device, profile: backend)},
                         default_id=TEST_SPEC.id)


@pytest.fixture
def settings(tmp_path: Path):
    from studio.settings import Settings

    return Settings(data_dir=tmp_path / "data", device="cpu")


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
