"""Stage export: the trained run -> the shipped files (model.safetensors + config.json)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from pipelines.embedded.training.common import log
from pipelines.embedded.training.config import TrainConfig
from pipelines.embedded.vae import VAEConfig
from pipelines.embedded.weights import CONFIG_FILE, DENOISER_KEY, SAMPLER, WEIGHTS_FILE, WEIGHTS_VERSION, join_state


def write_assets(assets: Path, vae_state: dict, denoiser_state: dict, vae_cfg: dict, denoiser_cfg: dict,
                 vocab: list[str], training: dict | None = None, dtype: str = "float32", shift: float = 1.0) -> Path:
    """Write the shipping format (see pipelines.embedded.weights) into `assets`; returns the weights file."""
    from safetensors.torch import save_file

    dt = getattr(torch, dtype)
    tensors = {k: v.to(dt).contiguous() for k, v in join_state(vae_state, denoiser_state).items()}
    assets.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(assets / WEIGHTS_FILE))
    meta = {"version": WEIGHTS_VERSION, "vae": vae_cfg, DENOISER_KEY: denoiser_cfg, "vocab": vocab,
            "sampler": {"shift": shift, **SAMPLER}, "training": training or {}}
    (assets / CONFIG_FILE).write_text(json.dumps(meta, indent=1))
    return assets / WEIGHTS_FILE


def export(out: Path, assets: Path, dtype: str = "float32", which: str = "ema") -> Path:
    """Write the run's autoencoder and denoiser (its EMA weights, or the raw ones) into `assets`."""
    vae_ck = torch.load(out / "vae.pt", map_location="cpu", weights_only=False)
    den_ck = torch.load(out / "dit.pt", map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(den_ck["config"])
    training = {"vae_steps": vae_ck["step"], "dit_steps": den_ck["step"], "dit_batch": cfg.denoiser_batch,
                "cache_clips": cfg.cache_clips, "dit_weights": which}
    vae_cfg = VAEConfig.from_dict(vae_ck["config"]["vae"])  # the autoencoder's own, not the denoiser run's
    path = write_assets(assets, vae_ck["model"], den_ck[which], vae_cfg.to_dict(), den_ck["dit_config"],
                        den_ck["vocab"], training, dtype, cfg.t_shift)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    log(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {sha}), denoiser step {den_ck['step']}")
    return path
