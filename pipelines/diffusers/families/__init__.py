"""The diffusers families, one class each, in one table. Adding a family: a class here and its
[families.<name>] table plus [[models]] entries in pipelines/catalog.toml."""

from __future__ import annotations

from pipelines.diffusers.families.animatediff import AnimateDiff
from pipelines.diffusers.families.base import BLEND, Family
from pipelines.diffusers.families.cogvideox import CogVideoX
from pipelines.diffusers.families.hunyuan import HunyuanVideo
from pipelines.diffusers.families.ltx import LTXVideo
from pipelines.diffusers.families.mochi import Mochi
from pipelines.diffusers.families.svd import StableVideoDiffusion
from pipelines.diffusers.families.wan import Wan

# catalog family name -> its class instance (stateless)
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Wan(), LTXVideo(), CogVideoX(), HunyuanVideo(), Mochi(), StableVideoDiffusion(), AnimateDiff(),
)}


def family_of_pipeline(class_name: str) -> Family | None:
    """The family whose local folders are loaded as `class_name` (model_index.json's _class_name)."""
    return next((f for f in FAMILIES.values() if class_name in f.local_pipelines), None)


__all__ = ["BLEND", "FAMILIES", "Family", "family_of_pipeline"]
