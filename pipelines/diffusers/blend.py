"""Latent-blend inpainting for pipelines without their own: after every step the latents outside the
mask are replaced by the input's latents noised to the next step's level."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from pipelines.diffusers.families import Family


@dataclass
class Blend:
    """Kept latents end exactly equal to the input's encoding; masked ones are generated.

    x0, noise, keep are in the loop's layout (the family's: bcfhw, bfchw or packed tokens).
    """

    x0: "torch.Tensor"
    noise: "torch.Tensor"
    keep: "torch.Tensor"  # 1 = keep the input, 0 = regenerate

    @classmethod
    def build(cls, family: "Family", pipe, x0, mask, generators) -> "Blend":
        """x0: the input's normalised latents (1, C, f, h, w); mask: (F, H, W), 1 = regenerate.
        generators: one per seed (a batch blends each sample with its own noise, as its single run does)."""
        import torch

        if not isinstance(generators, (list, tuple)):
            generators = [generators]
        x0 = x0.float()
        regen = latent_mask(torch.from_numpy(mask).float(), x0.shape[2:], family.temporal_ratio(pipe))
        keep = (1.0 - regen).to(x0.device)[None, None].expand_as(x0).contiguous()
        noise = torch.cat([torch.randn(x0.shape, generator=g, device=g.device, dtype=torch.float32)
                           for g in generators]).to(x0.device)
        n = len(generators)
        if n > 1:
            x0, keep = x0.expand(n, *x0.shape[1:]), keep.expand(n, *keep.shape[1:])
        return cls(x0=family.to_loop(pipe, x0), noise=family.to_loop(pipe, noise), keep=family.to_loop(pipe, keep))

    def __call__(self, pipe, t, latents):
        if latents.shape != self.x0.shape:
            raise RuntimeError(f"inpaint: loop latents {tuple(latents.shape)} do not match the input's {tuple(self.x0.shape)}")
        known = self.noised(pipe.scheduler, t).to(latents.device, latents.dtype)
        keep = self.keep.to(latents.device, latents.dtype)
        return keep * known + (1.0 - keep) * latents

    def noised(self, scheduler, t):
        """x0 at the noise level of the step after `t` (clean after the last step)."""
        import torch

        timesteps = scheduler.timesteps.to(self.x0.device)
        k = int(torch.argmin((timesteps.float() - float(t)).abs()))
        if k + 1 >= len(timesteps):
            return self.x0
        flow = "FlowMatch" in type(scheduler).__name__ or scheduler.config.get("use_flow_sigmas", False)
        if flow:
            sigma = float(scheduler.sigmas[k + 1])
            if scheduler.config.get("invert_sigmas", False):  # Mochi counts from noise (0) to data (1)
                sigma = 1.0 - sigma
            return (1.0 - sigma) * self.x0 + sigma * self.noise
        t_next = timesteps[k + 1 : k + 2]
        return scheduler.add_noise(self.x0, self.noise, t_next)


def latent_mask(mask, size, temporal_ratio: int):
    """(F, H, W) pixel mask, 1 = regenerate -> (f, h, w): a latent is regenerated if any pixel it covers is."""
    import torch
    import torch.nn.functional as F

    if temporal_ratio > 1:  # causal video VAEs: frame 0 alone, then groups of `temporal_ratio` frames
        first, rest = mask[:1], mask[1:]
        rest = rest.reshape(-1, temporal_ratio, *rest.shape[1:]).amax(dim=1)
        mask = torch.cat([first, rest])
    return F.adaptive_max_pool3d(mask[None, None], output_size=tuple(size))[0, 0]
