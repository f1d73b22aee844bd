"""What the tabs share: mode names, file URLs, the labelled lock-step grid, settings widgets' properties."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from pipelines.contract import ModelDefaults
from studio.ui.security import media_url

if TYPE_CHECKING:
    from pipelines.contract import ModelSpec
    from studio.facade import ClipView

MODES = {
    "t2v": "Text to video",
    "i2v": "Image to video",
    "v2v": "Video to video",
    "inpaint": "Inpaint",
}
MODE_NAMES = {**MODES, "extend": "Extend"}
SETTINGS = ("steps", "cfg_scale", "frames", "fps", "width", "height", "profile", "strength")


def signed_in(request: Any) -> str | None:
    """The user name of a request (Gradio's login), None without a login."""
    return getattr(request, "username", None) if request is not None else None


def base_url(request: Any) -> str:
    """The address the browser used to reach the studio (behind a proxy or a share link too), for links
    that can be pasted anywhere; "" when unknown (the link is then relative)."""
    headers = getattr(request, "headers", None) or {}
    host = headers.get("x-forwarded-host") or headers.get("host")
    if not host:
        return ""
    scheme = headers.get("x-forwarded-proto") or "http"
    return f"{scheme.split(',')[0].strip()}://{host.split(',')[0].strip()}"


def range_info(rng) -> str:  # type: ignore[no-untyped-def]
    step = f", step {rng.multiple_of}" if rng.multiple_of > 1 else ""
    return f"{rng.min:g} to {rng.max:g}{step}"


def model_choice(spec: "ModelSpec", missing: str | None) -> tuple[str, str]:
    """A model picker entry: its label says when the weights are not installed."""
    state = "  — not installed" if missing else ""
    return f"{spec.label}  ({spec.id}){state}", spec.id


def setting_props(spec: "ModelSpec | None", mode: str) -> dict[str, dict]:
    """Per settings widget, what a model gives it (value, hints): used to build the widgets and to
    update them when the model changes, so the two cannot drift apart. Values are not clamped by the
    widgets: an out-of-range value reaches validation, which names it."""
    if spec is None:  # no model: the field defaults
        strength = ModelDefaults.inpaint_strength if mode == "inpaint" else ModelDefaults.strength
        return {"steps": dict(value=20, info=None), "cfg_scale": dict(value=5.0, minimum=0, maximum=20),
                **{n: dict(value=None, info=None) for n in ("frames", "fps", "width", "height")},
                "profile": dict(choices=["default"], value="default", interactive=False),
                "strength": dict(value=strength)}
    d, lim = spec.defaults, spec.limits
    profiles = list(spec.profiles) or ["default"]
    props = {
        "cfg_scale": dict(value=d.cfg_scale, minimum=lim.cfg_scale.min, maximum=lim.cfg_scale.max),
        "profile": dict(choices=profiles, value=profiles[0], interactive=bool(spec.profiles)),
        "strength": dict(value=d.strength_for(mode)),
    }
    for name in ("steps", "frames", "fps", "width", "height"):
        props[name] = dict(value=getattr(d, name), info=range_info(getattr(lim, name)))
    return props


@dataclass(frozen=True)
class GridCell:
    """One cell of a grid: a finished clip, or the state of a job that is not finished yet."""

    clip: "ClipView | None" = None
    text: str = ""  # "queued", "step 3/20", "failed: ..."


def _video(view: "ClipView", title: str) -> str:
    return (f'<video src="{media_url("clip", view.id)}" data-fps="{view.fps}" data-clip="{view.id}" muted playsinline '
            f'preload="auto" title="{html.escape(title, quote=True)}"></video>')


def grid_html(rows: Sequence[tuple[str, Sequence[GridCell]]], columns: Sequence[str], *, elem_id: str = "",
              caption: str = "") -> str:
    """A labelled grid (row labels left, column labels on top) whose videos play in lock-step
    (`studio-sync`: syncgrid.js attaches one control bar to it)."""
    if not rows:
        return ""
    head = "".join(f"<th scope='col'>{html.escape(c)}</th>" for c in columns)
    body = []
    for label, cells in rows:
        tds = []
        for col, cell in zip(columns, cells):
            if cell.clip is not None:
                tds.append(f"<td>{_video(cell.clip, f'{label} · {col}'.strip(' ·'))}</td>")
            else:
                tds.append(f"<td class='studio-pending'>{html.escape(cell.text)}</td>")
        body.append(f"<tr><th scope='row'>{html.escape(label)}</th>{''.join(tds)}</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    ident = f' id="{html.escape(elem_id, quote=True)}"' if elem_id else ""
    return (f'<div class="studio-sync studio-grid"{ident}><table>{cap}<thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def axes_label(axes: dict[str, Any]) -> str:
    return " · ".join(f"{k} {_fmt(v)}" for k, v in axes.items() if k != "seed") or "clips"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text if len(text) <= 48 else text[:47] + "…"


def differing(views: Sequence["ClipView"]) -> set[str]:
    """The settings whose values differ between the clips (what a comparison highlights)."""
    keys = ("prompt", "negative_prompt", "seed", "model_id", "mode", "steps", "cfg_scale", "frames", "fps",
            "width", "height", "strength", "profile")
    return {k for k in keys if len({repr(getattr(v, k)) for v in views}) > 1}
