"""What the UI, the CLI and the API may do, in one narrow object: model specs, jobs, the gallery, media.

They get a `StudioFacade` from the composition root (`studio.wiring`) and never reach past it into the
file store, the database or a backend. Paths handed out are absolute and inside the data dir.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from pipelines.contract import (
    ExtendRequest,
    GenerationRequest,
    ImageToVideoRequest,
    JobStatus,
    ModelLoadError,
    ModelSpec,
    RequestError,
    SweepRequest,
    UnknownModel,
    request_from_params,
)
from storage.files import atomic_write
from storage.space import is_disk_full
from studio.accounts import Account, AccountService, NotAllowed
from studio.gallery import ClipView, GalleryQuery, QueryError
from studio.jobs import SweepSubmission
from studio.reviews import (
    CommentsOff,
    CommentView,
    RateLimited,
    ReviewError,
    ReviewNotFound,
    ReviewView,
    VoteView,
    duration,
    parse_expiry,
)
from studio.media.export import stitch
from studio.media.interpolate import FACTORS, METHODS, InterpolationRequest
from studio.media.limits import MediaError
from studio.media.video import read_mp4_metadata, read_video

if TYPE_CHECKING:
    from pipelines.contract import ModelRegistry
    from storage.files import FileStore
    from studio.gallery import GalleryService
    from studio.jobs import JobService, Submission
    from studio.media import MediaService
    from studio.reviews import ReviewService
    from studio.settings import Settings

FROM_CLIP = {"i2v": "image", "extend": "image", "v2v": "video", "inpaint": "video"}
READ_WITH = {"i2v": "image", "v2v": "video"}  # the input a mode's prompt can be read with (prompt_read_as)


def read_recipe(path: str | Path) -> tuple[GenerationRequest, str | None]:
    """The recipe an mp4 made by this studio carries in its own metadata, and its clip id.

    The file may have been renamed, moved or downloaded again; RequestError if it carries no recipe."""
    request, meta = _read_recipe_metadata(path)
    return request, meta.get("clip_id") if isinstance(meta.get("clip_id"), str) else None


def _read_recipe_metadata(path: str | Path) -> tuple[GenerationRequest, dict]:
    """The request an mp4's metadata holds, and the whole metadata (read once)."""
    name = Path(path).name
    if not Path(path).is_file():
        raise RequestError("file", f"{name}: no such file")
    try:
        meta = read_mp4_metadata(path)
    except MediaError as e:
        raise RequestError("file", str(e)) from None
    params = meta.get("params") if isinstance(meta, dict) else None
    if not isinstance(params, dict):
        raise RequestError("file", f"{name} carries no recipe of this studio")
    try:
        request = request_from_params(params)
    except (KeyError, TypeError, ValueError) as e:
        raise RequestError("file", f"{name}: its recipe cannot be read ({e})") from None
    return request, meta


