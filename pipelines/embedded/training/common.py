"""Helpers every training stage uses: atomic checkpoints, the LR schedule, logging, clip rendering,
loading the trained autoencoder."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from pipelines.embedded import world
from pipelines.embedded.vae import VAEConfig, VideoAutoencoder


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cosine_lr(peak: float, frac: float, warm: float) -> float:
    """Learning rate at fraction `frac` of a stage's time budget: warm-up factor `warm` (0..1), then
    cosine decay to 10% of `peak` at the end of the budget (each invocation, resumed or not)."""
    return peak * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def render_clips(n: int, g: torch.Generator, wcfg: world.WorldConfig = world.WorldConfig()):
    """n random world clips: (labels batch, (n, F, H, W, 3) float pixels in [0, 1])."""
    b = world.sample_batch(n, g, wcfg)
    return b, world.render(b, wcfg)


def load_vae(out: Path, device: str = "cpu") -> VideoAutoencoder:
    """The autoencoder of the run in `out` (vae.pt), with the config it was trained with, in eval mode."""
    ck = torch.load(out / "vae.pt", map_location=device, weights_only=False)
    model = VideoAutoencoder(VAEConfig.from_dict(ck["config"]["vae"])).to(device)
    model.load_state_dict(ck["model"])
    return model.eval()
