"""Images: open with PIL, check the size from the header, then decode to RGB.

An image is (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from studio.media.limits import MediaError, MediaLimits, reason

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def open_image(path: Path, limits: MediaLimits) -> Image.Image:
    """Open (header only) with PIL and check the size before anything is decoded."""
    if not path.is_file():
        raise MediaError(f"{path.name}: no such file")
    try:
        img = Image.open(path, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as e:
        raise MediaError(f"{path.name}: the image is far too large ({reason(e, path)})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"{path.name}: not an image file (supported: {', '.join(IMAGE_FORMATS)}; "
                         f"{reason(e, path)})") from None
    w, h = img.size
    if w <= 0 or h <= 0 or w * h > limits.max_pixels:
        img.close()
        raise MediaError(f"{path.name}: the image is {w}x{h}; the limit is {limits.max_pixels:,} pixels")
    return img


def decode(img: Image.Image, name: str) -> None:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"{name}: the image is truncated or corrupt ({e})") from None


def to_rgb(img: Image.Image) -> np.ndarray:
    """RGB uint8; transparency is composited onto white, greyscale expanded."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ALPHA_MODES:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_image(path: Path | str, limits: MediaLimits) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the first frame; EXIF rotation applied, alpha composited onto white."""
    p = Path(path)
    with open_image(p, limits) as img:
        decode(img, p.name)
        return to_rgb(ImageOps.exif_transpose(img))
