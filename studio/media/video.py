"""Video files: probe, decode, and write browser-ready mp4s that carry their own recipe.

Built on imageio-ffmpeg: its `read_frames` parses ffmpeg's header for us (display size after rotation,
fps, duration) and streams raw RGB frames; the ffmpeg binary it ships (`get_ffmpeg_exe`) encodes the
mp4 from memory in one run, lists the container metadata (`-f ffmetadata`) and checks that a video
decodes from end to end (`-progress` counts the frames). No ffprobe, no box parsing, no regexes over
ffmpeg's log.

Limits (`MediaLimits`) are checked from the header before anything is decoded, and every decode is
capped at the frame limit, so an upload that claims 100 000 frames or 10000x10000 pixels costs a
header read, and one that lies in its header costs at most `max_frames + 1` decoded frames.

Arrays: frames are (F, H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import imageio_ffmpeg
import numpy as np

from studio.media.limits import MediaError, MediaLimits, mb, reason

MP4_CRF = 17  # visually lossless for these small clips
MP4_PRESET = "veryfast"  # chosen for write speed: a clip is written after every generation
FFMPEG_TIMEOUT_S = 600.0  # a full decode of an upload at the limits takes minutes on a small CPU
SIGNATURES = "MP4/MOV, WebM/MKV, AVI or GIF"


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed (rotation applied)
    height: int
    frames: int  # decoded frames, counted
    fps: float
    duration: float  # seconds


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


# ---- files ---------------------------------------------------------------------------------------


def check_upload(path: Path | str, limits: MediaLimits) -> int:
    """Return the file's size; MediaError if it is missing, empty or over the upload limit."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p.name}: no such file")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(f"{p.name}: the file is empty")
    if size > limits.max_upload_bytes:
        raise MediaError(f"{p.name}: the file is {mb(size)}; the upload limit is {mb(limits.max_upload_bytes)}")
    return size


def sniff(path: Path) -> str | None:
    """Container kind from the file's first bytes (its content, not its name); None if not a video we take."""
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


def _check_video_file(p: Path) -> None:
    if not p.is_file():
        raise MediaError(f"{p.name}: no such file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p.name}: the file is empty")
    if sniff(p) is None:
        raise MediaError(f"{p.name}: not a video file (supported: {SIGNATURES})")


# ---- writing -------------------------------------------------------------------------------------


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


def write_mp4(frames: np.ndarray, fps: int | float, path: Path | str, metadata: dict[str, Any] | None = None) -> None:
    """Write H.264 / yuv420p / +faststart mp4 that browsers play, `metadata` embedded as JSON.

    The JSON goes into the container's `comment` tag, so the file carries its own recipe;
    `read_mp4_metadata` reads it back. Frames with an odd width or height get their last
    row/column repeated (yuv420p needs even sizes); the size is otherwise kept native.
    """
    frames = pad_to_even(check_frames(frames))
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= 240):
        raise MediaError(f"fps must be a number from 1 to 240, got {fps!r}")
    p = Path(path)
    _, h, w, _ = frames.shape
    cmd = [
        "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(MP4_CRF), "-preset", MP4_PRESET,
        "-movflags", "+faststart",
    ]
    if metadata:
        cmd += ["-metadata", "comment=" + json.dumps(metadata, ensure_ascii=False, sort_keys=True)]
    cmd += ["-f", "mp4", str(p)]
    # one ffmpeg run fed from memory; unlike imageio_ffmpeg.write_frames this reports ffmpeg's exit
    # status and message, and it does not poll for ffmpeg's exit (10 ms sleeps): measured faster
    proc = _ffmpeg(cmd, timeout=FFMPEG_TIMEOUT_S, stdin=np.ascontiguousarray(frames).data)
    if proc.returncode != 0:
        raise MediaError(f"ffmpeg could not write {p.name}: {_first_line(proc.stderr, p)}")


# ---- the recipe inside the mp4 -------------------------------------------------------------------


