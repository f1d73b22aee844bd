"""The open video models, run through diffusers from a local folder or the Hugging Face cache.

Three public entry points, all free of import-time work:

    catalog_entries(catalog_path=None, *, models_dir=None, local_dirs=None) -> dict[str, RegistryEntry]
    local_model_resolver(model_id) -> RegistryEntry | None      # a diffusers folder or a cached "org/name"
    DiffusersBackend(model, *, device, profile, folder)          # pipelines.contract.Backend

The catalog (catalog.toml) is data: per model its repo, the pipeline class for each mode its
weights can do, defaults, limits and speed/memory profiles. One backend holds one loaded
pipeline; the pipeline for each mode is assembled from the same components (no second copy
of the weights), so a T2V repo also serves video-to-video and latent-blend inpainting.

Nothing here downloads: loading is offline (`local_files_only=True`); a model that is not on
disk gives a ModelLoadError naming the missing files and the command that fetches them.
"""

from __future__ import annotations

import dataclasses
import gc
import inspect
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pipelines.contract import (
    MODES,
    Cancelled,
    MediaInputs,
    ModelDefaults,
    ModelLimits,
    ModelLoadError,
    ModelSpec,
    Range,
    StepCallback,
)
from pipelines.contract import RegistryEntry

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pipelines.contract import GenerationRequest

DEFAULT_CATALOG = Path(__file__).with_name("catalog.toml")
BLEND = "+blend"  # suffix of a catalog pipeline name: inpaint by latent blending

_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_TIERS = ("quality", "fast", "balanced", "low-vram")  # most to least memory, for OOM advice


class GenerationOOM(RuntimeError):
    """The accelerator ran out of memory; the message names a lower-memory profile to try."""


# ==== catalog data =================================================================================
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
    lower: str = ""  # profile to suggest after an out-of-memory error


@dataclass(frozen=True)
class CatalogModel:
    """One hub repo (or local folder) and what the studio may do with it."""

    spec: ModelSpec
    repo: str | None  # hub repo id; None for a plain local folder
    pipelines: Mapping[str, str]  # mode -> diffusers pipeline class name, optionally with "+blend"
    layout: str  # latent layout in the loop: bcfhw | bfchw | packed
    dtype: str = "bf16"
    vae_dtype: str | None = None
    adapter: str | None = None  # AnimateDiff motion adapter repo
    download_include: tuple[str, ...] = ()  # `hf download --include` patterns when a repo holds more than needed
    scheduler: Mapping[str, Any] = field(default_factory=dict)  # config overrides; "class" swaps the class
    call: Mapping[str, Any] = field(default_factory=dict)  # extra pipeline-call arguments
    memory: str = ""
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    folder: Path | None = None  # a local folder that overrides the hub cache
    adapter_folder: Path | None = None


def _range(d: Mapping[str, Any]) -> Range:
    return Range(d["min"], d["max"], int(d.get("multiple_of", 1)), int(d.get("offset", 0)))


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _profiles(data: Mapping[str, Any]) -> dict[str, Profile]:
    names = {f.name for f in dataclasses.fields(Profile)}
    return {n: Profile(name=n, **{k: v for k, v in p.items() if k in names}) for n, p in data.items()}


def _model(raw: Mapping[str, Any], family: Mapping[str, Any], profiles: Mapping[str, Profile]) -> CatalogModel:
    m = _merge(family, raw)
    pipes = dict(m["modes"])
    unknown = set(pipes) - set(MODES)
    if unknown:
        raise ValueError(f"catalog model {m['id']!r}: unknown modes {sorted(unknown)}")
    d, lim = m["defaults"], m.get("limits", {})
    limits = ModelLimits(**{k: _range(v) for k, v in lim.items()})
    names = tuple(m.get("profiles", ()))
    spec = ModelSpec(
        id=m["id"],
        version=str(m.get("version", "1")),
        label=m.get("label", m["id"]),
        family=raw["family"],
        modes=tuple(mode for mode in MODES if mode in pipes),
        defaults=ModelDefaults(**d),
        limits=limits,
        description=" ".join(x for x in (m.get("description", ""), m.get("memory", "")) if x),
        profiles=names,
    )
    return CatalogModel(
        spec=spec,
        repo=m.get("repo"),
        pipelines=pipes,
        layout=m["layout"],
        dtype=m.get("dtype", "bf16"),
        vae_dtype=m.get("vae_dtype"),
        adapter=m.get("adapter"),
        download_include=tuple(m.get("download_include", ())),
        scheduler=dict(m.get("scheduler", {})),
        call=dict(m.get("call", {})),
        memory=m.get("memory", ""),
        profiles={n: profiles[n] for n in names},
    )


def read_catalog(catalog_path: str | os.PathLike | None = None) -> tuple[dict[str, Any], list[CatalogModel]]:
    """Parse catalog.toml: (raw data, models in file order)."""
    with open(catalog_path or DEFAULT_CATALOG, "rb") as f:
        data = tomllib.load(f)
    profiles = _profiles(data.get("profiles", {}))
    families = data.get("families", {})
    models = [_model(raw, families[raw["family"]], profiles) for raw in data.get("models", [])]
    return data, models


