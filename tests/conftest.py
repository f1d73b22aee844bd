"""Shared fixtures: one torch thread, temp data dirs, a deterministic test backend, a built studio."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


from pipelines.base import Cancelled, MediaInputs, ModelDefaults, ModelLimits, ModelSpec, Range  # noqa: E402
from pipelines.registry import ModelRegistry, RegistryEntry  # noqa: E402

TEST_SPEC = ModelSpec(
    id="test-gradient",
    version="1",
    label="Test gradient (tests only)",
    family="test",
    modes=("t2v", "i2v", "v2v", "inpaint"),
    defaults=ModelDefaults(steps=4, cfg_scale=2.0, frames=8, fps=8, width=32, height=32),
    limits=ModelLimits(steps=Range(1, 50), frames=Range(1, 32), width=Range(16, 64, 8), height=Range(16, 64, 8)),
)


@dataclass
class GradientBackend:
    """Tests only: frames drawn from the seed and the prompt's length, honouring every contract of Backend."""

    spec: ModelSpec = TEST_SPEC
    step_delay: float = 0.0
    calls: list = field(default_factory=list)
    fail_with: Exception | None = None
    started: threading.Event = field(default_factory=threading.Event)

    def generate(self, request, media: MediaInputs, generator, on_step, should_cancel):
        import torch

        self.calls.append(request)
        self.started.set()
        if self.fail_with is not None:
            raise self.fail_with
        noise = torch.rand((request.frames, request.height, request.width, 3), generator=generator).numpy()
        frames = (noise * 255).astype(np.uint8)
        for i in range(request.steps):
            if should_cancel():
                raise Cancelled()
            if self.step_delay:
                threading.Event().wait(self.step_delay)
            on_step(i + 1, request.steps, frames if i % 2 == 1 else None)
        if media.image is not None:
            frames[0] = media.image
        if media.video is not None and media.mask is not None:
            keep = media.mask[..., None] < 0.5
            frames = np.where(keep, media.video, frames)
        return frames

    def manifest(self) -> dict:
        return {"backend": "gradient", "device": "cpu"}

    def unload(self) -> None:
        pass


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
    from storage.video_io import write_mp4

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
