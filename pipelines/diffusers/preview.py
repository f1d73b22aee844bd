"""callback_on_step_end: latent blending, cancellation, progress with an occasional cheap preview."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from pipelines.contract import Cancelled, StepCallback

if TYPE_CHECKING:
    import numpy as np

    from pipelines.diffusers.blend import Blend
    from pipelines.diffusers.families import Family


class StepHook:
    def __init__(self, family: "Family", request, on_step: StepCallback, should_cancel: Callable[[], bool],
                 blend: "Blend | None", preview_every: int):
        self.family, self.request = family, request
        self.on_step, self.should_cancel, self.blend = on_step, should_cancel, blend
        self.preview_every = preview_every

    def __call__(self, pipe, i: int, t, kwargs: dict) -> dict:
        latents = kwargs["latents"]
        if self.blend is not None:
            latents = self.blend(pipe, t, latents)
        if self.should_cancel():
            raise Cancelled()  # leaves the loop at once: no VAE decode of a clip nobody wants
        total = getattr(pipe, "num_timesteps", None) or self.request.steps
        step = i + 1
        preview = None
        every = self.preview_every
        if every and (step % every == 0) and step < total:
            preview = latent_preview(self.family.from_loop(pipe, latents, self.request), self.request)
        self.on_step(step, total, preview)
        return {"latents": latents}


def latent_preview(latents, request) -> "np.ndarray":
    """A rough look at (B, C, f, h, w) latents: three channels, stretched to the output size. Cheap, not pretty."""
    import torch
    import torch.nn.functional as F

    x = latents[0].float()[:3]  # (3, f, h, w)
    if x.shape[0] < 3:
        x = x.repeat(3, 1, 1, 1)[:3]
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp_min(1e-6)
    x = F.interpolate(x[None], size=(request.frames, request.height, request.width), mode="nearest")[0]
    return (x.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).cpu().numpy()  # (F, H, W, 3)
