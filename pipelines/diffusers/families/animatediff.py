"""AnimateDiff: a motion adapter on a Stable Diffusion 1.5 UNet, an image VAE run frame by frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pipelines.diffusers.families.base import Family

_ALL = {"t2v": "AnimateDiffPipeline", "v2v": "AnimateDiffVideoToVideoPipeline",
        "inpaint": "AnimateDiffVideoToVideoPipeline+blend"}


class AnimateDiff(Family):
    name = "animatediff"
    label = "AnimateDiff"
    local_pipelines = {"AnimateDiffPipeline": _ALL, "AnimateDiffVideoToVideoPipeline": _ALL}
    # both pipelines force num_videos_per_prompt to 1; V2V encodes the video once per generator
    batch_by = {"AnimateDiffPipeline": "prompts", "AnimateDiffVideoToVideoPipeline": "prompts+clips"}
    compilable = False  # UNetMotionModel declares no _repeated_blocks
    cacheable = False  # the first-block cache hooks transformers only

    def load_arguments(self, index: Mapping[str, Any], adapter: Path | None, dtype) -> tuple[str | None, dict]:
        if adapter is None:
            return None, {}
        from diffusers import MotionAdapter

        extra = {"motion_adapter": MotionAdapter.from_pretrained(adapter, dtype=dtype, local_files_only=True)}
        # an SD 1.5 base folder, loaded as AnimateDiff around the adapter
        return ("AnimateDiffPipeline" if index.get("_class_name") != "AnimateDiffPipeline" else None), extra

    def temporal_ratio(self, pipe) -> int:
        return 1  # an image VAE: one latent per frame

    def encode(self, pipe, x):
        vae = pipe.vae
        frames = x[0].permute(1, 0, 2, 3)  # (F, 3, H, W), frame by frame
        z = vae.encode(frames).latent_dist.mode() * vae.config.scaling_factor
        return z.permute(1, 0, 2, 3)[None]  # (1, C, F, h, w)
