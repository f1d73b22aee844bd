"""Input media: probe and copy uploads into the data dir at submit time, decode them for the worker."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pipelines.contract import MediaInputs
from storage import video_io
from storage.files import FileStore
from pipelines.contract import GenerationRequest, RequestError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}


class MediaService:
    def __init__(self, files: FileStore, *, max_upload_mb: int, max_pixels: int, max_frames: int):
        self.files = files
        self.max_bytes = max_upload_mb * 1024 * 1024
        self.max_pixels = max_pixels
        self.max_frames = max_frames

    def _stored(self, value: str) -> bool:
        return value.startswith("inputs/")

    def _source(self, name: str, value: str) -> Path:
        path = self.files.resolve(value) if self._stored(value) else Path(value).expanduser()
        if not path.is_file():
            raise RequestError(name, f"file not found: {value}")
        return path

    def ingest(self, request: GenerationRequest) -> GenerationRequest:
        """Probe each input (fails fast with a message naming the field) and copy it into the data dir."""
        changes: dict[str, str] = {}
        for name in request.media_fields:
            value = getattr(request, name)
            path = self._source(name, value)
            try:
                video_io.check_upload(path, self.max_bytes)
                self._probe(name, path)
            except video_io.MediaError as e:
                raise RequestError(name, str(e)) from None
            if not self._stored(value):
                changes[name] = self.files.save_input(path).path
        stored = dataclasses.replace(request, **changes) if changes else request
        if "mask" in request.media_fields:
            try:  # a mask that does not match the video is refused before anything is queued
                info = video_io.probe_video(self.files.resolve(stored.video))
                raw = video_io.read_mask(self.files.resolve(stored.mask))
                video_io.conform_mask(raw, stored.frames, stored.width, stored.height,
                                      video_shape=(info.frames, info.height, info.width))
                if not raw.any():
                    raise video_io.MediaError("the mask is all black: paint (white) the region to regenerate")
            except video_io.MediaError as e:
                raise RequestError("mask", str(e)) from None
        return stored

    def _probe(self, name: str, path: Path) -> None:
        if name == "image" or (name == "mask" and path.suffix.lower() in IMAGE_SUFFIXES):
            video_io.read_image(path, max_pixels=self.max_pixels)
        else:
            info = video_io.probe_video(path)
            if info.width * info.height > self.max_pixels:
                raise video_io.MediaError(f"video is {info.width}x{info.height}, larger than the studio accepts")

    def load(self, request: GenerationRequest) -> MediaInputs:
        """Decode and conform the inputs of a stored request to its frames, width and height."""
        image = video = mask = None
        try:
            if "image" in request.media_fields:
                img = video_io.read_image(self.files.resolve(request.image), max_pixels=self.max_pixels)
                image = video_io.conform_image(img, request.width, request.height)
            if "video" in request.media_fields:
                raw, _fps = video_io.read_video(
                    self.files.resolve(request.video), max_frames=self.max_frames, max_pixels=self.max_pixels
                )
                video = video_io.conform_video(raw, request.frames, request.width, request.height)
            if "mask" in request.media_fields:
                raw_mask = video_io.read_mask(self.files.resolve(request.mask))
                mask = video_io.conform_mask(raw_mask, request.frames, request.width, request.height,
                                             video_shape=raw.shape[:3])
        except video_io.MediaError as e:
            raise RequestError("input", str(e)) from None
        return MediaInputs(image=image, video=video, mask=mask)

    def first_frame(self, path: str) -> np.ndarray:
        """The first frame of an uploaded video, for painting a mask on."""
        frames, _fps = video_io.read_video(Path(path), max_frames=1, max_pixels=self.max_pixels)
        return frames[0]

    def describe_inputs(self, request: GenerationRequest) -> dict:
        """{field: {"path": "inputs/..", "sha256": ".."}} for the gallery row and the sidecar."""
        out = {}
        for name in request.media_fields:
            rel = getattr(request, name)
            out[name] = {"path": rel, "sha256": Path(rel).name.split(".")[0]}
        return out
