"""Stages vae (the autoencoder from scratch) and decoder (a decoder on the frozen encoder)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from pipelines.embedded import world
from pipelines.embedded.training.common import cosine_lr, log, render_clips, save_atomic
from pipelines.embedded.training.config import TrainConfig
from pipelines.embedded.vae import VideoAutoencoder, frames_to_model


def object_weight(b: world.Batch, x: torch.Tensor, w: float, norm: bool = False, edge: float = 0.0) -> torch.Tensor:
    """(B, 1, F, H, W) loss weights: 1 on background, 1 + w where the pixel differs from it. norm: the
    object weight of each clip scaled by the batch's mean object area over its own (clamped to 1/4..8),
    so a small object's edges weigh as much as a large one's (small shapes are the ones drawn round).
    edge: a further weight on the pixels within 1 px of the object's outline (inside or out), where a
    decoder that hedges rounds corners and blunts apexes."""
    bg = torch.tensor(list(world.BACKGROUNDS.values()), dtype=torch.float32)[b.bg] / 255.0  # (B, 3)
    diff = ((x - bg[:, None, None, None, :]).abs().sum(-1) > 0.02).float()  # (B, F, H, W)
    outline = None
    if edge:
        m = diff.flatten(0, 1)[:, None]  # (B*F, 1, H, W)
        grown, shrunk = F.max_pool2d(m, 3, 1, 1), -F.max_pool2d(-m, 3, 1, 1)
        outline = (grown - shrunk).view_as(diff)
    if norm:
        area = diff.sum((1, 2, 3)).clamp(min=1.0)  # (B,)
        diff = diff * (area.mean() / area).clamp(0.25, 8.0)[:, None, None, None]
    wt = 1 + w * diff
    if outline is not None:
        wt = wt + edge * outline
    return wt[:, None]


class DenoisedLatents:
    """The denoiser's prediction of clean latents (decoder_on_denoised): a clip's normalised latent noised to
    t ~ U(lo, hi), one unguided prediction under the clip's training caption, x0 = x_t - t v (the step a
    sampler ends with), returned in the encoder's raw scale."""

    def __init__(self, out: Path, vae: VideoAutoencoder, t_range: tuple[float, float], device: str, seed: int = 0):
        from pipelines.embedded.text import Tokenizer
        from pipelines.embedded.training.denoiser import build_denoiser

        path = out / "dit.pt"
        if not path.exists():
            raise SystemExit(f"decoder_on_denoised needs the denoiser at {path} (train --from-assets seeds it)")
        ck = torch.load(path, map_location=device, weights_only=False)
        self.model = build_denoiser(ck["dit_config"]).to(device).eval()
        self.model.load_state_dict(ck["ema"])
        self.model.requires_grad_(False)
        self.tok = Tokenizer(ck["vocab"], max_len=int(ck["dit_config"]["text_len"]))
        self.vae, self.t_range, self.step = vae, t_range, ck["step"]
        self.rng = random.Random(seed)  # the captions' templates

    @torch.no_grad()
    def __call__(self, z_raw: torch.Tensor, labels: list[dict], g: torch.Generator) -> torch.Tensor:
        shift = self.vae.shift[None, :, None, None, None]
        scale = self.vae.scale[None, :, None, None, None]
        z = (z_raw - shift) / scale
        lo, hi = self.t_range
        t = (lo + (hi - lo) * torch.rand(z.shape[0], generator=g)).to(z.device)  # the generator is the CPU's
        tt = t[:, None, None, None, None]
        xt = (1 - tt) * z + tt * torch.randn(z.shape, generator=g).to(z.device)
        ids = self.tok.batch([world.caption(lab, self.rng, "train") for lab in labels]).to(z.device)
        v = self.model(xt, t, self.model.encode_text(ids))
        return (xt - tt * v) * scale + shift


