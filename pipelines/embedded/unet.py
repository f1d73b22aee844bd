"""Factorised space-time U-Net over the autoencoder's latents, with the same interface as `dit.DiT`.

An alternative denoiser (config {"arch": "unet"}); the shipped one is the DiT. Its convolutions share
every filter across all latent cells (translation equivariance at the latent's full resolution).
What it was tried for and how it scored: MODEL_CARD.md, "Experiments".

Layout (latent (B, C, T, 16, 16); levels 16x16 -> 8x8 -> 4x4, time kept at T):
- residual blocks are factorised: a spatial 1x3x3 conv, FiLM from the conditioning vector (timestep +
  pooled prompt + "image given" flag), then a temporal 3x1x1 conv;
- at 8x8: cross-attention to the prompt tokens; at 4x4: DiT blocks (adaLN-Zero self-attention over all
  T*4*4 spacetime tokens with fixed 3D sin-cos positions, cross-attention, MLP);
- i2v: the first frame's still-chunk latent is concatenated on the channels, as in the DiT.
Output: the flow-matching velocity, same shape as the input latent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipelines.embedded.dit import Attention, Conditioned, DiT, DiTBlock, DiTConfig


@dataclass
class UNetConfig:
    arch: str = "unet"  # config.json tells the loader which denoiser class to build
    latent_channels: int = 8
    latent_frames: int = 4
    latent_size: int = 16
    ch: tuple = (32, 64, 128)  # channels at 16x16, 8x8, 4x4 latent cells; ch[-1] is also the conditioning width
    mid_depth: int = 2  # DiT blocks at the lowest resolution
    depth_8: int = 0  # DiT blocks (spacetime self-attention over T*8*8 tokens) after the 8x8 down block
    heads: int = 4
    vocab_size: int = 256
    text_width: int = 128
    text_depth: int = 2
    text_len: int = 32
    image_cond: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ch"] = list(self.ch)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        d = dict(d)
        d["ch"] = tuple(d.get("ch", cls.ch))
        return cls(**d)


def groups(c: int) -> int:
    return 8 if c % 8 == 0 else 1


def sincos_3d(T: int, h: int, w: int, dim: int) -> torch.Tensor:
    """(T*h*w, dim) fixed position embedding: a third of the channels per axis (MAE/DiT style)."""
    d = dim // 6 * 2  # even channels per axis
    out = []
    for n, idx in ((T, 0), (h, 1), (w, 2)):
        grid = torch.stack(torch.meshgrid(torch.arange(T), torch.arange(h), torch.arange(w), indexing="ij"), -1)
        pos = grid[..., idx].reshape(-1).float()
        freqs = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float32) / (d // 2))
        a = pos[:, None] * freqs[None]
        out += [torch.sin(a), torch.cos(a)]
    emb = torch.cat(out, -1)
    return F.pad(emb, (0, dim - emb.shape[1]))


class ResBlock(nn.Module):
    """GN -> SiLU -> spatial conv -> GN + FiLM(c) -> SiLU -> temporal conv, plus the skip."""

    def __init__(self, cin: int, cout: int, cdim: int):
        super().__init__()
        self.n1, self.n2 = nn.GroupNorm(groups(cin), cin), nn.GroupNorm(groups(cout), cout)
        self.conv_s = nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1))
        self.film = nn.Linear(cdim, 2 * cout)
        self.conv_t = nn.Conv3d(cout, cout, (3, 1, 1), padding=(1, 0, 0))
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, c):
        h = self.conv_s(F.silu(self.n1(x)))
        scale, shift = self.film(F.silu(c)).chunk(2, dim=-1)
        h = self.n2(h) * (1 + scale[:, :, None, None, None]) + shift[:, :, None, None, None]
        return self.skip(x) + self.conv_t(F.silu(h))


class CrossAttn(nn.Module):
    """Residual cross-attention from every latent cell to the prompt tokens."""

    def __init__(self, dim: int, heads: int, ctx_dim: int):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, ctx_dim=ctx_dim)

    def forward(self, x, ctx, ctx_mask):
        B, C, T, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        t = t + self.attn(self.ln(t), ctx, ctx_mask)
        return t.transpose(1, 2).reshape(B, C, T, h, w)


class UNet(Conditioned):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        C, (c0, c1, c2), D = cfg.latent_channels, cfg.ch, cfg.ch[-1]
        in_ch = 2 * C if cfg.image_cond else C
        self.init_conditioning(cfg, D)
        self.conv_in = nn.Conv3d(in_ch, c0, (1, 3, 3), padding=(0, 1, 1))
        self.res0 = ResBlock(c0, c0, D)
        self.down0 = nn.Conv3d(c0, c1, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.res1 = ResBlock(c1, c1, D)
        self.xattn1 = CrossAttn(c1, cfg.heads, cfg.text_width)
        if cfg.depth_8:  # optional global spacetime attention over the T*8*8 cells
            self.c8 = nn.Linear(D, c1)
            b8 = DiTConfig(width=c1, heads=cfg.heads, text_width=cfg.text_width, mlp_ratio=2.0)
            self.blocks8 = nn.ModuleList(DiTBlock(b8) for _ in range(cfg.depth_8))
            s8 = cfg.latent_size // 2
            self.register_buffer("pos8", sincos_3d(cfg.latent_frames, s8, s8, c1)[None], persistent=False)
        self.down1 = nn.Conv3d(c1, c2, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.res2a = ResBlock(c2, c2, D)
        bcfg = DiTConfig(width=c2, heads=cfg.heads, text_width=cfg.text_width, mlp_ratio=2.0)
        self.mid = nn.ModuleList(DiTBlock(bcfg) for _ in range(cfg.mid_depth))
        s = cfg.latent_size // 4
        self.register_buffer("pos", sincos_3d(cfg.latent_frames, s, s, c2)[None], persistent=False)
        self.res2b = ResBlock(c2, c2, D)
        self.up1 = nn.Conv3d(c2, c1, 1)  # 1x1 at low resolution, then nearest x2: the next conv smooths
        self.res1u = ResBlock(2 * c1, c1, D)
        self.xattn1u = CrossAttn(c1, cfg.heads, cfg.text_width)
        self.up0 = nn.Conv3d(c1, c0, 1)
        self.res0u = ResBlock(2 * c0, c0, D)
        self.n_out = nn.GroupNorm(groups(c0), c0)
        self.conv_out = nn.Conv3d(c0, C, (1, 3, 3), padding=(0, 1, 1))
        self.init_weights()

    def init_weights(self) -> None:
        self.init_common_weights()
        for m in self.modules():  # every residual branch starts at zero: the net starts as a skip path
            if isinstance(m, ResBlock):
                nn.init.zeros_(m.conv_t.weight)
                nn.init.zeros_(m.conv_t.bias)
                nn.init.zeros_(m.film.weight)
                nn.init.zeros_(m.film.bias)
            elif isinstance(m, DiTBlock):  # its cross-attention is ungated: zero its output too
                nn.init.zeros_(m.ada[-1].weight)
                nn.init.zeros_(m.ada[-1].bias)
                nn.init.zeros_(m.cross.proj.weight)
            elif isinstance(m, CrossAttn):
                nn.init.zeros_(m.attn.proj.weight)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, t, text, image=None, has_image=None):
        """Same contract as `DiT.forward`: x (B, C, T, h, w), t (B,) in [0, 1], text = encode_text(ids)."""
        ctx, ctx_mask, pooled = text
        x, c = self.condition(x, t, pooled, image, has_image)  # (B, Cin, T, h, w), (B, D)
        s0 = self.res0(self.conv_in(x), c)
        s1 = self.xattn1(self.res1(self.down0(s0), c), ctx, ctx_mask)
        if self.cfg.depth_8:
            B1, C1, T1, h1, w1 = s1.shape
            tok, c8 = s1.flatten(2).transpose(1, 2) + self.pos8, self.c8(c)
            for blk in self.blocks8:
                tok = blk(tok, c8, ctx, ctx_mask)
            # positions go in and come out again: the blocks add only their residual updates, so zero-
            # initialised blocks leave a trained U-Net's function unchanged (warm start)
            s1 = (tok - self.pos8).transpose(1, 2).reshape(B1, C1, T1, h1, w1)
        m = self.res2a(self.down1(s1), c)
        Bm, Cm, Tm, hm, wm = m.shape
        tok = m.flatten(2).transpose(1, 2) + self.pos  # (B, T*4*4, c2)
        for blk in self.mid:
            tok = blk(tok, c, ctx, ctx_mask)
        m = self.res2b(tok.transpose(1, 2).reshape(Bm, Cm, Tm, hm, wm), c)
        u = F.interpolate(self.up1(m), scale_factor=(1, 2, 2), mode="nearest")
        u = self.xattn1u(self.res1u(torch.cat([u, s1], 1), c), ctx, ctx_mask)
        u = F.interpolate(self.up0(u), scale_factor=(1, 2, 2), mode="nearest")
        u = self.res0u(torch.cat([u, s0], 1), c)
        return self.conv_out(F.silu(self.n_out(u)))


def denoiser_config(d: dict) -> "UNetConfig | DiTConfig":
    """The config a dict describes: {"arch": "unet", ...}, or a DiT's ({"arch": "dit", ...} or, as
    config.json stores it, no "arch" key)."""
    arch = d.get("arch", "dit")
    if arch == "unet":
        return UNetConfig.from_dict(d)
    if arch == "dit":
        return DiTConfig.from_dict({k: v for k, v in d.items() if k != "arch"})
    raise ValueError(f"denoiser arch {arch!r}: expected 'dit' or 'unet'")


def build_denoiser(d: dict) -> nn.Module:
    """The denoiser a config dict describes (see `denoiser_config`)."""
    cfg = denoiser_config(d)
    return UNet(cfg) if isinstance(cfg, UNetConfig) else DiT(cfg)
