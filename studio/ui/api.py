"""The public API: one endpoint per mode plus `extend` and `interpolate_clip`, every parameter but the prompt and media with a default.

Each returns the first clip's mp4 and a list of clips in the one clip JSON shape (`studio.clips.clip_json`).
`vary` makes a sweep: a list of "NAME=VALUES" (e.g. ["cfg=3,5,7", "prompt=a red circle|a red square"]).
`loras`: LoRAs of the studio's LoRA folder by file name, each "name" (weight 1) or "name:weight" (e.g. ["style:0.8"]).
Refused input is logged in one line and answered with the message, never a traceback.
"""
# No `from __future__ import annotations` here: Gradio reads these annotations to type the API page.

import logging
from pathlib import Path
from typing import Any, Optional

import gradio as gr
from gradio import FileData

from pipelines.contract import RequestError, SweepRequest, parse_axis
from studio.clips import public_clip_json
from studio.facade import GalleryQuery, NotAllowed, QueryError, StudioFacade
from studio.ui.common import base_url, media_url, signed_in
from studio.ui.refusals import NOT_AN_UPLOAD, is_upload, upload_folder
from studio.ui.widgets import request_from_widgets

log = logging.getLogger("studio.api")
Clips = list[dict[str, Any]]


def _refuse(endpoint: str, e: Exception) -> gr.Error:
    log.info("refused %s: %s", endpoint, e)
    return gr.Error(str(e), print_exception=False)


def _path_of(value: Any) -> Any:
    """The path a media parameter names: a FileData dict's, a FileData's, or the value itself."""
    return value.get("path") if isinstance(value, dict) else getattr(value, "path", value)


def _media_path(name: str, value: Any) -> Any:
    """The file of a media parameter, which must be an upload of this server (`handle_file` in
    gradio_client): a plain server path, or a dict naming one, would let any caller read any image or
    video on the server through the studio's inputs."""
    path = _path_of(value)
    if path in (None, ""):
        return path
    if not isinstance(path, str) or "\x00" in path:
        raise RequestError(name, "is not a file")
    if not is_upload(path, upload_folder()):
        raise RequestError(name, NOT_AN_UPLOAD)
    return path


def _drop_uploads(values: dict[str, Any]) -> None:
    """An API call's uploads are its own: once the studio has taken its copy into inputs/ (or refused the
    call), they are removed instead of waiting for the cache's daily sweep."""
    uploads = upload_folder()
    for name in ("image", "video", "mask"):
        path = values.get(name)
        if isinstance(path, str) and is_upload(path, uploads):
            try:
                Path(path).unlink(missing_ok=True)
                Path(path).parent.rmdir()  # Gradio keeps each upload in a folder of its own
            except OSError:
                pass


