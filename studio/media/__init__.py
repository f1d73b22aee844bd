"""Media, apart from storage: probe, decode, conform, masks, encode mp4 (imageio-ffmpeg), export (moviepy).

    limits   MediaLimits (from `Settings.media_limits`) and MediaError
    video    probe_video, read_video, write_mp4, read_mp4_metadata
    images   read_image;  masks: read_mask;  conform: conform_image / conform_video / conform_mask
    export   webm and GIF conversions;  codec: Mp4ClipCodec, what the file store is handed to write clips
    service  MediaService: ingest uploads, load a request's inputs, first_frame, describe_inputs

Nothing happens at import time; moviepy is imported only when exporting.
"""

from studio.media.limits import MediaError, MediaLimits
from studio.media.service import MediaService

__all__ = ["MediaError", "MediaLimits", "MediaService"]
