"""Video and image I/O: write browser-ready mp4s, probe and decode uploads, conform media.

Everything goes through the ffmpeg binary shipped by imageio-ffmpeg (no ffprobe needed) and
PIL. Bad input raises `MediaError` with a message that names the file and the problem,
before any large decode happens.

Array conventions: frames are (F, H, W, 3) uint8 RGB, an image is (H, W, 3) uint8 RGB,
a mask is (F, H, W) float32 in [0, 1] where 1 = regenerate and 0 = keep.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

# Limits for uploads; callers may pass stricter ones.
MAX_PIXELS = 4096 * 2304  # per frame or image (4K UHD fits)
MAX_FRAMES = 1000
MAX_DECODED_BYTES = 2 * 1024**3  # F * H * W * 3 of a decoded video
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
MP4_COMMENT_ATOM = b"\xa9cmt"  # where `write_mp4` puts the recipe JSON (ffmpeg's "comment")


class MediaError(ValueError):
    """An input or output file is missing, fake, truncated, too large or mismatched."""


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed (rotation applied)
    height: int
    frames: int
    fps: float
    duration: float  # seconds


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# ---- uploads -----------------------------------------------------------------------------------


def check_upload(path: Path | str, max_bytes: int) -> int:
    """Return the file's size; raise MediaError if it is missing, empty or over `max_bytes`."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p.name}: no such file")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(f"{p.name}: the file is empty")
    if size > max_bytes:
        raise MediaError(f"{p.name}: the file is {_mb(size)}; the upload limit is {_mb(max_bytes)}")
    return size


def _mb(n: int) -> str:
    return f"{n / 1024**2:.1f} MB"


# ---- writing -----------------------------------------------------------------------------------


def check_frames(frames: Any) -> np.ndarray:
    """Return `frames` if it is a non-empty (F, H, W, 3) uint8 array, else raise MediaError."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise MediaError(f"frames must be a uint8 numpy array, got {type(frames).__name__} "
                         f"{getattr(frames, 'dtype', '')}".rstrip())
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise MediaError(f"frames must have shape (F, H, W, 3) with F, H, W > 0, got {frames.shape}")
    return frames


def pad_to_even(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even width and height: repeat the last row/column where they are odd."""
    _, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_mp4(frames: np.ndarray, fps: int, path: Path | str, metadata: dict[str, Any] | None = None) -> None:
    """Write H.264 / yuv420p / +faststart mp4 that browsers play, `metadata` embedded as JSON.

    Frames with an odd width or height get their last row/column repeated (yuv420p needs even
    sizes); the size is otherwise kept native. `read_mp4_metadata` reads the JSON back.
    """
    frames = pad_to_even(check_frames(frames))
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= 240):
        raise MediaError(f"fps must be a number from 1 to 240, got {fps!r}")
    _, h, w, _ = frames.shape
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "17", "-preset", "veryfast",
        "-movflags", "+faststart",
    ]
    if metadata:
        cmd += ["-metadata", "comment=" + json.dumps(metadata, ensure_ascii=False, sort_keys=True)]
    cmd += ["-f", "mp4", str(path)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            rc = proc.wait()
        if rc != 0:
            err.seek(0)
            raise MediaError(f"ffmpeg could not write {Path(path).name}: {_tail(err.read())}")


def _tail(stderr: bytes, n: int = 400) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return text[-n:] if text else "no error output"


# ---- mp4 boxes ---------------------------------------------------------------------------------


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload_start, box_end) of the ISO-BMFF boxes in f[start:end]."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", f.read(8))
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            raise MediaError(f"corrupt mp4: box {kind!r} at byte {pos} has size {size}")
        yield kind, pos + header, pos + size
        pos += size


def _check_mp4_structure(path: Path) -> None:
    """Reject truncated mp4/mov files: a top-level box past the end of file, or no 'moov'."""
    size = path.stat().st_size
    kinds = []
    with path.open("rb") as f:
        for kind, _, box_end in _boxes(f, 0, size):
            if box_end > size:
                raise MediaError(
                    f"{path.name}: the file is truncated (box {kind.decode('latin-1')!r} needs "
                    f"{box_end} bytes, the file has {size})"
                )
            kinds.append(kind)
    if b"moov" not in kinds:
        raise MediaError(f"{path.name}: the file is truncated or incomplete (no 'moov' index box)")


