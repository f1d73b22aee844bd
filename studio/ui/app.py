"""The Gradio studio: four generation tabs, a gallery, and the public API, all over one JobService.

This module turns widget values into typed requests and hands them to the job service; it does
not import torch or SQLAlchemy. Each browser session keeps its own job ids in gr.State.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from gradio import FileData

from pipelines.contract import RequestError
from studio.ui.widgets import contact_sheet, format_eta, mask_from_editor, request_from_widgets, widgets_from_request

if TYPE_CHECKING:
    from pipelines.contract import ModelSpec
    from studio.settings import Settings
    from studio.wiring import Studio

MODES = {
    "t2v": "Text to video",
    "i2v": "Image to video",
    "v2v": "Video to video",
    "inpaint": "Inpaint",
}
POLL_SECONDS = 0.25
EXAMPLE_PROMPTS = [
    ["a red circle moving right on a navy background"],
    ["Square. Blue. Moves to the bottom. Gray background."],
    ["on beige, a white triangle that stays put"],
    ["a tangerine dot heading left over black"],
]
ASSETS = Path(__file__).resolve().parents[2] / "assets"

HOVER_PLAY_JS = """
() => {
  // gallery thumbnails play while hovered: find the hovered tile's <video> (overlays sit above it)
  const videoOf = (el) => {
    for (let n = el; n && n !== document.body; n = n.parentElement) {
      if (n.classList && n.classList.contains('studio-gallery')) return null;
      const v = n.tagName === 'VIDEO' ? n : n.querySelector && n.querySelector('video');
      if (v && v.closest('.studio-gallery')) return v;
    }
    return null;
  };
  document.addEventListener('mouseover', (e) => {
    const v = videoOf(e.target);
    if (v) { v.muted = true; v.loop = true; v.play().catch(() => {}); }
  }, true);
  document.addEventListener('mouseout', (e) => {
    const v = videoOf(e.target);
    if (v && !(e.relatedTarget && v.parentElement.contains(e.relatedTarget))) v.pause();
  }, true);
}
"""


@dataclass
class ModeTab:
    mode: str
    fields: dict[str, gr.components.Component] = field(default_factory=dict)  # request field -> widget
    seeds: gr.Slider | None = None
    mask_editor: gr.ImageEditor | None = None
    status: gr.Markdown | None = None
    preview: gr.Image | None = None
    results: gr.Gallery | None = None
    used_seed: gr.Textbox | None = None
    jobs: gr.State | None = None
    generate: gr.Button | None = None
    cancel: gr.Button | None = None


def _specs_for(studio: "Studio", mode: str) -> list["ModelSpec"]:
    return [s for s in studio.registry.specs() if mode in s.modes]


def _range_info(rng) -> str:
    step = f", step {rng.multiple_of}" if rng.multiple_of > 1 else ""
    return f"{rng.min:g} to {rng.max:g}{step}"


SETTINGS = ("steps", "cfg_scale", "frames", "fps", "width", "height", "profile")


def _setting_props(spec: "ModelSpec | None") -> dict[str, dict]:
    """Per settings widget, what a model gives it (value, bounds, hints): used to build the widgets
    and to update them when the model changes, so the two cannot drift apart."""
    if spec is None:
        return {"steps": dict(value=20, minimum=1, maximum=100), "cfg_scale": dict(value=5.0, minimum=0, maximum=20),
                **{n: dict(value=None, info=None) for n in ("frames", "fps", "width", "height")},
                "profile": dict(choices=["default"], value="default", interactive=False)}
    d, lim = spec.defaults, spec.limits
    profiles = list(spec.profiles) or ["default"]
    props = {
        "steps": dict(value=d.steps, minimum=lim.steps.min, maximum=lim.steps.max),
        "cfg_scale": dict(value=d.cfg_scale, minimum=lim.cfg_scale.min, maximum=lim.cfg_scale.max),
        "profile": dict(choices=profiles, value=profiles[0], interactive=bool(spec.profiles)),
    }
    for name in ("frames", "fps", "width", "height"):
        props[name] = dict(value=getattr(d, name), info=_range_info(getattr(lim, name)))
    return props


def _model_updates(spec: "ModelSpec", fields: dict) -> dict:
    return {fields[name]: gr.update(**props) for name, props in _setting_props(spec).items()}


def _build_mode_tab(studio: "Studio", mode: str) -> ModeTab:
    tab = ModeTab(mode)
    specs = _specs_for(studio, mode)
    default = next((s for s in specs if s.id == studio.registry.default_id), specs[0] if specs else None)
    f = tab.fields
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=320):
            f["model_id"] = gr.Dropdown(
                choices=[(f"{s.label}  ({s.id})", s.id) for s in specs],
                value=default.id if default else None,
                label="Model",
                allow_custom_value=True,
                info="a registry id, a Hugging Face repo id, or a local diffusers folder",
            )
            if mode == "i2v":
                f["image"] = gr.Image(label="First frame", type="filepath", sources=["upload", "clipboard"], height=220,
                                      elem_id=f"{mode}-image")
            if mode in ("v2v", "inpaint"):
                f["video"] = gr.Video(label="Source video", sources=["upload"], height=220, elem_id=f"{mode}-video")
            if mode == "inpaint":
                tab.mask_editor = gr.ImageEditor(
                    label="Paint the region to regenerate (on the first frame)",
                    type="numpy", sources=["upload"], height=260,
                    brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=8),
                    layers=False, transforms=[], elem_id=f"{mode}-mask-editor",
                )
                f["mask"] = gr.File(label="…or upload a mask image / mask video (white = regenerate)",
                                    file_types=["image", "video"], type="filepath", height=60, elem_id=f"{mode}-mask")
            f["prompt"] = gr.Textbox(label="Prompt", lines=2, placeholder="a red circle moving right on a navy background",
                                     elem_id=f"{mode}-prompt")
            if mode == "t2v":
                gr.Examples(EXAMPLE_PROMPTS, inputs=[f["prompt"]], label="Try")
            f["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=1)
            if mode in ("v2v", "inpaint"):
                f["strength"] = gr.Slider(0.0, 1.0, value=(0.6 if mode == "v2v" else 1.0), step=0.05,
                                          label="Strength", info="0 returns the input, 1 ignores it")
            with gr.Row():
                f["seed"] = gr.Number(value=-1, precision=0, label="Seed", info="-1 = random", min_width=120,
                                      elem_id=f"{mode}-seed")
                dice = gr.Button("Random", scale=0, min_width=80, elem_id=f"{mode}-dice")
                tab.seeds = gr.Slider(1, 8, value=1, step=1, label="Seeds", info="one clip per seed, side by side",
                                      elem_id=f"{mode}-seeds")
            p = _setting_props(default)
            with gr.Accordion("Settings", open=False):
                with gr.Row():
                    f["steps"] = gr.Slider(step=1, label="Steps", elem_id=f"{mode}-steps", **p["steps"])
                    f["cfg_scale"] = gr.Slider(step=0.5, label="CFG scale", **p["cfg_scale"])
                with gr.Row():
                    for name, label in (("frames", "Frames"), ("fps", "FPS"), ("width", "Width"), ("height", "Height")):
                        f[name] = gr.Number(precision=0, label=label, min_width=90, **p[name])
                f["profile"] = gr.Dropdown(label="Speed / memory profile", **p["profile"])
            with gr.Row():
                tab.generate = gr.Button("Generate", variant="primary", elem_id=f"{mode}-generate")
                tab.cancel = gr.Button("Cancel", variant="stop", elem_id=f"{mode}-cancel")
        with gr.Column(scale=6, min_width=320):
            tab.status = gr.Markdown("Ready.", elem_id=f"{mode}-status")
            tab.preview = gr.Image(label="Live preview", interactive=False, height=120, visible=True,
                                   elem_classes=["pixelated"])
            tab.results = gr.Gallery(label="Clips", columns=2, height="auto", object_fit="contain",
                                     elem_id=f"{mode}-results", elem_classes=["studio-results", "pixelated"])
            tab.used_seed = gr.Textbox(label="Seeds used", interactive=False)
    tab.jobs = gr.State([])
    dice.click(lambda: secrets.randbelow(2**31), outputs=f["seed"], api_visibility="private")
    def on_model(model_id):
        try:
            spec = studio.registry.spec(model_id)
        except Exception as e:  # unknown id or a folder that is not a model: say so, keep the values
            gr.Warning(str(e))
            return {}
        return _model_updates(spec, f)

    f["model_id"].change(on_model, inputs=f["model_id"], outputs=[f[k] for k in SETTINGS],
                         api_visibility="private")
    if mode == "inpaint":
        def on_video(path):
            if not path:
                return None
            try:
                frame = studio.jobs.media.first_frame(path)
            except Exception as e:
                gr.Warning(f"cannot read that video: {e}")
                return None
            return {"background": frame, "layers": [], "composite": frame}

        f["video"].change(on_video, inputs=f["video"], outputs=tab.mask_editor, api_visibility="private")
    return tab


def _wire_generation(studio: "Studio", tab: ModeTab) -> None:
    widget_inputs = set(tab.fields.values()) | {tab.seeds, tab.jobs}
    if tab.mask_editor is not None:
        widget_inputs.add(tab.mask_editor)
    name_of = {comp: name for name, comp in tab.fields.items()}

    def run(values: dict, progress=gr.Progress()):
        fields = {name_of[c]: v for c, v in values.items() if c in name_of}
        if tab.mode == "inpaint" and not fields.get("mask"):
            painted = mask_from_editor(values.get(tab.mask_editor))
            if painted is not None:
                fields["mask"] = studio.files.save_input_image(painted).path
        try:
            request = request_from_widgets(tab.mode, fields)
            seeds = int(values[tab.seeds])
            submission = studio.jobs.submit(request, seeds=seeds)
        except (RequestError, ValueError) as e:
            yield {tab.status: f"⚠️ **{e}**", tab.jobs: []}
            return
        job_ids = list(submission.job_ids)
        seeds_text = ", ".join(str(s) for s in submission.seeds)
        yield {tab.jobs: job_ids, tab.used_seed: seeds_text, tab.results: [], tab.preview: None,
               tab.status: f"Queued {len(job_ids)} clip(s), seeds {seeds_text}."}
        shown_preview = {}
        while True:
            statuses = [studio.jobs.status(j) for j in job_ids]
            done = sum(s.status in ("done", "failed", "cancelled") for s in statuses)
            running = next((s for s in statuses if s.status == "running"), None)
            waiting = next((s for s in statuses if s.status == "queued"), None)
            update: dict = {}
            if running is not None:
                idx = statuses.index(running)
                if running.total:
                    progress((done * running.total + running.step, len(job_ids) * running.total),
                             desc=f"clip {idx + 1}/{len(job_ids)}, step {running.step}/{running.total}", unit="steps")
                update[tab.status] = (
                    f"Generating clip {idx + 1} of {len(job_ids)} (seed {submission.seeds[idx]}): "
                    f"step {running.step}/{running.total or '?'} · ETA {format_eta(running.eta_seconds)}"
                )
                if running.preview_version and shown_preview.get(running.job_id) != running.preview_version:
                    frames = studio.jobs.preview(running.job_id)
                    if frames is not None:
                        update[tab.preview] = contact_sheet(frames)
                        shown_preview[running.job_id] = running.preview_version
            elif waiting is not None and waiting.queue_position is not None:
                update[tab.status] = f"Waiting in the queue: position {waiting.queue_position} (other jobs run first)."
                progress(0, desc=f"queued, position {waiting.queue_position}")
            if done == len(job_ids):
                break
            if update:
                yield update
            time.sleep(POLL_SECONDS)
        clips, problems = [], []
        for seed, s in zip(submission.seeds, statuses):
            if s.status == "done" and s.clip_id:
                view = studio.gallery.get(s.clip_id)
                clips.append((str(view.video), f"seed {seed}"))
            elif s.status == "cancelled":
                problems.append(f"seed {seed}: cancelled")
            else:
                problems.append(f"seed {seed}: {s.error}")
        summary = f"Done: {len(clips)} of {len(job_ids)} clip(s)." if clips else "No clip was made."
        if problems:
            summary += " " + "; ".join(problems)
            if any("cancelled" not in p for p in problems):
                summary = "⚠️ " + summary
        yield {tab.results: gr.Gallery(value=clips, columns=min(4, max(1, len(clips)))), tab.status: summary,
               tab.jobs: []}

    outputs = [tab.status, tab.preview, tab.results, tab.used_seed, tab.jobs]
    tab.generate.click(run, inputs=widget_inputs, outputs=outputs, concurrency_limit=None,
                               api_visibility="private", show_progress="minimal")

    def cancel(job_ids):
        studio.jobs.cancel_batch(job_ids or [])
        return "Cancelling…" if job_ids else "Nothing to cancel."

    tab.cancel.click(cancel, inputs=tab.jobs, outputs=tab.status, concurrency_limit=None, api_visibility="private")


def _build_gallery(studio: "Studio", tabs: dict[str, ModeTab], tabs_container: gr.Tabs) -> gr.Tab:
    with gr.Tab("Gallery", id="gallery") as gallery_tab:
        with gr.Row():
            mode_filter = gr.Dropdown([("All modes", "")] + [(v, k) for k, v in MODES.items()], value="",
                                      label="Mode", scale=1)
            model_filter = gr.Dropdown([("All models", "")], value="", label="Model", scale=2)
            refresh = gr.Button("Refresh", scale=0, min_width=100)
        grid = gr.Gallery(label="Clips, newest first", columns=5, height=480, allow_preview=False,
                          elem_id="gallery-grid", elem_classes=["studio-gallery", "pixelated"])
        ids = gr.State([])
        selected = gr.State(None)
        with gr.Row(visible=False) as detail:
            with gr.Column(scale=1):
                player = gr.Video(label="Clip", autoplay=True, loop=True, height=300, elem_id="gallery-player",
                                  elem_classes=["pixelated"])
            with gr.Column(scale=1):
                info = gr.Markdown()
                recipe = gr.JSON(label="Every setting", open=False)
                with gr.Row():
                    recall = gr.Button("Recall", variant="primary", elem_id="gallery-recall")
                    delete = gr.Button("Delete", variant="stop", elem_id="gallery-delete")
                with gr.Row():
                    fmt = gr.Radio(["mp4", "webm", "gif"], value="mp4", label="Download as", elem_id="gallery-format")
                    export = gr.Button("Prepare download", elem_id="gallery-export")
                download = gr.File(label="Download", interactive=False, elem_id="gallery-download", height=80)
        siblings = gr.Gallery(label="Same batch, side by side", columns=4, height=260, visible=False,
                              allow_preview=False, elem_id="gallery-batch", elem_classes=["studio-gallery", "pixelated"])

    def load(mode, model):
        views = studio.gallery.list(mode=mode or None, model_id=model or None, limit=200)
        models = studio.gallery.models()
        items = [(str(v.video), f"seed {v.seed} · {v.prompt[:40]}") for v in views]
        return {grid: items, ids: [v.id for v in views],
                model_filter: gr.update(choices=[("All models", "")] + [(m, m) for m in models])}

    for trig in (refresh.click, mode_filter.change, model_filter.change, gallery_tab.select):
        trig(load, inputs=[mode_filter, model_filter], outputs=[grid, ids, model_filter], api_visibility="private")

    def show(clip_ids, evt: gr.SelectData):
        clip_id = clip_ids[evt.index] if evt.index is not None and evt.index < len(clip_ids) else None
        view = studio.gallery.get(clip_id) if clip_id else None
        if view is None:
            return {detail: gr.update(visible=False), selected: None, siblings: gr.update(visible=False)}
        batch = studio.gallery.batch(view.batch_id)
        text = (f"**{MODES.get(view.mode, view.mode)}** · `{view.model_id}@{view.model_version}` · seed **{view.seed}**"
                f"<br>{view.prompt}<br>{view.steps} steps · CFG {view.cfg_scale:g} · {view.frames} frames @ "
                f"{view.fps} fps · {view.width}x{view.height} · made in {view.generation_seconds:.1f}s · "
                f"{view.created_at}")
        return {detail: gr.update(visible=True), selected: view.id, player: str(view.video), info: text,
                recipe: {"params": view.params, "inputs": view.inputs, "manifest": view.manifest},
                download: None,
                siblings: gr.update(value=[(str(b.video), f"seed {b.seed}") for b in batch],
                                    visible=len(batch) > 1, columns=min(4, len(batch)))}

    grid.select(show, inputs=ids, outputs=[detail, selected, player, info, recipe, download, siblings],
                api_visibility="private")

    def remove(clip_id, mode, model):
        if clip_id and studio.gallery.delete(clip_id):
            gr.Info("Deleted the clip and its files.")
        return {**load(mode, model), detail: gr.update(visible=False), selected: None}

    delete.click(remove, inputs=[selected, mode_filter, model_filter],
                 outputs=[grid, ids, model_filter, detail, selected], api_visibility="private")

    def do_export(clip_id, f):
        if not clip_id:
            return None
        try:
            return str(studio.gallery.export(clip_id, f))
        except Exception as e:
            raise gr.Error(f"could not export as {f}: {e}")

    export.click(do_export, inputs=[selected, fmt], outputs=download, api_visibility="private")

    recall_outputs = [tabs_container]
    for t in tabs.values():
        recall_outputs += list(t.fields.values()) + [t.seeds]

    def do_recall(clip_id):
        if not clip_id:
            return {}
        request = studio.gallery.recall(clip_id)
        tab = tabs[request.mode]
        values = widgets_from_request(request)
        out: dict = {tabs_container: gr.Tabs(selected=request.mode), tab.seeds: 1}
        for name, value in values.items():
            if name not in tab.fields:
                continue
            if name in ("image", "video", "mask") and value:
                value = str(studio.files.resolve(value))
            if name == "profile" and value is None:
                value = "default"
            out[tab.fields[name]] = value
        gr.Info(f"Recalled seed {request.seed} into {MODES[request.mode]}.")
        return out

    recall.click(do_recall, inputs=selected, outputs=recall_outputs, api_visibility="private")
    return gallery_tab


def _register_api(studio: "Studio") -> None:
    """The public API: one endpoint per mode, every parameter but the prompt and media with a default."""

    def _run(mode: str, prompt: str, media: dict, negative_prompt, model, seed, seeds, steps, cfg_scale,
             frames, fps, width, height, strength=None) -> tuple[FileData, list[dict]]:
        values: dict[str, Any] = dict(prompt=prompt, negative_prompt=negative_prompt, model_id=model or None,
                                      seed=seed, steps=steps, cfg_scale=cfg_scale, frames=frames, fps=fps,
                                      width=width, height=height)
        for name, value in media.items():
            values[name] = value.get("path") if isinstance(value, dict) else getattr(value, "path", value)
        if strength is not None:
            values["strength"] = strength
        try:
            submission = studio.jobs.submit(request_from_widgets(mode, values), seeds=seeds)
        except (RequestError, ValueError) as e:
            raise gr.Error(str(e))
        statuses = studio.jobs.wait(submission.job_ids)
        clips = []
        for s in statuses:
            if s.status != "done":
                raise gr.Error(f"job {s.job_id} {s.status}: {s.error or ''}")
            v = studio.gallery.get(s.clip_id)
            clips.append({"id": v.id, "seed": v.seed, "prompt": v.prompt, "model": v.model_id,
                          "model_version": v.model_version, "mode": v.mode, "steps": v.steps,
                          "cfg_scale": v.cfg_scale, "frames": v.frames, "fps": v.fps, "width": v.width,
                          "height": v.height, "file": str(v.video)})
        return FileData(path=clips[0]["file"]), clips

    def text_to_video(prompt: str, negative_prompt: str = "", model: str = "", seed: int = -1, seeds: int = 1,
                      steps: int | None = None, cfg_scale: float | None = None, frames: int | None = None,
                      fps: int | None = None, width: int | None = None,
                      height: int | None = None) -> tuple[FileData, list[dict]]:
        """Generate from a prompt. Returns the first clip's mp4 and a list describing every clip."""
        return _run("t2v", prompt, {}, negative_prompt, model, seed, seeds, steps, cfg_scale, frames, fps, width, height)

    def image_to_video(prompt: str, image: FileData, negative_prompt: str = "", model: str = "", seed: int = -1,
                       seeds: int = 1, steps: int | None = None, cfg_scale: float | None = None,
                       frames: int | None = None, fps: int | None = None, width: int | None = None,
                       height: int | None = None) -> tuple[FileData, list[dict]]:
        """Animate an image (the first frame) as the prompt says."""
        return _run("i2v", prompt, {"image": image}, negative_prompt, model, seed, seeds, steps, cfg_scale, frames,
                    fps, width, height)

    def video_to_video(prompt: str, video: FileData, strength: float = 0.6, negative_prompt: str = "",
                       model: str = "", seed: int = -1, seeds: int = 1, steps: int | None = None,
                       cfg_scale: float | None = None, frames: int | None = None, fps: int | None = None,
                       width: int | None = None, height: int | None = None) -> tuple[FileData, list[dict]]:
        """Restyle a video by a prompt; strength 0 returns the input, 1 ignores it."""
        return _run("v2v", prompt, {"video": video}, negative_prompt, model, seed, seeds, steps, cfg_scale, frames,
                    fps, width, height, strength)

    def inpaint(prompt: str, video: FileData, mask: FileData, strength: float = 1.0, negative_prompt: str = "",
                model: str = "", seed: int = -1, seeds: int = 1, steps: int | None = None,
                cfg_scale: float | None = None, frames: int | None = None, fps: int | None = None,
                width: int | None = None, height: int | None = None) -> tuple[FileData, list[dict]]:
        """Regenerate the masked region (white = regenerate, black = keep) of a video by the prompt."""
        return _run("inpaint", prompt, {"video": video, "mask": mask}, negative_prompt, model, seed, seeds, steps,
                    cfg_scale, frames, fps, width, height, strength)

    for fn in (text_to_video, image_to_video, video_to_video, inpaint):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=None)


