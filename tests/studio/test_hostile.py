"""A hostile-input corpus (#14): each input is refused with a message naming the field, nothing is left in
the data dir, and the studio keeps working."""

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.contract import (
    ImageToVideoRequest,
    InpaintRequest,
    RequestError,
    TextToVideoRequest,
    VideoToVideoRequest,
)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (a decompression bomb's calling card), with one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))
    return path


def _corpus(tmp: Path, sample_video: Path, sample_image: Path) -> dict:
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
        "30000x30000 png": (ImageToVideoRequest, {"image": str(_png_header_only(tmp / "bomb.png", 30000, 30000))},
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


def test_every_hostile_input_is_refused_cleanly_and_the_studio_keeps_working(studio, tmp_path, sample_video,
                                                                              sample_image):
    corpus = _corpus(tmp_path, sample_video, sample_image)
    refused = {}
    for name, (cls, fields, field) in corpus.items():
        kwargs = {"prompt": "go", **fields}
        with pytest.raises(RequestError) as e:
            studio.facade.submit(cls(**kwargs))
        refused[name] = e.value
        assert e.value.field == field, (name, e.value)
        assert len(str(e.value)) < 400, (name, str(e.value)[:100])  # a message, not a dump
        assert "Traceback" not in str(e.value)
    data = studio.settings.data_dir
    inputs = data / "inputs"
    assert not inputs.exists() or not [p for p in inputs.rglob("*") if p.is_file()], "an input was left behind"
    assert not (data / "clips").exists() or not any((data / "clips").iterdir())
    ok = studio.facade.submit(ImageToVideoRequest(prompt="still fine", image=str(sample_image), steps=2))
    [status] = studio.facade.wait(ok.job_ids, timeout=60)
    assert status.status == "done"
