"""Stages cache (encode the training clips once) and dit (train the denoiser on the cached latents)."""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import torch

from pipelines.embedded import world
from pipelines.embedded.diffusion import fm_loss
from pipelines.embedded.text import Tokenizer
from pipelines.embedded.training.common import cosine_lr, load_vae, log, render_clips, save_atomic
from pipelines.embedded.training.config import TrainConfig
from pipelines.embedded.unet import build_denoiser, denoiser_config
from pipelines.embedded.vae import VAEConfig, frames_to_model


def still_chunk(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, 3, F, H, W) model-space clips -> (B, 3, k, H, W): the first frame repeated k times."""
    return x[:, :, :1].expand(-1, -1, k, -1, -1)


@torch.no_grad()
def build_cache(cfg: TrainConfig, out: Path, device: str, batch: int = 64) -> None:
    """Render and encode cfg.cache_clips clips once: latents, first-frame latents, labels, and for each
    clip an edit partner (world.variant: another object colour, sometimes another background or shape)."""
    vae = load_vae(out, device)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    gv = torch.Generator().manual_seed(cfg.seed + 2)  # its own stream: the clips stay those of older caches
    N, C, k = cfg.cache_clips, vae.cfg.latent_channels, vae.cfg.time_down
    lat = img = alt = None
    labels = torch.empty(N, 4, dtype=torch.int8)
    alt_labels = torch.empty(N, 4, dtype=torch.int8)
    t0 = time.time()
    for i in range(0, N, batch):
        n = min(batch, N - i)
        b, x = render_clips(n, g)
        xm = frames_to_model(x).to(device)
        z = vae.encode(xm)  # (n, C, T, h, w)
        zi = vae.encode(still_chunk(xm, k))[:, :, 0]  # (n, C, h, w)
        bv = world.variant(b, gv, p_bg=0.2, p_shape=0.2) if cfg.edit_pairs == "colour" else world.edit_variant(b, gv)
        zv = vae.encode(frames_to_model(world.render(bv)).to(device))
        if lat is None:
            lat = torch.empty(N, *z.shape[1:], dtype=torch.float16)
            alt = torch.empty(N, *z.shape[1:], dtype=torch.float16)
            img = torch.empty(N, *zi.shape[1:], dtype=torch.float16)
        lat[i : i + n] = z.cpu().half()
        alt[i : i + n] = zv.cpu().half()
        img[i : i + n] = zi.cpu().half()
        labels[i : i + n] = b.codes()
        alt_labels[i : i + n] = bv.codes()
        if (i // batch) % 50 == 0:
            log(f"cache {i + n}/{N} clips, {(i + n) / (time.time() - t0):.0f} clips/s")
    save_atomic({"latents": lat, "image": img, "labels": labels, "edit_latents": alt, "edit_labels": alt_labels,
                 "latent_channels": C}, out / "latents.pt")
    log(f"cache done: {N} clips and their edit partners, latent std {lat.float().std():.3f}")


@torch.no_grad()
def background_latents(vae) -> torch.Tensor:
    """(backgrounds, C, T, h, w): the normalised latent of a clip of each world background alone, in
    world.BACKGROUNDS order (a cache label's bg code indexes it)."""
    wcfg = world.WorldConfig()
    bgs = torch.tensor(list(world.BACKGROUNDS.values()), dtype=torch.uint8)
    plain = bgs[:, None, None, None, :].expand(-1, wcfg.frames, wcfg.height, wcfg.width, 3)
    return vae.encode(frames_to_model(plain.contiguous()).to(next(vae.parameters()).device)).float()


def object_cells(x0: torch.Tensor, bg_latents: torch.Tensor, bg: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, 1, T, h, w) 1.0 on the latent cells of x0 that differ from the latent of the clip's plain background
    (bg: (B,) codes) by more than threshold on average over channels: the object and the cells it bleeds into."""
    return ((x0 - bg_latents[bg.long()]).abs().mean(1, keepdim=True) > threshold).float()


def denoiser_dict(cfg: TrainConfig, vae: VAEConfig, tok: Tokenizer) -> dict:
    """The denoiser's config dict (as config.json stores it): cfg.denoiser's fields, filled in from the
    autoencoder (latent channels and grid) and the tokenizer (vocabulary size)."""
    d = {"latent_channels": vae.latent_channels, "latent_size": world.WorldConfig().width // vae.space_down,
         "vocab_size": max(256, len(tok)), **cfg.denoiser}
    return denoiser_config(d).to_dict()


def label_dict(codes) -> dict[str, str]:
    """A cache label row (bg, obj, shape, motion indices) -> the labels world.caption takes."""
    bg, obj, shape, motion = (int(v) for v in codes)
    return {"bg": world.BG_NAMES[bg], "obj": world.OBJ_NAMES[obj], "shape": world.SHAPES[shape],
            "motion": world.MOTIONS[motion]}


def captions_for(labels: torch.Tensor, rng: random.Random, p_uncond: float, image: torch.Tensor | None = None,
                 p_image_partial: float = 0.0, src_labels: torch.Tensor | None = None,
                 edit: torch.Tensor | None = None, p_edit_change: float = 0.0) -> list[str]:
    """One training caption per label row ("" with probability p_uncond). Rows with an i2v image
    (image[i]) get, with probability p_image_partial, a caption of the motion and at most part of the
    look (world.i2v_caption); edit rows (edit[i]), with probability p_edit_change, one that names only
    what differs from their source's labels (src_labels[i], world.edit_caption). With both at 0 the
    random stream is the shipped recipe's."""
    out = []
    for i, row in enumerate(labels.tolist()):
        if rng.random() < p_uncond:
            out.append("")
            continue
        lab = label_dict(row)
        if p_edit_change > 0 and edit is not None and bool(edit[i]) and rng.random() < p_edit_change:
            out.append(world.edit_caption(label_dict(src_labels[i].tolist()), lab, rng, "train"))
        elif p_image_partial > 0 and image is not None and bool(image[i]) and rng.random() < p_image_partial:
            out.append(world.i2v_caption(lab, rng, "train"))
        else:
            out.append(world.caption(lab, rng, "train"))
    return out


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)


