"""The training configuration: one frozen dataclass whose values come from the shipped recipe.

`recipe.toml` (next to this file) is the recipe of the shipped weights; `TrainConfig.shipped()`
reads it. The dataclass has no defaults for what the recipe decides, so there is one source of
truth for it; only bookkeeping (checkpoint interval, log interval) has defaults here.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from pipelines.embedded.vae import VAEConfig

RECIPE_FILE = Path(__file__).resolve().with_name("recipe.toml")

# checkpoints written before the denoiser was named for what it is used these keys
LEGACY_KEYS = MappingProxyType({"dit": "denoiser", "dit_lr": "denoiser_lr", "dit_batch": "denoiser_batch",
                                "dit_warmup": "denoiser_warmup"})


@dataclass(frozen=True)
class TrainConfig:
    """Every field is explained in recipe.toml."""

    # stage vae: the autoencoder (encoder and a first decoder) from scratch
    vae: VAEConfig
    vae_minutes: float
    vae_lr: float
    vae_batch: int
    vae_object_weight: float
    # stage decoder: a residual decoder of these widths on the frozen encoder
    decoder_ch: tuple[int, ...]
    decoder_t_ch: int
    decoder_minutes: float
    # stage cache
    cache_clips: int
    # stage dit: the denoiser; its config dict overrides dit.DiTConfig or unet.UNetConfig fields
    denoiser: dict
    denoiser_lr: float
    denoiser_batch: int
    denoiser_warmup: int
    denoiser_minutes: float
    weight_decay: float
    ema_decay: float
    p_uncond: float
    p_image: float
    p_edit: float
    edit_t: tuple[float, float]
    t_shift: float
    seed: int
    # second round (issue #16); these defaults are the shipped recipe's behaviour, so older recipes and
    # checkpoints train exactly as before unless a --config sets them
    edit_pairs: str = "colour"  # cache: "colour" (world.variant) or "any" (world.edit_variant: each attribute alone)
    p_image_partial: float = 0.0  # i2v samples captioned with the motion and at most part of the look
    p_edit_change: float = 0.0  # edit samples captioned with only what changes ("make it blue")
    p_t_uniform: float = 0.0  # training timesteps drawn uniformly in [0, 1] instead of logit-normal
    vae_object_norm: bool = False  # autoencoder loss: each clip's object pixels weigh the same in total, whatever its size
    vae_edge_weight: float = 0.0  # autoencoder loss: extra weight on the pixels within 1 px of the object's outline
    # stage decoder: this share of each batch is decoded from the denoiser's (dit.pt's EMA) prediction of the clean
    # latent, made from the clip's latent noised to a t in decoder_denoised_t under its caption, instead of from the
    # encoder's latent: the latents a sampled clip ends on are the denoiser's, not the encoder's
    decoder_on_denoised: float = 0.0
    decoder_denoised_t: tuple[float, float] = (0.02, 0.3)
    # stage dit: extra loss weight on the latent cells that show the object (where the clip's latent differs from the
    # latent of its plain background by more than denoiser_object_threshold on average over channels): the object
    # covers ~16% of the cells, so an unweighted loss is mostly the uniform background's
    denoiser_object_weight: float = 0.0
    denoiser_object_threshold: float = 0.2
    # bookkeeping
    checkpoint_every_s: float = 180.0
    log_every: int = 20

    @classmethod
    def shipped(cls) -> "TrainConfig":
        """The recipe of the shipped weights (recipe.toml)."""
        return cls.from_dict(read_recipe())

    @property
    def shipped_vae(self) -> VAEConfig:
        """The autoencoder after stage decoder: the encoder of stage vae with the residual decoder."""
        return replace(self.vae, dec_ch=tuple(self.decoder_ch), dec_t_ch=self.decoder_t_ch)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config from a dict, e.g. a checkpoint's: keys it lacks (written by older code) take the
        recipe's values, legacy names are renamed; an unknown key is an error that names it."""
        d = {LEGACY_KEYS.get(k, k): v for k, v in d.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training config key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        needed = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        if needed - set(d):
            d = {**read_recipe(), **d}
        d["vae"] = d["vae"] if isinstance(d["vae"], VAEConfig) else VAEConfig.from_dict(d["vae"])
        d["decoder_ch"] = tuple(d["decoder_ch"])
        d["edit_t"] = tuple(d["edit_t"])
        if "decoder_denoised_t" in d:
            d["decoder_denoised_t"] = tuple(d["decoder_denoised_t"])
        d["denoiser"] = dict(d["denoiser"])
        return cls(**d)

    def updated(self, overrides: dict) -> "TrainConfig":
        """This config with `overrides` (a --config file's dict; nested vae keys merge into vae)."""
        d = self.to_dict()
        overrides = {LEGACY_KEYS.get(k, k): v for k, v in overrides.items()}
        if isinstance(overrides.get("vae"), dict):
            overrides["vae"] = {**d["vae"], **overrides["vae"]}
        return TrainConfig.from_dict({**d, **overrides})


def read_recipe(path: Path = RECIPE_FILE) -> dict:
    """recipe.toml as a dict of TrainConfig fields."""
    with open(path, "rb") as f:
        return tomllib.load(f)
