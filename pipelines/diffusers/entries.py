"""Registry entries: every catalog model, and any local diffusers folder or cached hub repo id."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Mapping

from pipelines.contract import ModelLoadError, RegistryEntry
from pipelines.diffusers import gguf, hub
from pipelines.diffusers.catalog import CatalogModel, build_model, read_catalog
from pipelines.diffusers.families import FAMILIES, family_of_pipeline


def _entry(model: CatalogModel, models_dir: Path | None, preview_every: int) -> RegistryEntry:
    def load(device: str, profile: str | None):
        from pipelines.diffusers.backend import DiffusersBackend

        return DiffusersBackend(model, device=device, profile=profile, models_dir=models_dir,
                                preview_every=preview_every)

    def check_lora(name: str, path: str) -> str | None:
        from pipelines.diffusers import loras

        try:
            folder, _ = hub.locate(model, models_dir)
        except ModelLoadError:
            folder = None
        return loras.check(model, folder, name, path)

    return RegistryEntry(spec=model.spec, load=load, missing=lambda: hub.missing(model, models_dir),
                         check_lora=check_lora,
                         weights_sha256=None if model.transformer_file is None
                         else lambda: gguf.sha256(Path(model.transformer_file)))


def catalog_models(
    catalog_path: str | os.PathLike | None = None,
    *,
    models_dir: str | os.PathLike | None = None,
    local_dirs: Mapping[str, str | os.PathLike] | None = None,
) -> dict[str, CatalogModel]:
    """Every catalog model, with the local folder that overrides the hub cache where there is one."""
    models_dir = Path(models_dir) if models_dir is not None else None
    local_dirs = dict(local_dirs or {})
    out: dict[str, CatalogModel] = {}
    for model in read_catalog(catalog_path).models:
        folder = local_dirs.get(model.spec.id)
        if folder is None and models_dir is not None and model.repo:
            candidate = models_dir / model.repo.split("/")[-1]
            folder = candidate if candidate.exists() else None
        adapter_folder = None
        if model.adapter and models_dir is not None:
            candidate = models_dir / model.adapter.split("/")[-1]
            adapter_folder = candidate if candidate.exists() else None
        out[model.spec.id] = dataclasses.replace(model, folder=Path(folder) if folder else None,
                                                 adapter_folder=adapter_folder)
    return out


def catalog_entries(
    catalog_path: str | os.PathLike | None = None,
    *,
    models_dir: str | os.PathLike | None = None,
    local_dirs: Mapping[str, str | os.PathLike] | None = None,
    preview_every: int = 5,
    gguf_dir: str | os.PathLike | None = None,
) -> dict[str, RegistryEntry]:
    """Registry entries for every catalog model, and for every GGUF transformer file in `gguf_dir` whose
    name starts with a catalog id (`<id>@<file>`, see `gguf_resolver` for any other name).

    Weights are looked up, at load time, in this order: `local_dirs[model_id]`, then
    `models_dir/<repo name>` (what `hf download <repo> --local-dir models_dir/<repo name>` makes),
    then the Hugging Face cache (offline).
    """
    models = catalog_models(catalog_path, models_dir=models_dir, local_dirs=local_dirs)
    md = Path(models_dir) if models_dir is not None else None
    entries = {mid: _entry(m, md, preview_every) for mid, m in models.items()}
    if gguf_dir is not None:
        for path in gguf_files(gguf_dir):
            base = _base_of(path.name, models)
            if base is not None:
                variant = _gguf_model(models[base], path)
                entries[variant.spec.id] = _entry(variant, md, preview_every)
    return entries


def gguf_files(gguf_dir: str | os.PathLike) -> list[Path]:
    folder = Path(gguf_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == gguf.SUFFIX and p.is_file())


def gguf_resolver(
    gguf_dir: str | os.PathLike,
    catalog_path: str | os.PathLike | None = None,
    *,
    models_dir: str | os.PathLike | None = None,
    local_dirs: Mapping[str, str | os.PathLike] | None = None,
    preview_every: int = 5,
):
    """A registry resolver for `<catalog id>@<file name>`: the catalog model with its transformer's weights
    from that GGUF file in `gguf_dir` (a plain file name; nothing outside the folder is ever opened)."""
    folder = Path(gguf_dir)

    def resolve(model_id: str) -> RegistryEntry | None:
        parts = gguf.split_id(model_id)
        if parts is None:
            return None
        base_id, name = parts
        models = catalog_models(catalog_path, models_dir=models_dir, local_dirs=local_dirs)
        if base_id not in models:
            raise ModelLoadError(f"{model_id}: {base_id!r} is not a catalog model; a GGUF transformer goes with "
                                 f"one of: {', '.join(m for m in models if models[m].family.name in GGUF_FAMILIES)}")
        if models[base_id].family.name not in GGUF_FAMILIES:
            raise ModelLoadError(f"{model_id}: {models[base_id].spec.label} cannot take a GGUF transformer "
                                 f"(diffusers loads GGUF for {', '.join(GGUF_FAMILIES)} transformers)")
        path = folder / name
        if not path.is_file():
            raise ModelLoadError(f"{model_id}: no GGUF file {name} in the GGUF folder {folder}")
        md = Path(models_dir) if models_dir is not None else None
        return _entry(_gguf_model(models[base_id], path), md, preview_every)

    return resolve


GGUF_FAMILIES = ("wan", "ltx", "hunyuan", "mochi")  # transformers diffusers loads from a single GGUF file


def _base_of(name: str, models: Mapping[str, CatalogModel]) -> str | None:
    """The catalog id a community GGUF file name starts with (the longest one), for the model list."""
    stem = name.lower()
    found = [mid for mid, m in models.items() if stem.startswith(mid.lower()) and m.family.name in GGUF_FAMILIES]
    return max(found, key=len) if found else None


def _gguf_model(model: CatalogModel, path: Path) -> CatalogModel:
    try:
        quant = gguf.describe(path)["quantization"] or "GGUF"
    except ModelLoadError:
        quant = "GGUF, unreadable"
    spec = dataclasses.replace(
        model.spec, id=f"{model.spec.id}{gguf.SEP}{path.name}", version=f"{model.spec.version}+gguf",
        label=f"{model.spec.label} ({quant})",
        description=f"{model.spec.description} Transformer: {path.name} ({quant}).".strip())
    return dataclasses.replace(model, spec=spec, transformer_file=path)


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
    if not hub.HUB_ID.match(model_id) or model_id.startswith((".", "/", "~")):
        return None
    folder = hub.cached_folder(model_id)
    if folder is None:
        raise ModelLoadError(hub.missing_message(model_id, ["model_index.json (not in the Hugging Face cache)"]))
    return _folder_entry(model_id, folder, repo=model_id, catalog_path=catalog_path, preview_every=preview_every)


def _folder_entry(model_id: str, folder: Path, *, repo: str | None, catalog_path, preview_every: int) -> RegistryEntry:
    index = json.loads((folder / "model_index.json").read_text())
    cls = index.get("_class_name", "")
    family = family_of_pipeline(cls)
    modes = family.local_modes(cls, index, folder) if family is not None else None
    if family is None or not modes:
        known = ", ".join(sorted(n for f in FAMILIES.values() for n in f.local_pipelines))
        raise ModelLoadError(f"{model_id}: pipeline {cls!r} is not a video pipeline the studio runs; known: {known}")
    catalog = read_catalog(catalog_path)
    family_data = catalog.families[family.name]
    template = next((m for m in catalog.models if repo and m.repo == repo), None)
    revision = hub.revision(folder)
    raw = {
        "id": model_id,
        "version": f"local-{revision[:12]}" if revision else "local",
        "label": repo or folder.name,
        "family": family.name,
        "modes": modes,
        "description": f"Loaded from {folder.name}",
    }
    # a local folder may hold anything from a fine-tune to a tiny test model: any size the VAE allows
    lim = family_data.get("limits", {})
    raw["limits"] = {k: dict(lim[k], min=lim[k].get("multiple_of", 8)) for k in ("width", "height") if k in lim}
    model = build_model(raw, family_data, catalog.profiles)
    if template is not None:  # a cached catalog repo: keep its tuned settings
        model = dataclasses.replace(template, spec=dataclasses.replace(template.spec, id=model_id))
    model = dataclasses.replace(model, folder=folder, repo=repo)
    return _entry(model, None, preview_every)
