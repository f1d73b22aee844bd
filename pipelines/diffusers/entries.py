"""Registry entries: every catalog model, and any local diffusers folder or cached hub repo id."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Mapping

from pipelines.contract import ModelLoadError, RegistryEntry
from pipelines.diffusers import hub
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
                         check_lora=check_lora)


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
    models_dir = Path(models_dir) if models_dir is not None else None
    local_dirs = dict(local_dirs or {})
    entries: dict[str, RegistryEntry] = {}
    for model in read_catalog(catalog_path).models:
        folder = local_dirs.get(model.spec.id)
        if folder is None and models_dir is not None and model.repo:
            candidate = models_dir / model.repo.split("/")[-1]
            folder = candidate if candidate.exists() else None
        adapter_folder = None
        if model.adapter and models_dir is not None:
            candidate = models_dir / model.adapter.split("/")[-1]
            adapter_folder = candidate if candidate.exists() else None
        model = dataclasses.replace(model, folder=Path(folder) if folder else None, adapter_folder=adapter_folder)
        entries[model.spec.id] = _entry(model, models_dir, preview_every)
    return entries


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
