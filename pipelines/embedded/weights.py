"""The shipped weights: where they live, their version and their file format.

Shared by the serving backend (which reads them) and the training export (which writes them), so
that neither imports the other. Imports nothing heavy: the registry asks `missing()` before a job
is queued.

Format: `model.safetensors` holds the autoencoder's tensors under "vae." and the denoiser's (a DiT
or a U-Net, as config.json says) under "dit."; `config.json` holds the version, both architecture
configs, the tokenizer's vocabulary, the sampler's shift and a summary of training. The "dit."
prefix and the "dit" config key are the file format's names, kept so that shipped files load as
they are.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_VERSION = "5.5"  # export writes it into config.json; bump it when shipping new weights or a sampler
# that changes what a seed gives (5.1: the weights of 5 with guidance only for t <= 0.7 and an unguided last step;
# 5.2: the same weights, i2v and v2v prompts completed from the input, backend.read_inputs;
# 5.3: 5.2's encoder and denoiser with the decoder continued on an outline-weighted loss, training/decoder_53.json;
# 5.4: 5.3's tensors with shape-contrastive guidance, sampler.shape_contrast;
# 5.5: 5.4's tensors and sampler, inpaint by default from the input noised to t = 0.75 (backend.EMBEDDED_SPEC))
# The sampler export writes into config.json (with the training's timestep shift): guidance only for
# t <= 0.7, the last step unguided (MODEL_CARD.md, "Second round"), and on the guided steps a push away from the
# prompt with its shape said as the confusable one, scale 2 (MODEL_CARD.md, "Session 11"). Change it for new weights only.
SAMPLER = {"solver": "euler", "cfg_interval": [0.0, 0.7], "unguided_final_steps": 1, "shape_contrast": 2.0}
# What the backend uses for a key config.json's "sampler" does not give: version 5.1's sampler, frozen, so
# that weights exported before a key existed keep sampling as they did whatever SAMPLER becomes
SAMPLER_FALLBACK = {"solver": "euler", "cfg_interval": [0.0, 0.7], "unguided_final_steps": 1, "shape_contrast": 0.0}
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "embedded"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VAE_PREFIX = "vae."
DENOISER_PREFIX = "dit."  # the file format's name for the denoiser's tensors, whatever its architecture
DENOISER_KEY = "dit"  # the file format's name for the denoiser's config in config.json
# The from-scratch command: every stage of the shipped recipe (pipelines/embedded/training/recipe.toml)
TRAIN_COMMAND = "python -m pipelines.embedded.train --threads 1"


def split_state(tensors: dict) -> tuple[dict, dict]:
    """The tensors of model.safetensors -> (autoencoder state dict, denoiser state dict)."""
    vae = {k[len(VAE_PREFIX):]: v for k, v in tensors.items() if k.startswith(VAE_PREFIX)}
    den = {k[len(DENOISER_PREFIX):]: v for k, v in tensors.items() if k.startswith(DENOISER_PREFIX)}
    return vae, den


def join_state(vae_state: dict, denoiser_state: dict) -> dict:
    """The inverse of `split_state`: one flat dict in the file's naming."""
    out = {f"{VAE_PREFIX}{k}": v for k, v in vae_state.items()}
    out.update({f"{DENOISER_PREFIX}{k}": v for k, v in denoiser_state.items()})
    return out


def missing(weights_dir: Path) -> str | None:
    """None when both weights files are in `weights_dir`, else a message naming the missing one(s)
    and ending, on a line of its own, with the command that rebuilds them."""
    gone = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if not (Path(weights_dir) / name).is_file()]
    if not gone:
        return None
    # names relative to the project (an error shown to a browser carries no server path)
    default = Path(weights_dir).resolve() == WEIGHTS_DIR
    where = "assets/embedded/" if default else ""
    files = " and ".join(f"{where}{name}" for name in gone)
    command = TRAIN_COMMAND if default else f"{TRAIN_COMMAND} --assets <the weights folder>"
    return (f"the embedded model's weights are missing: {files} not found. Rebuild them from scratch "
            f"(several hours on a CPU, see assets/embedded/MODEL_CARD.md) with:\n{command}")
