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

# Seeds of one request per batch through the network on a profile that keeps everything on the GPU
# (see Family.max_batch): conservative, since activations grow with the batch and a video transformer's
# attention over tens of thousands of tokens is already the peak of a single clip.
MAX_BATCH = 4


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
    # pipeline class -> how a batch of n seeds enters its `__call__` (see `batch_arguments`), one or more of:
    #   "videos":  num_videos_per_prompt=n (the prompt is encoded once)
    #   "prompts": the prompt repeated n times (pipelines that force num_videos_per_prompt to 1, or size
    #              their image conditioning by the prompt count only)
    #   "images":  the conditioning image repeated n times (pipelines that encode it once per generator)
    #   "clips":   the input video repeated n times (likewise, for `video=` frames)
    # joined by "+". Each takes a list of generators, one per seed, so that every sample draws the noise
    # (and VAE samples) its single run draws, in the same order. A pipeline not listed cannot batch:
    # generate_batch runs its seeds one by one.
    batch_by: ClassVar[Mapping[str, str]] = {}

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

    def max_batch(self, profile, pipelines: Mapping[str, str]) -> int:
        """How many seeds of one request go through the network together (the job service's batch limit).

        The rule ("memory permits"):
        - 1 when none of the model's pipelines can batch (`batch_by`);
        - 1 under a profile that offloads (`balanced`: model offload, `low-vram`: group offload): whoever
          picked one said GPU memory is short, and activations grow with the batch;
        - 1 under the first-block cache (`fast`): it decides to skip a step from the whole batch's
          residual, so a batched clip would not be the clip its seed gives alone;
        - else MAX_BATCH (4), e.g. `quality` and `compiled` (compiled: the first batch recompiles).
        An out-of-memory error in a batch drops the backend to 1 and runs the seeds one by one.
        """
        if not any(p.removesuffix(BLEND) in self.batch_by for p in pipelines.values()):
            return 1
        if profile.offload != "none" or profile.cache != "none":
            return 1
        return MAX_BATCH

    def batches(self, pipeline_class: str, request) -> bool:
        """Whether `pipeline_class` can run several seeds of `request` in one call."""
        return pipeline_class in self.batch_by

    def batch_arguments(self, pipe, kw: dict[str, Any], n: int) -> dict[str, Any]:
        """The call's arguments for `n` seeds at once (`kw` holds the single run's, generator a list)."""
        how = self.batch_by.get(type(pipe).__name__)
        if how is None:
            raise ValueError(f"{type(pipe).__name__} cannot generate a batch")
        kw = dict(kw)
        for way in how.split("+"):
            if way == "videos":
                kw["num_videos_per_prompt"] = n
            elif way == "prompts":
                kw["prompt"] = [kw["prompt"]] * n
                if kw.get("negative_prompt"):
                    kw["negative_prompt"] = [kw["negative_prompt"]] * n
            elif way == "images":
                kw["image"] = [kw["image"]] * n
            elif way == "clips" and isinstance(kw.get("video"), list):
                kw["video"] = [kw["video"]] * n
            elif way != "clips":
                raise ValueError(f"unknown batch way {way!r} for {type(pipe).__name__}")
        return kw

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
