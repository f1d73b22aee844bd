"""RIFE 4.6's IFNet, inference only: the intermediate flow network of RIFE (Huang et al., "Real-Time
Intermediate Flow Estimation for Video Frame Interpolation", ECCV 2022) in the state-dict layout of the
weights Practical-RIFE published as version 4.6 (`train_log/flownet.pkl`).

Given frames I0, I1 (B, 3, H, W) in [0, 1] and a time t per batch item, four IFBlocks estimate, coarse to
fine (at 1/8, 1/4, 1/2 and 1 of the frame), the flow from the frame at t back to each input (4 channels:
F_t->0 as (dx, dy), then F_t->1) and a blending logit m. The first block sees (I0, I1, t); every later one
sees both inputs backward-warped by the flow so far, t and m (plus the flow itself), and adds a residual to
the flow and to m. The frame at t:

    sigmoid(m) * warp(I0, F_t->0) + (1 - sigmoid(m)) * warp(I1, F_t->1)

Layer names are those of the published file (`block{i}.conv0`, `.convblock`, `.lastconv`), so its weights
load with strict key and shape matching. Our own code, written from the architecture: no training teacher, no
ensembling, no global grid cache.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pipelines.rife import PAD_MULTIPLE, RIFE_VERSION, RifeWeightsError


@dataclass(frozen=True)
class IFNetConfig:
    widths: tuple[int, ...] = (192, 128, 96, 64)  # channels of each IFBlock, coarse to fine
    scales: tuple[int, ...] = (8, 4, 2, 1)  # block i works at 1 / scales[i] of the (padded) frame
    res_convs: int = 8  # residual 3x3 convolutions per block
    slope: float = 0.2  # of every LeakyReLU
    first_in: int = 3 + 3 + 1  # I0, I1, t
    later_in: int = 3 + 3 + 1 + 1 + 4  # warped I0, warped I1, t, mask logit, flow so far
    out: int = 6  # per block: 4 flow + 1 mask logit + 1 channel 4.6 does not use


def conv(cin: int, cout: int, stride: int, slope: float) -> nn.Sequential:  # keys .0.weight, .0.bias
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(slope, inplace=True))


class ResConv(nn.Module):
    """x + beta * conv(x), then LeakyReLU; beta is a learned per-channel scale."""

    def __init__(self, c: int, slope: float):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))
        self.relu = nn.LeakyReLU(slope, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    def __init__(self, cin: int, c: int, cfg: IFNetConfig):
        super().__init__()
        self.conv0 = nn.Sequential(conv(cin, c // 2, 2, cfg.slope), conv(c // 2, c, 2, cfg.slope))  # 1/4 size
        self.convblock = nn.Sequential(*[ResConv(c, cfg.slope) for _ in range(cfg.res_convs)])
        # x2 by the transposed conv, x2 by the pixel shuffle (4 * out channels -> out): back to the input's size
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * cfg.out, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) at full size -> (flow (B, 4, H, W) in full-size pixels, mask logit (B, 1, H, W))."""
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:  # in pixels of the smaller grid
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))  # (B, out, H / scale, W / scale)
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: out(p) = image(p + flow(p)), bilinear, border pixels repeated. flow (B, 2, H, W) in pixels."""
    b, _, h, w = image.shape
    xs = torch.linspace(-1.0, 1.0, w, dtype=image.dtype, device=image.device)
    ys = torch.linspace(-1.0, 1.0, h, dtype=image.dtype, device=image.device)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (H, W, 2): (x, y) in [-1, 1]
    shift = torch.stack((flow[:, 0] / ((w - 1) / 2), flow[:, 1] / ((h - 1) / 2)), -1)  # (B, H, W, 2)
    return F.grid_sample(image, grid + shift, mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    def __init__(self, cfg: IFNetConfig = IFNetConfig()):
        super().__init__()
        self.cfg = cfg
        for i, c in enumerate(cfg.widths):  # attribute names are the state dict's: block0 ... block3
            self.add_module(f"block{i}", IFBlock(cfg.first_in if i == 0 else cfg.later_in, c, cfg))

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """img0, img1 (B, 3, H, W) in [0, 1], H and W multiples of PAD_MULTIPLE; t (B,) -> (B, 3, H, W)."""
        b, _, h, w = img0.shape
        time = t.to(img0).view(b, 1, 1, 1).expand(b, 1, h, w)
        flow: torch.Tensor | None = None
        mask = torch.zeros_like(time)
        warped0, warped1 = img0, img1
        for i, scale in enumerate(self.cfg.scales):
            block = getattr(self, f"block{i}")
            if flow is None:
                flow, mask = block(torch.cat((img0, img1, time), 1), None, scale)
            else:
                d_flow, d_mask = block(torch.cat((warped0, warped1, time, mask), 1), flow, scale)
                flow, mask = flow + d_flow, mask + d_mask
            warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        m = torch.sigmoid(mask)
        return warped0 * m + warped1 * (1 - m)


def check_state_dict(state: Any, net: IFNet) -> dict[str, torch.Tensor]:
    """The state dict with DDP's `module.` prefix removed, if its keys and shapes are exactly `net`'s."""
    expect = f"not RIFE {RIFE_VERSION} weights (Practical-RIFE {RIFE_VERSION} flownet.pkl: an IFNet of 4 IFBlocks)"
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RifeWeightsError(f"{expect}: the file holds a {type(state).__name__}, not a state dict of tensors")
    state = {(k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k): v for k, v in state.items()}
    want = net.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(map(str, set(state) - set(want)))
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(want[k].shape)})"
              for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if not (missing or unexpected or shapes):
        return state
    parts = []
    for what, names in (("missing keys", missing), ("unexpected keys", unexpected), ("shapes differ", shapes)):
        if names:
            parts.append(f"{len(names)} {what} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    hint = ""
    if any(k.startswith("encode.") for k in unexpected):
        hint = "; it has an `encode` head, as RIFE 4.7 and later do"
    elif any(k.startswith(("contextnet.", "unet.")) for k in unexpected):
        hint = "; it has a contextnet/unet, as RIFE 3.x does"
    raise RifeWeightsError(f"{expect}: {'; '.join(parts)}{hint}")


class RifeInterpolator:
    """Frames in between two frames, on the CPU (torch's thread count as the studio set it)."""

    version = RIFE_VERSION

    def __init__(self, net: IFNet):
        self.net = net.eval().requires_grad_(False)

    @classmethod
    def from_bytes(cls, data: bytes) -> "RifeInterpolator":
        try:  # weights_only: a state dict of tensors, never arbitrary pickled code
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:
            reason = (str(e).splitlines() or [""])[0][:200]
            raise RifeWeightsError(f"not RIFE {RIFE_VERSION} weights: not a PyTorch state dict "
                                   f"({type(e).__name__}: {reason})") from None
        net = IFNet()
        net.load_state_dict(check_state_dict(state, net), strict=True)
        return cls(net)

    @torch.inference_mode()
    def between(self, i0: np.ndarray, i1: np.ndarray, times: Sequence[float]) -> np.ndarray:
        """(H, W, 3) uint8 twice, times in [0, 1] -> (len(times), H, W, 3) uint8: one batch through the network,
        the frames padded (edge pixels repeated) to a multiple of PAD_MULTIPLE and cropped back."""
        h, w, _ = i0.shape
        x = torch.from_numpy(np.stack([i0, i1])).permute(0, 3, 1, 2).float() / 255.0  # (2, 3, H, W)
        pad_h, pad_w = -h % PAD_MULTIPLE, -w % PAD_MULTIPLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        n = len(times)
        out = self.net(x[0:1].expand(n, -1, -1, -1), x[1:2].expand(n, -1, -1, -1),
                       torch.tensor(list(times), dtype=torch.float32))[:, :, :h, :w]
        return (out.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
