"""Fakes shared by the test packages: a deterministic backend that honours every contract of Backend."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from pipelines.contract import Cancelled, MediaInputs, ModelDefaults, ModelLimits, ModelSpec, Range

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


@dataclass
class BatchingGradientBackend(GradientBackend):
    """GradientBackend that also takes several seeds in one call, as the embedded model does."""

    max_batch: int = 8
    batch_sizes: list = field(default_factory=list)
    outputs: list = field(default_factory=list)  # (request, frames) of every clip made in a batch

    def generate_batch(self, requests, media, generators, on_step, should_cancel):
        self.batch_sizes.append(len(requests))
        seen = []
        out = []
        for request, generator in zip(requests, generators):
            out.append(self.generate(request, media, generator, lambda s, t, p: seen.append(s), should_cancel))
            self.outputs.append((request, out[-1]))
        for step in range(1, requests[0].steps + 1):
            on_step(step, requests[0].steps, None)
        return out


SECOND_SPEC = ModelSpec(
    id="test-gradient-b",
    version="1",
    label="Second test model (tests only)",
    family="test",
    modes=("t2v", "v2v"),
    defaults=ModelDefaults(steps=3, cfg_scale=4.0, frames=8, fps=8, width=32, height=32),
    limits=ModelLimits(steps=Range(1, 50), frames=Range(1, 32), width=Range(16, 64, 8), height=Range(16, 64, 8)),
)


SQUARE_SPEC = ModelSpec(
    id="test-square",
    version="1",
    label="Moving square (tests only)",
    family="test",
    modes=("t2v", "i2v", "v2v", "inpaint"),
    defaults=ModelDefaults(steps=1, cfg_scale=2.0, frames=4, fps=8, width=96, height=64),
    limits=ModelLimits(steps=Range(1, 50), frames=Range(1, 32), width=Range(16, 512, 8), height=Range(16, 512, 8)),
)
SQUARE_BG, SQUARE_RGB = (30, 30, 30), (230, 200, 40)


def moving_square(frames: int, height: int = 64, width: int = 96, *, size: int = 32, step: int = 8,
                  x0: int = 8, y0: int = 16, background: np.ndarray | None = None, at: float = 0.0) -> np.ndarray:
    """(frames, H, W, 3) uint8: a `size` square moving right `step` px a frame from (x0, y0), on a plain
    background (or on `background`, (H, W, 3)). `at` shifts time: frame i shows the square at time i + at."""
    out = np.empty((frames, height, width, 3), np.uint8)
    out[:] = SQUARE_BG if background is None else background
    for i in range(frames):
        x = int(round(x0 + step * (i + at)))
        out[i, y0:y0 + size, x:x + size] = SQUARE_RGB
    return out


@dataclass
class SquareBackend(GradientBackend):
    """Tests only: a square moving right 8 px a frame (for frame interpolation)."""

    spec: ModelSpec = SQUARE_SPEC

    def generate(self, request, media: MediaInputs, generator, on_step, should_cancel):
        self.calls.append(request)
        for i in range(request.steps):
            if should_cancel():
                raise Cancelled()
            on_step(i + 1, request.steps, None)
        return moving_square(request.frames, request.height, request.width)


def rife_weights_file(path, seed: int = 0, prefix: str = "module.", edit=None):  # type: ignore[no-untyped-def]
    """Tests only: random RIFE 4.6 IFNet weights saved as Practical-RIFE saves `flownet.pkl` (a state dict,
    keys with DDP's `module.` prefix). `edit(state)` may change the state dict before it is saved. Returns path."""
    import torch

    from pipelines.rife.ifnet import IFNet

    torch.manual_seed(seed)
    state = {prefix + k: v for k, v in IFNet().state_dict().items()}
    if edit is not None:
        edit(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
