"""Exports that need real editing, done with moviepy: a clip as webm (VP9) or as an animated GIF, and an
extended chain of clips stitched into one mp4.

The mp4 itself is written by `studio.media.video.write_mp4`; the file store caches and places what
`convert` writes (`FileStore.export`).
"""

from __future__ import annotations

from pathlib import Path

from studio.media.limits import MediaError

CONVERTIBLE = ("webm", "gif")
WEBM_PARAMS = ("-crf", "32", "-b:v", "0", "-pix_fmt", "yuv420p", "-deadline", "good", "-cpu-used", "4", "-row-mt", "1")


def convert(video: Path, out: Path, fmt: str) -> None:
    """Write `video` (an mp4) to `out` as webm or gif, at the clip's own size and fps."""
    if fmt not in CONVERTIBLE:
        raise MediaError(f"cannot convert to {fmt!r}; one of {', '.join(CONVERTIBLE)}")
    from moviepy import VideoFileClip  # heavy import, only when exporting

    with VideoFileClip(str(video), audio=False) as clip:
        if fmt == "gif":
            clip.write_gif(str(out), fps=clip.fps, logger=None)
        else:
            clip.write_videofile(str(out), codec="libvpx-vp9", audio=False, logger=None,
                                 ffmpeg_params=list(WEBM_PARAMS))


def stitch(videos: list[Path], out: Path, *, skip_first_frame: bool = True) -> None:
    """Write `videos` one after the other as one H.264 mp4. A continuation starts on its parent's last
    frame, so each one after the first drops its first frame (`skip_first_frame`). Clips of other sizes
    are centred on the first clip's frame; the first clip's fps is kept."""
    if not videos:
        raise MediaError("nothing to stitch")
    from moviepy import VideoFileClip, concatenate_videoclips

    clips = [VideoFileClip(str(v), audio=False) for v in videos]
    try:
        fps = clips[0].fps
        parts = [clips[0]] + [c.subclipped(1.0 / c.fps) if skip_first_frame and c.duration > 1.0 / c.fps else c
                              for c in clips[1:]]
        joined = concatenate_videoclips(parts, method="compose")
        joined.write_videofile(str(out), fps=fps, codec="libx264", audio=False, logger=None,
                               ffmpeg_params=["-pix_fmt", "yuv420p", "-movflags", "+faststart"])
    finally:
        for c in clips:
            c.close()
