"""One JSON shape for a clip, used by the CLI (`--json`, `studio gallery`) and the API alike.

Keys: id, path, prompt, prompt_read_as (the prompt as the model was given it when it completed it from the
input, else None), negative_prompt, seed, mode, model, model_version, cfg, cfg_scale (the same
value, the name the older `generate --json` used), steps, frames, fps, width, height, strength,
profile, loras ([{"name", "sha256", "weight"}]), inputs, starred, tags, note, sweep, axes, parent, author, votes (reviewers' votes through review
links), batch_id, seconds, created_at, interpolation (None, or for a clip made by frame interpolation
{"factor", "method", "source", "source_fps", "source_frames"}: its `parent` is the source, `fps`/`frames` are
its own, the other settings are the source's recipe); `generate --json` and the API's generation endpoints add
`warnings` (words the model does not know, e.g. "unknown words: cat").
"""

from __future__ import annotations

from typing import Any

from pipelines.contract import GenerationRequest
from studio.gallery import ClipView


def clip_json(view: ClipView, **extra: Any) -> dict[str, Any]:
    out = {
        "id": view.id,
        "path": str(view.video),
        "prompt": view.prompt,
        # the prompt as the model was given it, when the model completed it from the input (the embedded
        # model's i2v and v2v say what the image or source shows); None when it was used as typed
        "prompt_read_as": (view.manifest or {}).get("prompt_read_as"),
        "negative_prompt": view.negative_prompt,
        "seed": view.seed,
        "mode": view.mode,
        "model": view.model_id,
        "model_version": view.model_version,
        "cfg": view.cfg_scale,
        "cfg_scale": view.cfg_scale,
        "steps": view.steps,
        "frames": view.frames,
        "fps": view.fps,
        "width": view.width,
        "height": view.height,
        "strength": view.strength,
        "profile": view.profile,
        "inputs": view.inputs,
        "starred": view.starred,
        "tags": list(view.tags),
        "note": view.note,
        "sweep": view.sweep_id,
        "axes": view.axes,
        "parent": view.parent_id,
        "author": view.author,
        "votes": view.votes,
        "batch_id": view.batch_id,
        "seconds": round(view.generation_seconds, 3),
        "created_at": view.created_at,
        "interpolation": view.params.get("interpolation"),
        "loras": lora_json(view.params.get("loras")),
    }
    out.update(extra)
    return out


def lora_json(loras) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """A clip's LoRAs as [{"name", "sha256", "weight"}], in the order they were applied."""
    return [{"name": x.get("name"), "sha256": x.get("sha256"), "weight": x.get("weight")}
            for x in (loras or []) if isinstance(x, dict)]


def public_clip_json(view: ClipView) -> dict[str, Any]:
    """`clip_json` for callers of the web API: no server paths. (A dict with a `path` string would also be
    taken for a file by Gradio and its client.) The video itself is the endpoint's first output; `video_url`
    and `thumb_url` are where the studio serves the clip by id, relative to its address."""
    out = clip_json(view, video_url=f"/media/clip/{view.id}.mp4", thumb_url=f"/media/thumb/{view.id}.jpg")
    del out["path"]
    for lora in out["loras"]:  # a LoRA given by path (the CLI): its file name only
        lora["name"] = str(lora["name"] or "").replace("\\", "/").rsplit("/", 1)[-1]
    out["inputs"] = {name: {k: v for k, v in meta.items() if k != "path"} if isinstance(meta, dict) else None
                     for name, meta in view.inputs.items()}
    return out


REVIEW_RECIPE = ("prompt", "negative_prompt", "seed", "mode", "model", "model_version", "cfg", "steps", "frames", "fps",
                 "width", "height", "strength", "profile", "axes")


def review_recipe(view: ClipView) -> dict[str, Any]:
    """What a review link shows of a clip besides its video: the settings it was made with. No id, author,
    note, tags, lineage, inputs or paths: a reviewer outside the studio learns the recipe and nothing else."""
    full = clip_json(view)
    return {key: full[key] for key in REVIEW_RECIPE}


def recipe_json(request: GenerationRequest, clip_id: str | None = None) -> dict[str, Any]:
    """A recipe (what `studio recall` prints) with the same keys a clip uses for the same settings."""
    p = request.to_params()
    out = {
        "id": clip_id,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "mode": request.mode,
        "model": request.model_id,
        "cfg": request.cfg_scale,
        "cfg_scale": request.cfg_scale,
        "steps": request.steps,
        "frames": request.frames,
        "fps": request.fps,
        "width": request.width,
        "height": request.height,
        "strength": getattr(request, "strength", None),
        "profile": request.profile,
        "inputs": {name: getattr(request, name) for name in request.media_fields},
        "loras": lora_json(p.get("loras")),
        "params": p,
    }
    return out


def describe(view: ClipView) -> str:
    """One line for humans: the settings that tell clips apart."""
    parts = [f"seed {view.seed}", f"{view.steps} steps", f"CFG {view.cfg_scale:g}",
             f"{view.frames}f@{view.fps}", f"{view.width}x{view.height}"]
    if view.strength is not None:
        parts.append(f"strength {view.strength:g}")
    return " · ".join(parts)
