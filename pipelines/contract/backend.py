"""The seam between the studio and its generation backends.

A backend turns a resolved request (every field concrete, seed included) plus already
decoded input media into frames. It does no file or database I/O: the job service
decodes uploads into `MediaInputs` before the call and writes the frames after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from pipelines.contract.spec import ModelSpec

if TYPE_CHECKING:  # torch and numpy are only needed by implementations
    import numpy as np
    import torch

    from pipelines.contract.requests import GenerationRequest


class Cancelled(Exception):
    """Raised by a backend when `should_cancel()` turned true between two steps."""


class ModelLoadError(Exception):
    """A model could not be loaded; the message says why and what to do."""


class OutOfMemory(RuntimeError):
    """The device ran out of memory during a generation. `hint` is the backend's own advice
    (e.g. a lower-memory profile of this model); the job service words the message, once."""

    def __init__(self, hint: str = ""):
        self.hint = hint
        super().__init__(hint or "out of memory")


def is_out_of_memory(e: BaseException) -> bool:
    """The one test for out-of-memory: ours, torch's (CUDA, MPS, XPU) and allocator RuntimeErrors."""
    if isinstance(e, (OutOfMemory, MemoryError)):
        return True
    if type(e).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError without importing torch here
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


@dataclass(frozen=True, eq=False)
class MediaInputs:
    """Decoded inputs, already conformed to the request's size and frame count.

    image: (H, W, 3) uint8, the first frame for i2v.
    video: (F, H, W, 3) uint8, the source for v2v and inpaint.
    mask:  (F, H, W) float32 in [0, 1]; 1 = regenerate, 0 = keep.
    """

    image: "np.ndarray | None" = None
    video: "np.ndarray | None" = None
    mask: "np.ndarray | None" = None


class StepCallback(Protocol):
    def __call__(self, step: int, total: int, preview: "np.ndarray | None") -> None:
        """Called after every denoising step; `preview` is (F, H, W, 3) uint8 every few steps, else None."""


class Backend(Protocol):
    spec: ModelSpec

    def generate(
        self,
        request: "GenerationRequest",
        media: MediaInputs,
        generator: "torch.Generator",
        on_step: StepCallback,
        should_cancel: Callable[[], bool],
    ) -> "np.ndarray":
        """Return (F, H, W, 3) uint8 frames. Raise `Cancelled` when `should_cancel()` is true."""
        ...

    def manifest(self) -> dict:
        """What reproducing a clip needs beyond the request: dtype, profile, device, library versions."""
        ...

    def unload(self) -> None:
        """Free weights and device memory."""
        ...


class BatchBackend(Backend, Protocol):
    """A backend that can also generate several seeds of one request as one batch through the network.

    The job service hands it up to `max_batch` requests that differ only in their seed (one generator
    each) and expects the same frames, clip for clip, as `generate` would give one by one.
    """

    max_batch: int

    def generate_batch(
        self,
        requests: "list[GenerationRequest]",
        media: MediaInputs,
        generators: "list[torch.Generator]",
        on_step: StepCallback,
        should_cancel: Callable[[], bool],
    ) -> "list[np.ndarray]":
        ...
