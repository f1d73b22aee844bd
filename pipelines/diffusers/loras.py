"""LoRAs on a diffusers pipeline: a cheap fit check before queueing, and loading/stacking/unloading per job.

Before a job is queued, `check` reads only safetensors headers: the LoRA's (family guess from key names,
and for the diffusers/PEFT layout each targeted layer's shape) against the model's denoiser weights on disk.
At run time `LoraState.apply` loads each LoRA once (`load_lora_weights`, which also converts the community
layouts), sets the request's weights with `set_adapters`, and deletes every adapter the request does not
name, so nothing leaks from one job into the next.

Fused (a profile with `fuse_loras`, e.g. "fast"): the weighted LoRAs are merged into the denoiser's weights
(`fuse_lora`), so a step costs what it costs without them; the next job with the same LoRAs and weights
reuses the merge, any other first unmerges (`unfuse_lora`). Unmerging restores the weights up to rounding:
exact enough in float32, a small drift in bf16 (the profiles that fuse say so).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pipelines.contract.loras import describe, mismatch, peft_targets, read_shapes

DENOISERS = ("transformer", "unet")


@functools.lru_cache(maxsize=8)
def denoiser_shapes(folder: str) -> tuple[str, dict[str, tuple[int, ...]]] | None:
    """(component name, {weight name: shape}) of a diffusers folder's denoiser, from its safetensors headers."""
    for comp in DENOISERS:
        files = sorted((Path(folder) / comp).glob("*.safetensors"))
        if not files:
            continue
        plain = [f for f in files if f.name.count(".") == 1 or "-of-" in f.name]  # not *.fp16.safetensors
        shapes: dict[str, tuple[int, ...]] = {}
        for f in plain or files:
            try:
                shapes.update(read_shapes(f))
            except (OSError, ValueError):
                return None
        return comp, shapes
    return None


def check(model, folder: Path | None, name: str, path: str) -> str | None:
    """None when the LoRA at `path` can be applied to `model` (a CatalogModel), else a message naming both."""
    label = f"{model.spec.label} ({model.spec.id})"
    try:
        shapes = read_shapes(path)
    except (OSError, ValueError) as e:
        return f"LoRA {name} cannot be read: {e}"
    if not any("lora" in k.lower() or "alpha" in k for k in shapes):
        return f"LoRA {name} has no LoRA weights (no lora_A/lora_B or lora_down/lora_up tensors)"
    guess = describe(shapes)["family"]
    family = model.spec.family
    if guess is not None and guess != family:
        return f"LoRA {name} is for {guess} models; {label} is a {family} model"
    found = denoiser_shapes(str(folder)) if folder is not None else None
    if found is None:
        return None  # no weights on disk to compare with: diffusers checks when the job loads it
    comp, weights = found
    targets = peft_targets(shapes, prefix=f"{comp}.")
    if targets is None:
        targets = peft_targets(shapes, prefix="")
    if targets is None:
        return None  # a community layout: converted and checked when loaded
    why = mismatch(targets, weights)
    return f"LoRA {name} does not fit {label}: {why}" if why else None


class LoraState:
    """The adapters loaded on one pipeline's shared components: adapter name -> sha256."""

    def __init__(self) -> None:
        self.loaded: dict[str, str] = {}
        self.active: list[dict[str, Any]] = []
        self.fused: tuple | None = None  # ((adapter, weight), ...) merged into the denoiser's weights

    @staticmethod
    def adapter_name(ref) -> str:
        return "lora_" + (ref.sha256 or Path(ref.path or ref.name).stem)[:16].replace(".", "_")

    def apply(self, pipe, loras, label: str, *, fuse: bool = False) -> None:
        """Make the pipeline's adapters exactly `loras` (LoraRef with a path), with their weights; with
        `fuse`, merged into the denoiser's weights."""
        wanted = [(self.adapter_name(r), r) for r in loras]
        names = {n for n, _ in wanted}
        key = tuple((n, float(r.weight)) for n, r in wanted)
        if self.fused is not None and (not fuse or self.fused != key):
            pipe.unfuse_lora(components=_denoisers(pipe))
            self.fused = None
        stale = [n for n in self.loaded if n not in names]
        if stale:
            if not names:
                pipe.unload_lora_weights()  # the denoiser's layers back to plain ones
            else:
                pipe.delete_adapters(stale)
            for n in stale:
                self.loaded.pop(n, None)
        for adapter, ref in wanted:
            if adapter in self.loaded:
                continue
            if not hasattr(pipe, "load_lora_weights"):
                raise ValueError(f"{type(pipe).__name__} ({label}) does not take LoRAs")
            try:
                pipe.load_lora_weights(ref.path or ref.name, adapter_name=adapter)
            except Exception as e:  # size mismatch, unknown layout: name the LoRA and the model
                self._drop(pipe, adapter)
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ValueError(f"LoRA {ref.name} does not fit {label}: {first}") from None
            if adapter not in _adapters(pipe):
                self._drop(pipe, adapter)
                raise ValueError(f"LoRA {ref.name} does not fit {label}: none of its layers match the model's")
            self.loaded[adapter] = ref.sha256 or ""
        if wanted and self.fused != key:
            pipe.set_adapters([n for n, _ in wanted], [float(r.weight) for _, r in wanted])
            if fuse:
                pipe.fuse_lora(components=_denoisers(pipe), lora_scale=1.0, adapter_names=[n for n, _ in wanted])
                self.fused = key
        self.active = [r.recipe() for _, r in wanted]

    def _drop(self, pipe, adapter: str) -> None:
        try:
            if adapter in _adapters(pipe):
                pipe.delete_adapters([adapter])
            if not self.loaded:
                pipe.unload_lora_weights()
        except Exception:  # the load error matters more
            pass

    def clear(self) -> None:
        self.loaded.clear()
        self.active = []
        self.fused = None


def _denoisers(pipe) -> list[str]:
    return [c for c in DENOISERS if getattr(pipe, c, None) is not None]


def _adapters(pipe) -> set[str]:
    try:
        return {a for names in pipe.get_list_adapters().values() for a in names}
    except Exception:
        return set()
