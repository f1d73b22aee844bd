"""Typed generation requests: what the UI, the CLI and the API hand to the job service.

A request arrives with `None` for "the model's default"; `resolve(spec, seed)` fills every
field from the model spec and pins the seed, and `validate(spec)` names the first bad field.
Input media are paths (the job service copies uploads into the data dir first).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from pipelines.contract.loras import MAX_LORAS, LoraRef
from pipelines.contract.spec import ModelSpec, Range

DEFAULT_MODEL_ID = ""  # "" = the registry's default model, filled in by the job service
MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**63 - 1
PARAMS_SCHEMA_VERSION = 1


class RequestError(ValueError):
    """A request field is invalid. `field` names it, the message says why."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    mode: ClassVar[str] = ""
    media_fields: ClassVar[tuple[str, ...]] = ()

    prompt: str
    negative_prompt: str = ""
    model_id: str = DEFAULT_MODEL_ID
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    frames: int | None = None
    fps: int | None = None
    width: int | None = None
    height: int | None = None
    profile: str | None = None  # speed/memory profile; None = the model's first (or none)
    # LoRAs applied to the denoiser, in order: (name, weight) pairs or LoraRef; the job service pins each file
    loras: tuple[LoraRef, ...] = ()
    # sha256 of the model's single transformer file (a GGUF), pinned by the job service at submission; a
    # recalled request carries it, and a file that changed since is refused
    transformer_sha256: str | None = None

    def __post_init__(self) -> None:
        loras = self.loras
        if loras is None:
            loras = ()
        if isinstance(loras, (str, dict, LoraRef)):
            loras = (loras,)
        try:
            value = tuple(LoraRef.of(x) for x in loras)
        except TypeError:
            value = loras  # validate() names it
        object.__setattr__(self, "loras", value)

    # ---- resolution and validation -------------------------------------------------------
    def resolve(self, spec: ModelSpec, seed: int) -> "GenerationRequest":
        """Copy with every `None` replaced by the model's default and the seed pinned."""
        d = spec.defaults
        changes: dict[str, Any] = {"seed": int(seed) if self.seed is None else self.seed}
        for name in ("steps", "cfg_scale", "frames", "fps", "width", "height"):
            if getattr(self, name) is None:
                changes[name] = getattr(d, name)
        if self.profile is None and spec.profiles:
            changes["profile"] = spec.profiles[0]
        if "strength" in {f.name for f in dataclasses.fields(self)} and getattr(self, "strength") is None:
            changes["strength"] = d.strength_for(self.mode)
        return dataclasses.replace(self, **changes)

    def validate(self, spec: ModelSpec) -> None:
        """Raise RequestError naming the first bad field. Call on a resolved request."""
        if self.mode not in spec.modes:
            raise RequestError(
                "model_id",
                f"model {spec.id!r} cannot do {self.mode}; it supports: {', '.join(spec.modes)}",
            )
        for name in ("prompt", "negative_prompt"):
            _check_text(name, getattr(self, name))
        if self.mode == "t2v" and not self.prompt.strip():
            raise RequestError("prompt", "is empty; describe the clip you want")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise RequestError("prompt", f"is {len(self.prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
        if len(self.negative_prompt) > MAX_PROMPT_CHARS:
            raise RequestError("negative_prompt", f"is longer than {MAX_PROMPT_CHARS} characters")
        if self.seed is not None and not (isinstance(self.seed, int) and not isinstance(self.seed, bool)
                                          and 0 <= self.seed <= MAX_SEED):
            raise RequestError("seed", f"{self.seed!r} is not an integer from 0 to {MAX_SEED}")
        lim = spec.limits
        _check_int("steps", self.steps, lim.steps)
        _check_float("cfg_scale", self.cfg_scale, lim.cfg_scale)
        _check_int("frames", self.frames, lim.frames)
        _check_int("fps", self.fps, lim.fps)
        _check_int("width", self.width, lim.width)
        _check_int("height", self.height, lim.height)
        if self.profile is not None and self.profile not in spec.profiles:
            known = ", ".join(spec.profiles) or "none"
            raise RequestError("profile", f"{self.profile!r} is not a profile of {spec.id}; it has: {known}")
        if self.model_id is not None and not isinstance(self.model_id, str):
            raise RequestError("model_id", f"{self.model_id!r} is not a model id")
        if self.profile is not None and not isinstance(self.profile, str):
            raise RequestError("profile", f"{self.profile!r} is not a profile name")
        self.validate_loras()
        sha = self.transformer_sha256
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64
                                    and all(c in "0123456789abcdef" for c in sha)):
            raise RequestError("transformer_sha256", f"{sha!r} is not a sha256 (64 lowercase hex digits)")
        for name in self.media_fields:
            value = getattr(self, name)
            if not value:
                raise RequestError(name, f"is required for {self.mode}")
            if not isinstance(value, str) or "\x00" in value:
                raise RequestError(name, "is not a file")
        if hasattr(self, "strength"):
            s = getattr(self, "strength")
            if s is not None and not (isinstance(s, (int, float)) and math.isfinite(s) and 0.0 <= s <= 1.0):
                raise RequestError("strength", f"{s!r} is outside 0 to 1")

    def validate_loras(self) -> None:
        if not isinstance(self.loras, tuple) or not all(isinstance(x, LoraRef) for x in self.loras):
            raise RequestError("loras", f"{self.loras!r} is not a list of (name, weight)")
        if len(self.loras) > MAX_LORAS:
            raise RequestError("loras", f"{len(self.loras)} LoRAs; at most {MAX_LORAS}")
        names = [x.name for x in self.loras]
        for ref in self.loras:
            why = ref.problem()
            if why:
                raise RequestError("loras", why)
            if names.count(ref.name) > 1:
                raise RequestError("loras", f"{ref.name} is listed twice; give it once with the weight you want")

    def for_backend(self) -> "GenerationRequest":
        """The request a backend sees (studio-level modes such as extend map onto a backend mode)."""
        return self

    # ---- serialisation (gallery params column, sidecar, recall) -------------------------------
    def to_params(self) -> dict[str, Any]:
        out = {"schema_version": PARAMS_SCHEMA_VERSION, "mode": self.mode}
        out.update(dataclasses.asdict(self))
        out["loras"] = [{k: v for k, v in dataclasses.asdict(x).items() if v is not None} for x in self.loras]
        return out


