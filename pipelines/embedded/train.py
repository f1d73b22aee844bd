"""Train the embedded model, in stages, resumably, with the shipped recipe by default.

    python -m pipelines.embedded.train                       # every stage of the shipped recipe, in turn
    python -m pipelines.embedded.train --stage vae           # the autoencoder (v1 encoder, a first decoder)
    python -m pipelines.embedded.train --stage decoder       # the residual decoder on the frozen encoder
    python -m pipelines.embedded.train --stage cache         # encode the training clips (and edit partners) once
    python -m pipelines.embedded.train --stage dit           # the denoiser (DiT) and its text encoder
    python -m pipelines.embedded.train --stage export        # -> assets/embedded/
    python -m pipelines.embedded.train --from-assets --out runs/ft   # start a run from the shipped weights
    add --resume to continue from runs/embedded/<stage>.pt; --minutes N to change a stage's budget;
    --config FILE.json to override recipe values; --device cuda on a GPU; --threads N

The recipe (every value, and each stage's time budget) is pipelines/embedded/training/recipe.toml.
Checkpoints (model, optimizer, step, EMA, config) are written atomically every few minutes and at
the end under --out. Uses only torch, numpy and safetensors.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

STAGES = ("vae", "decoder", "cache", "dit", "export")  # the order of --stage all


def build_parser() -> argparse.ArgumentParser:
    from pipelines.embedded.weights import WEIGHTS_DIR

    p = argparse.ArgumentParser(prog="python -m pipelines.embedded.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=["all", *STAGES], default="all",
                   help="all = " + ", ".join(STAGES) + " in turn; decoder: a new residual decoder on the frozen "
                        "encoder (encoder, latents and denoiser stay valid), continued if it exists")
    p.add_argument("--config", type=Path, help="JSON file with overrides of the recipe's values")
    p.add_argument("--decoder-ch", type=lambda v: tuple(int(c) for c in v.split(",")), default=None,
                   help="with --stage decoder: the residual decoder's widths instead of the recipe's "
                        "(e.g. 24,48,64,96 for the 8x encoder)")
    p.add_argument("--decoder-t-ch", type=int, default=None, help="its chunk width instead of the recipe's")
    p.add_argument("--out", type=Path, default=Path("runs/embedded"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--from-assets", action="store_true",
                   help="first seed --out's vae.pt and dit.pt from the shipped weights (--assets), then run the "
                        "stages given, resuming (with --stage all: cache, dit; export is yours to run); a fine-tune of the "
                        "shipped model (pass --config for its values)")
    p.add_argument("--minutes", type=float, default=None,
                   help="time budget of the training stage (default: the recipe's for that stage)")
    p.add_argument("--vae-minutes", type=float, default=None, help="vae budget when --stage all")
    p.add_argument("--device", default=None, help="cuda when available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--assets", type=Path, default=WEIGHTS_DIR, help="export destination (and --from-assets source)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float32", help="export dtype")
    p.add_argument("--export-weights", choices=["ema", "model"], default="ema",
                   help="export the EMA of the denoiser's weights (default) or the raw last weights")
    return p


def resolve_config(args: argparse.Namespace):
    """The run's TrainConfig: the recipe; with --config, the recipe with that file's overrides; with
    --resume (and no --config), the configuration the run in --out was started with."""
    import torch

    from pipelines.embedded.training.config import TrainConfig

    cfg = TrainConfig.shipped()
    if args.config:
        return cfg.updated(json.loads(args.config.read_text()))
    if args.resume:  # continue with the configuration the run was started with
        for name in ("dit.pt", "vae.pt"):
            if (args.out / name).exists():
                ck = torch.load(args.out / name, map_location="cpu", weights_only=False)
                return TrainConfig.from_dict(ck["config"])
    return cfg


def stage_minutes(cfg, stage: str, args: argparse.Namespace) -> float:
    """A training stage's time budget: --minutes (or --vae-minutes for vae), else the recipe's."""
    if stage == "vae" and args.vae_minutes is not None:
        return args.vae_minutes
    if args.minutes is not None:
        return args.minutes
    return {"vae": cfg.vae_minutes, "decoder": cfg.decoder_minutes, "dit": cfg.denoiser_minutes}[stage]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from pipelines.embedded.training.autoencoder import train_vae
    from pipelines.embedded.training.denoiser import build_cache, seed_from_assets, train_denoiser
    from pipelines.embedded.training.export import export

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = resolve_config(args)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    stages = STAGES if args.stage == "all" else (args.stage,)
    if args.from_assets:
        seed_from_assets(cfg, args.assets, args.out)
        args.resume = True
        if args.stage == "all":  # not export: --assets is the source here, and shipping is a deliberate step
            stages = ("cache", "dit")
        stages = tuple(s for s in stages if s != "vae")  # the autoencoder is the shipped one
    for stage in stages:
        if stage == "vae":
            train_vae(cfg, args.out, stage_minutes(cfg, stage, args), args.resume, device)
        elif stage == "decoder":
            new = (args.decoder_ch or cfg.decoder_ch,
                   args.decoder_t_ch if args.decoder_t_ch is not None else cfg.decoder_t_ch)
            train_vae(cfg, args.out, stage_minutes(cfg, stage, args), True, device, decoder_only=True, new_decoder=new)
        elif stage == "cache":
            build_cache(cfg, args.out, device)
        elif stage == "dit":
            train_denoiser(cfg, args.out, stage_minutes(cfg, stage, args), args.resume, device)
        elif stage == "export":
            export(args.out, args.assets, args.dtype, args.export_weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
