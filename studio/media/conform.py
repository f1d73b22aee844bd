"""Conform decoded inputs to a request's frames, width and height (resize to cover, centre crop)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from studio.media.limits import MediaError
from studio.media.video import check_frames


def frame_indices(n_src: int, n_out: int) -> np.ndarray:
    """Nearest source index for each output frame; first and last frames are kept."""
    if n_src <= 0 or n_out <= 0:
        raise MediaError(f"cannot resample {n_src} frames to {n_out}")
    if n_out == 1:
        return np.zeros(1, dtype=np.int64)
    return np.round(np.linspace(0, n_src - 1, n_out)).astype(np.int64)


def crop_box(src_w: int, src_h: int, width: int, height: int) -> tuple[float, float, float, float]:
    """The centred source box with the target's aspect ratio (resize-to-cover, then crop)."""
    target = width / height
    if src_w / src_h > target:
        cw = src_h * target
        x0 = (src_w - cw) / 2
        return (x0, 0.0, x0 + cw, float(src_h))
    ch = src_w / target
    y0 = (src_h - ch) / 2
    return (0.0, y0, float(src_w), y0 + ch)


def conform_image(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize (H, W, 3) uint8 to (height, width, 3), centre-cropping to keep the aspect ratio."""
    if img.ndim != 3 or img.shape[-1] != 3:
        raise MediaError(f"image must have shape (H, W, 3), got {img.shape}")
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    box = crop_box(w, h, width, height)
    pil = Image.fromarray(np.ascontiguousarray(img))
    return np.asarray(pil.resize((width, height), Image.Resampling.LANCZOS, box=box), dtype=np.uint8)


def conform_video(frames: np.ndarray, n_frames: int, width: int, height: int) -> np.ndarray:
    """(n_frames, height, width, 3): nearest-index temporal resampling, then `conform_image`."""
    frames = check_frames(frames)
    picked = frames[frame_indices(len(frames), n_frames)]
    return np.stack([conform_image(f, width, height) for f in picked])


def conform_mask(
    mask: np.ndarray,
    n_frames: int,
    width: int,
    height: int,
    video_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """(n_frames, height, width) float32, cropped and resampled exactly as `conform_video` does.

    `video_shape` is the source video's shape ((F, H, W) or (F, H, W, 3)) before conforming:
    the mask must have its aspect ratio (1% tolerance) and either 1 frame (broadcast over all
    frames) or the same number of frames, else MediaError.
    """
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or 0 in mask.shape:
        raise MediaError(f"mask must have shape (F, H, W), got {mask.shape}")
    f_m, h_m, w_m = mask.shape
    if video_shape is not None:
        f_v, h_v, w_v = video_shape[:3]
        if abs((w_m / h_m) / (w_v / h_v) - 1) > 0.01:
            raise MediaError(
                f"mask is {w_m}x{h_m} but the video is {w_v}x{h_v}: their aspect ratios differ; "
                "draw the mask on the video's frame"
            )
        if f_m != 1 and f_m != f_v:
            raise MediaError(
                f"mask has {f_m} frames but the video has {f_v}; use a single image or a mask video "
                "with the same number of frames"
            )
    src = mask[frame_indices(f_m, n_frames)] if f_m > 1 else np.broadcast_to(mask, (n_frames, h_m, w_m))
    x0, y0, x1, y1 = crop_box(w_m, h_m, width, height)
    xs = np.clip(np.floor(x0 + (np.arange(width) + 0.5) * (x1 - x0) / width), 0, w_m - 1).astype(np.int64)
    ys = np.clip(np.floor(y0 + (np.arange(height) + 0.5) * (y1 - y0) / height), 0, h_m - 1).astype(np.int64)
    out = src[:, ys[:, None], xs[None, :]]
    return np.clip(out, 0.0, 1.0).astype(np.float32)
