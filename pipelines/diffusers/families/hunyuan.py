"""HunyuanVideo: Llama (Llava for I2V) + CLIP text encoders, guidance-distilled transformer."""

from __future__ import annotations

from typing import Any, Mapping

from pipelines.diffusers.families.base import Family


class HunyuanVideo(Family):
    """`guidance_scale` is the embedded (distilled) guidance; a negative prompt counts only with true CFG."""

    name = "hunyuan"
    label = "HunyuanVideo"
    local_pipelines = {
        "HunyuanVideoPipeline": {"t2v": "HunyuanVideoPipeline", "inpaint": "HunyuanVideoPipeline+blend"},
        "HunyuanVideoImageToVideoPipeline": {"i2v": "HunyuanVideoImageToVideoPipeline"},
    }
    # the I2V pipeline encodes its image once per generator and pairs each prompt with one image in its
    # Llava encoder: prompt and image go in n times
    batch_by = {"HunyuanVideoPipeline": "videos", "HunyuanVideoImageToVideoPipeline": "prompts+images"}
    memory_advice = "the Llama text encoder is 16 GB in bf16, and offload keeps it off the GPU"

    def image_arguments(self, pipe, image, request) -> dict[str, Any]:
        kw: dict[str, Any] = {"image": image}
        if pipe.transformer.config.get("image_condition_type") == "latent_concat":
            kw["num_frames"] = request.frames + 4  # it drops the first 4 decoded frames: ask for 4 more
        return kw

    def notes(self, pipe, request, kwargs: Mapping[str, Any]) -> list[str]:
        if request.negative_prompt and kwargs.get("true_cfg_scale", 1.0) <= 1.0:
            return ["negative prompt not used: HunyuanVideo is guidance-distilled and this model runs without "
                    "true classifier-free guidance (true_cfg_scale 1)"]
        return []
