"""Flow matching: the training objective and the sampler, apart from any network.

Convention (rectified flow, as in SD3): x_t = (1 - t) * x0 + t * noise, t in [0, 1], t = 1 is pure
noise; the network predicts the velocity v = noise - x0, so x0 = x_t - t * v. Sampling integrates
dx/dt = v from t = t_start down to 0 on a (optionally shifted) uniform grid, with Euler steps or a
second-order solver (`sample`'s solver).
"""

from __future__ import annotations

from typing import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t (B,)) -> v


def shift_t(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Resolution shift (SD3): shift > 1 moves timesteps towards pure noise, where a larger latent
    (more values per clip, so more signal left at a given t) decides its global layout."""
    return shift * t / (1 + (shift - 1) * t)


def sample_t(n: int, generator: torch.Generator | None = None, device="cpu", shift: float = 1.0,
             p_uniform: float = 0.0) -> torch.Tensor:
    """Training timesteps: logit-normal(0, 1) (SD3), which favours the middle of the path, then shifted.
    p_uniform > 0: that fraction drawn uniformly in [0, 1] instead (more weight near t = 1, where a clip's
    layout is decided, and near 0); with 0 no extra random numbers are drawn."""
    t = torch.sigmoid(torch.randn(n, generator=generator, device=device))
    if p_uniform > 0:
        u = torch.rand(n, 2, generator=generator, device=device)
        t = torch.where(u[:, 0] < p_uniform, u[:, 1], t)
    return shift_t(t, shift)


def per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1), broadcastable against the batch x."""
    return v.view(-1, *([1] * (x.dim() - 1)))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = per_sample(t, x0)
    return (1 - t) * x0 + t * noise


def fm_loss(velocity: Velocity, x0: torch.Tensor, generator: torch.Generator | None = None,
            shift: float = 1.0, src: torch.Tensor | None = None, edit: torch.Tensor | None = None,
            edit_t: tuple[float, float] = (0.3, 0.9), p_uniform: float = 0.0,
            weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between predicted and true velocity at a random (shifted) t; weight (broadcast
    to x0, e.g. (B, 1, T, h, w)): a weighted mean instead, normalised by the weights' mean.

    src + edit (B,) bool: for the edit samples the path is SDEdit's: it starts from src noised to a
    strength t_e drawn from edit_t and runs straight to x0, so x_t = x0 + t * v with the constant
    v = (start - x0) / t_e, t drawn in (0, t_e]. When src is x0 this is the ordinary path (v = noise - x0),
    so the model learns to reach the prompt's x0 from an input that disagrees with it (colour, shape).
    """
    B = x0.shape[0]
    t = sample_t(B, generator, x0.device, shift, p_uniform)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    target = noise - x0
    if src is not None and edit is not None:
        lo, hi = edit_t
        te = lo + (hi - lo) * torch.rand(B, generator=generator, device=x0.device)
        u = torch.rand(B, generator=generator, device=x0.device).clamp_min(1e-3).sqrt()  # more t near t_e
        ve = (add_noise(src, noise, te) - x0) / per_sample(te, x0)
        target = torch.where(per_sample(edit, x0), ve, target)
        t = torch.where(edit, te * u, t)
    xt = x0 + per_sample(t, x0) * target
    v = velocity(xt, t)
    if weight is None:
        return (v - target).pow(2).mean()
    return (weight * (v - target).pow(2)).mean() / weight.expand_as(x0).mean()


def timesteps(steps: int, t_start: float = 1.0, shift: float = 1.0) -> torch.Tensor:
    """steps + 1 values from t_start down to 0; shift > 1 spends more steps at high noise."""
    return shift_t(torch.linspace(t_start, 0.0, steps + 1), shift)


def cfg_velocity(model_fn: Callable[[torch.Tensor, torch.Tensor, tuple[int, ...]], torch.Tensor], scale: float,
                 interval: tuple[float, float] = (0.0, 1.0), contrast: float = 0.0) -> Velocity:
    """Classifier-free guidance. model_fn(x_rows, t_rows, rows) evaluates the denoiser under the conditions
    `rows` (0: the prompt, 1: the negative prompt, 2: the contrast prompt), stacked on the batch in that order.
    interval (lo, hi): guide only while lo <= t <= hi (Kynkäänniemi et al. 2024), elsewhere the
    prompt's branch alone (one network evaluation).
    contrast > 0: on the guided steps, also move away from the prompt with a confusable attribute said instead
    (text.contrast_prompt): + contrast (vc - vx), a negative prompt aimed at what the model hedges towards,
    where the empty prompt's average does not tell a square from a circle."""

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t0 = float(t.reshape(-1)[0])
        rows: tuple[int, ...] = (0,)  # CFG 1 or outside the interval: the prompt's branch alone
        if scale != 1.0 and interval[0] <= t0 <= interval[1]:
            rows = (0, 1, 2) if contrast != 0.0 else (0, 1)
        vs = model_fn(torch.cat([x] * len(rows)), torch.cat([t] * len(rows)), rows).chunk(len(rows))
        if len(rows) == 1:
            return vs[0]
        vc, vu = vs[0], vs[1]
        guided = vu + scale * (vc - vu)
        return guided + contrast * (vc - vs[2]) if len(rows) == 3 else guided

    return v


SOLVERS = ("euler", "heun", "ab2")


def sample(
    velocity: Velocity,
    noise: torch.Tensor,
    steps: int,
    *,
    x_start: torch.Tensor | None = None,
    strength: float = 1.0,
    keep: torch.Tensor | None = None,
    keep_mask: torch.Tensor | None = None,
    keep_until: float = 0.0,
    shift: float = 1.0,
    solver: str = "euler",
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Integrate the flow from noise to data over `steps` intervals of the (shifted) grid.

    solver: "euler" (one network evaluation per step); "heun" (Heun's second-order method: two per
    step, one on the last step, which ends at t = 0); "ab2" (second-order Adams-Bashforth, for
    uneven steps: one evaluation per step, extrapolating from the previous step's velocity, as
    DPM-Solver++(2M) does; Euler on the first step).
    x_start + strength < 1: SDEdit (start from x_start noised to t = strength).
    keep + keep_mask (1 = keep, broadcastable): inpainting by latent blending; after every step the
    kept region is replaced by `keep` noised to the current t with the same noise, for as long as
    t >= keep_until (0: to the end, as inpainting needs; > 0: only steer the early, noisy steps).
    on_step(i, total, x0_estimate) after each step; should_cancel() before each step (raise in caller).
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver {solver!r}: one of {', '.join(SOLVERS)}")
    ts = timesteps(steps, strength if x_start is not None else 1.0, shift)
    if x_start is not None and strength < 1.0:
        x = add_noise(x_start, noise, ts[:1].expand(noise.shape[0]))
    else:
        x = noise.clone()
    v_prev, h_prev = None, None
    for i in range(steps):
        if should_cancel is not None and should_cancel():
            return None  # the caller raises Cancelled
        t, t_next = ts[i], ts[i + 1]
        h = t_next - t  # negative: t runs down
        tb = t.expand(x.shape[0]).to(x.device)
        v = velocity(x, tb)
        x0 = x - t * v
        if solver == "heun" and t_next > 0:
            x_e = x + h * v
            v2 = velocity(x_e, t_next.expand(x.shape[0]).to(x.device))
            step_v = 0.5 * (v + v2)
        elif solver == "ab2" and v_prev is not None:
            r = h / h_prev
            step_v = (1 + 0.5 * r) * v - 0.5 * r * v_prev
        else:
            step_v = v
        v_prev, h_prev = v, h
        x = x + h * step_v
        if keep is not None and t_next >= keep_until:
            ref = add_noise(keep, noise, t_next.expand(x.shape[0]).to(x.device))
            x = keep_mask * ref + (1 - keep_mask) * x
            x0 = keep_mask * keep + (1 - keep_mask) * x0
        if on_step is not None:
            on_step(i, steps, x0)
    return x
