"""Media apart from storage: probe, decode, masks, conform, mp4 with its recipe, exports, MediaService."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import studio.media.video as video_module
from pipelines.contract import InpaintRequest, RequestError
from storage.files import FileStore
from studio.media import MediaError, MediaLimits, MediaService
from studio.media.codec import Mp4ClipCodec
from studio.media.conform import conform_image, conform_mask, conform_video, frame_indices
from studio.media.images import read_image
from studio.media.masks import read_mask
from studio.media.video import (
    check_upload,
    ffmpeg_exe,
    parse_ffmetadata,
    probe_video,
    read_mp4_metadata,
    read_video,
    write_mp4,
)
from studio.settings import Settings

LIMITS = MediaLimits()
RECIPE = {"clip_id": "c0ffee", "params": {"schema_version": 1, "prompt": "a ball", "seed": 7}}


@pytest.fixture
def frames() -> np.ndarray:
    """8 frames of 32x48: a horizontal gradient with a bright square moving right."""
    f = np.zeros((8, 32, 48, 3), np.uint8)
    f[..., 0] = np.linspace(0, 255, 48, dtype=np.uint8)[None, None, :]
    f[..., 2] = 80
    for i in range(8):
        f[i, 10:20, 4 * i: 4 * i + 10] = 255
    return f


def ffmpeg_info(path: Path) -> str:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, check=False).stderr


def leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def stripes(n: int, size: int = 16) -> np.ndarray:
    """n frames, left half black and right half white (a mask video when used as one)."""
    f = np.zeros((n, size, size, 3), np.uint8)
    f[:, :, size // 2:] = 255
    return f


def test_mp4_round_trip(tmp_path: Path, frames: np.ndarray) -> None:
    path = tmp_path / "clip.mp4"
    recipe = {"prompt": "ünïcode \"quotes\" and\nnewlines " * 50, "seed": 2**63 - 1, "nested": {"a": [1, 2.5]}}
    write_mp4(frames, 8, path, recipe)
    info = probe_video(path, LIMITS)
    assert (info.width, info.height, info.frames, info.fps) == (48, 32, 8, 8.0)
    assert info.duration == pytest.approx(1.0, abs=0.05)
    out, fps = read_video(path, LIMITS)
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
    info = probe_video(tmp_path / "odd.mp4", LIMITS)
    assert (info.width, info.height) == (18, 32)
    assert read_mp4_metadata(tmp_path / "odd.mp4") == {}


def test_read_video_first_frames_only(tmp_path: Path, frames: np.ndarray) -> None:
    write_mp4(frames, 8, tmp_path / "c.mp4")
    out, _ = read_video(tmp_path / "c.mp4", LIMITS, max_frames=3)
    assert out.shape[0] == 3
    with pytest.raises(MediaError, match="32x48|48x32"):
        read_video(tmp_path / "c.mp4", MediaLimits(max_pixels=100))
    with pytest.raises(MediaError, match="decoded; the limit"):
        read_video(tmp_path / "c.mp4", MediaLimits(max_decoded_bytes=1000))
    with pytest.raises(MediaError, match="c.mp4: the video has about 8 frames; the limit is 5"):
        read_video(tmp_path / "c.mp4", MediaLimits(max_frames=5))
    assert read_video(tmp_path / "c.mp4", MediaLimits(max_frames=8))[0].shape[0] == 8  # exactly the limit


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
        probe_video(cut, LIMITS)
    head = tmp_path / "head.mp4"
    head.write_bytes(data[:40])
    with pytest.raises(MediaError, match="truncated"):
        read_video(head, LIMITS)
    with pytest.raises(MediaError, match="truncated"):
        probe_video(head, LIMITS)


def test_fake_and_empty_videos(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video, just some text\n" * 10)
    with pytest.raises(MediaError, match="notes.mp4: not a video file"):
        probe_video(fake, LIMITS)
    with pytest.raises(MediaError, match="not a video file"):
        read_video(fake, LIMITS)
    with pytest.raises(MediaError, match="not an mp4"):
        read_mp4_metadata(fake)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(MediaError, match="empty"):
        probe_video(empty, LIMITS)
    with pytest.raises(MediaError, match="no such file"):
        probe_video(tmp_path / "missing.mp4", LIMITS)


def test_gif_is_a_video(tmp_path: Path, frames: np.ndarray) -> None:
    path = tmp_path / "anim.gif"
    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=125, loop=0)
    out, fps = read_video(path, LIMITS)
    assert probe_video(path, LIMITS).frames == 8
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
        read_image(path, LIMITS)
    huge_png_header(path, 5000, 5000)  # under PIL's own limit, over ours
    with pytest.raises(MediaError, match="5000x5000; the limit is 1,000,000 pixels"):
        read_image(path, MediaLimits(max_pixels=1_000_000))


def test_images_to_rgb_and_bad_images(tmp_path: Path) -> None:
    rgba = np.zeros((6, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:3, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png", LIMITS)
    assert img.shape == (6, 4, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (255, 0, 0) and tuple(img[5, 0]) == (255, 255, 255)
    Image.fromarray(np.full((5, 7), 90, np.uint8)).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png", LIMITS).shape == (5, 7, 3)

    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(MediaError, match="fake.png: not an image file") as e:
        read_image(tmp_path / "fake.png", LIMITS)
    assert str(tmp_path) not in str(e.value)  # PIL names the whole path; the message names the file only
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cut.png: the image is truncated or corrupt"):
        read_image(tmp_path / "cut.png", LIMITS)


def test_read_mask_from_image_alpha_and_video(tmp_path: Path) -> None:
    bw = np.zeros((8, 8), np.uint8)
    bw[:, 4:] = 255
    Image.fromarray(bw).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png", LIMITS)
    assert m.shape == (1, 8, 8) and m.dtype == np.float32
    assert m[0, 0, 0] == 0.0 and m[0, 0, 7] == 1.0

    layer = np.zeros((8, 8, 4), np.uint8)  # a black brush stroke on a transparent layer
    layer[2:4, :, 3] = 255
    Image.fromarray(layer).save(tmp_path / "layer.png")
    m = read_mask(tmp_path / "layer.png", LIMITS)
    assert m[0, 2:4].min() == 1.0 and m[0, 5:].max() == 0.0

    frames = np.zeros((4, 16, 16, 3), np.uint8)
    frames[:, :, 8:] = 255
    write_mp4(frames, 4, tmp_path / "mask.mp4")
    m = read_mask(tmp_path / "mask.mp4", LIMITS)
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
    assert check_upload(p, MediaLimits(max_upload_mb=1)) == 3000
    with p.open("ab") as f:
        f.truncate(1024**2 + 1)
    with pytest.raises(MediaError, match="big.bin: the file is 1.0 MB; the upload limit is 1.0 MB"):
        check_upload(p, MediaLimits(max_upload_mb=1))
    with pytest.raises(MediaError, match="no such file"):
        check_upload(tmp_path / "nope", LIMITS)


def test_rotated_video_reports_display_size(tmp_path: Path) -> None:
    src, rotated = tmp_path / "r0.mp4", tmp_path / "r90.mp4"
    ff = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run(ff + ["-f", "lavfi", "-i", "testsrc=size=64x32:rate=4:duration=1", "-c:v", "libx264",
                         "-pix_fmt", "yuv420p", str(src)], check=True)
    subprocess.run(ff + ["-display_rotation", "90", "-i", str(src), "-c", "copy", str(rotated)], check=True)
    info = probe_video(rotated, LIMITS)
    assert (info.width, info.height, info.frames) == (32, 64, 4)
    assert read_video(rotated, LIMITS)[0].shape == (4, 64, 32, 3)


def test_ffmetadata_escapes_and_sections() -> None:
    text = (";FFMETADATA1\nmajor_brand=isom\ncomment={\"a\": \"x\\=y\\;\\#\\\\ end\"}\n# a comment\n"
            "multi=line one\\\nline two\n[STREAM]\ncomment=of the stream\n")
    assert parse_ffmetadata(text) == {"major_brand": "isom", "comment": '{"a": "x=y;#\\ end"}',
                                      "multi": "line one\nline two"}


def test_media_limits_name_the_bad_field() -> None:
    with pytest.raises(ValueError, match="MediaLimits.max_frames must be a positive integer, got 0"):
        MediaLimits(max_frames=0)
    with pytest.raises(ValueError, match="max_pixels"):
        MediaLimits(max_pixels=1.5)  # type: ignore[arg-type]


def test_settings_build_the_one_media_limits(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).media_limits == MediaLimits()  # the defaults agree
    env = {"STUDIO_MAX_UPLOAD_MB": "5", "STUDIO_MAX_INPUT_PIXELS": "1000", "STUDIO_MAX_INPUT_FRAMES": "7"}
    assert Settings.from_env(env).media_limits == MediaLimits(max_upload_mb=5, max_pixels=1000, max_frames=7)


def test_a_limit_set_in_settings_is_enforced_by_probe_and_mask_reading(tmp_path: Path) -> None:
    """Before: probe_video and read_mask used their own constants (4096x2304 pixels, 1000 frames)."""
    write_mp4(stripes(8, 32), 8, tmp_path / "v.mp4")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "m.png")
    imgs = [Image.fromarray(np.full((16, 16), 255 * (i % 2), np.uint8)) for i in range(8)]
    imgs[0].save(tmp_path / "m.gif", save_all=True, append_images=imgs[1:], duration=125)

    few_pixels = Settings(data_dir=tmp_path, max_input_pixels=32 * 32 - 1).media_limits
    for read in (probe_video, read_video, read_mask):
        with pytest.raises(MediaError, match="v.mp4: the video is 32x32; the limit is 1,023 pixels"):
            read(tmp_path / "v.mp4", few_pixels)
    with pytest.raises(MediaError, match="m.png: the image is 32x32; the limit is 1,023 pixels"):
        read_mask(tmp_path / "m.png", few_pixels)

    few_frames = Settings(data_dir=tmp_path, max_input_frames=7).media_limits
    for read in (probe_video, read_video, read_mask):
        with pytest.raises(MediaError, match="v.mp4: the video has more than 7 frames; the limit is 7"):
            read(tmp_path / "v.mp4", few_frames)
    with pytest.raises(MediaError, match="m.gif: the mask has more than 7 frames; the limit is 7"):
        read_mask(tmp_path / "m.gif", few_frames)
    exactly = Settings(data_dir=tmp_path, max_input_frames=8).media_limits
    assert probe_video(tmp_path / "v.mp4", exactly).frames == 8 and read_mask(tmp_path / "m.gif", exactly).shape[0] == 8


def test_a_video_over_the_limits_is_refused_from_its_header_without_decoding(tmp_path: Path, monkeypatch) -> None:
    long = tmp_path / "long.mp4"  # 1000 frames announced by the header
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=16x16:rate=100:duration=10",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(long)], check=True)
    import imageio_ffmpeg

    real_read_frames, decodes = imageio_ffmpeg.read_frames, []

    def header_only(path, **kw):  # let the header through, record any read that would decode frames
        params = kw.get("output_params", [])
        if params[params.index("-frames:v") + 1] != "0":
            decodes.append(params)
        return real_read_frames(path, **kw)

    monkeypatch.setattr(imageio_ffmpeg, "read_frames", header_only)
    monkeypatch.setattr(video_module, "_ffmpeg", lambda *a, **k: pytest.fail("decoded a refused video"))
    for read in (probe_video, read_video, read_mask):
        with pytest.raises(MediaError, match="long.mp4: the video has about 1000 frames; the limit is 100"):
            read(long, MediaLimits(max_frames=100))
        with pytest.raises(MediaError, match="long.mp4: the video is 16x16; the limit is 255 pixels"):
            read(long, MediaLimits(max_pixels=255))
    assert decodes == []


def test_mask_video_as_long_as_the_video_over_1000_frames(tmp_path: Path) -> None:
    """Before: ingest counted the video's frames in full but read the mask video through a 1000-frame cap,
    so a 1001-frame video with its own 1001-frame mask was refused ("mask has 1000 frames but the video
    has 1001"), whatever the settings allowed."""
    write_mp4(stripes(1001, 8), 25, tmp_path / "v.mp4")
    write_mp4(stripes(1001, 8), 25, tmp_path / "m.mp4")
    media = MediaService(FileStore(tmp_path / "data"), Settings(data_dir=tmp_path, max_input_frames=1001).media_limits)
    request = InpaintRequest(prompt="p", video=str(tmp_path / "v.mp4"), mask=str(tmp_path / "m.mp4"),
                             frames=4, fps=8, width=8, height=8, seed=1)
    stored = media.ingest(request)
    assert stored.video.startswith("inputs/") and stored.mask.startswith("inputs/")
    inputs = media.load(stored)
    assert inputs.video.shape == (4, 8, 8, 3) and inputs.mask.shape == (4, 8, 8)
    assert inputs.mask[:, :, :3].max() == 0.0 and inputs.mask[:, :, 5:].min() == 1.0
    strict = MediaService(FileStore(tmp_path / "data"), MediaLimits(max_frames=1000))
    with pytest.raises(RequestError, match="video.*more than 1000 frames"):
        strict.ingest(request)


def test_service_refuses_uploads_over_the_settings_limits(tmp_path: Path) -> None:
    write_mp4(stripes(8, 32), 8, tmp_path / "v.mp4")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "m.png")
    request = InpaintRequest(prompt="p", video=str(tmp_path / "v.mp4"), mask=str(tmp_path / "m.png"),
                             frames=4, fps=8, width=16, height=16, seed=1)
    ok = MediaService(FileStore(tmp_path / "data"), Settings(data_dir=tmp_path).media_limits)
    assert ok.load(ok.ingest(request)).mask.shape == (4, 16, 16)
    assert ok.first_frame(str(tmp_path / "v.mp4")).shape == (32, 32, 3)
    small = MediaService(FileStore(tmp_path / "data"), Settings(data_dir=tmp_path, max_input_pixels=1000).media_limits)
    with pytest.raises(RequestError, match="video.*32x32; the limit is 1,000 pixels"):
        small.ingest(request)
    with pytest.raises(RequestError, match="input.*32x32; the limit is 1,000 pixels"):
        small.load(ok.ingest(request))
    with pytest.raises(MediaError, match="32x32; the limit is 1,000 pixels"):
        small.first_frame(str(tmp_path / "v.mp4"))


