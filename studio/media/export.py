"""Exports that need real editing, done with moviepy: a clip as webm (VP9) or as an animated GIF.

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
