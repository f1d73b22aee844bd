"""Stable Video Diffusion: image-only conditioning, a spatio-temporal UNet, a temporal-decoder VAE."""

from __future__ import annotations

from typing import Any

from pipelines.diffusers.families.base import Family


class StableVideoDiffusion(Family):
    name = "svd"
    label = "Stable Video Diffusion"
    layout = "bfchw"
    local_pipelines = {"StableVideoDiffusionPipeline": {"i2v": "StableVideoDiffusionPipeline"}}
    # no prompt; with num_videos_per_prompt the conditioning image's noise augmentation would be drawn once,
    # from the first generator, for the whole batch: the image goes in n times instead, so each seed draws
    # its own image noise and then its latents, as its single run does
    batch_by = {"StableVideoDiffusionPipeline": "images"}
    compilable = False  # a UNet without _repeated_blocks
    cacheable = False  # the first-block cache hooks transformers only
    # AutoencoderKLTemporalDecoder implements neither: enable_tiling / enable_slicing raise NotImplementedError
    vae_tiling = False
    vae_slicing = False
    memory_advice = "SVD decodes 8 frames at a time (decode_chunk_size); fewer frames also help"

    def temporal_ratio(self, pipe) -> int:
        return 1  # an image VAE with a temporal decoder: one latent per frame

    def arguments(self, pipe, request) -> dict[str, Any]:
        # no prompt; guidance ramps from 1 to cfg over the frames; fps conditions the motion
        return {"min_guidance_scale": 1.0, "max_guidance_scale": request.cfg_scale, "fps": request.fps}
