"""Masks: (F, H, W) float32 of 0 and 1 (1 = regenerate, 0 = keep) from an image, animated image or video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from studio.media.images import ALPHA_MODES, decode, open_image
from studio.media.limits import MediaError, MediaLimits
from studio.media.video import read_video, sniff


def _mask_of(img: Image.Image) -> np.ndarray:
    """Binary (H, W) float32: alpha >= 0.5 if the image has any transparency, else luminance >= 0.5."""
    has_alpha = img.mode in ALPHA_MODES or "transparency" in img.info
    if has_alpha:
        alpha = np.asarray(img.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            return (alpha >= 128).astype(np.float32)
    return (np.asarray(img.convert("L")) >= 128).astype(np.float32)


def read_mask(path: Path | str, limits: MediaLimits) -> np.ndarray:
    """(F, H, W) float32 of 0 and 1 (1 = regenerate), within the same limits as any video or image.

    Rule: white means regenerate (luminance threshold 0.5). An image with any transparent
    pixel (a brush layer from an image editor) uses its alpha instead: painted = regenerate.
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p.name}: no such file")
    if sniff(p) in ("mp4", "mkv", "avi"):
        frames, _ = read_video(p, limits)
        lum = frames[..., 0] * 0.299 + frames[..., 1] * 0.587 + frames[..., 2] * 0.114
        return (lum >= 127.5).astype(np.float32)
    with open_image(p, limits) as img:
        masks = []
        for frame in ImageSequence.Iterator(img):
            if len(masks) == limits.max_frames:
                raise MediaError(f"{p.name}: the mask has more than {limits.max_frames} frames; "
                                 f"the limit is {limits.max_frames}")
            decode(frame, p.name)
            masks.append(_mask_of(frame))
        return np.stack(masks)
