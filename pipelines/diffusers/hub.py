"""Where weights are on disk: the Hugging Face cache (one lookup), local folders, what they lack.

Nothing here downloads or imports torch. Every miss becomes a message that names the missing files
and ends, on a line of its own, with the command that fetches them (RegistryEntry.missing's contract).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipelines.contract import ModelLoadError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_CONFIG_FILES = ("config.json", "scheduler_config.json", "preprocessor_config.json", "tokenizer_config.json",
                 "tokenizer.json", "spiece.model", "vocab.json")


def cached_folder(repo: str, filename: str = "model_index.json") -> Path | None:
    """The newest cached snapshot folder of `repo` that holds `filename`, or None. Never downloads.

    `filename` is model_index.json for a pipeline repo, config.json for a single model
    (an AnimateDiff motion adapter)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a diffusers dependency
        return None
    found = try_to_load_from_cache(repo, filename)
    return Path(found).parent if isinstance(found, str) else None


def revision(folder: Path) -> str | None:
    """The commit a folder came from: the HF cache snapshot name, or `hf download --local-dir` metadata."""
    if folder.parent.name == "snapshots" and _COMMIT.fullmatch(folder.name):
        return folder.name
    meta = folder / ".cache" / "huggingface" / "download" / "model_index.json.metadata"
    if meta.is_file():
        first = meta.read_text().splitlines()[:1]
        if first and _COMMIT.fullmatch(first[0].strip()):
            return first[0].strip()
    return None


def missing_files(folder: Path, needed: set[str] | None = None, configs_only: frozenset[str] = frozenset()) -> list[str]:
    """Relative paths a diffusers folder lacks: model_index.json, component configs, weight shards.

    `needed`: the components the pipelines will use (None = every component in model_index.json).
    `configs_only`: components whose weights come from elsewhere (a GGUF transformer): their config suffices.
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
        if not (sub / "config.json").is_file() or name in configs_only:
            continue  # scheduler, tokenizer, processor: configs only
        shard_index = sorted(sub.glob("*.index.json"))
        if shard_index:
            shards = set(json.loads(shard_index[0].read_text()).get("weight_map", {}).values())
            missing += [f"{name}/{s}" for s in sorted(shards) if not (sub / s).is_file()]
        elif not (list(sub.glob("*.safetensors")) + list(sub.glob("*.bin"))):  # plain or a variant (*.fp16.*)
            missing.append(f"{name}/ (weights)")
    return missing


def has_variant(folder: Path, variant: str) -> bool:
    """True when the folder's weights are stored as the `variant` files (e.g. *.fp16.safetensors)."""
    return any(f".{variant}." in p.name for p in folder.glob(f"*/*.{variant}.*"))


def download_command(repo: str, *, local_dir: Path | None = None, include: tuple[str, ...] = ()) -> str:
    args = repo + (f" --local-dir {local_dir}" if local_dir else "")
    if include:
        args += " --include " + " ".join(f'"{p}"' for p in include)
    return f"hf download {args}"


def missing_message(repo: str | None, missing: list[str], folder: Path | None = None, *,
                    models_dir: Path | None = None, include: tuple[str, ...] = ()) -> str:
    """What is missing, then (for a hub repo) the download command on the last line, on its own."""
    what = repo or (folder.name if folder else "the model folder")
    listed = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
    first = f"{what} is not available offline. Missing: {listed}."
    if not repo:
        return first + "\nCopy the complete diffusers folder (model_index.json and every component folder) there."
    target = Path(models_dir) / repo.split("/")[-1] if models_dir else None
    return "\n".join([
        first,
        "Download it on a machine with internet access (older huggingface_hub: `huggingface-cli download` with the "
        "same arguments; without --local-dir it goes to the Hugging Face cache, where the studio finds it):",
        download_command(repo, local_dir=target, include=include),
    ])


def needed_components(folder: Path, include: tuple[str, ...] = ()) -> set[str] | None:
    """The components a folder must hold: all of model_index.json's, or, when the catalog fetches only
    part of a repo (`download_include`), the component folders those patterns name."""
    if not include:
        return None
    return {p.split("/", 1)[0] for p in include if "/" in p}


def locate(model, models_dir: Path | None = None) -> tuple[Path, Path | None]:
    """(weights folder, motion-adapter folder or None) of a CatalogModel, complete on disk.

    Raises ModelLoadError naming what is missing, with the download command on the last line."""
    repo, include = model.repo, model.download_include
    folder = model.folder
    if folder is None:
        folder = cached_folder(repo) if repo else None
        if folder is None:
            raise ModelLoadError(missing_message(repo, ["model_index.json and every component"],
                                                 models_dir=models_dir, include=include))
    gone = missing_files(folder, needed_components(folder, include),
                         frozenset({"transformer"}) if model.transformer_file else frozenset())
    if model.transformer_file is not None and not Path(model.transformer_file).is_file():
        gone.append(f"{Path(model.transformer_file).name} (in {Path(model.transformer_file).parent})")
    if gone:
        raise ModelLoadError(missing_message(repo, gone, folder, models_dir=models_dir, include=include))
    adapter = None
    if model.adapter:
        adapter = model.adapter_folder or cached_folder(model.adapter, "config.json")
        if adapter is None or not (adapter / "config.json").is_file() or not (
            list(adapter.glob("*.safetensors")) + list(adapter.glob("*.bin"))
        ):
            raise ModelLoadError(missing_message(model.adapter, ["config.json and weights of the motion adapter"],
                                                 models_dir=models_dir))
    return folder, adapter


def missing(model, models_dir: Path | None = None) -> str | None:
    """RegistryEntry.missing for a CatalogModel: None when it can load, else what is missing and the command."""
    try:
        locate(model, models_dir)
    except ModelLoadError as e:
        return str(e)
    return None