def build_ui(studio: "Studio") -> gr.Blocks:
    with gr.Blocks(title="Video Diffusion Studio") as demo:
        gr.Markdown("## Video Diffusion Studio\nType a prompt, compare seeds side by side, recall any clip's recipe.",
                    elem_id="studio-title")
        tabs: dict[str, ModeTab] = {}
        with gr.Tabs() as container:
            for mode, title in MODES.items():
                with gr.Tab(title, id=mode):
                    tabs[mode] = _build_mode_tab(studio, mode)
                    _wire_generation(studio, tabs[mode])
            gallery_tab = _build_gallery(studio, tabs, container)
        _register_api(studio)
    demo.studio_gallery_tab = gallery_tab  # type: ignore[attr-defined]
    return demo


CSS = """
.pixelated img, .pixelated video { image-rendering: pixelated; }
#studio-title h2 { margin-bottom: 0; }
"""


def launch(settings: "Settings") -> None:
    """Build everything and serve until interrupted."""
    from studio.wiring import build_studio

    _use_data_dir_for_temp(settings)
    studio = build_studio(settings)
    try:
        serve(studio, block=True)
    finally:
        studio.close()


def _use_data_dir_for_temp(settings: "Settings") -> None:
    tmp = settings.data_dir.resolve() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp))  # uploads and Gradio's copies stay in the data dir


def serve(studio: "Studio", *, block: bool = False) -> gr.Blocks:
    """Launch the UI over a built studio. Files are served from the data dir only."""
    settings = studio.settings
    _use_data_dir_for_temp(settings)
    demo = build_ui(studio)
    demo.queue(default_concurrency_limit=None)
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        allowed_paths=[str(settings.data_dir.resolve())],
        max_file_size=f"{settings.max_upload_mb}mb",
        prevent_thread_lock=not block,
        css=CSS,
        js=HOVER_PLAY_JS,
        footer_links=["api", "gradio"],
        quiet=not block,
    )
    return demo