def train_denoiser(cfg: TrainConfig, out: Path, minutes: float, resume: bool, device: str) -> None:
    """Train the denoiser (and its text encoder) on the cache in `out`; checkpoint dit.pt, with EMA."""
    ckpt_path = out / "dit.pt"
    data = torch.load(out / "latents.pt", weights_only=False)
    lat, img, labels = data["latents"], data["image"], data["labels"]
    N = lat.shape[0]
    if cfg.p_edit > 0 and "edit_latents" not in data:
        raise SystemExit(f"p_edit > 0 needs edit pairs in {out / 'latents.pt'}: rebuild it with --stage cache")
    step = 0
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        dcfg = ck["dit_config"]
        tok = Tokenizer.extending(ck["vocab"])  # its ids keep their meaning; newer grammar words are appended
    else:
        tok = Tokenizer()
        ck, dcfg = None, denoiser_dict(cfg, cfg.vae, tok)
    if len(tok) > dcfg["vocab_size"]:
        raise SystemExit(f"the grammar has {len(tok)} words but the denoiser's embedding {dcfg['vocab_size']}")
    model = build_denoiser(dcfg).to(device)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.denoiser_lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    if ck is not None:
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        if ck.get("opt") is not None:  # None when seeded from the shipped weights (--from-assets)
            opt.load_state_dict(ck["opt"])
        step = ck["step"]
        log(f"resumed the denoiser from step {step}" + ("" if ck.get("opt") is not None else " (new optimizer)"))
    # warm-up from step 0, or from here when the optimizer is new (seeded from the shipped weights: Adam's
    # first steps, without moment estimates, would otherwise move the trained weights at the full LR)
    warm_from = step if ck is not None and ck.get("opt") is None else 0
    for p in ema.parameters():
        p.requires_grad_(False)
    g = torch.Generator(device=device).manual_seed(cfg.seed + 7 + step)
    gi = torch.Generator().manual_seed(cfg.seed + 11 + step)
    rng = random.Random(cfg.seed + 13 + step)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"denoiser {dcfg.get('arch', 'dit')}: {n_params / 1e6:.2f}M params, batch {cfg.denoiser_batch}, "
        f"{N} cached clips, device {device}")

    def save():  # checkpoint keys ("dit_config") are the run directory's format, kept for resuming
        save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                     "dit_config": dcfg, "config": cfg.to_dict(), "vocab": tok.vocab}, ckpt_path)

    bg_latents = None
    if cfg.denoiser_object_weight > 0:
        bg_latents = background_latents(load_vae(out, device))
        log(f"object cells weighted {1 + cfg.denoiser_object_weight:g}x (threshold {cfg.denoiser_object_threshold})")
    B = cfg.denoiser_batch
    t_end, t_ck, t0, s0, ema_loss = time.time() + minutes * 60, time.time(), time.time(), step, None
    model.train()
    while time.time() < t_end:
        idx = torch.randint(0, N, (B,), generator=gi)
        a = lat[idx].float()
        x0 = a.to(device)
        image = img[idx].float().to(device)
        has_image = torch.rand(B, generator=gi) < cfg.p_image
        lab, src, edit, src_lab = labels[idx], None, None, None
        if cfg.p_edit > 0:  # SDEdit pairs: start from one clip of a pair, reach the other under its caption
            edit = (torch.rand(B, generator=gi) < cfg.p_edit) & ~has_image
            swap = edit & (torch.rand(B, generator=gi) < 0.5)
            b = data["edit_latents"][idx].float()
            x0 = torch.where(swap[:, None, None, None, None], b, a).to(device)
            src = torch.where((edit & ~swap)[:, None, None, None, None], b, a).to(device)
            src_lab = torch.where(swap[:, None], lab, data["edit_labels"][idx])
            lab = torch.where(swap[:, None], data["edit_labels"][idx], lab)
        captions = captions_for(lab, rng, cfg.p_uncond, has_image, cfg.p_image_partial, src_lab, edit,
                                cfg.p_edit_change)
        if edit is not None:  # no edit without a caption: unconditioned, the input's own colours are right
            edit = (edit & torch.tensor([c != "" for c in captions])).to(device)
        has_image = has_image.to(device)
        ids = tok.batch(captions).to(device)
        lr = cosine_lr(cfg.denoiser_lr, (time.time() - t0) / (minutes * 60),
                       min(1.0, (step - warm_from + 1) / cfg.denoiser_warmup))
        for pg in opt.param_groups:
            pg["lr"] = lr
        weight = None
        if bg_latents is not None:
            weight = 1 + cfg.denoiser_object_weight * object_cells(x0, bg_latents, lab[:, 0].to(device),
                                                                    cfg.denoiser_object_threshold)
        text = model.encode_text(ids)
        loss = fm_loss(lambda xt, t: model(xt, t, text, image, has_image), x0, g, cfg.t_shift, src, edit,
                       tuple(cfg.edit_t), cfg.p_t_uniform, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if step % cfg.log_every == 0:
            rate = (step - s0) * B / (time.time() - t0)
            log(f"denoiser step {step} loss {ema_loss:.4f} lr {opt.param_groups[0]['lr']:.2e} {rate:.0f} clips/s")
        if time.time() - t_ck > cfg.checkpoint_every_s:
            save()
            t_ck = time.time()
    save()
    log(f"denoiser stopped at step {step}, loss {ema_loss}")


def seed_from_assets(cfg: TrainConfig, assets: Path, out: Path) -> None:
    """Start a run directory from shipped weights (assets/embedded): vae.pt (the autoencoder, so that
    --stage cache works) and dit.pt (the denoiser as model and EMA, its step count, vocabulary and
    config; no optimizer state), so that --stage dit --resume fine-tunes them. Refuses to overwrite a
    run's dit.pt."""
    import json

    from safetensors.torch import load_file

    from pipelines.embedded.weights import CONFIG_FILE, DENOISER_KEY, WEIGHTS_FILE, split_state

    if (out / "dit.pt").exists():
        raise SystemExit(f"{out / 'dit.pt'} exists: continue it with --resume (without --from-assets), "
                         "or choose another --out")
    meta = json.loads((assets / CONFIG_FILE).read_text())
    vae_state, den_state = split_state(load_file(str(assets / WEIGHTS_FILE)))
    vae_cfg = VAEConfig.from_dict(meta["vae"])
    steps = meta.get("training", {})
    base = cfg.to_dict()
    save_atomic({"model": {k: v.float() for k, v in vae_state.items()}, "step": steps.get("vae_steps", 0),
                 "config": {**base, "vae": vae_cfg.to_dict()}, "decoder_only": True, "from_assets": str(assets)},
                out / "vae.pt")
    den = {k: v.float() for k, v in den_state.items()}
    save_atomic({"model": den, "ema": copy.deepcopy(den), "opt": None, "step": steps.get("dit_steps", 0),
                 "dit_config": meta[DENOISER_KEY], "config": base, "vocab": meta["vocab"],
                 "from_assets": str(assets)}, out / "dit.pt")
    log(f"seeded {out} from {assets} (weights version {meta.get('version')}, denoiser step "
        f"{steps.get('dit_steps', 0)}, {len(meta['vocab'])} words)")
