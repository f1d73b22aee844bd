"""Wan 2.1 / 2.2: T2V, I2V, V2V, VACE; UMT5 text encoder, causal video VAE (4x in time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pipelines.diffusers.families.base import Family, read_component_config

_T2V = {"t2v": "WanPipeline", "v2v": "WanVideoToVideoPipeline", "inpaint": "WanVideoToVideoPipeline+blend"}


class Wan(Family):
    name = "wan"
    label = "Wan"
    local_pipelines = {
        "WanPipeline": _T2V,
        "WanVideoToVideoPipeline": _T2V,
        "WanImageToVideoPipeline": {"i2v": "WanImageToVideoPipeline"},
        "WanVACEPipeline": {"t2v": "WanVACEPipeline", "i2v": "WanVACEPipeline", "inpaint": "WanVACEPipeline"},
    }
    # batches of seeds (Family.batch_by). WanVACEPipeline is missing: it refuses a list of prompts, a list of
    # generators and num_videos_per_prompt > 1 ("not yet supported" in diffusers 0.42), so a VACE model's
    # seeds run one by one (max_batch 1). I2V sizes its CLIP image embedding by the prompt count only, and
    # V2V forces num_videos_per_prompt to 1: both batch by repeating the prompt.
    batch_by = {"WanPipeline": "videos", "WanImageToVideoPipeline": "prompts", "WanVideoToVideoPipeline": "prompts"}
    # VACE adds its control hints after chosen blocks inside the transformer's own loop: the first-block
    # cache replays a residual that already holds them, and the loop adds them again
    uncached_pipelines = frozenset({"WanVACEPipeline"})
    # the Wan VAE and the I2V CLIP image encoder are published for float32 (Wan I2V docs)
    fp32_components = ("vae", "image_encoder")
    memory_advice = "the UMT5-XXL text encoder alone is 11 GB in bf16, and offload keeps it off the GPU"

    def local_modes(self, class_name: str, index: Mapping[str, Any], folder: Path) -> dict[str, str] | None:
        modes = super().local_modes(class_name, index, folder)
        if class_name in ("WanPipeline", "WanVideoToVideoPipeline"):
            if index.get("transformer_2", [None])[0] is not None:  # Wan 2.2 A14B: two experts, t2v only
                return {"t2v": "WanPipeline"}
            if index.get("expand_timesteps"):  # Wan 2.2 TI2V: the same weights animate an image
                modes["i2v"] = "WanImageToVideoPipeline"
            if _spatial_factor(read_component_config(folder, "vae")) != 8:
                modes = self.without_video_to_video(modes)
        return modes

    @staticmethod
    def without_video_to_video(modes: dict[str, str]) -> dict[str, str]:
        """WanVideoToVideoPipeline sizes its noise for an 8x VAE (2 ** len(temperal_downsample)); the Wan 2.2
        VAE compresses 16x, so its v2v would crash. Inpaint then blends into WanPipeline, from noise."""
        modes.pop("v2v", None)
        if "inpaint" in modes:
            modes["inpaint"] = "WanPipeline+blend"
        return modes

    def check_pipeline(self, pipe) -> None:
        want = _spatial_factor(pipe.vae.config)
        if getattr(pipe, "vae_scale_factor_spatial", want) != want:
            raise ValueError(f"{type(pipe).__name__} assumes a {pipe.vae_scale_factor_spatial}x VAE but this model's "
                             f"VAE compresses {want}x; this mode is not available for it")

    def temporal_ratio(self, pipe) -> int:
        return int(pipe.vae.config.scale_factor_temporal or 4)

    def normalize(self, vae, z):
        import torch

        mean = torch.tensor(vae.config.latents_mean, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
        return (z - mean) / std

    def image_arguments(self, pipe, image, request) -> dict[str, Any]:
        if type(pipe).__name__ == "WanVACEPipeline":  # first frame kept, the rest generated
            video, mask = _vace_first_frame(image, request.frames)
            return {"video": video, "mask": mask}
        return {"image": image}

    def inpaint_arguments(self, pipe, frames: list, mask_frames: list) -> dict[str, Any]:
        return {"video": frames, "mask": mask_frames}  # VACE: the mask says what to regenerate (white)


def _spatial_factor(vae_config: Mapping[str, Any]) -> int:
    return int(vae_config.get("scale_factor_spatial") or 8)


def _vace_first_frame(image, frames: int) -> tuple[list, list]:
    """VACE first-frame animation: the image, then grey frames; the mask keeps frame 0 only."""
    from PIL import Image

    size = image.size
    video = [image] + [Image.new("RGB", size, (128, 128, 128))] * (frames - 1)
    mask = [Image.new("RGB", size, (0, 0, 0))] + [Image.new("RGB", size, (255, 255, 255))] * (frames - 1)
    return video, mask
