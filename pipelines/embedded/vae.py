"""Convolutional video autoencoder: (B, 3, 16, 64, 64) pixels in [-1, 1] <-> (B, 8, 4, 8, 8) latents.

Space is compressed per frame with strided 2D convolutions (8x); time (4x) by folding each chunk of
4 frames into channels at 8x8. Chunks are coded independently (all convolutions are 2D, cheap on a
CPU); the diffusion transformer is what makes chunks agree. A deterministic autoencoder: the decoder is trained on slightly noised latents so that it
tolerates the small errors of the diffusion model; `shift`/`scale` (per latent channel, measured
after training) map latents to roughly zero mean, unit variance for the diffusion model.

`dec_ch` swaps in a wider residual decoder (the v2 layout) on any encoder: trained decoder-only
(`train --stage decoder`, the shipped recipe's v1 encoder + residual decoder), it changes how
latents are drawn without touching the latents, so a denoiser trained on them stays valid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VAEConfig:
    latent_channels: int = 8  # channels per latent cell
    ch: tuple[int, int, int] = (16, 32, 48)  # per-frame 2D widths at 32, 16, 8 pixels
    t_ch: int = 96  # width of the chunk (frames folded into channels) part at 8x8
    time_down: int = 4  # frames per latent step (a "chunk"); chunks are coded independently
    latent_noise: float = 0.1  # std of noise added to latents before decoding, in training
    arch: str = "v1"  # "v1": one conv per scale, 8x; "v2": a full-resolution stem, residual blocks per scale
    dec_ch: tuple = ()  # if set: a residual (v2-style) decoder with these widths, whatever the encoder's arch
    dec_t_ch: int = 0  # its chunk width (0: t_ch)

    @property
    def space_down(self) -> int:
        """Spatial compression: v1 is 8x; v2 halves the size len(ch) - 1 times."""
        return 8 if self.arch == "v1" else 2 ** (len(self.ch) - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        d = dict(d)
        d["ch"] = tuple(d["ch"])
        d["dec_ch"] = tuple(d.get("dec_ch", ()))
        return cls(**d)


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        c1, c2, c3 = cfg.ch
        self.k = k = cfg.time_down
        self.spatial = nn.Sequential(
            nn.Conv2d(3, c1, 4, 2, 1), nn.SiLU(),  # 64 -> 32
            nn.Conv2d(c1, c2, 4, 2, 1), nn.SiLU(),  # 32 -> 16
            nn.Conv2d(c2, c3, 4, 2, 1), nn.SiLU(),  # 16 -> 8
        )
        self.chunk = nn.Sequential(
            nn.Conv2d(k * c3, cfg.t_ch, 3, 1, 1), nn.SiLU(),
            nn.Conv2d(cfg.t_ch, cfg.latent_channels, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, Fr, H, W = x.shape
        k = self.k
        h = x.transpose(1, 2).reshape(B * Fr, C, H, W)  # (B*F, 3, H, W)
        h = self.spatial(h)  # (B*F, c, H/s, W/s)
        h = h.reshape(B * Fr // k, k * h.shape[1], *h.shape[2:])  # (B*F/k, k*c, h, w): frames folded
        z = self.chunk(h)  # (B*F/k, z, h, w)
        return z.reshape(B, Fr // k, *z.shape[1:]).transpose(1, 2)  # (B, z, F/k, h, w)


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        c1, c2, c3 = cfg.ch
        self.k = k = cfg.time_down
        self.chunk = nn.Sequential(
            nn.Conv2d(cfg.latent_channels, cfg.t_ch, 3, 1, 1), nn.SiLU(),
            nn.Conv2d(cfg.t_ch, k * c3, 3, 1, 1), nn.SiLU(),
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(c3, 4 * c2, 3, 1, 1), nn.PixelShuffle(2), nn.SiLU(),  # 8 -> 16
            nn.Conv2d(c2, 4 * c1, 3, 1, 1), nn.PixelShuffle(2), nn.SiLU(),  # 16 -> 32
            nn.Conv2d(c1, 4 * 3, 3, 1, 1), nn.PixelShuffle(2),  # 32 -> 64
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = z.shape
        h = z.transpose(1, 2).reshape(B * T, C, H, W)  # (B*T, z, h, w)
        h = self.chunk(h)  # (B*T, k*c, h, w)
        h = h.reshape(B * T * self.k, h.shape[1] // self.k, H, W)  # (B*F, c, h, w): frames unfolded
        x = self.spatial(h)  # (B*F, 3, s*h, s*w)
        return x.reshape(B, T * self.k, *x.shape[1:]).transpose(1, 2)  # (B, 3, F, H, W)


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))); the second conv starts at zero so a new block is the identity."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder2(Encoder):
    """v2: a 3x3 stem at full resolution, then per halving a strided conv and a residual block
    (len(ch) - 1 halvings); the chunk's frames are folded into channels at the lowest resolution
    and mixed by a residual block before the latent."""

    def __init__(self, cfg: VAEConfig):
        nn.Module.__init__(self)  # same forward as Encoder (fold frames at the lowest resolution), other layers
        ch = cfg.ch
        self.k = k = cfg.time_down
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, 1, 1), nn.SiLU()]
        for cin, cout in zip(ch[:-1], ch[1:]):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), ResBlock(cout), nn.SiLU()]
        self.spatial = nn.Sequential(*layers)
        self.chunk = nn.Sequential(
            nn.Conv2d(k * ch[-1], cfg.t_ch, 3, 1, 1), ResBlock(cfg.t_ch), nn.SiLU(),
            nn.Conv2d(cfg.t_ch, cfg.latent_channels, 3, 1, 1),
        )

class Decoder2(Decoder):
    def __init__(self, cfg: VAEConfig):
        nn.Module.__init__(self)  # same forward as Decoder, other layers
        ch = cfg.ch
        self.k = k = cfg.time_down
        self.chunk = nn.Sequential(
            nn.Conv2d(cfg.latent_channels, cfg.t_ch, 3, 1, 1), ResBlock(cfg.t_ch), nn.SiLU(),
            nn.Conv2d(cfg.t_ch, k * ch[-1], 3, 1, 1),
        )
        layers: list[nn.Module] = []
        for cin, cout in zip(ch[::-1][:-1], ch[::-1][1:]):  # e.g. 64 -> 32 -> 16 channels, doubling the size
            layers += [ResBlock(cin), nn.SiLU(), nn.Conv2d(cin, 4 * cout, 3, 1, 1), nn.PixelShuffle(2)]
        layers += [nn.SiLU(), nn.Conv2d(ch[0], 3, 3, 1, 1)]
        self.spatial = nn.Sequential(*layers)

class VideoAutoencoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        v2 = cfg.arch == "v2"
        self.encoder = Encoder2(cfg) if v2 else Encoder(cfg)
        if cfg.dec_ch:  # a wider decoder on a given encoder (decoder-only training keeps the latents)
            if 2 ** (len(cfg.dec_ch) - 1) != cfg.space_down:
                raise ValueError(f"dec_ch {cfg.dec_ch} doubles the size {len(cfg.dec_ch) - 1} times; the encoder "
                                 f"compresses space {cfg.space_down}x")
            self.decoder = Decoder2(replace(cfg, ch=cfg.dec_ch, t_ch=cfg.dec_t_ch or cfg.t_ch))
        else:
            self.decoder = Decoder2(cfg) if v2 else Decoder(cfg)
        # latent normalisation, measured after training (training/autoencoder.py); buffers so they ship with weights
        self.register_buffer("shift", torch.zeros(cfg.latent_channels))
        self.register_buffer("scale", torch.ones(cfg.latent_channels))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, F, H, W) in [-1, 1] -> normalised latents (B, z, F/4, H/8, W/8)."""
        z = self.encoder(x)
        return (z - self.shift[None, :, None, None, None]) / self.scale[None, :, None, None, None]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> pixels (B, 3, F, H, W), roughly in [-1, 1]."""
        z = z * self.scale[None, :, None, None, None] + self.shift[None, :, None, None, None]
        return self.decoder(z)

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        z = self.encoder(x)
        zn = z + self.cfg.latent_noise * z.detach().std() * torch.randn_like(z)
        rec = self.decoder(zn)
        mse = F.mse_loss(rec, x)
        l1 = (rec - x).abs().mean()
        reg = 1e-4 * z.pow(2).mean()  # keeps the latent scale from drifting
        return mse + 0.5 * l1 + reg, {"mse": mse.item(), "zstd": z.detach().std().item()}


def frames_to_model(x_uint8_or_float: torch.Tensor) -> torch.Tensor:
    """(B, F, H, W, 3) in [0,1] float or uint8 -> (B, 3, F, H, W) in [-1, 1]."""
    x = x_uint8_or_float
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    return x.permute(0, 4, 1, 2, 3) * 2 - 1


def model_to_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, F, H, W) in [-1, 1] -> (B, F, H, W, 3) uint8."""
    x = ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1)