def catalog_entries(
    catalog_path: str | os.PathLike | None = None,
    *,
    models_dir: str | os.PathLike | None = None,
    local_dirs: Mapping[str, str | os.PathLike] | None = None,
    preview_every: int = 5,
) -> dict[str, RegistryEntry]:
    """Registry entries for every catalog model.

    Weights are looked up, at load time, in this order: `local_dirs[model_id]`, then
    `models_dir/<repo name>` (what `hf download <repo> --local-dir models_dir/<repo name>` makes),
    then the Hugging Face cache (offline).
    """
    _, models = read_catalog(catalog_path)
    local_dirs = dict(local_dirs or {})
    entries: dict[str, RegistryEntry] = {}
    for model in models:
        folder = local_dirs.get(model.spec.id)
        if folder is None and models_dir is not None and model.repo:
            candidate = Path(models_dir) / model.repo.split("/")[-1]
            folder = candidate if candidate.exists() else None
        adapter_folder = None
        if model.adapter and models_dir is not None:
            candidate = Path(models_dir) / model.adapter.split("/")[-1]
            adapter_folder = candidate if candidate.exists() else None
        model = dataclasses.replace(
            model, folder=Path(folder) if folder else None, adapter_folder=adapter_folder
        )
        entries[model.spec.id] = RegistryEntry(spec=model.spec, load=_loader(model, models_dir, preview_every))
    return entries


def _loader(model: CatalogModel, models_dir, preview_every: int) -> Callable[[str, "str | None"], "DiffusersBackend"]:
    def load(device: str, profile: str | None) -> DiffusersBackend:
        return DiffusersBackend(model, device=device, profile=profile, models_dir=models_dir,
                                preview_every=preview_every)

    return load


# ==== local folders and the hub cache ==============================================================
# What a local folder can do, from the pipeline class its model_index.json names:
# (classes, family, {mode: pipeline class}); the family's table in the catalog gives the rest
_LOCAL_FAMILIES: tuple[tuple[tuple[str, ...], str, Mapping[str, str]], ...] = (
    (("WanPipeline", "WanVideoToVideoPipeline"), "wan",
     {"t2v": "WanPipeline", "v2v": "WanVideoToVideoPipeline", "inpaint": "WanVideoToVideoPipeline+blend"}),
    (("WanImageToVideoPipeline",), "wan", {"i2v": "WanImageToVideoPipeline"}),
    (("WanVACEPipeline",), "wan",
     {"t2v": "WanVACEPipeline", "i2v": "WanVACEPipeline", "inpaint": "WanVACEPipeline"}),
    (("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline"), "ltx",
     {"t2v": "LTXPipeline", "i2v": "LTXImageToVideoPipeline", "v2v": "LTXConditionPipeline",
      "inpaint": "LTXConditionPipeline+blend"}),
    (("CogVideoXPipeline", "CogVideoXVideoToVideoPipeline"), "cogvideox",
     {"t2v": "CogVideoXPipeline", "v2v": "CogVideoXVideoToVideoPipeline",
      "inpaint": "CogVideoXVideoToVideoPipeline+blend"}),
    (("CogVideoXImageToVideoPipeline",), "cogvideox", {"i2v": "CogVideoXImageToVideoPipeline"}),
    (("HunyuanVideoPipeline",), "hunyuan", {"t2v": "HunyuanVideoPipeline", "inpaint": "HunyuanVideoPipeline+blend"}),
    (("HunyuanVideoImageToVideoPipeline",), "hunyuan", {"i2v": "HunyuanVideoImageToVideoPipeline"}),
    (("MochiPipeline",), "mochi", {"t2v": "MochiPipeline", "inpaint": "MochiPipeline+blend"}),
    (("StableVideoDiffusionPipeline",), "svd", {"i2v": "StableVideoDiffusionPipeline"}),
    (("AnimateDiffPipeline", "AnimateDiffVideoToVideoPipeline"), "animatediff",
     {"t2v": "AnimateDiffPipeline", "v2v": "AnimateDiffVideoToVideoPipeline",
      "inpaint": "AnimateDiffVideoToVideoPipeline+blend"}),
)


def _local_family(class_name: str) -> tuple[str, dict[str, str]] | None:
    for names, family, modes in _LOCAL_FAMILIES:
        if class_name in names:
            return family, dict(modes)
    return None


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def local_model_resolver(
    model_id: str, *, catalog_path: str | os.PathLike | None = None, preview_every: int = 5
) -> RegistryEntry | None:
    """A diffusers folder (with model_index.json) or a hub repo id found in the HF cache -> entry.

    Returns None for ids that are neither a folder nor look like "org/name". A hub id that is
    not cached raises ModelLoadError with the command that downloads it.
    """
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            return None
        return _folder_entry(model_id, path, repo=None, catalog_path=catalog_path, preview_every=preview_every)
    if not _HUB_ID.match(model_id) or model_id.startswith((".", "/", "~")):
        return None
    folder = _cached_snapshot(model_id)
    if folder is None:
        raise ModelLoadError(_missing_message(model_id, ["model_index.json (not in the Hugging Face cache)"], None))
    return _folder_entry(model_id, folder, repo=model_id, catalog_path=catalog_path, preview_every=preview_every)