class StudioFacade:
    def __init__(self, settings: "Settings", registry: "ModelRegistry", jobs: "JobService",
                 gallery: "GalleryService", media: "MediaService", files: "FileStore",
                 accounts: "AccountService | None" = None, reviews: "ReviewService | None" = None):
        self.settings = settings
        self._accounts = accounts
        self._reviews = reviews
        self._registry = registry
        self._jobs = jobs
        self._gallery = gallery
        self._media = media
        self._files = files

    # ---- accounts -------------------------------------------------------------------------------
    @property
    def auth_required(self) -> bool:
        return self.settings.accounts_on

    @property
    def hf_login(self) -> bool:
        return self.settings.hf_login

    def sign_in_hf(self, oauth_info: dict | None) -> str | None:
        """The user name of a Sign in with Hugging Face session (Gradio keeps `oauth_info` in it), with
        their account made or its role brought up to date; None when not signed in, or signed in too long ago."""
        if not self.settings.hf_login or self._accounts is None or not isinstance(oauth_info, dict):
            return None
        expires = oauth_info.get("expires_at")
        if isinstance(expires, (int, float)) and expires < time.time():
            return None
        userinfo = oauth_info.get("userinfo") or {}
        name = userinfo.get("preferred_username") if isinstance(userinfo, dict) else None
        if not isinstance(name, str) or not name:
            return None
        try:
            return self._accounts.sign_in_external(name, self.settings.role_for(name)).name
        except QueryError:
            return None  # a name the studio cannot take as an account name

    def login(self, name: str, password: str) -> bool:
        return self._accounts is not None and self._accounts.login(name, password)

    def account(self, name: str | None) -> Account | None:
        """The signed-in user's account; None when accounts are off (everyone may do everything)."""
        if not self.auth_required or self._accounts is None:
            return None
        found = self._accounts.get(name)
        if found is None:
            raise NotAllowed("sign in first")
        return found

    def check_generate(self, account: Account | None, doing: str = "generate") -> None:
        """NotAllowed unless `account` may add clips (generate or import them): a member or an admin."""
        if account is not None and not account.can_generate:
            raise NotAllowed(f"{account.name} is a viewer: viewers cannot {doing}")

    def check_change(self, account: Account | None, clip_id: str) -> ClipView:
        """The clip, if `account` may edit or delete it (its author, or an admin); NotAllowed otherwise."""
        view = self._gallery.get(clip_id)
        if view is None:
            raise KeyError(f"no clip {clip_id!r}")
        if account is not None and not account.may_change(view.author):
            raise NotAllowed(f"only {view.author or 'an admin'} or an admin may change clip {clip_id[:8]}")
        return view

    # ---- models ---------------------------------------------------------------------------------
    @property
    def default_model_id(self) -> str:
        return self._registry.default_id

    def specs(self, mode: str | None = None) -> list[ModelSpec]:
        return [s for s in self._registry.specs() if mode is None or mode in s.modes]

    def spec(self, model_id: str) -> ModelSpec:
        """UnknownModel / ModelLoadError for ids that name no model."""
        return self._registry.spec(model_id)

    # ---- LoRAs -----------------------------------------------------------------------------------
    @property
    def lora_folder(self):  # type: ignore[no-untyped-def]
        return self._jobs.loras.folder

    def loras(self) -> list[dict]:
        """The LoRA folder's files: name, family guess, rank, size (bytes)."""
        return self._jobs.loras.list()

    def lora_names(self) -> list[str]:
        return self._jobs.loras.names()

    def lora_recommended(self, picked) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
        """(the first picked LoRA with a sidecar `<lora>.json`, its {"steps", "cfg"}), or ("", {})."""
        for item in picked or []:
            rec = self._jobs.loras.recommended(str(item)) if isinstance(item, str) else {}
            if rec:
                return str(item).split(":")[0], rec
        return "", {}

    def prompt_warnings(self, model_id: str | None, prompt: str) -> list[str]:
        """What the model will not follow in the prompt ("unknown words: cat, piano"); [] when it cannot tell."""
        try:
            return self._registry.prompt_warnings(model_id or self.default_model_id, prompt)
        except Exception:  # an unknown model says so itself, where it is picked
            return []

    def prompt_read_as(self, model_id: str | None, mode: str, prompt: str, path: str | None, *, frames: int,
                       width: int, height: int) -> str | None:
        """Before generating: what an i2v or v2v prompt will be read as with the image or source video at `path`
        (an upload not yet submitted), conformed to the request's size as the job would; None when it is read
        as typed, or when that cannot be told (no input yet, a model that reads prompts as typed, a model that
        is not there). RequestError when submitting would refuse the request (a size the model refuses is not
        decoded at all), MediaError when the input cannot be read: the reason submitting would give. Reads
        `path`: the caller passes only the page's own uploads."""
        field = READ_WITH.get(mode)
        if field is None or not path:
            return None
        model_id = model_id or self.default_model_id
        try:
            entry = self._registry.entry(model_id)
            if entry.prompt_read_as is None:
                return None  # the model reads prompts as typed: nothing to decode
            # the checks submitting makes (sizes, the prompt), so nothing is decoded at a size the model refuses
            request_from_params({"mode": mode, "prompt": prompt or "", field: path, "frames": frames, "width": width,
                                 "height": height, "model_id": model_id}).validate(entry.spec)
        except (UnknownModel, ModelLoadError):  # said where the model is picked
            return None
        return entry.prompt_read_as(mode, prompt or "", self._media.preview(field, path, frames, width, height))

    def missing(self, model_id: str) -> str | None:
        """None when the model can run here, else what is missing and how to get it."""
        return self._registry.missing(model_id)

    # ---- jobs -----------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, seeds: int = 1, *, parent_id: str | None = None,
               account: Account | None = None, local_paths: bool = False) -> "Submission":
        return self.submit_sweep(SweepRequest(request, seeds), parent_id=parent_id, account=account,
                                 local_paths=local_paths).cells[0]

    def submit_sweep(self, sweep: SweepRequest, *, parent_id: str | None = None,
                     account: Account | None = None, local_paths: bool = False) -> "SweepSubmission":
        """A sweep with axes gets a sweep id; without axes it is a plain batch of seeds (sweep id "").
        With accounts on, `account` must be allowed to generate and becomes the clips' author.
        `local_paths`: a model may be a folder on this machine (the CLI, run by whoever owns it); the page
        and the API pick models by id only, never by a path on the server."""
        self.check_generate(account)
        if not local_paths:
            ids = [sweep.request.model_id] + [v for a in sweep.axes if a.field == "model_id" for v in a.values]
            for model_id in ids:
                if isinstance(model_id, str) and is_server_path(model_id):
                    raise RequestError("model_id", f"{model_id!r} is a path on the server: the page and the API "
                                       "pick a model by its id (a local folder is for `studio generate --model "
                                       "PATH` on the machine itself)")
        author = account.name if account is not None else None
        if not sweep.axes:
            return SweepSubmission("", (self._jobs.submit(sweep.request, sweep.seeds, parent_id=parent_id,
                                                          author=author),))
        return self._jobs.submit_sweep(sweep, parent_id=parent_id, author=author)

    def interpolate(self, clip_id: str, factor: int, *, method: str | None = None,
                    account: Account | None = None) -> "Submission":
        """Queue a clip with `factor` (2 or 4) times the frame rate of gallery clip `clip_id` (an id or a unique
        prefix), by optical flow or RIFE: a new clip whose parent is the source, made like any other (viewers
        may not). `method` None: rife where its weights file (STUDIO_RIFE_WEIGHTS) exists, else dis-flow.
        RequestError names a bad factor or method (rife without its weights file), a missing clip, or a result
        past the media limits."""
        self.check_generate(account, "interpolate clips")
        method = self._media.interpolation_method(method)
        source = self.resolve_clip_id(clip_id) if isinstance(clip_id, str) and clip_id else None
        if source is None:
            raise RequestError("clip", f"no clip {clip_id!r} in the gallery")
        return self._jobs.submit_interpolation(InterpolationRequest(source=source, factor=factor, method=method),
                                               author=account.name if account is not None else None)

    def status(self, job_id: str) -> JobStatus:
        return self._jobs.status(job_id)

    def preview(self, job_id: str) -> np.ndarray | None:
        return self._jobs.preview(job_id)

    def warm_up(self) -> None:
        """Load the default model in the background (the page is up; the first clip need not wait)."""
        self._jobs.warm_up()

    def wait(self, job_ids: Iterable[str], timeout: float | None = None) -> list[JobStatus]:
        return self._jobs.wait(job_ids, timeout)

    def cancel(self, job_ids: Iterable[str]) -> None:
        self._jobs.cancel_batch(list(job_ids))

    # ---- branching from a gallery clip ----------------------------------------------------------
    def from_clip(self, request: GenerationRequest, clip_id: str, frame: int | None = None) -> GenerationRequest:
        """`request` with its video or image taken from a gallery clip: the clip's mp4 for v2v and
        inpaint, one of its frames for i2v (default the first) and extend (default the last).
        Submit the result with `parent_id=clip_id` so the new clip records where it came from."""
        field = FROM_CLIP.get(request.mode)
        if field is None:
            raise RequestError("clip", f"--clip is not used by mode {request.mode}")
        view = self._gallery.get(clip_id)
        if view is None:
            raise RequestError("clip", f"no clip {clip_id!r} in the gallery")
        if field == "video":
            if frame is not None:
                raise RequestError("frame", "a frame is picked only for image-to-video and extend")
            return dataclasses.replace(request, video=str(view.video))
        frames, _ = read_video(view.video, self.settings.media_limits)
        index = (len(frames) - 1 if request.mode == "extend" else 0) if frame is None else frame
        if not -len(frames) <= index < len(frames):
            raise RequestError("frame", f"{frame} is outside the clip's {len(frames)} frames (0 to {len(frames) - 1})")
        saved = self._files.save_input_image(np.ascontiguousarray(frames[index]))
        return dataclasses.replace(request, image=saved.path)

    # ---- gallery --------------------------------------------------------------------------------
    def clip(self, clip_id: str) -> ClipView | None:
        return self._gallery.get(clip_id)

    def clip_file(self, kind: str, clip_id: str) -> Path | None:
        """A clip's video ("clip") or thumbnail ("thumb"), for serving by id; None when there is no such clip."""
        view = self.clip(clip_id)
        if view is None:
            return None
        return view.video if kind == "clip" else view.thumb

    def resolve_clip_id(self, text: str) -> str | None:
        """A full clip id from an id or a unique prefix of one (the 8 characters the page shows), else None."""
        return self._gallery.resolve_id(text)

    def batch(self, batch_id: str) -> list[ClipView]:
        return self._gallery.batch(batch_id)

    def search(self, query: GalleryQuery) -> tuple[list[ClipView], str | None]:
        """One page and the next page's cursor; QueryError names a bad filter."""
        return self._gallery.search(query)

    def recent(self, mode: str | None = None, model_id: str | None = None, limit: int = 200) -> list[ClipView]:
        return self._gallery.list(mode=mode, model_id=model_id, limit=limit)

    def models_in_gallery(self) -> list[str]:
        return self._gallery.models()

    def star(self, clip_id: str, starred: bool = True, *, account: Account | None = None) -> ClipView:
        self.check_change(account, clip_id)
        return self._gallery.star(clip_id, starred)

    def tag(self, clip_id: str, tags: list[str], *, remove: bool = False, account: Account | None = None) -> ClipView:
        self.check_change(account, clip_id)
        return self._gallery.tag(clip_id, tags, remove=remove)

    def note(self, clip_id: str, text: str, *, account: Account | None = None) -> ClipView:
        self.check_change(account, clip_id)
        return self._gallery.note(clip_id, text)

    def children(self, clip_id: str) -> list[ClipView]:
        return self._gallery.children(clip_id)

    def ancestors(self, clip_id: str) -> list[ClipView]:
        return self._gallery.ancestors(clip_id)

    def delete(self, clip_id: str, *, account: Account | None = None) -> bool:
        try:
            self.check_change(account, clip_id)
        except KeyError:
            return False
        return self._gallery.delete(clip_id)

    def export_zip(self, clip_ids: list[str], out: Path | None = None) -> Path:
        """The clips as one zip at `out` (default: in the data dir's exports/, to download from the page)."""
        if out is None:
            out = self._files.export_path(f"clips-{len(clip_ids)}-{clip_ids[0][:8]}", "zip")
        return self._gallery.export_zip(clip_ids, out)

    def import_zip(self, path: Path, *, account: Account | None = None) -> tuple[int, int]:
        """Add the clips of an exported zip: (added, already here).

        Importing adds clips, as generating does: with accounts on, `account` must be allowed to generate
        and becomes the author of the clips it adds (whoever made them elsewhere, the importer owns these
        copies). Without an account (the CLI, a studio without --auth) each clip keeps its recorded author."""
        self.check_generate(account, "import clips")
        return self._gallery.import_zip(path, author=account.name if account is not None else None)

    def import_mp4(self, path: str | Path, *, account: Account | None = None) -> ClipView:
        """Add a clip to this gallery from an mp4 this studio made elsewhere (its recipe is in the file).
        Who may, and who becomes its author: as `import_zip`. A clip already here is returned unchanged."""
        self.check_generate(account, "import clips")
        _, meta = _read_recipe_metadata(path)  # RequestError unless it carries a recipe
        try:
            frames, _ = read_video(path, self.settings.media_limits)
        except MediaError as e:
            raise RequestError("file", str(e)) from None
        return self._gallery.import_mp4(Path(path), frames, meta,
                                        author=account.name if account is not None else None)

    def chain(self, clip_id: str) -> list[ClipView]:
        """The clip and the clips it extends, oldest first (just the clip when it extends nothing)."""
        view = self._gallery.get(clip_id)
        if view is None:
            raise KeyError(f"no clip {clip_id!r}")
        out = [view]
        for parent in self._gallery.ancestors(clip_id):
            if out[-1].mode != "extend":
                break
            out.append(parent)
        return out[::-1]

    def export_chain(self, clip_id: str) -> Path:
        """An extended chain as one stitched mp4 (each continuation without its repeated first frame)."""
        views = self.chain(clip_id)
        out = self._files.export_path(f"chain-{len(views)}-clips-{clip_id[:8]}", "mp4", clip_id)
        videos = [self._files.fetch(self._files.clip_paths(v.id).video) for v in views]  # here, or fetched
        atomic_write(out, lambda tmp: stitch(videos, tmp))
        return out

    def export(self, clip_id: str, fmt: str) -> Path:
        return self._gallery.export(clip_id, fmt)

    def recall(self, clip_id: str) -> GenerationRequest:
        """The clip's exact request, its inputs as absolute paths of the stored copies."""
        request = self._gallery.recall(clip_id)
        return self.absolute_inputs(request)

    def recall_file(self, path: str | Path) -> tuple[GenerationRequest, str | None]:
        """See `read_recipe`."""
        return read_recipe(path)

    def absolute_inputs(self, request: GenerationRequest) -> GenerationRequest:
        """`request` with stored inputs (`inputs/...`) as absolute paths, as the page's widgets need them."""
        changes = {}
        for name in request.media_fields:
            value = getattr(request, name)
            if value and value.startswith("inputs/"):
                changes[name] = str(self._files.fetch(value))
        return dataclasses.replace(request, **changes) if changes else request

    # ---- review links ---------------------------------------------------------------------------
    @property
    def reviews_on(self) -> bool:
        return self._reviews is not None

    def _review_service(self) -> "ReviewService":
        if self._reviews is None:
            raise ReviewError("review", "review links are not set up in this studio")
        return self._reviews

    def share(self, kind: str, clip_ids: Iterable[str] = (), *, subject: str | None = None,
              expires: str | None = None, comments: bool = True, account: Account | None = None) -> ReviewView:
        """A review link to one clip (`clip`), 2 to 9 clips (`compare`), a sweep's or a batch's clips (`sweep`,
        `batch`: `subject` is its id). Ids may be given by a unique prefix. `expires`: `7d`, `12h`, `30m` or None.

        Who may: without accounts, anyone; a viewer never; a member only clips they made (a link shows a clip
        outside the studio's login, which is the maker's call); an admin any clip. ReviewError names a bad value."""
        reviews = self._review_service()
        span = parse_expiry(expires)
        if kind in ("sweep", "batch"):
            if not subject or not isinstance(subject, str):
                raise ReviewError(kind, f"give the {kind}'s id")
            if kind == "sweep":
                views, _ = self._gallery.search(GalleryQuery(sweep_id=subject, sort="oldest", limit=64))
            else:
                views = self._gallery.batch(subject)
            if not views:
                raise ReviewError(kind, f"no {kind} {subject[:40]!r}")
        else:
            views = []
            for text in clip_ids:
                view = self.clip(self.resolve_clip_id(str(text)) or str(text)) if text else None
                if view is None:
                    raise ReviewError("clips", f"no clip {str(text)[:40]!r}")
                views.append(view)
        if account is not None:
            if account.role == "viewer":
                raise NotAllowed(f"{account.name} is a viewer: viewers cannot share clips")
            for view in views:
                if not account.may_change(view.author):
                    raise NotAllowed(f"only {view.author or 'an admin'} or an admin may share clip {view.id[:8]}")
        return reviews.create(kind, [v.id for v in views], subject=subject, author=account.name if account else None,
                              expires=span, comments=comments)

    def reviews(self, *, account: Account | None = None) -> list[ReviewView]:
        """Review links, newest first: all of them without accounts and for admins, else the account's own."""
        if self._reviews is None:
            return []
        if account is None or account.role == "admin":
            return self._reviews.list(everyone=True)
        return self._reviews.list(account.name)

    def find_review(self, token: str) -> ReviewView | None:
        """A link by its token or URL (active, expired or revoked); None for no link or an altered token."""
        return self._reviews.find(token) if self._reviews is not None else None

    def revoke_review(self, token: str, *, account: Account | None = None) -> ReviewView:
        """Close a link for good: its creator or an admin (anyone without accounts). ReviewNotFound if no link."""
        reviews = self._review_service()
        found = reviews.find(token)
        if found is None:
            raise ReviewNotFound("no such review link")
        if account is not None and account.role != "admin" and account.name != found.author:
            raise NotAllowed(f"only {found.author or 'an admin'} or an admin may revoke this link")
        return reviews.revoke(token)

    def open_review(self, token: str) -> ReviewView:
        """An open link (ReviewNotFound for an altered, unknown, expired or revoked token)."""
        return self._review_service().open(token)

    def review_clips(self, review: ReviewView) -> list[ClipView | None]:
        return self._review_service().clips(review)

    def review_file(self, token: str, kind: str, position: int) -> Path | None:
        """A video ("clip") or thumbnail ("thumb") of an open link's clip at `position`; None otherwise."""
        try:
            review = self.open_review(token)
            view = self._review_service().clip_at(review, position)
        except (ReviewNotFound, ReviewError):
            return None
        return view.video if kind == "clip" else view.thumb

    def review_comment(self, token: str, position: object, name: object, text: object, at: object = None, *,
                       signed_in_as: str | None = None) -> CommentView:
        """A reviewer's comment through a link. `signed_in_as`: the studio account they are signed in with."""
        return self._review_service().comment(token, position, name, text, at, account=signed_in_as)

    def review_vote(self, token: str, position: object, name: object, on: object = True, *,
                    signed_in_as: str | None = None) -> tuple[int, bool]:
        return self._review_service().vote(token, position, name, on, account=signed_in_as)

    def review_state(self, token: str, name: object = None, *, signed_in_as: str | None = None) -> dict:
        return self._review_service().state(token, name, account=signed_in_as)

    def clip_comments(self, clip_id: str) -> list[CommentView]:
        """Every comment on the clip, through any link, oldest first."""
        return self._reviews.comments(clip_id=clip_id) if self._reviews is not None else []

    def clip_votes(self, clip_id: str) -> list[VoteView]:
        return self._reviews.votes(clip_id=clip_id) if self._reviews is not None else []

    def resolve_comment(self, comment_id: str, resolved: bool = True, *, account: Account | None = None) -> CommentView:
        """Mark a comment resolved (or open again): whoever may change its clip, or the link's creator."""
        reviews = self._review_service()
        comment = reviews.get_comment(comment_id)
        if comment is None:
            raise KeyError(f"no comment {comment_id!r}")
        if account is not None:
            view = self.clip(comment.clip_id)
            link = reviews.by_id(comment.review_id)
            if not ((view is not None and account.may_change(view.author))
                    or (link is not None and link.author == account.name and account.role != "viewer")):
                raise NotAllowed(f"only {view.author if view else 'its author'} or an admin may resolve this comment")
        return reviews.resolve(comment_id, resolved, account.name if account is not None else None)

    # ---- media ----------------------------------------------------------------------------------
    def first_frame(self, path: str) -> np.ndarray:
        """The first frame of an uploaded video (MediaError if it cannot be read within the limits)."""
        return self._media.first_frame(path)

    def save_mask(self, mask: np.ndarray) -> str:
        """A painted mask stored as an input; returns the value a request's `mask` field takes."""
        return self._files.save_input_image(mask).path


INTERPOLATION_FACTORS, INTERPOLATION_METHODS = FACTORS, METHODS

__all__ = ["FROM_CLIP", "is_disk_full", "INTERPOLATION_FACTORS", "INTERPOLATION_METHODS", "Account", "NotAllowed", "ClipView",
           "GalleryQuery", "QueryError", "StudioFacade", "ExtendRequest", "ImageToVideoRequest", "CommentView",
           "CommentsOff", "RateLimited", "ReviewError", "ReviewNotFound", "ReviewView", "VoteView", "duration"]


def is_server_path(model_id: str) -> bool:
    """Whether a model id names a place on the server's disk rather than a model: absolute, home- or
    dot-relative, with backslashes or `..`, or an existing folder (a relative "org/name" would be tried
    as a folder first)."""
    if model_id.startswith(("/", "~", ".")) or "\\" in model_id or ".." in model_id.split("/"):
        return True
    return "/" in model_id.split("@", 1)[0] and Path(model_id).is_dir()
