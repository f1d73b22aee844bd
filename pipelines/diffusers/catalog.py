"""pipelines/catalog.toml, parsed: speed/memory profiles and one CatalogModel per hub repo.

The catalog is data (repos, modes, defaults, limits, call arguments, memory notes); what differs in
code from one family to the next lives in `families/`. Parsing imports neither torch nor diffusers.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pipelines.contract import MODES, ModelDefaults, ModelLimits, ModelSpec, Range
from pipelines.diffusers.families import FAMILIES, Family

DEFAULT_CATALOG = Path(__file__).resolve().parents[1] / "catalog.toml"
BLEND = "+blend"  # suffix of a catalog pipeline name: inpaint by latent blending


@dataclass(frozen=True)
class Profile:
    name: str
    label: str = ""
    dtype: str = "bf16"  # bf16 | fp16 | fp32; a CPU always runs fp32
    attention: str = "sdpa"  # sdpa | xformers | flash
    offload: str = "none"  # none | model | group
    vae_tiling: bool = False
    vae_slicing: bool = False
    cache: str = "none"  # none | first_block
    cache_threshold: float = 0.0
    compile: bool = False  # regional torch.compile of the repeated transformer blocks
    fuse_loras: bool = False  # merge a job's LoRAs into the denoiser's weights (no per-step LoRA cost)
    lower: str = ""  # profile to suggest after an out-of-memory error


DEFAULT_PROFILE = Profile(name="default")


@dataclass(frozen=True)
class CatalogModel:
    """One hub repo (or local folder) and what the studio may do with it."""

    spec: ModelSpec
    family: Family
    repo: str | None  # hub repo id; None for a plain local folder
    pipelines: Mapping[str, str]  # mode -> diffusers pipeline class name, optionally with "+blend"
    dtype: str = "bf16"
    variant: str | None = None  # weights stored as *.<variant>.safetensors (e.g. "fp16")
    adapter: str | None = None  # AnimateDiff motion adapter repo
    download_include: tuple[str, ...] = ()  # `hf download --include` patterns when a repo holds more than needed
    scheduler: Mapping[str, Any] = field(default_factory=dict)  # config overrides; "class" swaps the class
    call: Mapping[str, Any] = field(default_factory=dict)  # extra pipeline-call arguments
    memory: str = ""
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)  # profile this model cannot run -> why
    folder: Path | None = None  # a local folder that overrides the hub cache
    adapter_folder: Path | None = None
    transformer_file: Path | None = None  # a GGUF file that replaces the transformer's weights (gguf.py)

    def pipeline_class(self, mode: str) -> str:
        return self.pipelines[mode].removesuffix(BLEND)

    def blends(self, mode: str) -> bool:
        """True when `mode` is inpainting by latent blending (not the pipeline's own)."""
        return self.pipelines[mode].endswith(BLEND)


def _range(d: Mapping[str, Any]) -> Range:
    return Range(d["min"], d["max"], int(d.get("multiple_of", 1)), int(d.get("offset", 0)))


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def parse_profiles(data: Mapping[str, Any]) -> dict[str, Profile]:
    names = {f.name for f in dataclasses.fields(Profile)}
    return {n: Profile(name=n, **{k: v for k, v in p.items() if k in names}) for n, p in data.items()}


def family_for(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"catalog family {name!r} has no class in pipelines/diffusers/families; "
                         f"known: {', '.join(sorted(FAMILIES))}") from None


def build_model(raw: Mapping[str, Any], family_data: Mapping[str, Any], profiles: Mapping[str, Profile]) -> CatalogModel:
    """One [[models]] entry (or a local folder's stand-in) over its [families.<name>] table."""
    m = _merge(family_data, raw)
    family = family_for(raw["family"])
    pipes = dict(m["modes"])
    unknown = set(pipes) - set(MODES)
    if unknown:
        raise ValueError(f"catalog model {m['id']!r}: unknown modes {sorted(unknown)}")
    # every profile of the catalog this family cannot run with these pipelines, and why (for the load error)
    unavailable = {n: why for n, p in profiles.items() if (why := family.why_not(p, pipes))}
    names = tuple(n for n in m.get("profiles", ()) if n not in unavailable)
    spec = ModelSpec(
        id=m["id"],
        version=str(m.get("version", "1")),
        label=m.get("label", m["id"]),
        family=family.name,
        modes=tuple(mode for mode in MODES if mode in pipes),
        defaults=ModelDefaults(**m["defaults"]),
        limits=ModelLimits(**{k: _range(v) for k, v in m.get("limits", {}).items()}),
        description=" ".join(x for x in (m.get("description", ""), m.get("memory", "")) if x),
        profiles=names,
    )
    return CatalogModel(
        spec=spec,
        family=family,
        repo=m.get("repo"),
        pipelines=pipes,
        dtype=m.get("dtype", "bf16"),
        variant=m.get("variant"),
        adapter=m.get("adapter"),
        download_include=tuple(m.get("download_include", ())),
        scheduler=dict(m.get("scheduler", {})),
        call=dict(m.get("call", {})),
        memory=m.get("memory", ""),
        profiles={n: profiles[n] for n in names},
        unavailable=unavailable,
    )


@dataclass(frozen=True)
class Catalog:
    profiles: Mapping[str, Profile]
    families: Mapping[str, Mapping[str, Any]]  # [families.<name>] tables, as written
    models: tuple[CatalogModel, ...]  # in file order
    schema: int = 1


def read_catalog(catalog_path: str | os.PathLike | None = None) -> Catalog:
    """Parse catalog.toml."""
    with open(catalog_path or DEFAULT_CATALOG, "rb") as f:
        data = tomllib.load(f)
    profiles = parse_profiles(data.get("profiles", {}))
    families = data.get("families", {})
    models = tuple(build_model(raw, families[raw["family"]], profiles) for raw in data.get("models", []))
    return Catalog(profiles=profiles, families=families, models=models, schema=int(data.get("schema", 1)))