def _folder_entry(model_id: str, folder: Path, *, repo: str | None, catalog_path, preview_every: int) -> RegistryEntry:
    index = json.loads((folder / "model_index.json").read_text())
    cls = index.get("_class_name", "")
    found = _local_family(cls)
    if found is None:
        known = ", ".join(sorted(n for names, *_ in _LOCAL_FAMILIES for n in names))
        raise ModelLoadError(f"{model_id}: pipeline {cls!r} is not a video pipeline the studio runs; known: {known}")
    family, modes = found
    if family == "wan" and cls in ("WanPipeline", "WanVideoToVideoPipeline"):
        if index.get("transformer_2", [None])[0] is not None:  # Wan 2.2 A14B: two experts, t2v only
            modes = {"t2v": "WanPipeline"}
        if index.get("expand_timesteps"):  # Wan 2.2 TI2V: the same weights animate an image
            modes["i2v"] = "WanImageToVideoPipeline"
    data, catalog = read_catalog(catalog_path)
    fam = data["families"][family]
    template = next((m for m in catalog if repo and m.repo == repo), None)
    profiles = _profiles(data.get("profiles", {}))
    revision = _revision(folder)
    raw = {
        "id": model_id,
        "version": f"local-{revision[:12]}" if revision else "local",
        "label": repo or folder.name,
        "family": family,
        "modes": modes,
        "description": f"Loaded from {folder}",
    }
    # a local folder may hold anything from a fine-tune to a tiny test model: any size the VAE allows
    lim = fam.get("limits", {})
    raw["limits"] = {k: dict(lim[k], min=lim[k].get("multiple_of", 8)) for k in ("width", "height") if k in lim}
    model = _model(raw, fam, profiles)
    if template is not None:  # a cached catalog repo: keep its tuned settings
        model = dataclasses.replace(template, spec=dataclasses.replace(template.spec, id=model_id))
    model = dataclasses.replace(model, folder=folder, repo=repo)
    return RegistryEntry(spec=model.spec, load=_loader(model, None, preview_every))


