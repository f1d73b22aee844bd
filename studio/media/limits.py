"""What the studio accepts as input media, and how it refuses the rest.

One `MediaLimits`, built from the settings (`Settings.media_limits`), is handed to every probe,
decode and mask read, so the limit a user configures is the limit every reader enforces.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path


class MediaError(ValueError):
    """An input or output file is missing, fake, truncated, too large or mismatched."""


@dataclass(frozen=True)
class MediaLimits:
    max_upload_mb: int = 200  # size of an uploaded file on disk
    max_pixels: int = 4096 * 4096  # width * height of an image or of one video frame (as displayed)
    max_frames: int = 2000  # frames of a video, mask video or animated image
    max_decoded_bytes: int = 2 * 1024**3  # frames * height * width * 3 of a decoded video

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MediaLimits.{f.name} must be a positive integer, got {value!r}")

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024**2


def reason(e: BaseException | str, path: Path) -> str:
    """An exception's (or a tool's) text for a message, the file named by its name only: decoders (PIL's
    "cannot identify image file '/srv/.../page.png'", ffmpeg's "/srv/.../x.mp4: Invalid data") spell out
    the full path, which is the server's business, not the caller's."""
    text = str(e)
    for spelled in sorted({str(path), str(path.absolute()), str(path.resolve())}, key=len, reverse=True):
        text = text.replace(spelled, path.name)
    return text


def mb(n: int) -> str:
    """Bytes as megabytes, for messages."""
    return f"{n / 1024**2:.1f} MB"