def read_mp4_metadata(path: Path | str) -> dict[str, Any]:
    """The JSON dict `write_mp4` embedded (moov/udta/meta/ilst/©cmt); {} if there is none."""
    p = Path(path)
    if _sniff(p) != "mp4":
        raise MediaError(f"{p.name}: not an mp4 file")
    size = p.stat().st_size
    with p.open("rb") as f:
        payload = _find_box(f, 0, size, [b"moov", b"udta", b"meta", b"ilst", MP4_COMMENT_ATOM])
        if payload is None:
            return {}
        start, end = payload
        for kind, data_start, data_end in _boxes(f, start, end):
            if kind == b"data" and data_end - data_start >= 8:
                f.seek(data_start + 8)  # skip type indicator and locale
                text = f.read(data_end - data_start - 8).decode("utf-8", "replace")
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    return {}
                return value if isinstance(value, dict) else {}
    return {}


def _find_box(f: BinaryIO, start: int, end: int, path: list[bytes]) -> tuple[int, int] | None:
    for kind, payload, box_end in _boxes(f, start, min(end, _file_end(f))):
        if kind == path[0]:
            if kind == b"meta":
                payload += 4  # 'meta' is a full box: version and flags first
            if len(path) == 1:
                return payload, box_end
            return _find_box(f, payload, box_end, path[1:])
    return None


def _file_end(f: BinaryIO) -> int:
    here = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(here)
    return end


# ---- probing and decoding videos ---------------------------------------------------------------

_SIGNATURES = "MP4/MOV, WebM/MKV, AVI or GIF"


def _sniff(path: Path) -> str | None:
    """Container kind from the first bytes, or None if it is not a video we accept."""
    with path.open("rb") as f:
        head = f.read(12)
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "mkv"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    return None


_VIDEO_LINE = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_SIZE = re.compile(r", (\d+)x(\d+)[\s,\[]")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")