def _cached_snapshot(repo: str) -> Path | None:
    """The newest cached snapshot of `repo` holding model_index.json, or None; never downloads."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a diffusers dependency
        return None
    found = try_to_load_from_cache(repo, "model_index.json")
    return Path(found).parent if isinstance(found, str) else None


def _revision(folder: Path) -> str | None:
    """The commit a folder came from: the HF cache snapshot name, or `hf download --local-dir` metadata."""
    if folder.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", folder.name):
        return folder.name
    meta = folder / ".cache" / "huggingface" / "download" / "model_index.json.metadata"
    if meta.is_file():
        first = meta.read_text().splitlines()[:1]
        if first and re.fullmatch(r"[0-9a-f]{40}", first[0].strip()):
            return first[0].strip()
    return None


_CONFIG_FILES = ("config.json", "scheduler_config.json", "preprocessor_config.json", "tokenizer_config.json",
                 "tokenizer.json", "spiece.model", "vocab.json")


def missing_files(folder: Path, needed: set[str] | None = None) -> list[str]:
    """Relative paths a diffusers folder lacks: model_index.json, component configs, weight shards.

    `needed`: the components the pipelines will use (None = every component in model_index.json).
    """
    if not (folder / "model_index.json").is_file():
        return ["model_index.json"]
    index = json.loads((folder / "model_index.json").read_text())
    missing = []
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        if needed is not None and name not in needed:
            continue
        sub = folder / name
        if not sub.is_dir() or not any((sub / f).is_file() for f in _CONFIG_FILES):
            missing.append(f"{name}/ (config)")
            continue
        if not (sub / "config.json").is_file():
            continue  # scheduler, tokenizer, processor: configs only
        shard_index = [p for p in sub.glob("*.index.json")]
        weights = list(sub.glob("*.safetensors")) + list(sub.glob("*.bin"))
        if shard_index:
            shards = set(json.loads(shard_index[0].read_text()).get("weight_map", {}).values())
            missing += [f"{name}/{s}" for s in sorted(shards) if not (sub / s).is_file()]
        elif not weights:
            missing.append(f"{name}/ (weights)")
    return missing


def _missing_message(repo: str | None, missing: list[str], folder: Path | None, models_dir=None,
                     include: tuple[str, ...] = ()) -> str:
    what = repo or str(folder)
    lines = [f"{what} is not available offline. Missing: {', '.join(missing[:12])}"
             + (f" and {len(missing) - 12} more" if len(missing) > 12 else "") + "."]
    if repo:
        target = Path(models_dir) / repo.split("/")[-1] if models_dir else None
        args = repo + (f" --local-dir {target}" if target else "")
        if include:
            args += " --include " + " ".join(f'"{p}"' for p in include)
        lines.append("Download it on a machine with internet access:")
        lines.append(f"  hf download {args}")
        lines.append(f"  (older huggingface_hub: huggingface-cli download {args})")
        lines.append("without --local-dir it goes to the Hugging Face cache, where the studio finds it.")
    else:
        lines.append("Copy the complete diffusers folder (model_index.json and every component folder) there.")
    return "\n".join(lines)


# ==== the backend ==================================================================================
class DiffusersBackend:
    """pipelines.contract.Backend for a diffusers video pipeline."""

    def __init__(
        self,
        model: CatalogModel,
        *,
        device: str = "cpu",
        profile: str | None = None,
        folder: str | os.PathLike | None = None,
        models_dir: str | os.PathLike | None = None,
        preview_every: int = 5,
        pipeline: Any = None,
    ):
        """Load `model` (eagerly, so a missing download shows at load time) under `profile`.

        `pipeline`: an already built DiffusionPipeline to use instead of loading from disk
        (benchmarks with random full-size weights); it cannot be reloaded after `unload()`.
        """
        self.model = model
        self.spec = model.spec
        self.device = device
        self.preview_every = preview_every
        self.models_dir = models_dir
        if profile is None:
            profile = self.spec.profiles[0] if self.spec.profiles else None
        if profile is not None and profile not in model.profiles:
            raise ModelLoadError(f"{self.spec.id} has no profile {profile!r}; it has: {', '.join(self.spec.profiles)}")
        self.profile = model.profiles.get(profile) if profile else Profile(name="default")
        self.folder = Path(folder) if folder else model.folder
        self.settings: dict[str, Any] = {}
        self._base = None  # the loaded DiffusionPipeline
        self._pipes: dict[str, Any] = {}  # mode -> pipeline assembled from the base's components
        self._offloaded_for: Any = None
        self._last: dict[str, Any] = {}
        self._given = pipeline
        self._loaded_once = False
        self._load()

    # ---- loading --------------------------------------------------------------------------------
    def _needed_components(self) -> set[str]:
        import diffusers

        names: set[str] = set()
        for cls in self.model.pipelines.values():
            names |= set(inspect.signature(getattr(diffusers, cls.removesuffix(BLEND)).__init__).parameters)
        return names

    def _resolve_folder(self) -> Path:
        if self.folder is not None:
            missing = missing_files(self.folder, self._needed_components())
            if missing:
                raise ModelLoadError(_missing_message(self.model.repo, missing, self.folder, self.models_dir,
                                                      self.model.download_include))
            return self.folder
        repo = self.model.repo
        snap = _cached_snapshot(repo) if repo else None
        if snap is None:
            raise ModelLoadError(_missing_message(repo, ["model_index.json and every component"], None, self.models_dir,
                                                  self.model.download_include))
        missing = missing_files(snap, self._needed_components())
        if missing:
            raise ModelLoadError(_missing_message(repo, missing, snap, self.models_dir, self.model.download_include))
        return snap

    def _resolve_adapter(self) -> Path | None:
        if not self.model.adapter:
            return None
        folder = self.model.adapter_folder or _cached_config_folder(self.model.adapter)
        if folder is None or not (folder / "config.json").is_file() or not (
            list(folder.glob("*.safetensors")) + list(folder.glob("*.bin"))
        ):
            raise ModelLoadError(_missing_message(self.model.adapter, ["config.json and weights of the motion adapter"],
                                                  None, self.models_dir))
        return folder

    def _dtypes(self, on_cpu: bool):
        """(weights dtype, VAE dtype): fp32 on a CPU; else the profile's, except that fp16 models stay fp16."""
        import torch

        if on_cpu:
            return torch.float32, torch.float32
        name = self.profile.dtype if self.profile.name != "default" else self.model.dtype
        if name == "bf16" and self.model.dtype == "fp16":
            name = "fp16"  # published and validated in fp16 (SVD, AnimateDiff, CogVideoX-2b)
        dtype = getattr(torch, _DTYPES[name])
        return dtype, (torch.float32 if self.model.vae_dtype == "fp32" else dtype)

    def _load(self) -> None:
        try:
            self._load_pipeline()
        except Exception as e:
            if not _is_oom(e):
                raise
            self.unload()
            lower = self.profile.lower
            advice = f"try the '{lower}' profile" if lower and lower in self.spec.profiles else "free GPU memory"
            raise ModelLoadError(f"{self.spec.label} does not fit in GPU memory with the '{self.profile.name}' "
                                 f"profile; {advice}.") from None

    def _load_pipeline(self) -> None:
        import torch

        on_cpu = torch.device(self.device).type == "cpu"
        if self._loaded_once and self.folder is None and self._given is None:
            raise ModelLoadError(f"{self.spec.id}: a pipeline handed in by the caller cannot be reloaded after unload()")
        self._loaded_once = True
        if self._given is not None:  # a pipeline built by the caller (benchmarks): used as it is
            pipe, self._given = self._given, None
            dtype = next(c for c in (getattr(pipe, "transformer", None), getattr(pipe, "unet", None)) if c is not None).dtype
            vae_dtype = pipe.vae.dtype
        else:
            folder = self._resolve_folder()
            adapter = self._resolve_adapter()
            self.folder = folder
            dtype, vae_dtype = self._dtypes(on_cpu)
            pipe = self._from_pretrained(folder, adapter, dtype, vae_dtype)
        if self.model.scheduler:
            over = dict(self.model.scheduler)
            cls_name = over.pop("class", None)
            import diffusers

            sched_cls = getattr(diffusers, cls_name) if cls_name else type(pipe.scheduler)
            pipe.scheduler = sched_cls.from_config(pipe.scheduler.config, **over)
        pipe.set_progress_bar_config(disable=True)
        self._base = pipe
        self._dtype, self._vae_dtype = dtype, vae_dtype
        self.settings = self._apply_profile(pipe, on_cpu)

    def _from_pretrained(self, folder: Path, adapter: Path | None, dtype, vae_dtype):
        from diffusers import DiffusionPipeline

        kwargs: dict[str, Any] = {"dtype": dtype if vae_dtype == dtype else {"default": dtype, "vae": vae_dtype},
                                  "local_files_only": True}
        cls = DiffusionPipeline
        index = json.loads((folder / "model_index.json").read_text())
        try:
            if adapter is not None:
                from diffusers import AnimateDiffPipeline, MotionAdapter

                kwargs["motion_adapter"] = MotionAdapter.from_pretrained(adapter, dtype=dtype, local_files_only=True)
                if index.get("_class_name") != "AnimateDiffPipeline":
                    cls = AnimateDiffPipeline  # an SD 1.5 base, loaded as AnimateDiff around the adapter
            return cls.from_pretrained(folder, **kwargs)
        except (OSError, ValueError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelLoadError(f"{self.model.repo or folder}: could not load the pipeline from {folder}: {first}") from None

    def _apply_profile(self, pipe, on_cpu: bool) -> dict[str, Any]:
        """Memory and speed settings that live on the shared components; returns the effective ones."""
        import torch

        p = self.profile
        eff: dict[str, Any] = {"dtype": str(self._dtype).removeprefix("torch."),
                               "vae_dtype": str(self._vae_dtype).removeprefix("torch.")}
        eff["attention"] = self._apply_attention(pipe, on_cpu)
        vae = getattr(pipe, "vae", None)
        eff["vae_tiling"] = bool(p.vae_tiling and hasattr(vae, "enable_tiling"))
        eff["vae_slicing"] = bool(p.vae_slicing and hasattr(vae, "enable_slicing"))
        if eff["vae_tiling"]:
            vae.enable_tiling()
        if eff["vae_slicing"]:
            vae.enable_slicing()
        denoisers = [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]
        eff["cache"] = "none"
        if p.cache == "first_block":
            eff["cache"] = "first_block" if denoisers and all(hasattr(m, "enable_cache") for m in denoisers) else "unsupported"
            eff["cache_threshold"] = p.cache_threshold
        eff["compile"] = False
        if p.compile and not on_cpu:
            compiled = [m for m in denoisers if getattr(m, "_repeated_blocks", None)]
            for m in compiled:  # cache hooks branch on data: let them break the graph
                m.compile_repeated_blocks(fullgraph=p.cache == "none")
            eff["compile"] = "regional" if compiled else "unsupported"
        if on_cpu:
            eff["offload"] = "none (cpu)"
        elif p.offload == "group":
            pipe.enable_group_offload(onload_device=torch.device(self.device), offload_device=torch.device("cpu"),
                                      offload_type="leaf_level", use_stream=True)
            eff["offload"] = "group (leaf_level, stream)"
        elif p.offload == "model":
            eff["offload"] = "model"  # enabled per assembled pipeline in _pipeline_for
        else:
            eff["offload"] = "none"
        if (on_cpu or p.offload == "none") and torch.device(self.device).type != "cpu":
            pipe.to(self.device)  # from_pretrained already left everything on the CPU
        return eff

    def _apply_attention(self, pipe, on_cpu: bool) -> str:
        want = self.profile.attention
        if want == "sdpa" or on_cpu:
            return "sdpa"
        import importlib.util

        if want == "xformers" and importlib.util.find_spec("xformers"):
            pipe.enable_xformers_memory_efficient_attention()
            return "xformers"
        if want == "flash" and importlib.util.find_spec("flash_attn"):
            for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)):
                if m is not None and hasattr(m, "set_attention_backend"):
                    m.set_attention_backend("flash")
            return "flash"
        return f"sdpa ({want} not installed)"

    def _pipeline_for(self, mode: str):
        """The pipeline for `mode`, built from the loaded components (shared, not copied)."""
        import diffusers

        if self._base is None:
            self._load()
        name = self.model.pipelines[mode].removesuffix(BLEND)
        pipe = self._pipes.get(name)
        if pipe is None:
            cls = getattr(diffusers, name)
            if isinstance(self._base, cls) and type(self._base) is cls:
                pipe = self._base
            else:
                params = inspect.signature(cls.__init__).parameters
                comps = {k: v for k, v in self._base.components.items() if k in params}
                config = {k: v for k, v in self._base.config.items() if k in params and k not in comps and not k.startswith("_")}
                pipe = cls(**comps, **config)
                pipe.set_progress_bar_config(disable=True)
            self._pipes[name] = pipe
        if self.settings.get("offload") == "model" and self._offloaded_for is not pipe:
            pipe.enable_model_cpu_offload(device=self.device)  # re-hooks the shared components for this pipeline
            self._offloaded_for = pipe
        return pipe

    def _set_cache(self, pipe) -> bool:
        """First-block cache only for pipelines that mark cond/uncond passes with cache_context."""
        want = self.settings.get("cache") == "first_block" and _uses_cache_context(type(pipe))
        for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)):
            if m is None or not hasattr(m, "enable_cache"):
                continue
            if want and not m.is_cache_enabled:
                from diffusers import FirstBlockCacheConfig

                try:
                    m.enable_cache(FirstBlockCacheConfig(threshold=self.profile.cache_threshold))
                except Exception as e:  # e.g. a transformer with a single block: run uncached, say so
                    self.settings["cache"] = f"unsupported ({type(e).__name__}: {e})"
                    return False
            elif not want and m.is_cache_enabled:
                m.disable_cache()
        return want

    # ---- generation -----------------------------------------------------------------------------
    def generate(
        self,
        request: "GenerationRequest",
        media: MediaInputs,
        generator: "torch.Generator",
        on_step: StepCallback,
        should_cancel: Callable[[], bool],
    ) -> "np.ndarray":
        mode = request.mode
        if mode not in self.spec.modes:
            raise ValueError(f"model {self.spec.id!r} cannot do {mode}; it supports: {', '.join(self.spec.modes)}")
        if should_cancel():
            raise Cancelled()
        import torch

        try:
            pipe = self._pipeline_for(mode)
            cached = self._set_cache(pipe)
            kwargs, blend = self._call_kwargs(pipe, request, media, generator)
            hook = _StepHook(self, pipe, request, on_step, should_cancel, blend)
            with torch.inference_mode():
                out = pipe(**kwargs, output_type="np", return_dict=True, callback_on_step_end=hook,
                           callback_on_step_end_tensor_inputs=["latents"])
        except Cancelled:
            raise
        except Exception as e:
            if _is_oom(e):
                self._out_of_memory()
                raise GenerationOOM(self._oom_message(request)) from None
            raise
        frames = _to_uint8(out.frames)
        self._last = {"mode": mode, "pipeline": type(pipe).__name__, "first_block_cache": cached,
                      "inpaint": ("latent-blend" if blend else "native") if mode == "inpaint" else None}
        return frames

    def _call_kwargs(self, pipe, request, media: MediaInputs, generator) -> tuple[dict[str, Any], "_Blend | None"]:
        """Map a request onto the pipeline's `__call__`, family by family."""
        mode, family = request.mode, self.spec.family
        params = inspect.signature(type(pipe).__call__).parameters
        kw: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "height": request.height,
            "width": request.width,
            "num_frames": request.frames,
            "num_inference_steps": request.steps,
            "guidance_scale": request.cfg_scale,
            "generator": generator,
        }
        strength = getattr(request, "strength", None)
        blend = None
        if family == "ltx":
            kw["frame_rate"] = request.fps
        if family == "cogvideox":  # the text length the transformer's position embeddings were built for
            kw["max_sequence_length"] = pipe.transformer.config.max_text_seq_length
        if family == "svd":  # no prompt; guidance ramps from 1 to cfg over the frames; fps conditions motion
            kw.update(min_guidance_scale=1.0, max_guidance_scale=request.cfg_scale, fps=request.fps)
        if mode == "i2v":
            image = _pil(media.image, "image")
            if type(pipe).__name__ == "WanVACEPipeline":  # first frame kept, the rest generated
                kw["video"], kw["mask"] = _vace_first_frame(image, request.frames)
            else:
                kw["image"] = image
            if family == "hunyuan" and pipe.transformer.config.get("image_condition_type") == "latent_concat":
                kw["num_frames"] = request.frames + 4  # it drops the first 4 decoded frames: ask for 4 more
        elif mode in ("v2v", "inpaint"):
            video = _require(media.video, "video")
            native_inpaint = mode == "inpaint" and not self.model.pipelines[mode].endswith(BLEND)
            if native_inpaint:  # VACE: the mask says what to regenerate (white)
                mask = _require(media.mask, "mask")
                kw["video"] = _pil_frames(video)
                kw["mask"] = _pil_frames((mask * 255.0).round().clip(0, 255).astype("uint8")[..., None].repeat(3, -1))
            else:
                if strength is None:
                    strength = 1.0 if mode == "inpaint" else self.spec.defaults.strength
                x0 = _encode_video(pipe, family, video, self._vae_dtype) if family == "ltx" or mode == "inpaint" else None
                if family == "ltx":  # LTXCondition: start from the input's latents noised to `denoise_strength`
                    kw["latents"] = x0
                    kw["denoise_strength"] = strength
                elif "strength" in params:  # a video-to-video pipeline
                    kw["video"] = _pil_frames(video)
                    kw["strength"] = strength
                # else a text-to-video pipeline (HunyuanVideo, Mochi): it starts from noise, strength 1
                if mode == "inpaint":
                    blend = _Blend.build(pipe, self.model.layout, x0, _require(media.mask, "mask"), generator,
                                         _temporal_ratio(pipe, family))
        kw.update(self.model.call)
        if family == "svd":
            kw.pop("prompt"), kw.pop("negative_prompt"), kw.pop("guidance_scale")
        return {k: v for k, v in kw.items() if k in params}, blend

    # ---- memory and reporting -----------------------------------------------------------------------
    def _out_of_memory(self) -> None:
        self.unload()  # drops the weights and empties the CUDA cache

    def _oom_message(self, request) -> str:
        size = f"{request.width}x{request.height}, {request.frames} frames"
        lower = self.profile.lower
        if lower and lower in self.spec.profiles:
            advice = f"try the '{lower}' profile"
        else:
            advice = "this is already the lowest-memory profile"
        return (f"{self.spec.label} ran out of GPU memory at {size} with the '{self.profile.name}' profile; "
                f"{advice}, or fewer frames or a smaller size. The model was unloaded.")

    def manifest(self) -> dict:
        import diffusers
        import torch
        import transformers

        return {
            "backend": "diffusers",
            "model": self.spec.ref,
            "family": self.spec.family,
            "repo": self.model.repo,
            "folder": str(self.folder) if self.folder else None,
            "revision": _revision(self.folder) if self.folder else None,
            "adapter": self.model.adapter,
            "profile": self.profile.name,
            "settings": dict(self.settings),
            "dtype": self.settings.get("dtype"),
            "device": self.device,
            "scheduler": type(self._base.scheduler).__name__ if self._base is not None else None,
            "pipelines": {m: p for m, p in self.model.pipelines.items()},
            "last_run": dict(self._last),
            "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__,
                         "transformers": transformers.__version__},
        }

    def unload(self) -> None:
        base, self._base = self._base, None
        self._pipes.clear()
        self._offloaded_for = None
        if base is not None:
            try:
                base.remove_all_hooks()
            except Exception:  # no hooks, or an older diffusers
                pass
            for comp in base.components.values():
                if hasattr(comp, "to") and hasattr(comp, "parameters"):
                    try:
                        comp.to("meta")  # drop the storage now, whoever still holds a reference
                    except Exception:
                        pass
            del base
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass


