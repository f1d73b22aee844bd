"""Input media: probe and copy uploads into the data dir at submit time, decode them for the worker; frame
interpolation of decoded frames, with the learned interpolator's weights when it is wired in."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipelines.contract import GenerationRequest, MediaInputs, RequestError
from storage.files import FileStore
from studio.media.conform import conform_image, conform_mask, frame_indices
from studio.media.images import read_image
from studio.media.interpolate import RIFE, InterpolationRequest, RifeWeights, choose_method, interpolate
from studio.media.limits import MediaError, MediaLimits
from studio.media.masks import read_mask
from studio.media.video import VideoInfo, check_upload, probe_video, read_video, read_video_frames

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}
PREVIEWS_KEPT = 8  # decoded uploads preview() keeps (conformed to the request's size: 64x64x16 is 200 KB),
PREVIEW_BYTES = 64 * 2**20  # and at most this many bytes of them


class MediaService:
    def __init__(self, files: FileStore, limits: MediaLimits, rife: RifeWeights | None = None):
        self.files = files
        self.limits = limits
        self.rife = rife  # None: no learned interpolator (method rife refused, the automatic choice is dis-flow)
        self._previews: OrderedDict[tuple, MediaInputs] = OrderedDict()  # preview(): the last few, decoded
        self._previews_lock = threading.Lock()

    def interpolation_method(self, method: str | None) -> str:
        """The method an interpolation runs with (None: rife where its weights file exists, else dis-flow)."""
        return choose_method(method, self.rife)

    def interpolate(self, frames: np.ndarray, request: InterpolationRequest, *,
                    on_pair: Callable[[int, int], None] | None = None,
                    should_cancel: Callable[[], bool] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """The interpolated frames and what the step records beyond the request (for rife: the network's
        version, the weights' file name and sha256). RequestError when rife's weights are missing or wrong."""
        model, used = None, {}
        if request.method == RIFE:
            if self.rife is None:
                raise RequestError("method", "rife: this studio has no RIFE weights file configured")
            model, used = self.rife.load()  # a file gone since the job was queued: named by file name only
        out = interpolate(frames, request.factor, request.method, model=model, on_pair=on_pair,
                          should_cancel=should_cancel)
        return out, used

    def _stored(self, value: str) -> bool:
        return value.startswith("inputs/")

    def _source(self, name: str, value: str) -> Path:
        path = self.files.fetch(value) if self._stored(value) else Path(value).expanduser()
        if not path.is_file():
            raise RequestError(name, f"file not found: {value}")
        return path

    def ingest(self, request: GenerationRequest) -> GenerationRequest:
        """Probe each input (fails fast with a message naming the field) and copy it into the data dir.
        If the request is refused, the copies this call made are removed again (nothing is left behind)."""
        created: list[str] = []
        try:
            return self._ingest(request, created)
        except BaseException:
            self.files.remove_files(created)
            raise

    def _ingest(self, request: GenerationRequest, created: list[str]) -> GenerationRequest:
        changes: dict[str, str] = {}
        videos: dict[str, VideoInfo] = {}
        for name in request.media_fields:
            value = getattr(request, name)
            path = self._source(name, value)
            try:
                check_upload(path, self.limits)
                info = self._probe(name, path)
            except MediaError as e:
                raise RequestError(name, str(e)) from None
            if info is not None:
                videos[name] = info
            if not self._stored(value):
                saved = self.files.save_input(path)
                changes[name] = saved.path
                if saved.created:
                    created.append(saved.path)
        stored = dataclasses.replace(request, **changes) if changes else request
        if "mask" in request.media_fields:
            try:  # a mask that does not match the video is refused before anything is queued
                info = videos.get("video") or probe_video(self.files.fetch(stored.video), self.limits)
                raw = read_mask(self.files.fetch(stored.mask), self.limits)
                conform_mask(raw, stored.frames, stored.width, stored.height,
                             video_shape=(info.frames, info.height, info.width))
                if not raw.any():
                    raise MediaError("the mask is all black: paint (white) the region to regenerate")
            except MediaError as e:
                raise RequestError("mask", str(e)) from None
        return stored

    def _probe(self, name: str, path: Path) -> VideoInfo | None:
        """Check an input within the limits; a video's info (counted frames) is returned for the mask check."""
        if name == "image" or (name == "mask" and path.suffix.lower() in IMAGE_SUFFIXES):
            read_image(path, self.limits)
            return None
        return probe_video(path, self.limits)

    def load(self, request: GenerationRequest) -> MediaInputs:
        """Decode and conform the inputs of a stored request to its frames, width and height."""
        image = video = mask = None
        try:
            if "image" in request.media_fields:
                image = self._image(self.files.fetch(request.image), request.width, request.height)
            if "video" in request.media_fields:
                info, video = self._video(self.files.fetch(request.video), request.frames, request.width, request.height)
            if "mask" in request.media_fields:
                raw_mask = read_mask(self.files.fetch(request.mask), self.limits)
                mask = conform_mask(raw_mask, request.frames, request.width, request.height,
                                    video_shape=(info.frames, info.height, info.width))
        except MediaError as e:
            raise RequestError("input", str(e)) from None
        return MediaInputs(image=image, video=video, mask=mask)

    def preview(self, field: str, path: str, frames: int, width: int, height: int) -> MediaInputs:
        """An upload not yet submitted (the page's image or source video), decoded and conformed as `load` would,
        to read before generating. Nothing is stored. MediaError when it cannot be read within the limits.
        The last few are kept in memory (by path, size, mtime and the request's size): the page asks again at
        every change of the prompt, and a source video would otherwise be decoded at each."""
        source = Path(path)
        if field not in ("image", "video"):
            raise ValueError(f"no preview of a {field!r} input")
        size = check_upload(source, self.limits)
        try:
            mtime = source.stat().st_mtime_ns
        except OSError as e:  # gone since the check (the readers below say their own OSErrors as MediaError)
            raise MediaError(f"{source.name}: cannot be read ({e.strerror or e})") from e
        key = (field, str(source), size, mtime, frames, width, height)
        with self._previews_lock:
            if key in self._previews:
                self._previews.move_to_end(key)
                return self._previews[key]
        if field == "image":
            media = MediaInputs(image=self._image(source, width, height))
        else:
            media = MediaInputs(video=self._video(source, frames, width, height)[1])
        array = media.image if media.image is not None else media.video
        array.setflags(write=False)  # shared by every caller that asks for the same upload
        with self._previews_lock:
            self._previews[key] = media
            while len(self._previews) > PREVIEWS_KEPT or sum(
                    (m.image if m.image is not None else m.video).nbytes for m in self._previews.values()) > PREVIEW_BYTES:
                self._previews.popitem(last=False)
        return media

    def _image(self, source: Path, width: int, height: int) -> np.ndarray:
        return conform_image(read_image(source, self.limits), width, height)

    def _video(self, source: Path, frames: int, width: int, height: int) -> tuple[VideoInfo, np.ndarray]:
        # only the frames the request uses, each resized as it is decoded: memory follows the output, not the
        # upload (a 1,900-frame 512x512 source made a 1.8 GB server for a 64x64 clip)
        info = probe_video(source, self.limits)
        return info, read_video_frames(source, self.limits, frame_indices(info.frames, frames),
                                       lambda f: conform_image(f, width, height))

    def first_frame(self, path: str) -> np.ndarray:
        """The first frame of an uploaded video, for painting a mask on."""
        frames, _fps = read_video(Path(path), self.limits, max_frames=1)
        return frames[0]

    def describe_inputs(self, request: GenerationRequest) -> dict:
        """{field: {"path": "inputs/..", "sha256": ".."}} for the gallery row and the sidecar."""
        out = {}
        for name in request.media_fields:
            rel = getattr(request, name)
            out[name] = {"path": rel, "sha256": Path(rel).name.split(".")[0]}
        return out