def probe_video(path: Path | str, *, max_pixels: int = MAX_PIXELS, max_frames: int = 100_000) -> VideoInfo:
    """Size, frame count, fps and duration, read without decoding; MediaError if not a sane video."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p.name}: no such file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p.name}: the file is empty")
    kind = _sniff(p)
    if kind is None:
        raise MediaError(f"{p.name}: not a video file (supported: {_SIGNATURES})")
    if kind == "mp4":
        _check_mp4_structure(p)
    out = _ffmpeg_stderr(["-i", str(p)])
    video = _VIDEO_LINE.search(out)
    if video is None:
        raise MediaError(f"{p.name}: no video stream found ({_tail(out.encode(), 200)})")
    size = _SIZE.search(video.group(1) + ",")
    if size is None:
        raise MediaError(f"{p.name}: could not read the video size")
    width, height = int(size.group(1)), int(size.group(2))
    rotation = _ROTATION.search(out)
    if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise MediaError(f"{p.name}: the video is {width}x{height}; the limit is {max_pixels:,} pixels a frame")
    fps_match = _FPS.search(video.group(1))
    fps = float(fps_match.group(1)) * (1000 if fps_match and fps_match.group(2) else 1) if fps_match else 0.0
    frames = _count_frames(p)
    if frames <= 0:
        raise MediaError(f"{p.name}: the video has no frames")
    if frames > max_frames:
        raise MediaError(f"{p.name}: the video has {frames} frames; the limit is {max_frames}")
    dur = _DURATION.search(out)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
    if fps <= 0 or fps > 1000:
        fps = frames / duration if duration > 0 else 25.0
    if duration <= 0:
        duration = frames / fps
    return VideoInfo(width=width, height=height, frames=frames, fps=fps, duration=duration)


def _ffmpeg_stderr(args: list[str], timeout: float = 60) -> str:
    try:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise MediaError(f"ffmpeg took more than {timeout:g} s to read the file; it may be damaged") from None
    return proc.stderr.decode("utf-8", "replace")


def _count_frames(path: Path) -> int:
    """Count video packets by stream-copying to the null muxer (demux only, no decoding)."""
    out = _ffmpeg_stderr(["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"])
    counts = re.findall(r"frame=\s*(\d+)", out)
    return int(counts[-1]) if counts else 0


def read_video(
    path: Path | str,
    *,
    max_frames: int = MAX_FRAMES,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_DECODED_BYTES,
) -> tuple[np.ndarray, float]:
    """Decode the first `max_frames` frames: ((F, H, W, 3) uint8, fps).

    The size and decoded-memory limits are checked from the header before decoding.
    """
    p = Path(path)
    if max_frames < 1:
        raise MediaError(f"max_frames must be at least 1, got {max_frames}")
    info = probe_video(p, max_pixels=max_pixels)
    n_frames = min(info.frames, max_frames)
    frame_bytes = info.width * info.height * 3
    if n_frames * frame_bytes > max_bytes:
        raise MediaError(
            f"{p.name}: {n_frames} frames of {info.width}x{info.height} would take "
            f"{_mb(n_frames * frame_bytes)} decoded; the limit is {_mb(max_bytes)}"
        )
    out = np.empty((n_frames, info.height, info.width, 3), np.uint8)
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(p),
        "-map", "0:v:0", "-fps_mode", "passthrough", "-frames:v", str(n_frames), "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]
    n = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            while n < n_frames and _read_exactly(proc.stdout, memoryview(out[n]).cast("B")):
                n += 1
        finally:
            proc.stdout.close()
            rc = proc.wait()
        if n == 0:
            err.seek(0)
            raise MediaError(f"{p.name}: could not decode any frame ({_tail(err.read(), 200)})")
        if rc != 0 and n < n_frames:
            err.seek(0)
            raise MediaError(f"{p.name}: decoding failed after {n} frames ({_tail(err.read(), 200)})")
    return out[:n], info.fps


def _read_exactly(stream: IO[bytes], buf: memoryview) -> bool:
    got = 0
    while got < len(buf):
        k = stream.readinto(buf[got:])  # type: ignore[attr-defined]
        if not k:
            return False
        got += k
    return True


# ---- images and masks --------------------------------------------------------------------------


def _open_image(path: Path, max_pixels: int) -> Image.Image:
    """Open (header only) with PIL and check the size before anything is decoded."""
    if not path.is_file():
        raise MediaError(f"{path.name}: no such file")
    try:
        img = Image.open(path, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as e:
        raise MediaError(f"{path.name}: the image is far too large ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"{path.name}: not an image file (supported: {', '.join(IMAGE_FORMATS)}; {e})") from None
    w, h = img.size
    if w <= 0 or h <= 0 or w * h > max_pixels:
        img.close()
        raise MediaError(f"{path.name}: the image is {w}x{h}; the limit is {max_pixels:,} pixels")
    return img


def _decode(img: Image.Image, name: str) -> None:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"{name}: the image is truncated or corrupt ({e})") from None


def _to_rgb(img: Image.Image) -> np.ndarray:
    """RGB uint8; transparency is composited onto white, greyscale expanded."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_image(path: Path | str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the first frame; EXIF rotation applied, alpha composited onto white."""
    p = Path(path)
    with _open_image(p, max_pixels) as img:
        _decode(img, p.name)
        return _to_rgb(ImageOps.exif_transpose(img))


def _mask_of(img: Image.Image) -> np.ndarray:
    """Binary (H, W) float32: alpha >= 0.5 if the image has any transparency, else luminance >= 0.5."""
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        alpha = np.asarray(img.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            return (alpha >= 128).astype(np.float32)
    return (np.asarray(img.convert("L")) >= 128).astype(np.float32)


def read_mask(
    path: Path | str, *, max_frames: int = MAX_FRAMES, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """(F, H, W) float32 of 0 and 1 (1 = regenerate) from an image, animated image or video.

    Rule: white means regenerate (luminance threshold 0.5). An image with any transparent
    pixel (a brush layer from an image editor) uses its alpha instead: painted = regenerate.
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p.name}: no such file")
    if _sniff(p) in ("mp4", "mkv", "avi"):
        frames, _ = read_video(p, max_frames=max_frames, max_pixels=max_pixels)
        lum = frames[..., 0] * 0.299 + frames[..., 1] * 0.587 + frames[..., 2] * 0.114
        return (lum >= 127.5).astype(np.float32)
    with _open_image(p, max_pixels) as img:
        masks = []
        for frame in ImageSequence.Iterator(img):
            _decode(frame, p.name)
            masks.append(_mask_of(frame))
            if len(masks) > max_frames:
                raise MediaError(f"{p.name}: the mask has more than {max_frames} frames")
        return np.stack(masks)


# ---- conforming to the request's size and length -----------------------------------------------


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
