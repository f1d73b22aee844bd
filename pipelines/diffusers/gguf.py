"""GGUF-quantized transformers: the denoiser from one `.gguf` file, the rest of the pipeline from its folder.

How a 14B video transformer fits a 12-16 GB card (the files the community publishes: Q8_0, Q6_K, Q5_K,
Q4_K, ...). The weights stay in their quantized blocks in memory and diffusers dequantizes each layer's
weight as it runs (`GGUFQuantizationConfig`); everything else (text encoder, VAE, scheduler) loads from the
model's usual diffusers folder, of which only `transformer/config.json` is needed of the transformer.

A file is named in a model id as `<catalog id>@<file name>` (`wan2.1-t2v-1.3b@wan2.1-t2v-1.3b-Q4_K_M.gguf`),
the file lying in the GGUF folder the registry was given. The file's tensors are checked against the
transformer the model's config describes before anything is loaded (names after diffusers' conversion from
the original layout, and shapes), so a file made for another family or another size is refused with a
message naming both. `describe` reads the header only: the quantization types and how many tensors of each.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from pipelines.contract import ModelLoadError, is_out_of_memory

SUFFIX = ".gguf"
SEP = "@"
_UNQUANTIZED = ("F32", "F16", "BF16", "F64")


def split_id(model_id: str) -> tuple[str, str] | None:
    """`<base id>@<file name>` -> (base id, file name); None for any other id. The file name is a plain
    name ending in .gguf (no folder): files are only ever taken from the GGUF folder."""
    if not isinstance(model_id, str) or SEP not in model_id:
        return None
    base, _, name = model_id.rpartition(SEP)
    if not base or not name.endswith(SUFFIX) or name != Path(name).name or name.startswith(".") \
            or "\\" in name or "\x00" in name:
        return None
    return base, name


def describe(path: Path) -> dict[str, Any]:
    """Header facts of a GGUF file (no tensor data is read): the main quantization (the most common type
    among quantized tensors), every type with its tensor count, the architecture the writer declared."""
    reader = _reader(path)
    types = Counter(t.tensor_type.name for t in reader.tensors)
    quantized = Counter({k: v for k, v in types.items() if k not in _UNQUANTIZED})
    arch = reader.fields.get("general.architecture")
    arch_name = None
    if arch is not None and arch.types:
        try:
            arch_name = bytes(arch.parts[arch.data[0]]).decode("utf-8", "replace")
        except (IndexError, TypeError, ValueError):
            arch_name = None
    main = quantized.most_common(1)[0][0] if quantized else (types.most_common(1)[0][0] if types else None)
    return {"quantization": main, "types": dict(sorted(types.items())), "tensors": sum(types.values()),
            "architecture": arch_name}


def check(folder: Path, path: Path, label: str):  # type: ignore[no-untyped-def]
    """The transformer class of `folder`; raise ModelLoadError unless the file's tensors are that transformer
    (names and shapes), naming the file and the model. Reads headers and configs only; builds the model on
    the meta device."""
    import torch

    cls, config = _transformer_class(folder, label)
    reader = _reader(path)
    meta = {t.name: torch.empty(tuple(int(n) for n in reversed(t.shape)), device="meta") for t in reader.tensors}
    with torch.device("meta"):
        model = cls.from_config(config)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    converted = meta
    if not set(meta) <= set(want):  # the original layout (as published): diffusers converts it on load
        from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

        convert = SINGLE_FILE_LOADABLE_CLASSES[cls.__name__]["checkpoint_mapping_fn"]
        try:
            converted = convert(checkpoint=dict(meta), config=config)
        except Exception as e:  # a converter meets names it does not know
            raise ModelLoadError(f"{path.name} is not a {cls.__name__} checkpoint for {label}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    got = {k: tuple(v.shape) for k, v in converted.items()}
    unknown = sorted(set(got) - set(want))
    absent = sorted(set(want) - set(got))
    if unknown or absent:
        some = ", ".join((unknown or absent)[:3])
        raise ModelLoadError(
            f"{path.name} is not a transformer of {label} ({cls.__name__}): "
            + (f"{len(unknown)} tensors it does not have (e.g. {some})" if unknown
               else f"{len(absent)} of its tensors are missing (e.g. {some})")
            + f"; the file's writer called it {describe(path)['architecture'] or 'nothing'}")
    wrong = [k for k in want if got[k] != want[k]]
    if wrong:
        k = wrong[0]
        raise ModelLoadError(f"{path.name} was made for a transformer of another size: {k} is {list(got[k])} in "
                             f"the file and {list(want[k])} in {label} ({len(wrong)} tensors differ)")
    return cls


def load_transformer(folder: Path, path: Path, dtype, label: str):
    """The model's transformer class built from `folder`'s config with the GGUF file's weights, dequantized
    layer by layer to `dtype` as it runs."""
    import diffusers

    cls = check(folder, path, label)
    try:
        return cls.from_single_file(str(path), config=str(folder), subfolder="transformer", local_files_only=True,
                                    quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=dtype),
                                    torch_dtype=dtype)
    except Exception as e:
        if is_out_of_memory(e):
            raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"{label}: could not load the transformer from {path.name}: {first}") from None


_hashes: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def sha256(path: Path) -> str:
    """The file's sha256, computed once per (path, size, mtime): a 14B Q8 file is 15 GB."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    with _hash_lock:
        _hashes[key] = h.hexdigest()
    return _hashes[key]


def manifest(path: Path) -> dict[str, Any]:
    """What the manifest records of a GGUF transformer: file name, sha256, size and quantization."""
    info = describe(path)
    return {"file": path.name, "sha256": sha256(path), "size": path.stat().st_size,
            "quantization": info["quantization"], "types": info["types"]}


def _reader(path: Path):
    try:
        from gguf import GGUFReader
    except ImportError:  # a dependency of the studio; a trimmed install may lack it
        raise ModelLoadError("GGUF transformers need the gguf package: pip install gguf") from None
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {path.name} is not in {path.parent}")
    try:
        return GGUFReader(str(path))
    except (OSError, ValueError, AssertionError, IndexError, KeyError) as e:
        raise ModelLoadError(f"{path.name} is not a readable GGUF file ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _transformer_class(folder: Path, label: str):
    import diffusers

    cfg_path = folder / "transformer" / "config.json"
    if not cfg_path.is_file():
        raise ModelLoadError(f"{label} has no transformer/config.json in {folder.name}: a GGUF file replaces "
                             f"the transformer's weights, not its config")
    config = json.loads(cfg_path.read_text())
    name = config.get("_class_name", "")
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    if name not in SINGLE_FILE_LOADABLE_CLASSES or not hasattr(diffusers, name):
        raise ModelLoadError(f"{label}'s denoiser ({name or 'unknown'}) cannot load a GGUF file; "
                             f"diffusers loads GGUF for: Wan, LTX-Video, HunyuanVideo and Mochi transformers")
    return getattr(diffusers, name), config
