from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage.video_io import (
    MediaError,
    check_upload,
    conform_image,
    conform_mask,
    conform_video,
    ffmpeg_exe,
    frame_indices,
    probe_video,
    read_image,
    read_mask,
    read_mp4_metadata,
    read_video,
    write_mp4,
)


def ffmpeg_info(path: Path) -> str:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, check=False).stderr


def test_mp4_round_trip(tmp_path: Path, frames: np.ndarray) -> None:
    path = tmp_path / "clip.mp4"
    recipe = {"prompt": "ünïcode \"quotes\" and\nnewlines " * 50, "seed": 2**63 - 1, "nested": {"a": [1, 2.5]}}
    write_mp4(frames, 8, path, recipe)
    info = probe_video(path)
    assert (info.width, info.height, info.frames, info.fps) == (48, 32, 8, 8.0)
    assert info.duration == pytest.approx(1.0, abs=0.05)
    out, fps = read_video(path)
    assert out.shape == frames.shape and out.dtype == np.uint8 and fps == 8.0
    assert np.abs(out.astype(int) - frames.astype(int)).mean() < 4
    assert read_mp4_metadata(path) == recipe
    text = ffmpeg_info(path)
    assert "h264" in text and "yuv420p" in text
    with path.open("rb") as f:  # +faststart: the index comes before the media data
        data = f.read()
    assert data.index(b"moov") < data.index(b"mdat")


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    frames = np.full((3, 31, 17, 3), 200, np.uint8)
    write_mp4(frames, 4, tmp_path / "odd.mp4")
    info = probe_video(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (18, 32)
    assert read_mp4_metadata(tmp_path / "odd.mp4") == {}


def test_read_video_first_frames_only(tmp_path: Path, frames: np.ndarray) -> None:
    write_mp4(frames, 8, tmp_path / "c.mp4")
    out, _ = read_video(tmp_path / "c.mp4", max_frames=3)
    assert out.shape[0] == 3
    with pytest.raises(MediaError, match="32x48|48x32"):
        read_video(tmp_path / "c.mp4", max_pixels=100)
    with pytest.raises(MediaError, match="decoded; the limit"):
        read_video(tmp_path / "c.mp4", max_bytes=1000)


@pytest.mark.parametrize("bad", [[], np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8, 3), np.float32)])
def test_write_mp4_rejects_bad_frames(tmp_path: Path, bad) -> None:
    with pytest.raises(MediaError, match="frames must"):
        write_mp4(bad, 8, tmp_path / "x.mp4")


def test_truncated_mp4(tmp_path: Path, frames: np.ndarray) -> None:
    good = tmp_path / "good.mp4"
    write_mp4(frames, 8, good)
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) - 200])
    with pytest.raises(MediaError, match="cut.mp4: the file is truncated"):
        probe_video(cut)
    head = tmp_path / "head.mp4"
    head.write_bytes(data[:40])
    with pytest.raises(MediaError, match="truncated"):
        read_video(head)


def test_fake_and_empty_videos(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video, just some text\n" * 10)
    with pytest.raises(MediaError, match="notes.mp4: not a video file"):
        probe_video(fake)
    with pytest.raises(MediaError, match="not a video file"):
        read_video(fake)
    with pytest.raises(MediaError, match="not an mp4"):
        read_mp4_metadata(fake)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(MediaError, match="empty"):
        probe_video(empty)
    with pytest.raises(MediaError, match="no such file"):
        probe_video(tmp_path / "missing.mp4")


def test_gif_is_a_video(tmp_path: Path, frames: np.ndarray) -> None:
    path = tmp_path / "anim.gif"
    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=125, loop=0)
    out, fps = read_video(path)
    assert out.shape == frames.shape and fps == pytest.approx(8.0, rel=0.1)  # GIF delays are in 1/100 s


def huge_png_header(path: Path, w: int = 100_000, h: int = 100_000) -> None:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
                     + struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat)))


def test_enormous_image_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    huge_png_header(path)
    with pytest.raises(MediaError, match="bomb.png: the image is far too large"):
        read_image(path)
    huge_png_header(path, 5000, 5000)  # under PIL's own limit, over ours
    with pytest.raises(MediaError, match="5000x5000; the limit is 1,000,000 pixels"):
        read_image(path, max_pixels=1_000_000)