def train_vae(cfg: TrainConfig, out: Path, minutes: float, resume: bool, device: str,
              decoder_only: bool = False, new_decoder: tuple[tuple[int, ...], int] | None = None) -> None:
    """Train the autoencoder. decoder_only: keep the encoder (and so the cached latents and the
    denoiser) fixed and train only the decoder; resumes from vae.pt, whose config it keeps.
    new_decoder (widths, chunk width): if the checkpoint's decoder is not of that size, replace it by
    a new residual one of that size, trained from scratch; if it is, continue it."""
    ckpt_path = out / "vae.pt"
    ck = None
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
    elif decoder_only:
        raise SystemExit(f"--stage decoder needs a trained autoencoder at {ckpt_path}")
    fresh_decoder = False
    if decoder_only:  # the encoder and latent normalisation are the checkpoint's: take its autoencoder config
        was = TrainConfig.from_dict(ck["config"])
        cfg = replace(cfg, vae=replace(was.vae, latent_noise=cfg.vae.latent_noise))  # the noise is a loss setting
        # the loss and optimiser settings are this run's (--config, else the recipe): say where they differ
        old, new = was.to_dict(), cfg.to_dict()
        old["latent_noise"], new["latent_noise"] = was.vae.latent_noise, cfg.vae.latent_noise
        changed = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in
                   ("vae_lr", "vae_batch", "vae_object_weight", "vae_object_norm", "vae_edge_weight",
                    "decoder_on_denoised", "decoder_denoised_t", "latent_noise", "seed") if old.get(k) != new.get(k)]
        if changed:
            log("decoder settings differ from the checkpoint's (this run's --config or the recipe wins): "
                + ", ".join(changed))
        if new_decoder and (tuple(new_decoder[0]), new_decoder[1]) != (cfg.vae.dec_ch, cfg.vae.dec_t_ch):
            cfg = replace(cfg, vae=replace(cfg.vae, dec_ch=tuple(new_decoder[0]), dec_t_ch=new_decoder[1]))
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
            if (not decoder_only or ck.get("decoder_only")) and ck.get("opt") is not None:  # none when seeded from assets
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

    denoised = None
    if decoder_only and cfg.decoder_on_denoised > 0:
        denoised = DenoisedLatents(out, model, tuple(cfg.decoder_denoised_t), device, seed=cfg.seed + step)
        log(f"{cfg.decoder_on_denoised:.0%} of each batch decoded from the denoiser's predictions "
            f"(dit.pt step {denoised.step}, t in {tuple(cfg.decoder_denoised_t)})")
    t_start, t_ck, ema_loss, s0 = time.time(), time.time(), None, step
    t_end = t_start + minutes * 60
    t0 = t_start
    model.train()
    while time.time() < t_end:
        frac = (time.time() - t_start) / (minutes * 60)  # schedule by wall time: the budget is minutes
        peak = cfg.vae_lr * (0.33 if decoder_only and not fresh_decoder else 1.0)  # gentler when continuing
        lr = cosine_lr(peak, frac, min(1.0, (step - s0 + 1) / 50))
        for pg in opt.param_groups:
            pg["lr"] = lr
        b, x = render_clips(cfg.vae_batch, g)
        k = cfg.vae.time_down
        chunk = torch.randint(0, x.shape[1] // k, (x.shape[0],), generator=g)  # one chunk per clip
        full = x
        x = x[torch.arange(x.shape[0])[:, None], chunk[:, None] * k + torch.arange(k)[None]]  # (B, k, H, W, 3)
        wt = object_weight(b, x, cfg.vae_object_weight, cfg.vae_object_norm, cfg.vae_edge_weight).to(device)
        xm = frames_to_model(x).to(device)
        with torch.set_grad_enabled(not decoder_only):
            z = model.encoder(xm)
        zn = z + cfg.vae.latent_noise * z.detach().std() * torch.randn_like(z)
        # these clips' latents are the denoiser's prediction, made on the whole clip, without the latent noise
        # (the prediction's own error is the perturbation a sampled clip's latent carries)
        if denoised is not None:
            pick = torch.rand(x.shape[0], generator=g) < cfg.decoder_on_denoised
            if pick.any():
                rows = pick.nonzero()[:, 0]
                with torch.no_grad():
                    zc = model.encoder(frames_to_model(full[rows]).to(device))
                    zd = denoised(zc, [b.labels(int(i)) for i in rows], g)
                zn[rows] = zd[torch.arange(len(rows)), :, chunk[rows]][:, :, None]
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
    if decoder_only:  # the latent normalisation must not move: the denoiser was trained on it
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
