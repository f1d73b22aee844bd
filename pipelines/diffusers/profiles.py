"""Speed/memory profiles applied to a loaded pipeline: dtype, attention, VAE tiling and slicing,
first-block cache, regional compile, offload. Each setting is applied only where it really works,
and the effective settings are returned for the manifest."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from pipelines.diffusers.catalog import CatalogModel, Profile

_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def denoisers(pipe) -> list:
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]


def dtypes(model: "CatalogModel", profile: "Profile", on_cpu: bool) -> "tuple[torch.dtype, dict[str, torch.dtype]]":
    """(weights dtype, {component: dtype} for the family's float32 components): fp32 everywhere on a CPU;
    else the profile's dtype, except that models published in fp16 stay fp16."""
    import torch

    if on_cpu:
        return torch.float32, {}
    name = profile.dtype if profile.name != "default" else model.dtype
    if name == "bf16" and model.dtype == "fp16":
        name = "fp16"  # published and validated in fp16 (SVD, AnimateDiff, CogVideoX-2b)
    dtype = getattr(torch, _DTYPES[name])
    return dtype, {c: torch.float32 for c in model.family.fp32_components if dtype != torch.float32}


def group_offload_arguments(device: str) -> dict[str, Any]:
    """enable_group_offload's arguments: layers stream in on a side stream; low_cpu_mem_usage pins each
    group's CPU copy only while it is moved, instead of a pinned copy of every weight up front."""
    import torch

    return dict(onload_device=torch.device(device), offload_device=torch.device("cpu"), offload_type="leaf_level",
                use_stream=True, low_cpu_mem_usage=True)


def _vae_switch(vae, method: str) -> bool:
    """Call vae.enable_tiling / enable_slicing; False when the VAE does not implement it (the mixin raises)."""
    fn = getattr(vae, method, None)
    if fn is None:
        return False
    try:
        fn()
    except NotImplementedError:
        return False
    return True


def apply_profile(pipe, model: "CatalogModel", profile: "Profile", device: str) -> dict[str, Any]:
    """Settings that live on the shared components; returns the effective ones."""
    import torch

    on_cpu = torch.device(device).type == "cpu"
    eff: dict[str, Any] = {}
    eff["attention"] = _apply_attention(pipe, profile.attention, on_cpu)
    vae = getattr(pipe, "vae", None)
    eff["vae_tiling"] = bool(profile.vae_tiling and _vae_switch(vae, "enable_tiling"))
    eff["vae_slicing"] = bool(profile.vae_slicing and _vae_switch(vae, "enable_slicing"))
    if profile.vae_tiling and not eff["vae_tiling"]:
        eff["vae_tiling"] = "unsupported"
    if profile.vae_slicing and not eff["vae_slicing"]:
        eff["vae_slicing"] = "unsupported"
    models = denoisers(pipe)
    eff["cache"] = "none"
    if profile.cache == "first_block":
        ok = model.family.cacheable and models and all(hasattr(m, "enable_cache") for m in models)
        eff["cache"] = "first_block" if ok else "unsupported"
        eff["cache_threshold"] = profile.cache_threshold
    eff["fuse_loras"] = bool(profile.fuse_loras and model.transformer_file is None)
    eff["compile"] = False
    if profile.compile and not on_cpu:
        compiled = [m for m in models if getattr(m, "_repeated_blocks", None)]
        for m in compiled:  # cache hooks branch on data: let them break the graph
            m.compile_repeated_blocks(fullgraph=profile.cache == "none")
        eff["compile"] = "regional" if compiled else "unsupported"
    if on_cpu:
        eff["offload"] = "none (cpu)"
    elif profile.offload == "group":
        pipe.enable_group_offload(**group_offload_arguments(device))
        eff["offload"] = "group (leaf_level, stream)"
    elif profile.offload == "model":
        eff["offload"] = "model"  # enabled per assembled pipeline when it is first used
    else:
        eff["offload"] = "none"
    if not on_cpu and profile.offload == "none":
        pipe.to(device)  # from_pretrained left everything on the CPU
    return eff


def _apply_attention(pipe, want: str, on_cpu: bool) -> str:
    if want == "sdpa" or on_cpu:
        return "sdpa"
    import importlib.util

    if want == "xformers" and importlib.util.find_spec("xformers"):
        pipe.enable_xformers_memory_efficient_attention()
        return "xformers"
    if want == "flash" and importlib.util.find_spec("flash_attn"):
        for m in denoisers(pipe):
            if hasattr(m, "set_attention_backend"):
                m.set_attention_backend("flash")
        return "flash"
    return f"sdpa ({want} not installed)"


def set_cache(pipe, model: "CatalogModel", settings: dict, threshold: float) -> bool:
    """Switch the first-block cache on for pipelines that mark cond/uncond passes with cache_context
    (and that the family does not exclude), off for the others. Returns whether it is on."""
    want = (settings.get("cache") == "first_block" and uses_cache_context(type(pipe))
            and type(pipe).__name__ not in model.family.uncached_pipelines)
    for m in denoisers(pipe):
        if not hasattr(m, "enable_cache"):
            continue
        if want and not m.is_cache_enabled:
            from diffusers import FirstBlockCacheConfig

            try:
                m.enable_cache(FirstBlockCacheConfig(threshold=threshold))
            except Exception as e:  # e.g. a transformer with a single block: run uncached, say so
                settings["cache"] = f"unsupported ({type(e).__name__}: {e})"
                return False
        elif not want and m.is_cache_enabled:
            m.disable_cache()
    return want


@functools.lru_cache(maxsize=None)
def uses_cache_context(cls) -> bool:
    import inspect

    try:
        return "cache_context" in inspect.getsource(cls.__call__)
    except (OSError, TypeError):  # pragma: no cover
        return False
