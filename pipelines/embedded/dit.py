"""Diffusion transformer over spacetime latent patches (DiT with adaLN-Zero + cross-attention to text).

Input: noisy latents (B, C, T, h, w) = (B, 8, 4, 8, 8), optionally concatenated with the latent of
a still clip made from the first frame (i2v). Patches of 1x2x2 latent cells give T*(h/2)*(w/2) = 64
tokens. Conditioning: timestep + pooled prompt + an "image given" flag through adaLN-Zero; prompt
tokens through cross-attention in every block. Output: the flow-matching velocity, same shape as input.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class DiTConfig:
    latent_channels: int = 8  # C of the autoencoder's latents
    latent_frames: int = 4  # T
    latent_size: int = 8  # h = w
    patch: int = 2  # spatial patch (temporal patch is 1)
    width: int = 128  # transformer width
    depth: int = 6  # blocks
    heads: int = 4
    mlp_ratio: float = 2.0  # small MLP: on a CPU the matmuls are the whole cost
    vocab_size: int = 256  # >= len(Tokenizer()); unused rows stay untrained
    text_width: int = 128
    text_depth: int = 2  # a small transformer over the prompt tokens, trained from scratch
    text_len: int = 32  # max prompt tokens
    image_cond: bool = True  # extra input channels: latent of the first frame (i2v)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiTConfig":
        return cls(**d)

    @property
    def tokens(self) -> int:
        return self.latent_frames * (self.latent_size // self.patch) ** 2


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention; self-attention when `ctx` is None, else cross-attention to `ctx`."""

    def __init__(self, dim: int, heads: int, ctx_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(ctx_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        B, N, D = x.shape
        ctx = x if ctx is None else ctx
        H = self.heads
        q = self.q(x).view(B, N, H, D // H).transpose(1, 2)  # (B, H, N, d)
        k, v = self.kv(ctx).view(B, ctx.shape[1], 2, H, D // H).permute(2, 0, 3, 1, 4)  # 2 x (B, H, L, d)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, L) True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(y.transpose(1, 2).reshape(B, N, D))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, int(dim * ratio))
        self.fc2 = nn.Linear(int(dim * ratio), dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class TextBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = MLP(dim, 2.0)

    def forward(self, x, mask):
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.mlp(self.ln2(x))


class TextEncoder(nn.Module):
    """Token ids (B, L) -> token features (B, L, text_width) and a pooled vector (B, text_width)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.pos = nn.Parameter(torch.zeros(1, cfg.text_len, cfg.text_width))
        self.blocks = nn.ModuleList(TextBlock(cfg.text_width, 4) for _ in range(cfg.text_depth))
        self.ln = nn.LayerNorm(cfg.text_width)

    def forward(self, ids: torch.Tensor):
        mask = ids != 0  # (B, L) True for real tokens; <bos> is always real
        x = self.tok(ids) + self.pos[:, : ids.shape[1]]
        for blk in self.blocks:
            x = blk(x, mask)
        x = self.ln(x)
        m = mask[..., None].float()
        pooled = (x * m).sum(1) / m.sum(1)  # (B, text_width) mean over real tokens
        return x, mask, pooled


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = (t.float() * 1000)[:, None] * freqs[None]  # t in [0, 1]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], -1))


class Conditioned(nn.Module):
    """What both denoisers (this DiT and `unet.UNet`) share: the prompt encoder, the conditioning
    vector c = timestep + pooled prompt + "image given" flag, and the i2v first-frame channels.
    The attribute names are part of the weights' format (t_embed.*, text.*, text_pool.*, image_flag.*)."""

    def init_conditioning(self, cfg, D: int) -> None:
        self.t_embed = TimestepEmbedder(D)
        self.text = TextEncoder(cfg)
        self.text_pool = nn.Linear(cfg.text_width, D)
        self.image_flag = nn.Embedding(2, D)

    def init_common_weights(self, *normal: torch.Tensor) -> None:
        """Xavier linears, N(0, 0.02) embeddings, `normal` params and text positions; no image flag."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for p in (*normal, self.text.pos):
            nn.init.normal_(p, std=0.02)
        nn.init.zeros_(self.image_flag.weight)

    def encode_text(self, ids: torch.Tensor):
        return self.text(ids)

    def condition(self, x, t, pooled, image=None, has_image=None):
        """-> (x with the first-frame latent concatenated on the channels when cfg.image_cond, c (B, D)).

        image: (B, C, h, w) latent of the first frame as a still chunk, or None; has_image (B,) bool
        says which rows carry one (default: all rows when image is given)."""
        B, C, T, h, w = x.shape
        if image is None:
            image = torch.zeros(B, C, h, w, device=x.device, dtype=x.dtype)
            has_image = torch.zeros(B, dtype=torch.bool, device=x.device)
        elif has_image is None:
            has_image = torch.ones(B, dtype=torch.bool, device=x.device)
        image = image * has_image[:, None, None, None].to(image.dtype)
        if self.cfg.image_cond:
            x = torch.cat([x, image[:, :, None].expand(B, C, T, h, w)], 1)  # (B, 2C, T, h, w)
        return x, self.t_embed(t) + self.text_pool(pooled) + self.image_flag(has_image.long())


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        D = cfg.width
        self.ln1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(D, cfg.heads)
        self.ln_x = nn.LayerNorm(D)
        self.cross = Attention(D, cfg.heads, ctx_dim=cfg.text_width)
        self.ln2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(D, cfg.mlp_ratio)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x, c, ctx, ctx_mask):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, dim=-1)  # 6 x (B, D)
        x = x + g1[:, None] * self.attn(modulate(self.ln1(x), sh1, sc1))
        x = x + self.cross(self.ln_x(x), ctx, ctx_mask)
        return x + g2[:, None] * self.mlp(modulate(self.ln2(x), sh2, sc2))


class DiT(Conditioned):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        C, p, D = cfg.latent_channels, cfg.patch, cfg.width
        in_ch = C * 2 if cfg.image_cond else C
        self.patch_in = nn.Linear(in_ch * p * p, D)
        self.pos = nn.Parameter(torch.zeros(1, cfg.tokens, D))
        self.init_conditioning(cfg, D)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.ln_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.patch_out = nn.Linear(D, C * p * p)
        self.init_weights()

    def init_weights(self) -> None:
        """All initialisation in one place (DiT recipe: xavier linears, zeroed adaLN and output)."""
        self.init_common_weights(self.pos)
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
        nn.init.zeros_(self.ada_out[-1].weight)
        nn.init.zeros_(self.ada_out[-1].bias)
        nn.init.zeros_(self.patch_out.weight)
        nn.init.zeros_(self.patch_out.bias)

    def forward(self, x, t, text, image=None, has_image=None):
        """x (B, C, T, h, w), t (B,) in [0, 1], text = encode_text(ids) output; image, has_image: see
        `Conditioned.condition`."""
        p = self.cfg.patch
        B, C, T, h, w = x.shape
        ctx, ctx_mask, pooled = text
        x, c = self.condition(x, t, pooled, image, has_image)  # (B, Cin, T, h, w), (B, D)
        Cin = x.shape[1]
        x = x.reshape(B, Cin, T, h // p, p, w // p, p)
        x = x.permute(0, 2, 3, 5, 1, 4, 6).reshape(B, T * (h // p) * (w // p), Cin * p * p)  # (B, N, Cin*p*p)
        x = self.patch_in(x) + self.pos
        for blk in self.blocks:
            x = blk(x, c, ctx, ctx_mask)
        sh, sc = self.ada_out(c).chunk(2, dim=-1)
        x = self.patch_out(modulate(self.ln_out(x), sh, sc))  # (B, N, C*p*p)
        x = x.reshape(B, T, h // p, w // p, C, p, p)
        return x.permute(0, 4, 1, 2, 5, 3, 6).reshape(B, C, T, h, w)  # (B, C, T, h, w)
