"""The open video models, run through diffusers from a local folder or the Hugging Face cache.

Public entry points, all free of import-time work:

    catalog_entries(catalog_path=None, *, models_dir=None, local_dirs=None) -> dict[str, RegistryEntry]
    local_model_resolver(model_id) -> RegistryEntry | None     # a diffusers folder or a cached "org/name"
    gguf_resolver(gguf_dir)(model_id) -> RegistryEntry | None  # "<catalog id>@<file>.gguf": a quantized
                                                                # transformer from the GGUF folder
    DiffusersBackend(model, *, device, profile)                 # pipelines.contract.BatchBackend: generate,
                                                                # generate_batch (seeds of one cell in one call,
                                                                # max_batch per Family.max_batch)
    DiffusersBackend.from_pipeline(model, pipe, ...)            # around a pipeline built in code (benchmarks)
    read_catalog(path=None) -> Catalog                          # pipelines/catalog.toml, parsed

The package:

    catalog.py    catalog.toml -> profiles and CatalogModels (data; no torch)
    families/     one small class per family (Wan, LTX-Video, CogVideoX, HunyuanVideo, Mochi, SVD,
                  AnimateDiff) in one table, FAMILIES: pipelines per mode, call arguments, latent
                  layout, temporal ratio, VAE and transformer capabilities
    hub.py        the Hugging Face cache lookup, local folders, what is missing and the download command
    entries.py    registry entries: catalog models, local folders, cached hub ids, GGUF variants
    gguf.py       GGUF-quantized transformers: header facts, the shape check, loading
    profiles.py   speed/memory profiles applied to a loaded pipeline
    backend.py    DiffusersBackend: load, assemble a pipeline per mode, generate (one seed or a batch)
    blend.py      latent-blend inpainting (per sample in a batch)
    preview.py    the step callback: blend, cancel, progress, latent previews

Nothing here downloads: loading is offline (`local_files_only=True`); a model that is not on disk
gives a ModelLoadError (and its registry entry's `missing()` a message) naming the missing files and
the command that fetches them. The package imports only pipelines.contract and itself.
"""

from __future__ import annotations

from pipelines.diffusers.backend import DiffusersBackend
from pipelines.diffusers.catalog import DEFAULT_CATALOG, Catalog, CatalogModel, Profile, read_catalog
from pipelines.diffusers.entries import catalog_entries, gguf_resolver, local_model_resolver
from pipelines.diffusers.families import FAMILIES, Family

__all__ = ["DEFAULT_CATALOG", "FAMILIES", "Catalog", "CatalogModel", "DiffusersBackend", "Family", "Profile",
           "catalog_entries", "gguf_resolver", "local_model_resolver", "read_catalog"]