def _cached_config_folder(repo: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    found = try_to_load_from_cache(repo, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def _uses_cache_context(cls) -> bool:
    try:
        return "cache_context" in inspect.getsource(cls.__call__)
    except (OSError, TypeError):  # pragma: no cover
        return False


def _is_oom(e: BaseException) -> bool:
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


# ==== progress, cancellation, previews =============================================================
class _StepHook:
    """callback_on_step_end: blend (inpaint), cancel, report progress with an occasional preview."""

    def __init__(self, backend: DiffusersBackend, pipe, request, on_step, should_cancel, blend: "_Blend | None"):
        self.backend, self.pipe, self.request = backend, pipe, request
        self.on_step, self.should_cancel, self.blend = on_step, should_cancel, blend

    def __call__(self, pipe, i: int, t, kwargs: dict) -> dict:
        latents = kwargs["latents"]
        if self.blend is not None:
            latents = self.blend(pipe, t, latents)
        if self.should_cancel():
            pipe._interrupt = True
            raise Cancelled()  # leaves the loop at once: no VAE decode of a clip nobody wants
        total = getattr(pipe, "_num_timesteps", None) or self.request.steps
        step = i + 1
        preview = None
        every = self.backend.preview_every
        if every and (step % every == 0) and step < total:
            preview = _latent_preview(_unpacked(pipe, latents, self.backend.model.layout, self.request),
                                      self.backend.model.layout, self.request)
        self.on_step(step, total, preview)
        return {"latents": latents}


def _unpacked(pipe, latents, layout: str, request):
    """LTX's (B, tokens, C) back to (B, C, f, h, w); other layouts pass through."""
    if layout != "packed":
        return latents
    f = (request.frames - 1) // pipe.vae_temporal_compression_ratio + 1
    h, w = request.height // pipe.vae_spatial_compression_ratio, request.width // pipe.vae_spatial_compression_ratio
    return pipe._unpack_latents(latents, f, h, w, pipe.transformer_spatial_patch_size,
                                pipe.transformer_temporal_patch_size)


def _latent_preview(latents, layout: str, request) -> "np.ndarray":
    """A rough look at the latents: three channels, stretched to the output size. Cheap, not pretty."""
    import torch
    import torch.nn.functional as F

    x = latents[0].float()  # bcfhw (packed latents arrive unpacked)
    if layout == "bfchw":
        x = x.permute(1, 0, 2, 3)  # -> (C, f, h, w)
    x = x[:3]
    if x.shape[0] < 3:
        x = x.repeat(3, 1, 1, 1)[:3]
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp_min(1e-6)
    x = F.interpolate(x[None], size=(request.frames, request.height, request.width), mode="nearest")[0]
    return (x.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).cpu().numpy()  # (F, H, W, 3)


# ==== latent-blend inpainting ======================================================================
@dataclass
class _Blend:
    """After each step, latents outside the mask := the input's latents noised to the next noise level.

    Kept latents therefore end exactly equal to the input's encoding; masked ones are generated.
    x0, noise, keep are in the loop's layout (bcfhw, bfchw or packed tokens).
    """

    x0: "torch.Tensor"
    noise: "torch.Tensor"
    keep: "torch.Tensor"  # 1 = keep the input, 0 = regenerate

    @classmethod
    def build(cls, pipe, layout: str, x0, mask, generator, temporal_ratio: int) -> "_Blend":
        """x0: the input's normalised latents (1, C, f, h, w); mask: (F, H, W), 1 = regenerate."""
        import torch

        x0 = x0.float()
        regen = _latent_mask(torch.from_numpy(mask).float(), x0.shape[2:], temporal_ratio)
        keep = (1.0 - regen).to(x0.device)[None, None].expand_as(x0).contiguous()
        noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=torch.float32).to(x0.device)
        if layout == "bfchw":
            x0, keep, noise = (x.permute(0, 2, 1, 3, 4) for x in (x0, keep, noise))
        elif layout == "packed":
            p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
            x0, keep, noise = (pipe._pack_latents(x, p, pt) for x in (x0, keep, noise))
        return cls(x0=x0, noise=noise, keep=keep)

    def __call__(self, pipe, t, latents):
        if latents.shape != self.x0.shape:
            raise RuntimeError(f"inpaint: loop latents {tuple(latents.shape)} do not match the input's {tuple(self.x0.shape)}")
        known = self.noised(pipe.scheduler, t).to(latents.device, latents.dtype)
        keep = self.keep.to(latents.device, latents.dtype)
        return keep * known + (1.0 - keep) * latents

    def noised(self, scheduler, t):
        """x0 at the noise level of the step after `t` (clean after the last step)."""
        import torch

        timesteps = scheduler.timesteps.to(self.x0.device)
        k = int(torch.argmin((timesteps.float() - float(t)).abs()))
        if k + 1 >= len(timesteps):
            return self.x0
        flow = "FlowMatch" in type(scheduler).__name__ or scheduler.config.get("use_flow_sigmas", False)
        if flow:
            sigma = float(scheduler.sigmas[k + 1])
            if scheduler.config.get("invert_sigmas", False):  # Mochi counts from noise (0) to data (1)
                sigma = 1.0 - sigma
            return (1.0 - sigma) * self.x0 + sigma * self.noise
        t_next = timesteps[k + 1 : k + 2]
        return scheduler.add_noise(self.x0, self.noise, t_next)


def _temporal_ratio(pipe, family: str) -> int:
    if family == "animatediff":
        return 1
    return int(getattr(pipe, "vae_scale_factor_temporal", None) or getattr(pipe, "vae_temporal_compression_ratio", 1))


def _latent_mask(mask, size, tc: int):
    """(F, H, W) pixel mask, 1 = regenerate -> (f, h, w): a latent is regenerated if any pixel it covers is."""
    import torch
    import torch.nn.functional as F

    if tc > 1:  # causal video VAEs: frame 0 alone, then groups of tc frames
        first, rest = mask[:1], mask[1:]
        rest = rest.reshape(-1, tc, *rest.shape[1:]).amax(dim=1)
        mask = torch.cat([first, rest])
    return F.adaptive_max_pool3d(mask[None, None], output_size=tuple(size))[0, 0]


def _encode_video(pipe, family: str, video, vae_dtype):
    """(F, H, W, 3) uint8 -> the normalised latents the family's v2v pipeline starts from, (1, C, f, h, w)."""
    import torch

    device = pipe._execution_device
    x = torch.from_numpy(video).to(device=device, dtype=vae_dtype).permute(3, 0, 1, 2)[None] / 127.5 - 1.0
    vae = pipe.vae
    with torch.no_grad():
        if family == "animatediff":  # an image VAE, frame by frame
            frames = x[0].permute(1, 0, 2, 3)  # (F, 3, H, W)
            z = vae.encode(frames).latent_dist.mode() * vae.config.scaling_factor
            return z.permute(1, 0, 2, 3)[None]  # (1, C, F, h, w)
        z = vae.encode(x).latent_dist.mode()  # (1, C, f, h, w); the mode, so the reference is deterministic
        if family == "wan":
            mean = torch.tensor(vae.config.latents_mean, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
            std = torch.tensor(vae.config.latents_std, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
            return (z - mean) / std
        if family == "ltx":
            return pipe._normalize_latents(z, vae.latents_mean, vae.latents_std)
        if family in ("cogvideox", "hunyuan"):
            return z * vae.config.scaling_factor
        if family == "mochi":  # the inverse of MochiPipeline's denormalisation before decode
            if vae.config.latents_mean is not None and vae.config.latents_std is not None:
                mean = torch.tensor(vae.config.latents_mean, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
                std = torch.tensor(vae.config.latents_std, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
                return (z - mean) * vae.config.scaling_factor / std
            return z * vae.config.scaling_factor
    raise ValueError(f"no video encoder for family {family!r}")


def _require(x, name: str):
    if x is None:
        raise ValueError(f"{name} is required for this mode")
    return x


def _pil(image, name: str):
    from PIL import Image

    return Image.fromarray(_require(image, name))


def _pil_frames(video) -> list:
    from PIL import Image

    return [Image.fromarray(f) for f in video]


def _vace_first_frame(image, frames: int) -> tuple[list, list]:
    """VACE first-frame animation: the image, then grey frames; the mask keeps frame 0 only."""
    from PIL import Image

    size = image.size
    video = [image] + [Image.new("RGB", size, (128, 128, 128))] * (frames - 1)
    mask = [Image.new("RGB", size, (0, 0, 0))] + [Image.new("RGB", size, (255, 255, 255))] * (frames - 1)
    return video, mask


def _to_uint8(frames) -> "np.ndarray":
    """Pipeline output (np, [0, 1], batch first) -> (F, H, W, 3) uint8."""
    import numpy as np

    x = frames[0] if isinstance(frames, (list, tuple)) else frames
    x = np.asarray(x)
    if x.ndim == 5:
        x = x[0]
    if x.dtype == np.uint8:
        return x
    return (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8)
