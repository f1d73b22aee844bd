"""Genmo Mochi: T5 text encoder, an asymmetric VAE that compresses 6x in time, sigmas from noise to data."""

from __future__ import annotations

from pipelines.diffusers.families.base import Family


class Mochi(Family):
    name = "mochi"
    label = "Mochi"
    local_pipelines = {"MochiPipeline": {"t2v": "MochiPipeline", "inpaint": "MochiPipeline+blend"}}
    batch_by = {"MochiPipeline": "videos"}
    compilable = False  # MochiTransformer3DModel declares no _repeated_blocks

    def temporal_ratio(self, pipe) -> int:
        return int(pipe.vae_temporal_scale_factor)  # MochiPipeline's own name for it (6)

    def normalize(self, vae, z):
        # the inverse of MochiPipeline's denormalisation before decode
        import torch

        if vae.config.latents_mean is not None and vae.config.latents_std is not None:
            mean = torch.tensor(vae.config.latents_mean, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
            std = torch.tensor(vae.config.latents_std, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
            return (z - mean) * vae.config.scaling_factor / std
        return z * vae.config.scaling_factor
