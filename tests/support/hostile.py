"""The hostile-input corpus (#14), one copy for every layer that must refuse it: the facade in-process
(tests/studio/test_hostile.py) and the launched app over HTTP (tests/ui/test_outsider.py)."""

import math
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.contract import (
    ImageToVideoRequest,
    InpaintRequest,
    TextToVideoRequest,
    VideoToVideoRequest,
)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (a decompression bomb's calling card), with one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))
    return path


def corpus(tmp: Path, sample_video: Path, sample_image: Path) -> dict[str, tuple[type, dict, str]]:
    """Each hostile input by name: (the request class, its fields, the field that must be named in the refusal).
    Files are written under `tmp`; `sample_video` is a 12-frame 32x32 mp4, `sample_image` a small png."""
    from studio.media.video import write_mp4

    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(sample_video.read_bytes()[: sample_video.stat().st_size // 2])
    fake = tmp / "fake.mp4"
    fake.write_bytes(b"this is not a video at all " * 100)
    page = tmp / "page.png"
    page.write_text("<html><script>alert(1)</script></html>")
    long = tmp / "long.mp4"
    write_mp4(np.zeros((2100, 16, 16, 3), np.uint8), 24, long, {})  # over the 2,000-frame limit
    wide_mask = tmp / "wide-mask.png"
    Image.fromarray(np.full((16, 48), 255, np.uint8)).save(wide_mask)
    frames_mask = tmp / "frames-mask.mp4"
    write_mp4(np.full((5, 32, 32, 3), 255, np.uint8), 8, frames_mask, {})  # the video has 12 frames
    empty = tmp / "empty.png"
    empty.write_bytes(b"")
    return {
        "truncated mp4": (VideoToVideoRequest, {"video": str(truncated)}, "video"),
        "fake mp4": (VideoToVideoRequest, {"video": str(fake)}, "video"),
        "a page renamed as png": (ImageToVideoRequest, {"image": str(page)}, "image"),
        "30000x30000 png": (ImageToVideoRequest, {"image": str(png_header_only(tmp / "bomb.png", 30000, 30000))},
                            "image"),
        "2100-frame video": (VideoToVideoRequest, {"video": str(long)}, "video"),
        "mask of another shape": (InpaintRequest, {"video": str(sample_video), "mask": str(wide_mask)}, "mask"),
        "mask of another length": (InpaintRequest, {"video": str(sample_video), "mask": str(frames_mask)}, "mask"),
        "empty file": (ImageToVideoRequest, {"image": str(empty)}, "image"),
        "a missing file": (ImageToVideoRequest, {"image": str(tmp / "nope.png")}, "image"),
        "a folder": (ImageToVideoRequest, {"image": str(tmp)}, "image"),
        "NUL in the prompt": (TextToVideoRequest, {"prompt": "a\x00b"}, "prompt"),
        "a lone surrogate": (TextToVideoRequest, {"prompt": "a \udc00 b"}, "prompt"),
        "a 1 MB prompt": (TextToVideoRequest, {"prompt": "x" * 1_000_000}, "prompt"),
        "NaN CFG": (TextToVideoRequest, {"prompt": "x", "cfg_scale": math.nan}, "cfg_scale"),
        "infinite CFG": (TextToVideoRequest, {"prompt": "x", "cfg_scale": math.inf}, "cfg_scale"),
        "a list as steps": (TextToVideoRequest, {"prompt": "x", "steps": [4]}, "steps"),
        "text as seed": (TextToVideoRequest, {"prompt": "x", "seed": "abc"}, "seed"),
        "a huge seed": (TextToVideoRequest, {"prompt": "x", "seed": 2**80}, "seed"),
        "strength 7": (VideoToVideoRequest, {"video": str(sample_video), "strength": 7.0}, "strength"),
        "NUL in a path": (ImageToVideoRequest, {"image": "in\x00put.png"}, "image"),
    }