# ---- clips written through the file store with the media codec ---------------------------------------


def test_save_clip_writes_mp4_with_recipe_and_thumbnail(tmp_path: Path, frames: np.ndarray) -> None:
    store = FileStore(tmp_path, codec=Mp4ClipCodec())
    saved = store.save_clip("c0ffee", frames, 8, RECIPE)
    assert leftovers(tmp_path) == ["clips/c0ffee.jpg", "clips/c0ffee.json", "clips/c0ffee.mp4"]
    assert read_mp4_metadata(store.resolve(saved.video)) == RECIPE == store.read_sidecar("c0ffee")
    assert probe_video(store.resolve(saved.video), LIMITS).frames == 8
    with Image.open(store.resolve(saved.thumb)) as thumb:
        assert thumb.size == (48, 32) and thumb.format == "JPEG"


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8, 3), np.float32)])
def test_save_clip_refuses_bad_frames_and_leaves_nothing(tmp_path: Path, bad) -> None:
    store = FileStore(tmp_path, codec=Mp4ClipCodec())
    with pytest.raises(MediaError, match="frames must"):
        store.save_clip("abc", bad, 8, RECIPE)
    assert leftovers(tmp_path) == []


def test_write_failure_names_the_file_and_ffmpeg_reason(tmp_path: Path, frames: np.ndarray) -> None:
    with pytest.raises(MediaError, match="ffmpeg could not write x.mp4: .+"):
        write_mp4(frames, 8, tmp_path / "no-such-dir" / "x.mp4")