def read_mp4_metadata(path: Path | str) -> dict[str, Any]:
    """The JSON dict `write_mp4` embedded in the mp4's `comment` tag; {} if there is none."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0 or sniff(p) != "mp4":
        raise MediaError(f"{p.name}: not an mp4 file")
    proc = _ffmpeg(["-i", str(p), "-f", "ffmetadata", "-"], timeout=60)
    if proc.returncode != 0:
        raise MediaError(f"{p.name}: could not read the metadata ({_first_line(proc.stderr, p)})")
    text = parse_ffmetadata(proc.stdout.decode("utf-8", "replace")).get("comment")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def parse_ffmetadata(text: str) -> dict[str, str]:
    """The global `key=value` tags of ffmpeg's FFMETADATA1 text (before any [STREAM]/[CHAPTER] section).

    Format (ffmpeg-formats, "Metadata"): ';' or '#' start a comment line; '=', ';', '#', '\\' and a newline
    inside a key or value are escaped with a backslash.
    """
    tags: dict[str, str] = {}
    key: list[str] = []
    value: list[str] = []
    in_value = False
    at_line_start = True
    i = 0
    while i < len(text):
        c = text[i]
        if at_line_start and c in ";#":  # comment line (the ";FFMETADATA1" header is one)
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
            continue
        if at_line_start and c == "[":  # a section: stream or chapter tags follow
            break
        at_line_start = False
        if c == "\\" and i + 1 < len(text):
            (value if in_value else key).append(text[i + 1])
            i += 2
            continue
        if c == "\n":
            if in_value:
                tags["".join(key)] = "".join(value)
            key, value, in_value, at_line_start = [], [], False, True
        elif c == "=" and not in_value:
            in_value = True
        else:
            (value if in_value else key).append(c)
        i += 1
    if in_value:
        tags["".join(key)] = "".join(value)
    return tags


def _ffmpeg(args: list[str], timeout: float, stdin: Any = None) -> subprocess.CompletedProcess:
    """Run the ffmpeg that imageio-ffmpeg ships; stdout and stderr (errors only) captured."""
    try:
        return subprocess.run(
            [ffmpeg_exe(), "-hide_banner", *(["-nostdin"] if stdin is None else []), "-v", "error", *args],
            input=stdin, capture_output=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise MediaError(f"ffmpeg took more than {timeout:g} s to read the file; it may be damaged") from None


def _first_line(stderr: bytes, p: Path) -> str:
    """ffmpeg's first complaint, the file by its name only."""
    lines = [ln.strip() for ln in reason(stderr.decode("utf-8", "replace"), p).splitlines() if ln.strip()]
    return lines[0][:200] if lines else "no error output"


# ---- probing and decoding ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    width: int  # as displayed: ffmpeg applies the rotation before handing frames out
    height: int
    fps: float  # 0 when the header does not say
    duration: float  # 0 when the header does not say

    @property
    def estimated_frames(self) -> int | None:
        return round(self.fps * self.duration) if self.fps > 0 and self.duration > 0 else None

    def fps_or_guess(self, frames: int) -> float:
        if 0 < self.fps <= 1000:
            return self.fps
        return frames / self.duration if self.duration > 0 else 25.0


