"""One generation tab (text, image, video to video, inpaint): widgets, sweeps, and the lock-step result grid."""

from __future__ import annotations

import html
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gradio as gr

from pipelines.contract import AXES, RequestError, SweepRequest, parse_axis
from studio.facade import READ_WITH, MediaError, NotAllowed, is_server_path
from studio.ui.common import GridCell, axes_label, grid_html, model_choice, setting_props, signed_in, SETTINGS
from studio.ui.refusals import is_upload, upload_folder
from studio.ui.widgets import contact_sheet, format_eta, mask_from_editor, request_from_widgets

if TYPE_CHECKING:
    from studio.facade import StudioFacade

POLL_SECONDS = 0.25
EXAMPLE_PROMPTS = [
    ["a red circle moving right on a navy background"],
    ["Square. Blue. Moves to the bottom. Gray background."],
    ["on beige, a white triangle that stays put"],
    ["a tangerine dot heading left over black"],
]
AXIS_CHOICES = [("—", "")] + [(name, name) for name in AXES]
AXIS_HINTS = ("3,5,7 (prompts: a red circle|a red square)", "10,20")


@dataclass
class ModeTab:
    mode: str
    fields: dict[str, gr.components.Component] = field(default_factory=dict)  # request field -> widget
    seeds: gr.Slider | None = None
    vary: list[tuple[gr.Dropdown, gr.Textbox]] = field(default_factory=list)
    mask_editor: gr.ImageEditor | None = None
    status: gr.Markdown | None = None
    preview: gr.Image | None = None
    results: gr.HTML | None = None
    used_seed: gr.Textbox | None = None
    jobs: gr.State | None = None
    branch: gr.State | None = None  # {"clip": id, "extend": bool} when the inputs came from a gallery clip
    branch_note: gr.Markdown | None = None
    prompt_note: gr.Markdown | None = None
    settings: gr.Accordion | None = None
    generate: gr.Button | None = None
    cancel: gr.Button | None = None
    then_interpolate: gr.Dropdown | None = None  # 1 (off), 2 or 4: each clip made is then interpolated