@dataclass(frozen=True, kw_only=True)
class TextToVideoRequest(GenerationRequest):
    mode: ClassVar[str] = "t2v"


@dataclass(frozen=True, kw_only=True)
class ImageToVideoRequest(GenerationRequest):
    mode: ClassVar[str] = "i2v"
    media_fields: ClassVar[tuple[str, ...]] = ("image",)
    image: str  # path of the first-frame image


@dataclass(frozen=True, kw_only=True)
class VideoToVideoRequest(GenerationRequest):
    mode: ClassVar[str] = "v2v"
    media_fields: ClassVar[tuple[str, ...]] = ("video",)
    video: str
    strength: float | None = None  # 0 returns the input, 1 ignores it


@dataclass(frozen=True, kw_only=True)
class InpaintRequest(GenerationRequest):
    mode: ClassVar[str] = "inpaint"
    media_fields: ClassVar[tuple[str, ...]] = ("video", "mask")
    video: str
    mask: str  # image or video; white = regenerate, black = keep
    strength: float | None = None


@dataclass(frozen=True, kw_only=True)
class ExtendRequest(GenerationRequest):
    """A continuation of a clip: i2v from its last frame (or the frame picked), so every model that can
    animate an image can extend. The job service hands backends the equivalent ImageToVideoRequest."""

    mode: ClassVar[str] = "extend"
    media_fields: ClassVar[tuple[str, ...]] = ("image",)
    image: str  # the first frame of the continuation: the clip's last frame unless another was picked

    def validate(self, spec: ModelSpec) -> None:
        if "i2v" not in spec.modes:
            raise RequestError("model_id", f"model {spec.id!r} cannot extend a clip: it cannot animate an image (i2v)")
        super().validate(dataclasses.replace(spec, modes=(*spec.modes, "extend")))

    def for_backend(self) -> "ImageToVideoRequest":
        return ImageToVideoRequest(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


def _check_text(name: str, value: Any) -> None:
    """Text every database and file can hold: no NUL, no lone surrogate (both pass Python but fail
    PostgreSQL or UTF-8 writes after the clip was made)."""
    if not isinstance(value, str):
        raise RequestError(name, f"must be text, not {type(value).__name__}")
    if "\x00" in value:
        raise RequestError(name, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(name, "contains an unpaired surrogate (text that is not valid Unicode)") from None


REQUEST_TYPES: dict[str, type[GenerationRequest]] = {
    cls.mode: cls
    for cls in (TextToVideoRequest, ImageToVideoRequest, VideoToVideoRequest, InpaintRequest, ExtendRequest)
}


def request_from_params(params: dict[str, Any]) -> GenerationRequest:
    """Inverse of `to_params`: rebuild the request a gallery row or sidecar was made from."""
    mode = params.get("mode")
    if mode not in REQUEST_TYPES:
        raise RequestError("mode", f"{mode!r} is not one of {', '.join(REQUEST_TYPES)}")
    cls = REQUEST_TYPES[mode]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in params.items() if k in names})


def _check_int(name: str, value: Any, rng: Range) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(name, f"{value!r} is not a whole number")
    if not rng.min <= value <= rng.max:
        raise RequestError(name, f"{value} is outside the model's range {int(rng.min)} to {int(rng.max)}")
    if rng.multiple_of > 1 and (value - rng.offset) % rng.multiple_of:
        form = f"a multiple of {rng.multiple_of}" + (f" plus {rng.offset}" if rng.offset else "")
        raise RequestError(name, f"{value} must be {form}")


def _check_float(name: str, value: Any, rng: Range) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(name, f"{value!r} is not a number")
    if not rng.min <= value <= rng.max:
        raise RequestError(name, f"{value} is outside the model's range {rng.min:g} to {rng.max:g}")
