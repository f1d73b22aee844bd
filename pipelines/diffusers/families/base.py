"""What one diffusers model family does differently from the next, as a small class.

A family class says, for its pipelines: which pipeline class runs each mode (for a local folder,
from its model_index.json), how the request maps onto the pipeline's `__call__`, the latents'
layout inside the denoising loop, how the VAE compresses time and normalises latents, and what
the VAE and the transformer support (tiling, slicing, first-block cache, regional compile).
Everything else about a model is data in pipelines/catalog.toml.

Methods receive the assembled diffusers pipeline; torch is imported only inside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

if TYPE_CHECKING:
    import torch

BLEND = "+blend"


class Family:
    name: ClassVar[str]  # the catalog's [families.<name>] table and ModelSpec.family
    label: ClassVar[str]
    # latents inside the denoising loop: "bcfhw" (B, C, F, h, w) or "bfchw" (B, F, C, h, w);
    # a family with another layout (LTX packs tokens) overrides to_loop / from_loop
    layout: ClassVar[str] = "bcfhw"
    # model_index.json `_class_name` -> {mode: pipeline class}; "<Class>+blend" = latent-blend inpainting
    local_pipelines: ClassVar[Mapping[str, Mapping[str, str]]] = {}
    # the denoiser has `_repeated_blocks`, so `compile_repeated_blocks` compiles something
    compilable: ClassVar[bool] = True
    # the denoiser takes diffusers' first-block cache (CacheMixin) and its pipelines mark cache contexts
    cacheable: ClassVar[bool] = True
    # pipelines whose denoiser does work between the blocks the first-block cache skips (the cache would
    # replay it twice): never cached
    uncached_pipelines: ClassVar[frozenset[str]] = frozenset()
    # components kept in float32 on an accelerator, whatever the profile's dtype
    fp32_components: ClassVar[tuple[str, ...]] = ()
    # the VAE implements tiled / sliced encode-decode (enable_tiling / enable_slicing do not raise)
    vae_tiling: ClassVar[bool] = True
    vae_slicing: ClassVar[bool] = True
    # family-specific advice after an out-of-memory error, added to the lower-profile hint
    memory_advice: ClassVar[str] = ""
    # v2v starts from the input's latents the backend encodes (instead of the pipeline's `video=`)
    v2v_from_latents: ClassVar[bool] = False

    # ---- what a model offers ---------------------------------------------------------------------
    def local_modes(self, class_name: str, index: Mapping[str, Any], folder: Path) -> dict[str, str] | None:
        """{mode: pipeline class} for a local folder whose model_index.json names `class_name`."""
        modes = self.local_pipelines.get(class_name)
        return dict(modes) if modes is not None else None

    def why_not(self, profile, pipelines: Mapping[str, str]) -> str | None:
        """None when this family can run `profile` with these pipelines, else the reason it is not offered."""
        if profile.compile and not self.compilable:
            return f"{self.label} has no repeated transformer blocks for regional compilation"
        if profile.cache != "none":
            if not self.cacheable:
                return f"{self.label}'s denoiser does not take the first-block cache"
            bad = sorted({p.removesuffix(BLEND) for p in pipelines.values()} & self.uncached_pipelines)
            if bad:
                return (f"{', '.join(bad)} adds work between the transformer blocks that the first-block cache "
                        f"skips, so a cached step would be wrong")
        return None

    def oom_hint(self, lower: str | None) -> str:
        hint = f"try the '{lower}' profile" if lower else "this is already the model's lowest-memory profile"
        return f"{hint} ({self.memory_advice})" if self.memory_advice else hint

    # ---- the pipeline ----------------------------------------------------------------------------
    def check_pipeline(self, pipe) -> None:
        """Raise ValueError when an assembled pipeline cannot run these weights correctly."""

    def load_arguments(self, index: Mapping[str, Any], adapter: Path | None, dtype) -> tuple[str | None, dict]:
        """(pipeline class to load the folder as, or None for its own; extra from_pretrained arguments)."""
        return None, {}

    # ---- latents ---------------------------------------------------------------------------------
    def temporal_ratio(self, pipe) -> int:
        """Frames per latent frame after the first (causal video VAEs keep frame 0 alone)."""
        return int(pipe.vae_scale_factor_temporal)

    def encode(self, pipe, x: "torch.Tensor") -> "torch.Tensor":
        """x: (1, 3, F, H, W) in [-1, 1] -> the normalised latents the loop works on, (1, C, f, h, w)."""
        vae = pipe.vae
        z = vae.encode(x).latent_dist.mode()  # the mode, so the reference is deterministic
        return self.normalize(vae, z)

    def normalize(self, vae, z: "torch.Tensor") -> "torch.Tensor":
        return z * vae.config.scaling_factor

    def to_loop(self, pipe, x: "torch.Tensor") -> "torch.Tensor":
        """(B, C, f, h, w) -> the loop's layout."""
        return x.permute(0, 2, 1, 3, 4) if self.layout == "bfchw" else x

    def from_loop(self, pipe, latents: "torch.Tensor", request) -> "torch.Tensor":
        """The loop's layout -> (B, C, f, h, w)."""
        return latents.permute(0, 2, 1, 3, 4) if self.layout == "bfchw" else latents

    # ---- call arguments --------------------------------------------------------------------------
    def arguments(self, pipe, request) -> dict[str, Any]:
        """Family-specific `__call__` arguments beside the common ones (prompt, size, frames, steps, cfg)."""
        return {}

    def image_arguments(self, pipe, image, request) -> dict[str, Any]:
        return {"image": image}

    def video_arguments(self, pipe, frames: list, x0, strength: float) -> dict[str, Any]:
        """v2v (and latent-blend inpaint) input. `frames`: PIL images; `x0`: encoded latents or None."""
        return {"video": frames, "strength": strength}

    def inpaint_arguments(self, pipe, frames: list, mask_frames: list) -> dict[str, Any]:
        """Native (not latent-blend) inpainting: the video and a mask, white = regenerate."""
        raise ValueError(f"{self.label} has no native inpainting pipeline")

    def notes(self, pipe, request, kwargs: Mapping[str, Any]) -> list[str]:
        """What the run did differently from what was asked (recorded in the manifest's last_run)."""
        return []


def read_component_config(folder: Path, component: str) -> dict:
    path = folder / component / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
