"""LTX-Video: T5 text encoder, a VAE that compresses 32x in space and 8x in time, packed token latents."""

from __future__ import annotations

from typing import Any

from pipelines.diffusers.families.base import Family

_ALL = {"t2v": "LTXPipeline", "i2v": "LTXImageToVideoPipeline", "v2v": "LTXConditionPipeline",
        "inpaint": "LTXConditionPipeline+blend"}


class LTXVideo(Family):
    name = "ltx"
    label = "LTX-Video"
    layout = "packed"  # (B, tokens, C) inside the loop
    local_pipelines = {"LTXPipeline": _ALL, "LTXImageToVideoPipeline": _ALL, "LTXConditionPipeline": _ALL}
    v2v_from_latents = True  # LTXConditionPipeline starts from given latents noised to `denoise_strength`
    # I2V encodes the image once per generator (image[i] for generator i): the image goes in n times
    batch_by = {"LTXPipeline": "videos", "LTXImageToVideoPipeline": "videos+images", "LTXConditionPipeline": "videos"}

    def batches(self, pipeline_class: str, request) -> bool:
        if pipeline_class == "LTXConditionPipeline":
            # below strength 1 its prepare_latents multiplies a (B,) sigma into (B, C, F, H, W) latents, which
            # broadcasts over the width for B > 1 (diffusers 0.42): v2v at strength < 1 runs seed by seed;
            # latent-blend inpainting (strength 1, from noise) batches
            return getattr(request, "strength", None) in (None, 1.0)
        return super().batches(pipeline_class, request)

    def temporal_ratio(self, pipe) -> int:
        return int(pipe.vae_temporal_compression_ratio)

    def normalize(self, vae, z):
        # as the LTX pipelines normalise latents before the loop: per channel, then the scaling factor
        mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(z.device, z.dtype)
        std = vae.latents_std.view(1, -1, 1, 1, 1).to(z.device, z.dtype)
        return (z - mean) * vae.config.scaling_factor / std

    def to_loop(self, pipe, x):
        # the pipelines' own packing (a static method; diffusers has no public one)
        return type(pipe)._pack_latents(x, pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size)

    def from_loop(self, pipe, latents, request):
        f = (request.frames - 1) // pipe.vae_temporal_compression_ratio + 1
        h = request.height // pipe.vae_spatial_compression_ratio
        w = request.width // pipe.vae_spatial_compression_ratio
        return type(pipe)._unpack_latents(latents, f, h, w, pipe.transformer_spatial_patch_size,
                                          pipe.transformer_temporal_patch_size)

    def arguments(self, pipe, request) -> dict[str, Any]:
        return {"frame_rate": request.fps}

    def video_arguments(self, pipe, frames: list, x0, strength: float) -> dict[str, Any]:
        return {"latents": x0, "denoise_strength": strength}
