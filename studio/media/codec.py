"""What the file store asks of media: encode a clip's video and thumbnail, convert it for export.

The composition root (`studio.wiring`) hands an `Mp4ClipCodec` to `FileStore`, so storage places files
atomically without knowing any codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from studio.media import export, video

THUMBNAIL_QUALITY = 88


@dataclass(frozen=True)
class Mp4ClipCodec:
    def write_video(self, frames: Any, fps: int, path: Path, metadata: dict[str, Any]) -> None:
        """H.264 mp4 with the recipe in its metadata (MediaError for bad frames or fps)."""
        video.write_mp4(frames, fps, path, metadata)

    def write_thumbnail(self, frames: Any, path: Path) -> None:
        """The middle frame as a JPEG."""
        frames = video.check_frames(frames)
        Image.fromarray(np.ascontiguousarray(frames[len(frames) // 2])).save(
            path, format="JPEG", quality=THUMBNAIL_QUALITY
        )

    def convert(self, video_path: Path, out: Path, fmt: str) -> None:
        export.convert(video_path, out, fmt)