def build_mode_tab(studio: "StudioFacade", mode: str) -> ModeTab:
    tab = ModeTab(mode)
    specs = studio.specs(mode)
    default = next((s for s in specs if s.id == studio.default_model_id), specs[0] if specs else None)
    f = tab.fields
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=320):
            f["model_id"] = gr.Dropdown(
                choices=[model_choice(s, studio.missing(s.id)) for s in specs],
                value=default.id if default else None, label="Model", allow_custom_value=True,
                info="a registry id (<id>@<file>.gguf: a GGUF transformer from the GGUF folder) or a Hugging Face repo id in the server's cache", elem_id=f"{mode}-model",
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
            tab.branch_note = gr.Markdown("", elem_id=f"{mode}-branch")
            f["prompt"] = gr.Textbox(label="Prompt (Ctrl+Enter generates)", lines=2,
                                     placeholder="a red circle moving right on a navy background",
                                     elem_id=f"{mode}-prompt", elem_classes=["studio-prompt"])
            tab.prompt_note = gr.Markdown("", elem_id=f"{mode}-prompt-note")  # unknown words; i2v/v2v: the prompt as read
            if mode == "t2v":
                gr.Examples(EXAMPLE_PROMPTS, inputs=[f["prompt"]], label="Try")
            f["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=1, elem_id=f"{mode}-negative")
            p = setting_props(default, mode)
            if mode in ("v2v", "inpaint"):
                f["strength"] = gr.Slider(0.0, 1.0, step=0.05, label="Strength", info="0 returns the input, 1 ignores it",
                                          elem_id=f"{mode}-strength", **p["strength"])
            with gr.Row():
                f["seed"] = gr.Number(value=-1, precision=0, label="Seed", info="-1 = random", min_width=120,
                                      elem_id=f"{mode}-seed")
                dice = gr.Button("Random", scale=0, min_width=80, elem_id=f"{mode}-dice")
                tab.seeds = gr.Slider(1, 8, value=1, step=1, label="Seeds", info="one clip per seed, side by side",
                                      elem_id=f"{mode}-seeds")
            with gr.Row():
                for i in (1, 2):
                    axis = gr.Dropdown(AXIS_CHOICES, value="", label=f"Vary {i}", min_width=120, scale=1,
                                       elem_id=f"{mode}-vary{i}-axis")
                    values = gr.Textbox(label=f"Values {i}", placeholder=AXIS_HINTS[i - 1], scale=2, min_width=140,
                                        elem_id=f"{mode}-vary{i}-values")
                    tab.vary.append((axis, values))
            with gr.Row():
                f["loras"] = gr.Dropdown(choices=studio.lora_names(), value=[], multiselect=True,
                                         allow_custom_value=True, label="LoRAs", scale=3, min_width=160,
                                         info="files in the LoRA folder (STUDIO_LORA_DIR); type name:weight for a weight of its own",
                                         elem_id=f"{mode}-loras")
                f["lora_weight"] = gr.Slider(-2.0, 2.0, value=1.0, step=0.05, label="LoRA weight", scale=2,
                                             min_width=120, info="for each LoRA without its own",
                                             elem_id=f"{mode}-lora-weight")
            with gr.Row():
                lora_note = gr.Markdown("", elem_id=f"{mode}-lora-note")
                use_rec = gr.Button("Use recommended", size="sm", scale=0, visible=False, elem_id=f"{mode}-lora-use")
            with gr.Accordion("Settings", open=False, elem_id=f"{mode}-settings") as tab.settings:
                with gr.Row():
                    f["steps"] = gr.Number(precision=0, label="Steps", elem_id=f"{mode}-steps", min_width=90,
                                           **p["steps"])
                    f["cfg_scale"] = gr.Slider(step=0.5, label="CFG scale", elem_id=f"{mode}-cfg", **p["cfg_scale"])
                with gr.Row():
                    for name, label in (("frames", "Frames"), ("fps", "FPS"), ("width", "Width"), ("height", "Height")):
                        f[name] = gr.Number(precision=0, label=label, min_width=90, elem_id=f"{mode}-{name}", **p[name])
                f["profile"] = gr.Dropdown(label="Speed / memory profile", elem_id=f"{mode}-profile", **p["profile"])
                tab.then_interpolate = gr.Dropdown([("no", 1), ("×2 frame rate", 2), ("×4 frame rate", 4)], value=1,
                                                   label="Then interpolate", elem_id=f"{mode}-then-interpolate",
                                                   info="each clip made, by optical flow, as a branch of it")
            with gr.Row():
                tab.generate = gr.Button("Generate", variant="primary", elem_id=f"{mode}-generate")
                tab.cancel = gr.Button("Cancel", variant="stop", elem_id=f"{mode}-cancel")
        with gr.Column(scale=6, min_width=320):
            tab.status = gr.Markdown("Ready.", elem_id=f"{mode}-status")
            tab.preview = gr.Image(label="Live preview", interactive=False, height=120, visible=False,
                                   elem_classes=["pixelated"], elem_id=f"{mode}-preview")
            tab.results = gr.HTML("", elem_id=f"{mode}-results", elem_classes=["pixelated"])
            tab.used_seed = gr.Textbox(label="Seeds used", interactive=False, elem_id=f"{mode}-used-seeds")
    tab.jobs = gr.State([])
    tab.branch = gr.State(None)
    dice.click(lambda: secrets.randbelow(2**31), outputs=f["seed"], api_visibility="private")

    source = READ_WITH.get(mode)  # the input an i2v or v2v prompt is read with
    note_inputs = [f["model_id"], f["prompt"]] + ([f[source], f["frames"], f["width"], f["height"]] if source else [])

    def note_prompt(model_id, prompt, path=None, frames=None, width=None, height=None):
        """Before generating: the words the model will not follow and, for i2v and v2v, what the prompt will be
        read as with the image or source (the clip's prompt_read_as)."""
        if isinstance(model_id, str) and is_server_path(model_id):  # never opened from the page (see on_model)
            return ""
        prompt = prompt if isinstance(prompt, str) else ""
        said = "".join(f"⚠ {html.escape(w)}  \n" for w in studio.prompt_warnings(model_id, prompt))
        # only the page's own uploads are read (Gradio refuses other paths before this runs; this says so here too)
        if source and is_upload(path, upload_folder()) and all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in (frames, width, height)):
            try:
                read = studio.prompt_read_as(model_id, mode, prompt, path, frames=int(frames), width=int(width),
                                             height=int(height))
            except (RequestError, MediaError) as e:  # what submitting would refuse, said before it is tried
                return said + f"⚠ {html.escape(str(e))}  \n"
            if read:
                said += f"Read with the {source} as: *{html.escape(read)}*  \n"
        return said

    # one listener for every trigger, so the notes run one at a time and the last change wins: as separate
    # listeners, an upload's slower note (prompt still empty) could land after the prompt's and overwrite it
    sources = [f[source].change, f["frames"].change, f["width"].change, f["height"].change] if source else []
    gr.on([f["prompt"].change, f["model_id"].change] + sources, note_prompt, inputs=note_inputs,
          outputs=tab.prompt_note, show_progress="hidden", trigger_mode="always_last", api_visibility="private")
    settings_widgets = [f[k] for k in SETTINGS if k in f]

    def on_model(model_id):
        if isinstance(model_id, str) and is_server_path(model_id):  # the page picks models by id, never a path
            gr.Warning(f"{model_id!r} is a path on the server: pick a model by its id (a local folder is for "
                       "`studio generate --model PATH` on the machine itself)")
            return {f["steps"]: gr.update()}
        try:
            spec = studio.spec(model_id)
        except Exception as e:  # unknown id or a folder that is not a model: say so, keep the values
            gr.Warning(str(e))
            return {f["steps"]: gr.update()}
        missing = studio.missing(model_id)
        if missing:
            gr.Warning(missing)
        props = setting_props(spec, mode)
        return {f[name]: gr.update(**props[name]) for name in SETTINGS if name in f}

    f["model_id"].change(on_model, inputs=f["model_id"], outputs=settings_widgets, api_visibility="private")

    def on_loras(picked):  # a LoRA's sidecar (<lora>.json) recommends steps and CFG: offered, not imposed
        name, rec = studio.lora_recommended(picked)
        if not rec:
            return "", gr.update(visible=False)
        said = ", ".join(f"{v} steps" if k == "steps" else f"CFG {v:g}" for k, v in rec.items())
        return f"{html.escape(name)} recommends {said}.", gr.update(visible=True)

    def use_recommended(picked):
        _, rec = studio.lora_recommended(picked)
        return {f["steps"]: rec.get("steps", gr.update()), f["cfg_scale"]: rec.get("cfg", gr.update()),
                tab.settings: gr.Accordion(open=True)}

    f["loras"].change(on_loras, inputs=f["loras"], outputs=[lora_note, use_rec], api_visibility="private")
    use_rec.click(use_recommended, inputs=f["loras"], outputs=[f["steps"], f["cfg_scale"], tab.settings],
                  api_visibility="private")
    if mode == "inpaint":
        def on_video(path):
            if not path:
                return None
            try:
                frame = studio.first_frame(path)
            except Exception as e:
                gr.Warning(f"cannot read that video: {e}")
                return None
            return {"background": frame, "layers": [], "composite": frame}

        f["video"].change(on_video, inputs=f["video"], outputs=tab.mask_editor, api_visibility="private")
    _wire_generation(studio, tab)
    return tab


def error_markdown(e: Exception) -> str:
    """The first line in bold; further lines (a download command, say) each on their own copyable line."""
    first, *rest = str(e).splitlines()
    out = f"⚠️ **{first}**"
    if rest:
        out += "\n\n```\n" + "\n".join(line.strip() for line in rest if line.strip()) + "\n```"
    return out


def _axes_from(values: dict, vary) -> tuple:  # type: ignore[no-untyped-def]
    axes = []
    for axis_widget, values_widget in vary:
        name, raw = values.get(axis_widget) or "", (values.get(values_widget) or "").strip()
        if not name and not raw:
            continue
        if not name:
            raise RequestError("vary", f"pick what to vary for the values {raw!r}")
        if not raw:
            raise RequestError("vary", f"give the values of {name} (e.g. {name}=3,5,7)")
        axes.append(parse_axis(f"{name}={raw}"))
    return tuple(axes)


def _batch_eta(statuses, memo: dict) -> float | None:  # type: ignore[no-untyped-def]
    """Seconds until every job of the request is done: the running group's rest plus, for the queued
    jobs, as many more groups of the same size at the time a whole group takes (`memo` keeps the last
    estimate of that, since a group that is decoding has no steps left to time)."""
    running = [s for s in statuses if s.status == "running"]
    queued = sum(s.status == "queued" for s in statuses)
    if not running:
        return None
    r = max(running, key=lambda s: s.eta_seconds or 0)
    if r.eta_seconds is not None and r.total and r.step < r.total and r.step > 0:
        memo["group"] = r.eta_seconds * r.total / (r.total - r.step)
        memo["size"] = len(running)
    per_group, size = memo.get("group"), memo.get("size", len(running))
    rest = r.eta_seconds or 0.0
    if per_group is None:
        return r.eta_seconds
    return rest + -(-queued // max(1, size)) * per_group


def _then_interpolate(studio: "StudioFacade", account, cells, views: dict, factor: int, summary: str):  # type: ignore[no-untyped-def]
    """Interpolate every clip just made (jobs in the same queue); the summary and a result row per cell."""
    made = {j: v for j, v in views.items() if v is not None}
    try:
        subs = {j: studio.interpolate(v.id, factor, account=account) for j, v in made.items()}
    except (RequestError, NotAllowed) as e:
        return f"{summary} ⚠️ Not interpolated: {e}", []
    statuses = {j: s for j, sub in subs.items() for s in studio.wait(sub.job_ids)}
    rows = []
    for cell in cells:
        row = [GridCell(studio.clip(statuses[j].clip_id)) if j in statuses and statuses[j].status == "done" else
               GridCell(text=f"{statuses[j].status}: {statuses[j].error}" if j in statuses else "—")
               for j in cell.job_ids]
        rows.append(((axes_label(cell.axes) + " " if cell.axes else "") + f"×{factor} frame rate", row))
    ok = sum(s.status == "done" for s in statuses.values())
    return f"{summary} Interpolated {ok} of {len(made)} ×{factor} (as branches, in the gallery).", rows


def _wire_generation(studio: "StudioFacade", tab: ModeTab) -> None:
    widget_inputs = set(tab.fields.values()) | {tab.seeds, tab.jobs, tab.branch, tab.then_interpolate}
    widget_inputs |= {w for pair in tab.vary for w in pair}
    if tab.mask_editor is not None:
        widget_inputs.add(tab.mask_editor)
    name_of = {comp: name for name, comp in tab.fields.items()}

    def run(values: dict, http: gr.Request, progress=gr.Progress()):
        fields = {name_of[c]: v for c, v in values.items() if c in name_of}
        branch = values.get(tab.branch) or None
        mode = "extend" if branch and branch.get("extend") and tab.mode == "i2v" else tab.mode
        try:
            if tab.mode == "inpaint" and not fields.get("mask"):
                painted = mask_from_editor(values.get(tab.mask_editor))
                if painted is not None:
                    fields["mask"] = studio.save_mask(painted)
            request = request_from_widgets(mode, fields)
            axes = _axes_from(values, tab.vary)
            sweep = SweepRequest(request, int(values[tab.seeds]), axes)
            parent = branch.get("clip") if branch else None
            account = studio.account(signed_in(http))
            submission = studio.submit_sweep(sweep, parent_id=parent, account=account)
        except (RequestError, ValueError, NotAllowed) as e:
            yield {tab.status: error_markdown(e), tab.jobs: []}
            return
        cells = submission.cells
        job_ids = list(submission.job_ids)
        seeds = cells[0].seeds
        columns = [f"seed {s}" for s in seeds]
        seeds_text = ", ".join(str(s) for s in seeds)
        yield {tab.jobs: job_ids, tab.used_seed: seeds_text, tab.results: "", tab.preview: gr.update(value=None,
               visible=False), tab.status: f"Queued {len(job_ids)} clip(s), seeds {seeds_text}."}
        views: dict[str, object] = {}
        shown_preview: dict[str, int] = {}
        eta_memo: dict = {}
        shown_done = -1
        last_rows: list = []
        while True:
            statuses = {j: studio.status(j) for j in job_ids}
            finished = [s for s in statuses.values() if s.finished]
            for s in finished:
                if s.status == "done" and s.clip_id and s.job_id not in views:
                    views[s.job_id] = studio.clip(s.clip_id)
            update: dict = {}
            if len(finished) != shown_done:  # a clip finished: show it now, not when the whole batch ends
                shown_done = len(finished)
                rows = []
                for cell in cells:
                    row = []
                    for j in cell.job_ids:
                        s = statuses[j]
                        if j in views and views[j] is not None:
                            row.append(GridCell(views[j]))
                        else:
                            row.append(GridCell(text=s.status if s.status != "failed" else f"failed: {s.error}"))
                    rows.append((axes_label(cell.axes), row))
                update[tab.results] = grid_html(rows, columns, elem_id=f"{tab.mode}-grid")
                last_rows = rows
            if len(finished) == len(job_ids):
                if update:
                    yield update
                break
            running = next((s for s in statuses.values() if s.status == "running"), None)
            waiting = next((s for s in statuses.values() if s.status == "queued"), None)
            eta = format_eta(_batch_eta(list(statuses.values()), eta_memo))
            if running is not None:
                if running.total:
                    progress((len(finished) * running.total + running.step, len(job_ids) * running.total),
                             desc=f"{len(finished)}/{len(job_ids)} clips, step {running.step}/{running.total}",
                             unit="steps")
                update[tab.status] = (f"Generating: {len(finished)} of {len(job_ids)} clip(s) done · "
                                      f"step {running.step}/{running.total or '?'} · ETA {eta} for all")
                if running.preview_version and shown_preview.get(running.job_id) != running.preview_version:
                    frames = studio.preview(running.job_id)
                    if frames is not None:
                        update[tab.preview] = gr.update(value=contact_sheet(frames), visible=True)
                        shown_preview[running.job_id] = running.preview_version
            elif waiting is not None and waiting.queue_position is not None:
                ahead = waiting.queue_position
                update[tab.status] = ("Starting…" if ahead <= 0 else
                                      f"Waiting in the queue: {ahead} job(s) of other requests run first.")
                progress(0, desc="queued")
            if update:
                yield update
            time.sleep(POLL_SECONDS)
        done = sum(1 for v in views.values() if v is not None)
        failed, cancelled = [], 0
        for cell in cells:
            for seed, j in zip(cell.seeds, cell.job_ids):
                s = statuses[j]
                where = f"{axes_label(cell.axes)}, seed {seed}" if cell.axes else f"seed {seed}"
                if s.status == "cancelled":
                    cancelled += 1
                elif s.status == "failed":
                    failed.append(f"{where}: {s.error}")
        if cancelled:
            summary = f"Cancelled: {done} of {len(job_ids)} clip(s) were made, {cancelled} cancelled."
        else:
            summary = f"Done: {done} of {len(job_ids)} clip(s)." if done else "No clip was made."
        if submission.sweep_id and len(cells) > 1:
            summary += f" Sweep: {len(cells)} rows × {len(seeds)} seeds, link `/?sweep={submission.sweep_id}`."
        if failed:
            more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
            summary = "⚠️ " + summary + " " + "; ".join(failed[:3]) + more
        factor = int(values.get(tab.then_interpolate) or 1)
        if factor > 1 and done and not cancelled:
            yield {tab.status: f"{summary} Interpolating {done} clip(s) ×{factor}…", tab.preview: gr.update(visible=False)}
            summary, rows = _then_interpolate(studio, account, cells, views, factor, summary)
            yield {tab.results: grid_html(last_rows + rows, columns, elem_id=f"{tab.mode}-grid")}
        yield {tab.status: summary, tab.jobs: [], tab.preview: gr.update(value=None, visible=False)}

    outputs = [tab.status, tab.preview, tab.results, tab.used_seed, tab.jobs]
    tab.generate.click(run, inputs=widget_inputs, outputs=outputs, concurrency_limit=None,
                       api_visibility="private", show_progress="minimal",
                       show_progress_on=[tab.status])  # one progress bar, over the status line only

    def cancel(job_ids):
        studio.cancel(job_ids or [])
        return "Cancelling…" if job_ids else "Nothing to cancel."

    tab.cancel.click(cancel, inputs=tab.jobs, outputs=tab.status, concurrency_limit=None, api_visibility="private")