def test_images_to_rgb_and_bad_images(tmp_path: Path) -> None:
    rgba = np.zeros((6, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:3, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.shape == (6, 4, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (255, 0, 0) and tuple(img[5, 0]) == (255, 255, 255)
    Image.fromarray(np.full((5, 7), 90, np.uint8)).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").shape == (5, 7, 3)

    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(MediaError, match="fake.png: not an image file"):
        read_image(tmp_path / "fake.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cut.png: the image is truncated or corrupt"):
        read_image(tmp_path / "cut.png")


def test_read_mask_from_image_alpha_and_video(tmp_path: Path) -> None:
    bw = np.zeros((8, 8), np.uint8)
    bw[:, 4:] = 255
    Image.fromarray(bw).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png")
    assert m.shape == (1, 8, 8) and m.dtype == np.float32
    assert m[0, 0, 0] == 0.0 and m[0, 0, 7] == 1.0

    layer = np.zeros((8, 8, 4), np.uint8)  # a black brush stroke on a transparent layer
    layer[2:4, :, 3] = 255
    Image.fromarray(layer).save(tmp_path / "layer.png")
    m = read_mask(tmp_path / "layer.png")
    assert m[0, 2:4].min() == 1.0 and m[0, 5:].max() == 0.0

    frames = np.zeros((4, 16, 16, 3), np.uint8)
    frames[:, :, 8:] = 255
    write_mp4(frames, 4, tmp_path / "mask.mp4")
    m = read_mask(tmp_path / "mask.mp4")
    assert m.shape == (4, 16, 16) and set(np.unique(m)) == {0.0, 1.0}
    assert m[:, :, :7].max() == 0.0 and m[:, :, 9:].min() == 1.0


def test_conform_video_and_image() -> None:
    assert frame_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert frame_indices(2, 5).tolist() == [0, 0, 0, 1, 1] or frame_indices(2, 5).tolist() == [0, 0, 1, 1, 1]
    src = np.zeros((10, 40, 80, 3), np.uint8)
    src[:, :, 20:60] = 255  # centre square survives a centre crop to 1:1
    out = conform_video(src, 4, 16, 16)
    assert out.shape == (4, 16, 16, 3) and out.min() > 200
    assert np.shares_memory(conform_image(src[0], 80, 40), src)
    assert conform_image(src[0], 32, 8).shape == (8, 32, 3)


def test_conform_mask_broadcasts_and_matches_video_crop() -> None:
    mask = np.zeros((40, 80), np.float32)
    mask[:, 40:] = 1.0
    out = conform_mask(mask, 5, 16, 16, video_shape=(12, 40, 80, 3))
    assert out.shape == (5, 16, 16) and out.dtype == np.float32
    assert out[:, :, :8].max() == 0.0 and out[:, :, 8:].min() == 1.0
    double = np.repeat(np.repeat(mask, 2, 0), 2, 1)[None].repeat(12, 0)  # same aspect, twice the size
    assert np.array_equal(conform_mask(double, 5, 16, 16, video_shape=(12, 40, 80)), out)


def test_mismatched_masks_are_refused() -> None:
    with pytest.raises(MediaError, match="mask is 64x64 but the video is 80x40: their aspect ratios differ"):
        conform_mask(np.zeros((64, 64), np.float32), 4, 16, 16, video_shape=(12, 40, 80))
    with pytest.raises(MediaError, match="mask has 7 frames but the video has 12"):
        conform_mask(np.zeros((7, 40, 80), np.float32), 4, 16, 16, video_shape=(12, 40, 80))


def test_check_upload(tmp_path: Path) -> None:
    p = tmp_path / "big.bin"
    p.write_bytes(b"x" * 3000)
    assert check_upload(p, 3000) == 3000
    with pytest.raises(MediaError, match="big.bin: the file is 0.0 MB; the upload limit is 0.0 MB"):
        check_upload(p, 2999)
    with pytest.raises(MediaError, match="no such file"):
        check_upload(tmp_path / "nope", 10)


def test_rotated_video_reports_display_size(tmp_path: Path) -> None:
    src, rotated = tmp_path / "r0.mp4", tmp_path / "r90.mp4"
    ff = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run(ff + ["-f", "lavfi", "-i", "testsrc=size=64x32:rate=4:duration=1", "-c:v", "libx264",
                         "-pix_fmt", "yuv420p", str(src)], check=True)
    subprocess.run(ff + ["-display_rotation", "90", "-i", str(src), "-c", "copy", str(rotated)], check=True)
    info = probe_video(rotated)
    assert (info.width, info.height, info.frames) == (32, 64, 4)
    assert read_video(rotated)[0].shape == (4, 64, 32, 3)