def test_export_formats(tmp_path: Path, frames: np.ndarray) -> None:
    store = FileStore(tmp_path, codec=Mp4ClipCodec())
    store.save_clip("clip1", frames, 8, RECIPE)
    assert store.export("clip1", "mp4") == tmp_path / "exports" / "clip1" / "clip1.mp4"
    webm = store.export("clip1", "webm")
    assert webm == tmp_path / "exports" / "clip1" / "clip1.webm" and webm.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"
    assert "vp9" in ffmpeg_info(webm)
    gif = store.export("clip1", "gif")
    with Image.open(gif) as g:
        assert g.format == "GIF" and g.n_frames == 8 and g.size == (48, 32)
    mtime = webm.stat().st_mtime_ns
    assert store.export("clip1", "webm").stat().st_mtime_ns == mtime  # cached
    with pytest.raises(ValueError, match="export format"):
        store.export("clip1", "avi")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        store.export("nope", "gif")
    store.remove_clip("clip1")
    assert leftovers(tmp_path) == []


def test_a_webm_without_duration_is_read_within_the_decoded_limit(tmp_path: Path) -> None:
    """A browser recorder's webm states no duration: the length is unknown until decoded, so the
    decoded-bytes limit is checked as frames arrive, not guessed as max_frames full frames."""
    rec = tmp_path / "rec.webm"
    with rec.open("wb") as out:  # written to a pipe: no duration, no cues
        subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=16x16:rate=8:duration=1",
                        "-c:v", "libvpx", "-f", "webm", "pipe:1"], stdout=out, check=True)
    assert "Duration: N/A" in ffmpeg_info(rec)
    eight_frames = 16 * 16 * 3 * 8
    assert probe_video(rec, LIMITS).frames == 8
    assert read_video(rec, MediaLimits(max_decoded_bytes=eight_frames))[0].shape == (8, 16, 16, 3)
    with pytest.raises(MediaError, match="rec.webm: more than 0.0 MB of decoded frames"):
        read_video(rec, MediaLimits(max_decoded_bytes=eight_frames - 1))