def register_api(studio: StudioFacade) -> None:
    def run(endpoint: str, mode: str, values: dict[str, Any], seeds: int, vary: Optional[list[str]],
            clip: str = "", frame: Optional[int] = None, request: Optional[gr.Request] = None
            ) -> tuple[FileData, Clips]:
        try:
            return _run(endpoint, mode, values, seeds, vary, clip, frame, request)
        finally:
            _drop_uploads({k: _path_of(v)
                           for k, v in values.items() if k in ("image", "video", "mask")})

    def _run(endpoint: str, mode: str, values: dict[str, Any], seeds: int, vary: Optional[list[str]],
             clip: str, frame: Optional[int], request: Optional[gr.Request]) -> tuple[FileData, Clips]:
        try:
            values = {k: _media_path(k, v) if k in ("image", "video", "mask") else v for k, v in values.items()}
            values["model_id"] = values.get("model_id") or None
            if values.get("strength") is None:
                values.pop("strength", None)
            if clip:
                placeholder = {"image": "-", "video": "-"}
                wanted = studio.from_clip(request_from_widgets(mode, {**placeholder, **values}), clip, frame)
            else:
                wanted = request_from_widgets(mode, values)
            if isinstance(vary, str):
                vary = [vary] if vary else []
            axes = tuple(parse_axis(v) for v in (vary or []))
            if isinstance(seeds, bool) or not isinstance(seeds, int):
                raise RequestError("seeds", f"{seeds!r} is not a whole number")
            account = studio.account(signed_in(request))  # `request` is the caller's HTTP request
            submission = studio.submit_sweep(SweepRequest(wanted, seeds, axes), parent_id=clip or None,
                                             account=account)
        except (RequestError, ValueError, TypeError, NotAllowed) as e:
            raise _refuse(endpoint, e) from None
        statuses = studio.wait(submission.job_ids)
        clips = []
        for s in statuses:
            if s.status != "done":
                raise gr.Error(f"job {s.job_id} {s.status}: {s.error or ''}", print_exception=False)
            clips.append(studio.clip(s.clip_id))
        # the video by id (`/media/clip/<id>.mp4`), an absolute URL so that Gradio passes it on as it is
        url = f"{base_url(request)}{media_url('clip', clips[0].id)}"
        said = studio.prompt_warnings(clips[0].model_id, clips[0].prompt)  # words the model did not follow
        return (FileData(path=url, url=url, orig_name=f"{clips[0].id}.mp4"),
                [{**public_clip_json(v), "warnings": said} for v in clips])

    def text_to_video(prompt: str, negative_prompt: str = "", model: str = "", seed: int = -1, seeds: int = 1,
                      steps: Optional[int] = None, cfg_scale: Optional[float] = None, frames: Optional[int] = None,
                      fps: Optional[int] = None, width: Optional[int] = None, height: Optional[int] = None,
                      vary: Optional[list[str]] = None, loras: Optional[list[str]] = None,
                      request: gr.Request = None) -> tuple[FileData, Clips]:
        """Generate from a prompt. Returns the first clip's mp4 and a list describing every clip."""
        return run("text_to_video", "t2v", dict(prompt=prompt, negative_prompt=negative_prompt, model_id=model,
                   seed=seed, steps=steps, cfg_scale=cfg_scale, frames=frames, fps=fps, width=width, height=height,
                   loras=loras), seeds, vary, request=request)

    def image_to_video(prompt: str, image: FileData, negative_prompt: str = "", model: str = "", seed: int = -1,
                       seeds: int = 1, steps: Optional[int] = None, cfg_scale: Optional[float] = None,
                       frames: Optional[int] = None, fps: Optional[int] = None, width: Optional[int] = None,
                       height: Optional[int] = None, vary: Optional[list[str]] = None,
                       loras: Optional[list[str]] = None, request: gr.Request = None) -> tuple[FileData, Clips]:
        """Animate an image (the first frame) as the prompt says."""
        return run("image_to_video", "i2v", dict(prompt=prompt, image=image, negative_prompt=negative_prompt,
                   model_id=model, seed=seed, steps=steps, cfg_scale=cfg_scale, frames=frames, fps=fps, width=width,
                   height=height, loras=loras), seeds, vary, request=request)

    def video_to_video(prompt: str, video: FileData, strength: Optional[float] = None, negative_prompt: str = "",
                       model: str = "", seed: int = -1, seeds: int = 1, steps: Optional[int] = None,
                       cfg_scale: Optional[float] = None, frames: Optional[int] = None, fps: Optional[int] = None,
                       width: Optional[int] = None, height: Optional[int] = None,
                       vary: Optional[list[str]] = None, loras: Optional[list[str]] = None,
                      request: gr.Request = None) -> tuple[FileData, Clips]:
        """Restyle a video by a prompt; strength 0 returns the input, 1 ignores it (default: the model's)."""
        return run("video_to_video", "v2v", dict(prompt=prompt, video=video, strength=strength,
                   negative_prompt=negative_prompt, model_id=model, seed=seed, steps=steps, cfg_scale=cfg_scale,
                   frames=frames, fps=fps, width=width, height=height, loras=loras), seeds, vary, request=request)

    def inpaint(prompt: str, video: FileData, mask: FileData, strength: Optional[float] = None,
                negative_prompt: str = "", model: str = "", seed: int = -1, seeds: int = 1,
                steps: Optional[int] = None, cfg_scale: Optional[float] = None, frames: Optional[int] = None,
                fps: Optional[int] = None, width: Optional[int] = None, height: Optional[int] = None,
                vary: Optional[list[str]] = None, loras: Optional[list[str]] = None,
                      request: gr.Request = None) -> tuple[FileData, Clips]:
        """Regenerate the masked region (white = regenerate, black = keep) of a video by the prompt."""
        return run("inpaint", "inpaint", dict(prompt=prompt, video=video, mask=mask, strength=strength,
                   negative_prompt=negative_prompt, model_id=model, seed=seed, steps=steps, cfg_scale=cfg_scale,
                   frames=frames, fps=fps, width=width, height=height, loras=loras), seeds, vary, request=request)

    def extend(prompt: str, clip: str, frame: Optional[int] = None, negative_prompt: str = "", model: str = "",
               seed: int = -1, seeds: int = 1, steps: Optional[int] = None, cfg_scale: Optional[float] = None,
               frames: Optional[int] = None, fps: Optional[int] = None, vary: Optional[list[str]] = None,
               loras: Optional[list[str]] = None, request: gr.Request = None) -> tuple[FileData, Clips]:
        """Continue a gallery clip: a new clip whose first frame is the clip's last (or `frame`)."""
        return run("extend", "extend", dict(prompt=prompt, negative_prompt=negative_prompt, model_id=model, seed=seed,
                   steps=steps, cfg_scale=cfg_scale, frames=frames, fps=fps, loras=loras), seeds, vary, clip, frame,
                   request=request)

    def interpolate_clip(clip_id: str, factor: int = 2, request: gr.Request = None) -> tuple[FileData, Clips]:
        """2x or 4x a gallery clip's frame rate: a new clip whose parent is `clip_id`, with the clip's recipe and
        the step (`interpolation`). RIFE where the studio has its weights, else optical flow; the step names
        the method used. Returns its mp4 and a list with its clip object."""
        try:
            if isinstance(factor, bool) or not isinstance(factor, int):
                raise RequestError("factor", f"{factor!r} is not 2 or 4")
            account = studio.account(signed_in(request))
            submission = studio.interpolate(clip_id if isinstance(clip_id, str) else "", factor, account=account)
        except (RequestError, ValueError, TypeError, NotAllowed) as e:
            raise _refuse("interpolate_clip", e) from None
        [status] = studio.wait(submission.job_ids)
        if status.status != "done":
            raise gr.Error(f"job {status.job_id} {status.status}: {status.error or ''}", print_exception=False)
        view = studio.clip(status.clip_id)
        url = f"{base_url(request)}{media_url('clip', view.id)}"
        return FileData(path=url, url=url, orig_name=f"{view.id}.mp4"), [public_clip_json(view)]

    def list_clips(search: str = "", mine: bool = False, limit: int = 50, request: gr.Request = None) -> Clips:
        """The newest clips (optionally matching `search`, or only the caller's with `mine`)."""
        try:
            account = studio.account(signed_in(request))
            if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
                raise RequestError("limit", f"{limit!r} is not a whole number from 1 to 500")
            author = account.name if (mine and account is not None) else None
            views, _ = studio.search(GalleryQuery(text=search or "", author=author, limit=limit))
        except (RequestError, QueryError, NotAllowed) as e:
            raise _refuse("list_clips", e) from None
        return [public_clip_json(v) for v in views]

    def get_clip(clip_id: str, request: gr.Request = None) -> dict[str, Any]:
        """One clip's object (its recipe, stars, tags, note, lineage)."""
        try:
            studio.account(signed_in(request))
        except NotAllowed as e:
            raise _refuse("get_clip", e) from None
        view = studio.clip(clip_id) if isinstance(clip_id, str) else None
        if view is None:
            raise _refuse("get_clip", RequestError("clip_id", f"no clip {clip_id!r}"))
        return public_clip_json(view)

    def delete_clip(clip_id: str, request: gr.Request = None) -> bool:
        """Delete a clip and its files: your own (an admin: any). True when it was deleted."""
        try:
            return studio.delete(clip_id, account=studio.account(signed_in(request))) if isinstance(clip_id, str) \
                else False
        except NotAllowed as e:
            raise _refuse("delete_clip", e) from None

    for fn in (text_to_video, image_to_video, video_to_video, inpaint, extend, interpolate_clip, list_clips, get_clip,
               delete_clip):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=None)
