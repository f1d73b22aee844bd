"""RIFE frame interpolation: our own implementation of Practical-RIFE 4.6's IFNet (`ifnet.py`), inference only.

The weights are never downloaded: the studio reads a local `flownet.pkl` (the file Practical-RIFE's 4.6 release
ships in `train_log/`) and hands its bytes to `load_rife`. Nothing happens at import time and torch is imported
only when a network is built, so the composition root can wire `load_rife` in without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.rife.ifnet import RifeInterpolator

RIFE_VERSION = "4.6"  # the one release whose state-dict layout `ifnet.IFNet` matches, key for key
PAD_MULTIPLE = 32  # frames are padded to a multiple of this (coarsest scale 1/8, then two stride-2 convs) and cropped back


class RifeWeightsError(ValueError):
    """The bytes are not a state dict of RIFE 4.6's IFNet (another version, another network, not a state dict)."""


def load_rife(data: bytes) -> "RifeInterpolator":
    """A ready-to-run interpolator from the bytes of a RIFE 4.6 `flownet.pkl` (keys with or without DDP's
    `module.` prefix). Keys and shapes must match exactly, else RifeWeightsError names what differs."""
    from pipelines.rife.ifnet import RifeInterpolator

    return RifeInterpolator.from_bytes(data)


__all__ = ["PAD_MULTIPLE", "RIFE_VERSION", "RifeWeightsError", "load_rife"]