def _read_header(p: Path, limits: MediaLimits) -> _Header:
    """Size, fps and duration from ffmpeg's header, checked against the limits; nothing is decoded."""
    _check_video_file(p)
    reader = imageio_ffmpeg.read_frames(str(p), output_params=["-map", "0:v:0", "-frames:v", "0"])
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration, IndexError, AttributeError, ValueError):
        raise MediaError(f"{p.name}: no video stream could be read; the file is truncated, damaged or "
                         "not a video") from None
    finally:
        reader.close()
    width, height = meta["size"]
    if width <= 0 or height <= 0 or width * height > limits.max_pixels:
        raise MediaError(f"{p.name}: the video is {width}x{height}; the limit is {limits.max_pixels:,} pixels a frame")
    header = _Header(width, height, float(meta.get("fps") or 0.0), float(meta.get("duration") or 0.0))
    estimate = header.estimated_frames
    # header durations are rounded to 10 ms and variable-rate estimates are rough: refuse here only what
    # is clearly over; the capped decode decides the rest exactly
    if estimate is not None and estimate > limits.max_frames + max(2, limits.max_frames // 20):
        raise MediaError(f"{p.name}: the video has about {estimate} frames; the limit is {limits.max_frames}")
    return header


def probe_video(path: Path | str, limits: MediaLimits) -> VideoInfo:
    """Size, frame count, fps and duration; MediaError if the file is not a sane video within `limits`.

    The header is checked first; then the frames are decoded once, capped at the frame limit, to count
    them exactly and to refuse a file that is truncated or damaged.
    """
    p = Path(path)
    header = _read_header(p, limits)
    cap = limits.max_frames + 1
    proc = _ffmpeg(["-progress", "pipe:1", "-nostats", "-i", str(p), "-map", "0:v:0", "-fps_mode", "passthrough",
                    "-frames:v", str(cap), "-f", "null", "-"], timeout=FFMPEG_TIMEOUT_S)
    if proc.returncode != 0 or proc.stderr.strip():
        raise MediaError(f"{p.name}: the file is truncated or damaged; it does not decode to the end "
                         f"({_first_line(proc.stderr, p)})")
    frames = _progress_frames(proc.stdout.decode("utf-8", "replace"))
    if frames <= 0:
        raise MediaError(f"{p.name}: the video has no frames")
    if frames > limits.max_frames:
        raise MediaError(f"{p.name}: the video has more than {limits.max_frames} frames; the limit is "
                         f"{limits.max_frames}")
    fps = header.fps_or_guess(frames)
    duration = header.duration if header.duration > 0 else frames / fps
    return VideoInfo(width=header.width, height=header.height, frames=frames, fps=fps, duration=duration)


def _progress_frames(text: str) -> int:
    """The last `frame=N` of ffmpeg's `-progress` output (machine-readable key=value lines)."""
    frames = 0
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "frame" and value.strip().isdigit():
            frames = int(value.strip())
    return frames


def read_video(path: Path | str, limits: MediaLimits, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode the video: ((F, H, W, 3) uint8, fps).

    With `max_frames`, only the first `max_frames` frames are decoded (e.g. 1 for a preview); without,
    all of them, and a video longer than `limits.max_frames` is refused. Size and decoded-memory limits
    are checked from the header before decoding.
    """
    p = Path(path)
    if max_frames is not None and max_frames < 1:
        raise MediaError(f"max_frames must be at least 1, got {max_frames}")
    header = _read_header(p, limits)
    cap = limits.max_frames if max_frames is None else min(max_frames, limits.max_frames)
    frame_bytes = header.width * header.height * 3
    # a header that states the length lets us refuse early and allocate once; one that does not (a webm
    # from a browser's recorder) is read frame by frame, the decoded-bytes limit checked as it grows
    expected = None if header.estimated_frames is None else min(header.estimated_frames, cap)
    if expected is not None and expected * frame_bytes > limits.max_decoded_bytes:
        raise MediaError(
            f"{p.name}: {expected} frames of {header.width}x{header.height} would take "
            f"{mb(expected * frame_bytes)} decoded; the limit is {mb(limits.max_decoded_bytes)}"
        )
    # one frame more than allowed when reading everything, to tell "exactly the limit" from "over it"
    wanted = cap + 1 if max_frames is None else cap
    out = np.empty((expected or 0, header.height, header.width, 3), np.uint8)
    extra: list[np.ndarray] = []
    n = 0
    reader = imageio_ffmpeg.read_frames(
        str(p), output_params=["-map", "0:v:0", "-fps_mode", "passthrough", "-frames:v", str(wanted)]
    )
    try:
        meta = next(reader)
        if tuple(meta["size"]) != (header.width, header.height):
            raise MediaError(f"{p.name}: the frame size changed between reads; the file may be damaged")
        for raw in reader:
            if n >= cap:
                raise MediaError(f"{p.name}: the video has more than {cap} frames; the limit is {cap}")
            if (n + 1) * frame_bytes > limits.max_decoded_bytes:
                raise MediaError(f"{p.name}: more than {mb(limits.max_decoded_bytes)} of decoded frames; "
                                 f"the limit is {mb(limits.max_decoded_bytes)}")
            frame = np.frombuffer(raw, np.uint8).reshape(header.height, header.width, 3)
            if n < len(out):
                out[n] = frame
            else:
                extra.append(frame)
            n += 1
    except (OSError, RuntimeError, StopIteration, IndexError, AttributeError) as e:
        raise MediaError(f"{p.name}: decoding failed after {n} frames ({_decoder_said(e, p)})") from None
    finally:
        reader.close()
    if n == 0:
        raise MediaError(f"{p.name}: could not decode any frame; the file is truncated or damaged")
    frames = np.concatenate([out[: min(n, len(out))], np.stack(extra)]) if extra else out[:n]
    return frames, header.fps_or_guess(n)


def _decoder_said(e: BaseException, p: Path) -> str:
    """A decoder's complaint for a message: its first line, the file by its name only."""
    return (reason(e, p).splitlines() or [type(e).__name__])[0][:200]


def read_video_frames(path: Path | str, limits: MediaLimits, indices: Sequence[int],
                      transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Decode only what a request needs: the frames at `indices` (repeats allowed, any order), each
    passed through `transform` (e.g. resized to the output) as soon as it is decoded. Memory is bounded
    by the output plus one source frame, however long the source video is."""
    p = Path(path)
    header = _read_header(p, limits)
    wanted: dict[int, list[int]] = {}
    for out_pos, src in enumerate(indices):
        wanted.setdefault(int(src), []).append(out_pos)
    if not wanted:
        raise MediaError(f"{p.name}: no frames asked for")
    last = max(wanted)
    out: np.ndarray | None = None
    n = 0
    reader = imageio_ffmpeg.read_frames(
        str(p), output_params=["-map", "0:v:0", "-fps_mode", "passthrough", "-frames:v", str(last + 1)]
    )
    try:
        next(reader)
        for raw in reader:
            if n in wanted:
                frame = transform(np.frombuffer(raw, np.uint8).reshape(header.height, header.width, 3))
                if out is None:
                    out = np.empty((len(indices), *frame.shape), frame.dtype)
                for pos in wanted[n]:
                    out[pos] = frame
            n += 1
            if n > last:
                break
    except (OSError, RuntimeError, StopIteration, IndexError, AttributeError) as e:
        raise MediaError(f"{p.name}: decoding failed after {n} frames ({_decoder_said(e, p)})") from None
    finally:
        reader.close()
    if out is None or n <= last:
        raise MediaError(f"{p.name}: the video ended after {n} frames; frame {last} was asked for")
    return out
