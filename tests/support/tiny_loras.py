"""Tiny random LoRAs for the tiny pipelines, built in code in the diffusers/PEFT layout (`save_lora_weights`)."""

from __future__ import annotations

from pathlib import Path

import torch

TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0")


def make_lora(pipe, path: Path, *, seed: int = 0, rank: int = 2, scale: float = 0.5, widen: int = 0) -> Path:
    """A LoRA on the attention projections of `pipe`'s transformer, saved as `path` (a .safetensors file).
    `widen` > 0 gives each layer the wrong input width (a LoRA made for another shape of model)."""
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for name, module in pipe.transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(TARGETS):
            layers[f"{name}.lora_A.weight"] = torch.randn(rank, module.in_features + widen, generator=g) * scale
            layers[f"{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=g) * scale
    assert layers, "no attention projections found"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(path.parent, transformer_lora_layers=layers, weight_name=path.name,
                                 safe_serialization=True)
    return path
