"""Widget values <-> typed requests, in one place. No Gradio objects here, so it is testable alone."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipelines.contract import REQUEST_TYPES, GenerationRequest, LoraRef, RequestError, parse_lora

# request field -> widget key, for the fields every tab shares
SHARED_FIELDS = ("model_id", "prompt", "negative_prompt", "seed", "steps", "cfg_scale", "frames", "fps",
                 "width", "height", "profile")
INT_FIELDS = ("seed", "steps", "frames", "fps", "width", "height")
MISSING_MEDIA = {
    "image": "upload an image first",
    "video": "upload a video first",
    "mask": "paint the region to regenerate on the first frame, or upload a mask",
}


def _int_or_none(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RequestError(name, f"{value!r} is not a whole number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise RequestError(name, f"{value!r} is not a whole number") from None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise RequestError(name, f"{value!r} is not a whole number")
        value = int(value)
    return value


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RequestError(name, f"{value!r} is not a number")
    try:
        return float(value)
    except ValueError:
        raise RequestError(name, f"{value!r} is not a number") from None


def request_from_widgets(mode: str, values: dict[str, Any]) -> GenerationRequest:
    """values: request field name -> widget value. Seed -1 (or empty) means random."""
    cls = REQUEST_TYPES[mode]
    fields: dict[str, Any] = {}
    for name in SHARED_FIELDS:
        if name not in values:
            continue
        value = values[name]
        if name in INT_FIELDS:
            value = _int_or_none(name, value)
        if name == "seed" and value is not None and value < 0:
            value = None
        if name == "cfg_scale" and value is not None:
            value = _float(name, value)
        if name in ("prompt", "negative_prompt"):
            value = "" if value is None else value  # anything else than text is refused by validation
        if name == "profile" and (not value or value == "default"):
            value = None
        if value is None and name == "model_id":
            continue
        fields[name] = value
    for name in cls.media_fields:
        if not values.get(name):
            raise RequestError(name, MISSING_MEDIA[name])
        fields[name] = str(values[name])
    if "strength" in values and values["strength"] is not None:
        fields["strength"] = _float("strength", values["strength"])
    if values.get("loras"):
        fields["loras"] = loras_from_widgets(values["loras"], values.get("lora_weight"))
    return cls(**fields)


def loras_from_widgets(value: Any, weight: Any = None) -> tuple[LoraRef, ...]:
    """The LoRA picker's value (names in the LoRA folder, each optionally 'name:weight', or one string of
    them separated by commas) and the weight for those without their own -> LoraRefs. Paths are refused
    here: the UI and the API pick from the folder only (a path is the CLI's, on its own machine)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise RequestError("loras", f"{value!r} is not a list of LoRA names")
    default = 1.0 if weight is None or weight == "" else _float("loras", weight)
    out = []
    for item in value:
        if not isinstance(item, str):
            raise RequestError("loras", f"{item!r} is not a LoRA name")
        ref = parse_lora(item)
        if "/" in ref.name or "\\" in ref.name or ref.name.startswith((".", "~")):
            raise RequestError("loras", f"{ref.name!r}: pick a LoRA of the LoRA folder by its file name")
        explicit = item.strip() != ref.name
        out.append(ref if explicit else LoraRef(ref.name, default))
    return tuple(out)


def widgets_from_request(request: GenerationRequest) -> dict[str, Any]:
    """The same mapping backwards, for Recall."""
    out = {name: getattr(request, name) for name in SHARED_FIELDS}
    out["profile"] = out["profile"] or None
    for name in request.media_fields:
        out[name] = getattr(request, name)
    if hasattr(request, "strength"):
        out["strength"] = getattr(request, "strength")
    # each LoRA with its own weight (a recalled clip's file name: the picker takes it as it is)
    out["loras"] = [f"{r.name.replace(chr(92), '/').rsplit('/', 1)[-1]}:{r.weight:g}" for r in request.loras]
    out["lora_weight"] = 1.0
    return out


def mask_from_editor(editor_value: Any) -> np.ndarray | None:
    """An ImageEditor value -> (H, W) uint8 mask, 255 where any brush layer painted. None if nothing painted."""
    if not editor_value:
        return None
    layers = editor_value.get("layers") or []
    painted = None
    for layer in layers:
        if layer is None:
            continue
        arr = np.asarray(layer)
        alpha = arr[..., 3] if arr.ndim == 3 and arr.shape[2] == 4 else arr.max(axis=-1) if arr.ndim == 3 else arr
        hit = alpha > 0
        painted = hit if painted is None else (painted | hit)
    if painted is None or not painted.any():
        return None
    return (painted * 255).astype(np.uint8)


def contact_sheet(frames: np.ndarray, columns: int = 8, scale: int = 2) -> np.ndarray:
    """(F, H, W, 3) uint8 -> one image of up to `columns` evenly spaced frames, scaled up for a tiny preview."""
    f = frames.shape[0]
    idx = np.linspace(0, f - 1, num=min(columns, f)).round().astype(int)
    strip = np.concatenate([frames[i] for i in idx], axis=1)
    if scale > 1:
        strip = strip.repeat(scale, axis=0).repeat(scale, axis=1)
    return strip


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(round(seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
