"""Train the embedded model, in stages, resumably.

    python -m pipelines.embedded.train --stage vae   --minutes 15      # the autoencoder
    python -m pipelines.embedded.train --stage cache                   # encode a dataset of clips once
    python -m pipelines.embedded.train --stage dit   --minutes 80      # the diffusion transformer
    python -m pipelines.embedded.train --stage export                  # -> assets/embedded/
    python -m pipelines.embedded.train --stage decoder --minutes 30    # later: sharpen the decoder only
    add --resume to continue from runs/embedded/<stage>.pt; --device cuda on a GPU; --threads N

Checkpoints (model, optimizer, step, EMA, config) are written atomically every few minutes and at
the end under --out. Uses only torch, numpy and safetensors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from pipelines.embedded import world
from pipelines.embedded.vae import VAEConfig, VideoAutoencoder, frames_to_model

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "embedded"


@dataclass
class TrainConfig:
    # ---- autoencoder stage
    vae: VAEConfig = field(default_factory=lambda: VAEConfig(arch="v2", ch=(16, 32, 64), t_ch=96))
    vae_lr: float = 2e-3  # peak; linear warm-up, then cosine decay to 10% over the --minutes budget
    vae_batch: int = 16  # clips per step; one random chunk (time_down frames) of each: chunks are coded alone
    vae_object_weight: float = 5.0  # extra loss weight on object pixels (they are few)
    # ---- latent cache stage
    cache_clips: int = 12000  # clips encoded once for DiT training (~25 per attribute combination)
    # ---- denoiser stage ("dit" for history: the model config lives in unet.UNetConfig or dit.DiTConfig)
    # overrides for the denoiser's config fields (the latent grid size comes from the autoencoder);
    # {"patch": 4} instead selects the DiT with 4x4-cell patches (64 tokens over 16x16 cells)
    dit: dict = field(default_factory=lambda: {"arch": "unet"})
    dit_lr: float = 8e-4  # peak; warm-up over dit_warmup steps, then cosine decay over the --minutes budget
    dit_batch: int = 64  # small batches, many steps: what a 1-thread CPU run can afford
    dit_warmup: int = 200  # linear LR warm-up steps
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    p_uncond: float = 0.1  # condition dropout (text -> empty prompt) so CFG / negative prompts work
    p_image: float = 0.3  # first-frame (i2v) conditioning given in this fraction of samples
    p_edit: float = 0.25  # fraction of samples on an SDEdit path between a cached clip and its edit partner (v2v)
    edit_t: tuple[float, float] = (0.3, 0.9)  # the strengths those paths start from
    t_shift: float = 1.0  # training timesteps shifted towards noise (diffusion.shift_t); export makes it the sampler's
    # ---- bookkeeping
    seed: int = 0
    checkpoint_every_s: float = 180.0
    log_every: int = 20

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        if "vae" in d:
            d["vae"] = VAEConfig.from_dict(d["vae"])
        return cls(**d)


# ---- helpers ------------------------------------------------------------------------------------------
def save_atomic(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cosine_lr(peak: float, frac: float, warm: float) -> float:
    """Learning rate at fraction `frac` of a stage's time budget: warm-up factor `warm` (0..1), then
    cosine decay to 10% of `peak` at the end of the budget (each invocation, resumed or not)."""
    return peak * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def render_clips(n: int, g: torch.Generator, wcfg: world.WorldConfig = world.WorldConfig()):
    b = world.sample_batch(n, g, wcfg)
    return b, world.render(b, wcfg)


def object_weight(b: world.Batch, x: torch.Tensor, w: float) -> torch.Tensor:
    """(B, 1, F, H, W) loss weights: 1 on background, 1 + w where the pixel differs from it."""
    bg = torch.tensor(list(world.BACKGROUNDS.values()), dtype=torch.float32)[b.bg] / 255.0  # (B, 3)
    diff = (x - bg[:, None, None, None, :]).abs().sum(-1) > 0.02  # (B, F, H, W)
    return (1 + w * diff.float())[:, None]


# ---- stage: autoencoder ----------------------------------------------------------------------------------
def train_vae(cfg: TrainConfig, out: Path, minutes: float, resume: bool, device: str,
              decoder_only: bool = False, new_decoder: tuple[tuple[int, ...], int] | None = None) -> None:
    """Train the autoencoder. decoder_only: keep the encoder (and so the cached latents and the DiT)
    fixed and improve only the decoder; resumes from vae.pt, whose config it keeps. new_decoder
    (widths, chunk width): replace the decoder by a new residual one of that size, trained from scratch."""
    ckpt_path = out / "vae.pt"
    ck = None
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
    elif decoder_only:
        raise SystemExit(f"--stage decoder needs a trained autoencoder at {ckpt_path}")
    fresh_decoder = False
    if decoder_only:  # the encoder and latent normalisation are the checkpoint's: take its config
        cfg = TrainConfig.from_dict(ck["config"])
        if new_decoder and (tuple(new_decoder[0]), new_decoder[1]) != (cfg.vae.dec_ch, cfg.vae.dec_t_ch):
            cfg.vae = replace(cfg.vae, dec_ch=tuple(new_decoder[0]), dec_t_ch=new_decoder[1])
            fresh_decoder = True
    model = VideoAutoencoder(cfg.vae).to(device)
    params = model.decoder.parameters() if decoder_only else model.parameters()
    opt = torch.optim.AdamW(params, lr=cfg.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    step, g = 0, torch.Generator().manual_seed(cfg.seed)
    if ck is not None:
        if fresh_decoder:
            model.load_state_dict({k: v for k, v in ck["model"].items() if not k.startswith("decoder.")}, strict=False)
            log(f"new decoder {cfg.vae.dec_ch} (chunk {cfg.vae.dec_t_ch}), "
                f"{sum(p.numel() for p in model.decoder.parameters()) / 1e6:.2f}M params, on the frozen encoder")
        else:
            model.load_state_dict(ck["model"])
            if not decoder_only or ck.get("decoder_only"):
                opt.load_state_dict(ck["opt"])
        step = ck["step"]
        g.manual_seed(cfg.seed + step)
        log(f"resumed vae from step {step}" + (" (decoder only)" if decoder_only else ""))
    if decoder_only:
        model.encoder.requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"vae: {n_params/1e6:.2f}M params, batch {cfg.vae_batch}, device {device}")

    def save():
        save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                     "config": cfg.to_dict(), "decoder_only": decoder_only}, ckpt_path)

    t_start, t_ck, ema_loss, s0 = time.time(), time.time(), None, step
    t_end = t_start + minutes * 60
    t0 = t_start
    model.train()
    while time.time() < t_end:
        frac = (time.time() - t_start) / (minutes * 60)  # schedule by wall time: the budget is minutes
        peak = cfg.vae_lr * (0.33 if decoder_only and not fresh_decoder else 1.0)  # gentler when fine-tuning
        lr = cosine_lr(peak, frac, min(1.0, (step - s0 + 1) / 50))
        for pg in opt.param_groups:
            pg["lr"] = lr
        b, x = render_clips(cfg.vae_batch, g)
        k = cfg.vae.time_down
        first = torch.randint(0, x.shape[1] // k, (x.shape[0],), generator=g) * k  # one chunk per clip
        x = x[torch.arange(x.shape[0])[:, None], first[:, None] + torch.arange(k)[None]]  # (B, k, H, W, 3)
        wt = object_weight(b, x, cfg.vae_object_weight).to(device)
        xm = frames_to_model(x).to(device)
        with torch.set_grad_enabled(not decoder_only):
            z = model.encoder(xm)
        zn = z + cfg.vae.latent_noise * z.detach().std() * torch.randn_like(z)
        rec = model.decoder(zn)
        err = rec - xm
        loss = (wt * (err.pow(2) + 0.5 * err.abs())).mean() / wt.mean() + 1e-4 * z.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        mse = err.detach().pow(2).mean().item()
        ema_loss = mse if ema_loss is None else 0.95 * ema_loss + 0.05 * mse
        if step % cfg.log_every == 0:
            psnr = 10 * math.log10(4 / max(ema_loss, 1e-10))  # range [-1, 1] -> peak-to-peak 2
            log(f"vae step {step} loss {loss.item():.4f} mse {ema_loss:.5f} psnr {psnr:.1f}dB "
                f"zstd {z.detach().std().item():.3f} {(step - s0) * cfg.vae_batch / (time.time() - t0):.1f} clips/s lr {lr:.1e}")
        if time.time() - t_ck > cfg.checkpoint_every_s:
            save()
            t_ck = time.time()
    if decoder_only:  # the latent normalisation must not move: the DiT was trained on it
        save()
        log(f"decoder done at step {step}")
        return
    # latent statistics for the diffusion model's normalisation
    model.eval()
    with torch.no_grad():
        zs = torch.cat([model.encoder(frames_to_model(render_clips(64, g)[1]).to(device)) for _ in range(4)])
        model.shift.copy_(zs.mean(dim=(0, 2, 3, 4)))
        model.scale.copy_(zs.std(dim=(0, 2, 3, 4)))
    save()
    log(f"vae done at step {step}; latent shift {model.shift.tolist()} scale {model.scale.tolist()}")


def load_vae(out: Path, device: str = "cpu") -> VideoAutoencoder:
    ck = torch.load(out / "vae.pt", map_location=device, weights_only=False)
    cfg = TrainConfig.from_dict(ck["config"])
    model = VideoAutoencoder(cfg.vae).to(device)
    model.load_state_dict(ck["model"])
    return model.eval()


# ---- entry point --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.embedded.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=["vae", "cache", "dit", "export", "decoder", "all"], default="all",
                   help="all = vae, cache, dit, export in turn; decoder = fine-tune the decoder only "
                        "(encoder, latents and DiT stay valid)")
    p.add_argument("--config", type=Path, help="JSON file with TrainConfig overrides")
    p.add_argument("--decoder-ch", type=lambda v: tuple(int(c) for c in v.split(",")), default=None,
                   help="with --stage decoder: train a new residual decoder of these widths (e.g. 24,48,64,96 "
                        "for an 8x encoder) on the frozen encoder")
    p.add_argument("--decoder-t-ch", type=int, default=128, help="chunk width of the --decoder-ch decoder")
    p.add_argument("--out", type=Path, default=Path("runs/embedded"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--minutes", type=float, default=30.0, help="time budget of the training stage")
    p.add_argument("--vae-minutes", type=float, default=None, help="vae budget when --stage all")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--assets", type=Path, default=ASSETS_DIR, help="export destination")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float32", help="export dtype")
    p.add_argument("--export-weights", choices=["ema", "model"], default="ema",
                   help="export the EMA of the DiT weights (default) or the raw last weights")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig()
    if args.config:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), **json.loads(args.config.read_text())})
    elif args.resume:  # continue with the configuration the run was started with
        for name in ("dit.pt", "vae.pt"):
            if (args.out / name).exists():
                cfg = TrainConfig.from_dict(torch.load(args.out / name, map_location="cpu", weights_only=False)["config"])
                break
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    stages = ["vae", "cache", "dit", "export"] if args.stage == "all" else [args.stage]
    for stage in stages:
        if stage == "vae":
            train_vae(cfg, args.out, args.vae_minutes or args.minutes, args.resume, args.device)
        elif stage == "decoder":
            new = (args.decoder_ch, args.decoder_t_ch) if args.decoder_ch else None
            train_vae(cfg, args.out, args.minutes, True, args.device, decoder_only=True, new_decoder=new)
        elif stage == "cache":
            from pipelines.embedded.dit_train import build_cache
            build_cache(cfg, args.out, args.device)
        elif stage == "dit":
            from pipelines.embedded.dit_train import train_dit
            train_dit(cfg, args.out, args.minutes, args.resume, args.device)
        elif stage == "export":
            from pipelines.embedded.dit_train import export
            export(args.out, args.assets, args.dtype, args.export_weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