def test_a_long_source_video_is_decoded_only_as_far_as_the_output_needs(tmp_path: Path) -> None:
    """v2v input: the frames the request uses, resized as they are decoded, equal the old decode-all path,
    and the peak memory follows the output (8 frames of 32x32), not the source (240 frames of 256x256)."""
    import tracemalloc

    from studio.media.conform import conform_image, conform_video, frame_indices
    from studio.media.video import read_video, read_video_frames

    src = np.zeros((240, 256, 256, 3), np.uint8)
    for i in range(240):
        src[i, :, i % 256] = 255
        src[i, 100:140, 100:140] = (i * 7) % 256
    path = tmp_path / "long.mp4"
    write_mp4(src, 24, path, {})
    limits = MediaLimits()
    full, _ = read_video(path, limits)
    expected = conform_video(full, 8, 32, 32)
    del full
    tracemalloc.start()
    got = read_video_frames(path, limits, frame_indices(240, 8), lambda f: conform_image(f, 32, 32))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.array_equal(got, expected)
    assert peak < 4 * 1024 * 1024, peak  # the whole source would be 47 MB decoded
    with pytest.raises(MediaError, match="frame 400 was asked for"):
        read_video_frames(path, limits, [0, 400], lambda f: f)


def test_a_preview_conforms_like_the_job_keeps_the_last_few_and_stores_nothing(tmp_path: Path, monkeypatch) -> None:
    """MediaService.preview: an upload read before generating (the page's "read as" note) is conformed as load()
    conforms a submitted one; asked again for the same file and size it is not decoded again, and a changed file
    is; nothing lands in the data dir."""
    write_mp4(stripes(30, 16), 8, tmp_path / "v.mp4")
    media = MediaService(FileStore(tmp_path / "data"), Settings(data_dir=tmp_path).media_limits)
    stored = media.ingest(InpaintRequest(prompt="p", video=str(tmp_path / "v.mp4"), mask=str(tmp_path / "v.mp4"),
                                         frames=6, fps=8, width=8, height=8, seed=1))
    decodes = []
    real = video_module.read_video_frames
    monkeypatch.setattr("studio.media.service.read_video_frames", lambda *a: decodes.append(1) or real(*a))
    before = leftovers(tmp_path / "data")
    first = media.preview("video", str(tmp_path / "v.mp4"), 6, 8, 8)
    assert np.array_equal(first.video, media.load(stored).video)
    assert media.preview("video", str(tmp_path / "v.mp4"), 6, 8, 8) is first and len(decodes) == 2  # preview, load
    assert media.preview("video", str(tmp_path / "v.mp4"), 4, 8, 8).video.shape == (4, 8, 8, 3)
    write_mp4(np.ascontiguousarray(stripes(30, 16)[:, :, ::-1]), 8, tmp_path / "v.mp4")  # white on the left now
    assert not np.array_equal(media.preview("video", str(tmp_path / "v.mp4"), 6, 8, 8).video, first.video)
    assert leftovers(tmp_path / "data") == before
    with pytest.raises(MediaError, match="no such file"):
        media.preview("image", str(tmp_path / "absent.png"), 6, 8, 8)
    with pytest.raises(ValueError, match="no preview of a 'mask'"):
        media.preview("mask", str(tmp_path / "v.mp4"), 6, 8, 8)
