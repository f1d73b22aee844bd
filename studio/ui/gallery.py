"""The gallery tab: search and filter, stacks, stars, tags and notes, a detail view with lineage, recall
and branching, and comparison of any 2 to 9 clips in lock-step (with an A/B wipe and a difference view for two).
Any clip, batch, sweep or comparison can be shared for review (a `/review/<token>` link, studio.ui.review); the
detail shows what reviewers said (comments, resolvable, and votes), and the gallery sorts and filters by votes.

Tiles are plain HTML; the page script (app.PAGE_JS) writes the opened clip and the selection into two
hidden textboxes, whose `input` events reach the handlers here."""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import gradio as gr

from pipelines.contract import RequestError
from studio.clips import describe
from studio.facade import GalleryQuery, NotAllowed, QueryError, ReviewNotFound
from studio.ui.common import (MODE_NAMES, GridCell, axes_label, base_url, differing, grid_html, media_url,
                              signed_in)
from studio.ui.generate import ModeTab
from studio.ui.widgets import widgets_from_request

if TYPE_CHECKING:
    from studio.facade import StudioFacade
    from studio.facade import ClipView, CommentView, ReviewView, VoteView

PAGE = 60
MAX_COMPARE = 9
SORTS = [("Newest", "newest"), ("Oldest", "oldest"), ("Most votes", "votes"), ("CFG", "cfg"), ("Steps", "steps"),
         ("Seed", "seed")]
EXPIRIES = [("Never", ""), ("1 hour", "1h"), ("1 day", "1d"), ("7 days", "7d"), ("30 days", "30d")]
DIFF_LABELS = {"prompt": "prompt", "negative_prompt": "negative", "seed": "seed", "model_id": "model", "mode": "mode",
               "steps": "steps", "cfg_scale": "CFG", "frames": "frames", "fps": "fps", "width": "width",
               "height": "height", "strength": "strength", "profile": "profile"}


@dataclass
class GalleryTab:
    tab: gr.Tab
    open_box: gr.Textbox  # the page script writes the clicked clip's id here
    selection_box: gr.Textbox  # ... and the selected ids, comma-separated
    show: Callable  # clip id -> updates of the detail view
    compare: Callable  # list of ids -> updates of the compare view
    sweep: Callable  # sweep id -> updates of the compare view
    detail_outputs: list
    compare_outputs: list


def _tile(v: "ClipView", stacked: int = 0) -> str:
    star = "★ " if v.starred else ""
    tags = "".join(f"<span class='studio-tag'>{html.escape(t)}</span>" for t in v.tags)
    badge = (f"<button type='button' class='studio-stack-toggle' aria-label='Show the {stacked} clips of this stack'>"
             f"{stacked} clips</button>") if stacked > 1 else ""
    title = html.escape(f"{v.prompt} — {describe(v)}", quote=True)
    return (f"<figure class='studio-tile' data-clip='{v.id}' title='{title}'>"
            f"<video src='{media_url('clip', v.id)}' muted loop playsinline preload='metadata'></video>"
            f"<input type='checkbox' class='studio-pick' aria-label='Select clip {v.id[:8]}'>{badge}"
            f"<figcaption>{star}<span class='studio-mode'>{MODE_NAMES.get(v.mode, v.mode)}</span> "
            f"<b>{html.escape(v.prompt[:60])}</b><br>{html.escape(describe(v))}{tags}"
            f"</figcaption></figure>")


def _shown(value) -> str:  # type: ignore[no-untyped-def]
    return "—" if value is None or value == "" else (f"{value:g}" if isinstance(value, float) else str(value))


def tiles_html(views: list["ClipView"], filtered: bool = True) -> str:
    """Clips of one sweep or batch become one stack (first clip shown, the rest on expand)."""
    if not views:
        return ("<p class='studio-empty'>No clips match these filters.</p>" if filtered else
                "<p class='studio-empty'>The gallery is empty: generate a clip in one of the tabs.</p>")
    groups: dict[str, list] = {}
    for v in views:
        groups.setdefault(v.sweep_id or v.batch_id, []).append(v)
    out, seen = [], set()
    for v in views:
        key = v.sweep_id or v.batch_id
        if key in seen:
            continue
        seen.add(key)
        group = groups[key]
        inner = "".join(_tile(c, len(group) if i == 0 else 0) for i, c in enumerate(group))
        cls = "studio-stack" if len(group) > 1 else "studio-single"
        out.append(f"<div class='{cls}'>{inner}</div>")
    return "<div class='studio-tiles'>" + "".join(out) + "</div>"


def _summary(v: "ClipView") -> str:
    strength = f" · strength {v.strength:g}" if v.strength is not None else ""
    step = v.params.get("interpolation")
    if isinstance(step, dict):  # the source's recipe; its frames and fps are this clip's own
        strength += f" · interpolated {step.get('factor')}x ({step.get('method')}) from `{str(step.get('source'))[:8]}`"
    read_as = (v.manifest or {}).get("prompt_read_as")  # what the model was told, completed from the input
    said = html.escape(v.prompt) + (f" <i>(read with its input as: {html.escape(str(read_as))})</i>" if read_as else "")
    return (f"**{MODE_NAMES.get(v.mode, v.mode)}** · `{v.model_id}@{v.model_version}` · seed **{v.seed}**"
            f"{' · ★' if v.starred else ''}<br>{said}<br>{v.steps} steps · CFG {v.cfg_scale:g}{strength}"
            f" · {v.frames} frames @ {v.fps} fps · {v.width}x{v.height} · made in {v.generation_seconds:.1f}s · "
            f"{v.created_at}")


def _player(v: "ClipView") -> str:
    """The detail's player: the clip by id (`/media/clip/<id>.mp4`), looping, with the browser's controls."""
    return (f"<video src='{media_url('clip', v.id)}' data-fps='{v.fps}' data-clip='{v.id}' controls autoplay loop "
            f"muted playsinline preload='auto' style='max-height:300px;width:100%'></video>")


def _thumbs(views: list["ClipView"], label: str) -> str:
    if not views:
        return ""
    items = "".join(
        f"<figure class='studio-tile studio-mini' data-clip='{v.id}' title='{html.escape(v.prompt, quote=True)}'>"
        f"<img src='{media_url('thumb', v.id)}' alt='clip {v.id[:8]}'><figcaption>{MODE_NAMES.get(v.mode, v.mode)} · "
        f"seed {v.seed}</figcaption></figure>" for v in views)
    return f"<div class='studio-lineage'><b>{label}</b><div class='studio-tiles'>{items}</div></div>"


def compare_html(views: list["ClipView"]) -> str:
    """2 to 9 clips side by side in lock-step, each labelled with the settings that differ."""
    diff = differing(views)
    keys = [k for k in DIFF_LABELS if k in diff] or ["seed"]
    cells = []
    for v in views:
        label = " · ".join(f"{DIFF_LABELS[k]} {_shown(getattr(v, k))[:40]}" for k in keys)
        cells.append((label, v))
    per_row = 2 if len(cells) in (2, 4) else 3  # 2x2 for four, not 3+1
    rows = [cells[i:i + per_row] for i in range(0, len(cells), per_row)]
    table = "".join(
        "<tr>" + "".join(f"<td><video src='{media_url('clip', v.id)}' data-fps='{v.fps}' data-clip='{v.id}' muted "
                         f"playsinline preload='auto'></video><div class='studio-diff'>{html.escape(label)}</div></td>"
                         for label, v in row) + "</tr>" for row in rows)
    same = [k for k in DIFF_LABELS if k not in diff]
    settings = "".join(
        f"<tr{' class=studio-differs' if k in diff else ''}><th>{DIFF_LABELS[k]}</th>"
        + "".join(f"<td>{html.escape(_shown(getattr(v, k)))}</td>" for v in views) + "</tr>"
        for k in list(DIFF_LABELS))
    out = (f"<div class='studio-sync studio-grid' id='compare-grid'><table><tbody>{table}</tbody></table></div>"
           f"<details class='studio-settings' open><summary>Settings ({len(diff)} differ; same: "
           f"{html.escape(', '.join(DIFF_LABELS[k] for k in same))})</summary><table>{settings}</table></details>")
    if len(views) == 2:
        a, b = views
        out += (f"<div class='studio-sync studio-ab' id='compare-ab' data-fps='{a.fps}'>"
                f"<div class='studio-ab-stage'><video src='{media_url('clip', a.id)}' data-fps='{a.fps}' muted playsinline "
                f"preload='auto' class='studio-ab-a'></video><video src='{media_url('clip', b.id)}' data-fps='{b.fps}' muted "
                f"playsinline preload='auto' class='studio-ab-b'></video></div>"
                f"<label>A/B wipe <input type='range' min='0' max='100' value='50' class='studio-ab-wipe' "
                f"aria-label='Wipe between A and B'></label>"
                f"<label>Difference ×<input type='number' min='1' max='16' value='4' class='studio-ab-gain' "
                f"aria-label='Difference gain'></label><canvas class='studio-ab-diff' aria-label='Difference'></canvas>"
                f"</div>")
    return out


def feedback_html(comments: list["CommentView"], votes: list["VoteView"]) -> str:
    """What reviewers said about a clip through review links: its votes and comments (newest last), each
    comment with a button that resolves it or opens it again. Every text is escaped."""
    if not comments and not votes:
        return "<p class='studio-empty'>No review feedback yet: <b>Share for review</b> makes a link for it.</p>"
    names = ", ".join(html.escape(v.reviewer + ("" if v.signed_in else " (guest)")) for v in votes)
    head = f"<b>Review feedback</b> · {len(votes)} vote{'' if len(votes) == 1 else 's'}" + (f" ({names})" if names else "")
    items = []
    for c in comments:
        at = (f"<button type='button' class='studio-comment-at' data-at='{c.at:.3f}' title='Show the clip at this time'>"
              f"{c.at:.2f} s</button> " if c.at is not None else "")
        guest = "" if c.signed_in else " <span class='studio-guest'>(guest)</span>"
        when = html.escape(c.created_at.replace("T", " ").replace("+00:00", " UTC"))
        action = "Open again" if c.resolved else "Resolve"
        state = " · resolved" + (f" by {html.escape(c.resolved_by)}" if c.resolved_by else "") if c.resolved else ""
        items.append(
            f"<li class='studio-comment{' resolved' if c.resolved else ''}' data-comment='{c.id}'>{at}"
            f"<b>{html.escape(c.author)}</b>{guest} <small>{when}{state}</small> "
            f"<button type='button' class='studio-resolve' data-comment='{c.id}' data-resolved='{0 if c.resolved else 1}'>"
            f"{action}</button><div class='studio-comment-text'>{html.escape(c.text)}</div></li>")
    body = f"<ol class='studio-comments'>{''.join(items)}</ol>" if items else ""
    return f"<div class='studio-feedback'>{head}{body}</div>"


def reviews_table(reviews: list["ReviewView"], base: str) -> str:
    """The review links a user may see (their own; an admin's or without accounts: all), newest first."""
    if not reviews:
        return "No review links yet: open a clip or a comparison and **Share for review**."
    rows = ["| made | what | clips | by | expires | state | link |", "|---|---|---|---|---|---|---|"]
    for r in reviews:
        link = f"`{base}{r.path}`" if r.state == "active" else "—"
        what = r.kind + (f" `{r.subject[:8]}`" if r.subject else "")
        rows.append(f"| {r.created_at[:16].replace('T', ' ')} | {what} | {len(r.clip_ids)} | {html.escape(r.author or '—')} | "
                    f"{(r.expires_at or 'never')[:16].replace('T', ' ')} | {r.state} | {link} |")
    return "\n".join(rows)


def build_gallery(studio: "StudioFacade", tabs: dict[str, ModeTab], tabs_container: gr.Tabs) -> GalleryTab:
    with gr.Tab("Gallery", id="gallery") as gallery_tab:
        with gr.Row():
            search = gr.Textbox(label="Search prompts", placeholder="red circle", scale=3, elem_id="gallery-search")
            mode_filter = gr.Dropdown([("All modes", "")] + [(v, k) for k, v in MODE_NAMES.items()], value="",
                                      label="Mode", scale=1, elem_id="gallery-mode")
            model_filter = gr.Dropdown([("All models", "")], value="", label="Model", scale=2, elem_id="gallery-model")
            tag_filter = gr.Textbox(label="Tag", scale=1, elem_id="gallery-tag")
            starred_only = gr.Checkbox(label="Starred", scale=0, min_width=90, elem_id="gallery-starred")
            has_votes = gr.Checkbox(label="Has votes", scale=0, min_width=110, elem_id="gallery-has-votes")
            mine = gr.Checkbox(label="Mine", scale=0, min_width=80, elem_id="gallery-mine",
                               visible=studio.auth_required)
            sort = gr.Dropdown(SORTS, value="newest", label="Sort", scale=1, elem_id="gallery-sort")
            refresh = gr.Button("Refresh", scale=0, min_width=90, elem_id="gallery-refresh")
        with gr.Accordion("More filters", open=False):
            with gr.Row():
                seed_filter = gr.Number(label="Seed", precision=0, value=None, elem_id="gallery-seed")
                cfg_min = gr.Number(label="CFG from", value=None, elem_id="gallery-cfg-min")
                cfg_max = gr.Number(label="CFG to", value=None, elem_id="gallery-cfg-max")
                since = gr.Textbox(label="Made from (YYYY-MM-DD)", elem_id="gallery-since")
                until = gr.Textbox(label="Made before (YYYY-MM-DD)", elem_id="gallery-until")
        with gr.Row():
            selection_info = gr.Markdown("Click a clip to open it; tick boxes (or Ctrl/Shift-click) to compare.",
                                         elem_id="gallery-selection-info")
            compare_btn = gr.Button("Compare selected", scale=0, min_width=160, elem_id="gallery-compare",
                                    interactive=False)
            export_sel = gr.Button("Export selected (zip)", scale=0, min_width=160, elem_id="gallery-export-zip",
                                   interactive=False)
        with gr.Accordion("Review links", open=False, elem_id="gallery-reviews-box"):
            reviews_list = gr.Markdown(elem_id="gallery-review-links")
            with gr.Row():
                revoke_pick = gr.Dropdown([], label="Revoke a link (it answers 404 from then on)", scale=3,
                                          elem_id="gallery-revoke-pick")
                revoke_btn = gr.Button("Revoke", variant="stop", scale=0, min_width=100, elem_id="gallery-revoke")
        with gr.Accordion("Export / import clips", open=False, elem_id="gallery-zip-box") as zip_box:
            with gr.Row():
                zip_out = gr.File(label="Exported clips (tick clips, then Export selected)", interactive=False,
                                  elem_id="gallery-zip", height=70, scale=2)
                zip_in = gr.File(label="Import clips (a zip exported by a studio)", file_types=[".zip"],
                                 type="filepath", elem_id="gallery-import-zip", height=70, scale=2)
        grid = gr.HTML("", elem_id="gallery-grid", elem_classes=["studio-gallery", "pixelated"])
        more = gr.Button("More", visible=False, elem_id="gallery-more")
        cursor = gr.State(None)
        shown = gr.State([])
        open_box = gr.Textbox(elem_id="gallery-open", elem_classes=["studio-hidden"], show_label=False, container=False)
        selection_box = gr.Textbox(elem_id="gallery-selection", elem_classes=["studio-hidden"], show_label=False,
                                   container=False)
        with gr.Column(visible=False, elem_id="compare-view") as compare_view:
            compare_title = gr.Markdown(elem_id="compare-title")
            compare_grid = gr.HTML(elem_id="compare-body", elem_classes=["pixelated"])
            compare_link = gr.Textbox(label="Link to this comparison", interactive=False, elem_id="compare-link",
                                      buttons=["copy"])
            with gr.Row():
                compare_expires = gr.Dropdown(EXPIRIES, value="7d", label="Review link expires", scale=1,
                                              elem_id="compare-share-expires")
                compare_comments = gr.Checkbox(value=True, label="Reviewers may comment", scale=1,
                                               elem_id="compare-share-comments")
                compare_share = gr.Button("Share for review", scale=0, min_width=150, elem_id="compare-share")
            compare_share_link = gr.Textbox(label="Review link: these clips only, read-only, no login",
                                            interactive=False, elem_id="compare-share-link", buttons=["copy"])
            compare_subject = gr.State(None)  # what the view shows: {"kind": "compare", "ids": [...]} or a sweep
        selected = gr.State(None)
        with gr.Row(visible=False, elem_id="gallery-detail") as detail:
            with gr.Column(scale=1):
                player = gr.HTML(elem_id="gallery-player", elem_classes=["pixelated"])
                lineage = gr.HTML(elem_id="gallery-lineage")
            with gr.Column(scale=1):
                info = gr.Markdown(elem_id="gallery-info")
                with gr.Row():
                    star = gr.Button("☆ Star", scale=0, min_width=90, elem_id="gallery-star")
                    tags = gr.Textbox(label="Tags (comma-separated)", scale=2, elem_id="gallery-tags")
                    save_tags = gr.Button("Save tags", scale=0, min_width=90, elem_id="gallery-save-tags")
                with gr.Row():
                    note = gr.Textbox(label="Note", scale=3, elem_id="gallery-note")
                    save_note = gr.Button("Save note", scale=0, min_width=90, elem_id="gallery-save-note")
                gr.Markdown("**Recall into its tab**")
                with gr.Row():
                    use_all = gr.Button("Use all", variant="primary", elem_id="gallery-recall")
                    remix = gr.Button("Remix (new seed)", elem_id="gallery-remix")
                    use_seed = gr.Button("Use seed", elem_id="gallery-use-seed")
                    use_prompt = gr.Button("Use prompt", elem_id="gallery-use-prompt")
                    vary_seed = gr.Button("Vary seed ×4", elem_id="gallery-vary-seed")
                gr.Markdown("**Branch from this clip**")
                with gr.Row():
                    frame = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="gallery-frame", scale=2)
                    animate = gr.Button("Animate this frame", elem_id="gallery-animate")
                with gr.Row():
                    extend = gr.Button("Extend", elem_id="gallery-extend")
                    restyle = gr.Button("Restyle", elem_id="gallery-restyle")
                    inpaint = gr.Button("Inpaint", elem_id="gallery-inpaint")
                with gr.Row():
                    interp2 = gr.Button("Interpolate 2x", elem_id="gallery-interpolate-2")
                    interp4 = gr.Button("Interpolate 4x", elem_id="gallery-interpolate-4")
                with gr.Row():
                    fmt = gr.Radio(["mp4", "webm", "gif"], value="mp4", label="Download as", elem_id="gallery-format")
                    export = gr.Button("Prepare download", elem_id="gallery-export")
                chain_btn = gr.Button("Download the extended chain as one mp4", visible=False,
                                      elem_id="gallery-chain")
                download = gr.File(label="Download", interactive=False, elem_id="gallery-download", height=80)
                link = gr.Textbox(label="Link to this clip", interactive=False, elem_id="gallery-link", buttons=["copy"])
                with gr.Row():
                    share_expires = gr.Dropdown(EXPIRIES, value="7d", label="Review link expires", scale=1,
                                                elem_id="gallery-share-expires")
                    share_comments = gr.Checkbox(value=True, label="Reviewers may comment", scale=1,
                                                 elem_id="gallery-share-comments")
                with gr.Row():
                    share = gr.Button("Share for review", elem_id="gallery-share")
                    share_group = gr.Button("Share its batch for review", visible=False, elem_id="gallery-share-group")
                share_link = gr.Textbox(label="Review link: read-only, no login, only what it shows", interactive=False,
                                        elem_id="gallery-share-link", buttons=["copy"])
                feedback = gr.HTML(elem_id="gallery-feedback")
                resolve_box = gr.Textbox(elem_id="gallery-resolve", elem_classes=["studio-hidden"], show_label=False,
                                         container=False)
                with gr.Row():
                    delete = gr.Button("Delete", variant="stop", elem_id="gallery-delete")
                    confirm = gr.Button("Yes, delete it and its files", variant="stop", visible=False,
                                        elem_id="gallery-confirm-delete")
                    keep = gr.Button("Keep it", visible=False, elem_id="gallery-keep")
                recipe = gr.JSON(label="Every setting", open=False)
        siblings = gr.HTML(elem_id="gallery-batch", elem_classes=["pixelated"])
        with gr.Accordion("Recall from a file", open=False):
            dropped = gr.File(label="Drop an mp4 this studio made (renamed, moved or downloaded) to recall its recipe",
                              file_types=[".mp4"], type="filepath", elem_id="gallery-drop", height=80)
            dropped_info = gr.Markdown(elem_id="gallery-drop-info")
            import_dropped = gr.Button("Import this clip into the gallery", visible=False,
                                       elem_id="gallery-import-dropped")

    # ---- listing ----------------------------------------------------------------------------------
    def _query(values: dict, request, after=None) -> GalleryQuery:  # type: ignore[no-untyped-def]
        v = values.get
        seed = v(seed_filter)
        return GalleryQuery(text=(v(search) or "").strip(), mode=v(mode_filter) or None,
                            model_id=v(model_filter) or None, tag=(v(tag_filter) or "").strip() or None,
                            starred=True if v(starred_only) else None, seed=None if seed is None else int(seed),
                            has_votes=True if v(has_votes) else None,
                            cfg_min=v(cfg_min), cfg_max=v(cfg_max), since=_date("made from", v(since)),
                            until=_date("made before", v(until)),
                            author=signed_in(request) if v(mine) and signed_in(request) else None,
                            sort=v(sort) or "newest", limit=PAGE, after=after)

    filters = {search, mode_filter, model_filter, tag_filter, starred_only, has_votes, sort, seed_filter, cfg_min,
               cfg_max, since, until, mine}

    def review_links(request) -> dict:  # type: ignore[no-untyped-def]
        try:
            links = studio.reviews(account=studio.account(signed_in(request)))
        except NotAllowed:
            links = []
        active = [(f"{r.kind} · {len(r.clip_ids)} clip(s) · {r.created_at[:16].replace('T', ' ')} · {r.id[:8]}", r.token)
                  for r in links if r.state == "active"]
        return {reviews_list: reviews_table(links, base_url(request)),
                revoke_pick: gr.update(choices=active, value=None)}

    def load(values: dict, request: gr.Request):
        try:
            q = _query(values, request)
            views, nxt = studio.search(q)
        except QueryError as e:
            return {grid: f"<p class='studio-empty'>⚠️ {html.escape(str(e))}</p>", shown: [], cursor: None,
                    more: gr.update(visible=False)}
        models = studio.models_in_gallery()
        filtered = dataclasses.replace(q, sort="newest") != GalleryQuery(limit=q.limit)  # any filter set
        return {grid: tiles_html(views, filtered), shown: [v.id for v in views], cursor: nxt,
                more: gr.update(visible=bool(nxt)),
                model_filter: gr.update(choices=[("All models", "")] + [(m, m) for m in models]),
                **review_links(request)}

    list_outputs = [grid, shown, cursor, more, model_filter, reviews_list, revoke_pick]
    for trig in (refresh.click, mode_filter.change, model_filter.change, starred_only.change, has_votes.change, sort.change,
                 mine.change, search.submit, tag_filter.submit, seed_filter.submit, cfg_min.submit, cfg_max.submit,
                 since.submit, until.submit, gallery_tab.select):
        trig(load, inputs=filters, outputs=list_outputs, api_visibility="private")

    def load_more(values: dict, request: gr.Request):
        after, ids = values.get(cursor), values.get(shown)
        if not after:
            return {more: gr.update()}
        try:
            views, nxt = studio.search(_query(values, request, after=after))
        except QueryError as e:
            raise gr.Error(str(e))
        ids = list(ids or []) + [v.id for v in views]
        everything = [studio.clip(i) for i in ids]
        return {grid: tiles_html([v for v in everything if v is not None]), shown: ids, cursor: nxt,
                more: gr.update(visible=bool(nxt))}

    more.click(load_more, inputs=filters | {cursor, shown}, outputs=[grid, shown, cursor, more],
               api_visibility="private")

    # ---- detail -----------------------------------------------------------------------------------
    def show(clip_id, request=None):  # type: ignore[no-untyped-def]
        view = studio.clip(clip_id) if clip_id else None
        if view is None:
            return {detail: gr.update(visible=False), selected: None, siblings: ""}
        group = studio.batch(view.batch_id)
        grid_part = ""
        if view.sweep_id:
            grid_part = sweep_html(studio, view.sweep_id)
        elif len(group) > 1:
            grid_part = grid_html([("same batch", [GridCell(b) for b in group])], [f"seed {b.seed}" for b in group],
                                  elem_id="gallery-batch-grid")
        lineage_html = _thumbs(studio.ancestors(view.id), "Made from") + _thumbs(studio.children(view.id), "Branches")
        group_label = "Share its sweep for review" if view.sweep_id else "Share its batch for review"
        return {detail: gr.update(visible=True), selected: view.id, player: _player(view), info: _summary(view),
                share_group: gr.update(visible=bool(view.sweep_id) or len(group) > 1, value=group_label),
                share_link: "", feedback: feedback_html(studio.clip_comments(view.id), studio.clip_votes(view.id)),
                recipe: {"params": view.params, "inputs": view.inputs, "manifest": view.manifest, "axes": view.axes},
                download: None, siblings: grid_part, lineage: lineage_html,
                star: "★ Starred" if view.starred else "☆ Star", tags: ", ".join(view.tags), note: view.note,
                frame: gr.update(maximum=max(1, view.frames - 1), value=0), link: f"{base_url(request)}/?clip={view.id}",
                chain_btn: gr.update(visible=view.mode == "extend" and view.parent_id is not None),
                delete: gr.update(visible=True), confirm: gr.update(visible=False), keep: gr.update(visible=False)}

    detail_outputs = [detail, selected, player, info, recipe, download, siblings, lineage, star, tags, note, frame, link,
                      delete, confirm, keep, chain_btn, share_group, share_link, feedback]
    def open_clicked(value, request: gr.Request):
        return show(_strip(value), request)

    open_box.change(open_clicked, inputs=open_box, outputs=detail_outputs, api_visibility="private")

    # ---- review links -----------------------------------------------------------------------------
    def make_link(request, kind: str, ids=(), subject=None, expires="", comments=True) -> str:  # type: ignore[no-untyped-def]
        try:
            review = studio.share(kind, list(ids), subject=subject, expires=expires or None, comments=bool(comments),
                                  account=studio.account(signed_in(request)))
        except (QueryError, NotAllowed) as e:
            raise gr.Error(str(e), print_exception=False)
        gr.Info("Review link made: whoever has it sees these clips (and nothing else) and may vote"
                + (" and comment." if comments else "."))
        return f"{base_url(request)}{review.path}"

    def share_clip(clip_id, expires, comments, request: gr.Request):
        if not clip_id:
            return {share_link: gr.update()}
        return {share_link: make_link(request, "clip", [clip_id], expires=expires, comments=comments),
                **review_links(request)}

    def share_clips_group(clip_id, expires, comments, request: gr.Request):
        view = studio.clip(clip_id) if clip_id else None
        if view is None:
            return {share_link: gr.update()}
        kind, subject = ("sweep", view.sweep_id) if view.sweep_id else ("batch", view.batch_id)
        return {share_link: make_link(request, kind, subject=subject, expires=expires, comments=comments),
                **review_links(request)}

    share_outputs = [share_link, reviews_list, revoke_pick]
    share.click(share_clip, inputs=[selected, share_expires, share_comments], outputs=share_outputs,
                api_visibility="private")
    share_group.click(share_clips_group, inputs=[selected, share_expires, share_comments], outputs=share_outputs,
                      api_visibility="private")

    def do_resolve(value, clip_id, request: gr.Request):
        comment_id, _, want = _strip(value).partition(":")
        if not comment_id or not clip_id:
            return {feedback: gr.update()}
        try:
            studio.resolve_comment(comment_id, want != "0", account=studio.account(signed_in(request)))
        except (KeyError, QueryError, NotAllowed) as e:
            raise gr.Error(str(e).strip("'\""), print_exception=False)
        return {feedback: feedback_html(studio.clip_comments(clip_id), studio.clip_votes(clip_id))}

    resolve_box.change(do_resolve, inputs=[resolve_box, selected], outputs=feedback, api_visibility="private")

    def do_revoke(token, request: gr.Request):
        if not token:
            raise gr.Error("pick a link to revoke first", print_exception=False)
        try:
            studio.revoke_review(token, account=studio.account(signed_in(request)))
        except ReviewNotFound:
            raise gr.Error("no such review link", print_exception=False)
        except NotAllowed as e:
            raise gr.Error(str(e), print_exception=False)
        gr.Info("Link revoked: it answers 404 from now on.")
        return review_links(request)

    revoke_btn.click(do_revoke, inputs=revoke_pick, outputs=[reviews_list, revoke_pick], api_visibility="private")

    def toggle_star(clip_id, request: gr.Request):
        view = studio.clip(clip_id) if clip_id else None
        if view is None:
            return {star: gr.update()}
        try:
            view = studio.star(clip_id, not view.starred, account=studio.account(signed_in(request)))
        except NotAllowed as e:
            raise gr.Error(str(e), print_exception=False)
        return {star: "★ Starred" if view.starred else "☆ Star", info: _summary(view)}

    star.click(toggle_star, inputs=selected, outputs=[star, info], api_visibility="private")

    def do_tags(clip_id, text, request: gr.Request):
        view = studio.clip(clip_id) if clip_id else None
        if view is None:
            return {tags: gr.update()}
        wanted = [t for t in (x.strip() for x in (text or "").split(",")) if t]
        try:
            account = studio.account(signed_in(request))
            gone = [t for t in view.tags if t not in wanted]
            if gone:
                studio.tag(clip_id, gone, remove=True, account=account)
            view = studio.tag(clip_id, wanted, account=account) if wanted else studio.clip(clip_id)
        except (QueryError, ValueError, NotAllowed) as e:
            raise gr.Error(str(e), print_exception=False)
        gr.Info("Tags saved.")
        return {tags: ", ".join(view.tags)}

    save_tags.click(do_tags, inputs=[selected, tags], outputs=tags, api_visibility="private")
    tags.submit(do_tags, inputs=[selected, tags], outputs=tags, api_visibility="private")

    def do_note(clip_id, text, request: gr.Request):
        if clip_id:
            try:
                studio.note(clip_id, text or "", account=studio.account(signed_in(request)))
            except (QueryError, ValueError, NotAllowed) as e:
                raise gr.Error(str(e), print_exception=False)
            gr.Info("Note saved.")

    save_note.click(do_note, inputs=[selected, note], api_visibility="private")

    delete.click(lambda: (gr.update(visible=False), gr.update(visible=True), gr.update(visible=True)),
                 outputs=[delete, confirm, keep], api_visibility="private")
    keep.click(lambda: (gr.update(visible=True), gr.update(visible=False), gr.update(visible=False)),
               outputs=[delete, confirm, keep], api_visibility="private")

    def remove(values: dict, request: gr.Request):
        clip_id = values.get(selected)
        try:
            if clip_id and studio.delete(clip_id, account=studio.account(signed_in(request))):
                gr.Info("Deleted the clip and its files.")
        except NotAllowed as e:
            raise gr.Error(str(e), print_exception=False)
        return {**load(values, request), detail: gr.update(visible=False), selected: None, siblings: ""}

    confirm.click(remove, inputs=filters | {selected}, outputs=list_outputs + [detail, selected, siblings],
                  api_visibility="private")

    def do_export(clip_id, f):
        if not clip_id:
            return None
        try:
            return str(studio.export(clip_id, f))
        except Exception as e:
            raise gr.Error(f"could not export as {f}: {e}")

    export.click(do_export, inputs=[selected, fmt], outputs=download, api_visibility="private")

    def do_chain(clip_id):
        if not clip_id:
            return None
        try:
            return str(studio.export_chain(clip_id))
        except Exception as e:
            raise gr.Error(f"could not stitch the chain: {e}")

    chain_btn.click(do_chain, inputs=selected, outputs=download, api_visibility="private")

    def do_export_zip(text):
        ids = [i for i in _strip(text).split(",") if i]
        if not ids:
            raise gr.Error("select clips first (tick their boxes)")
        out = studio.export_zip(ids)
        return str(out), gr.Accordion(open=True)

    export_sel.click(do_export_zip, inputs=selection_box, outputs=[zip_out, zip_box], api_visibility="private")

    def do_import_zip(values: dict, request: gr.Request):
        path = values.get(zip_in)
        if not path:
            return {zip_in: gr.update()}
        try:
            added, skipped = studio.import_zip(Path(path), account=studio.account(signed_in(request)))
        except (QueryError, ValueError, NotAllowed) as e:
            raise gr.Error(str(e), print_exception=False)
        gr.Info(f"Imported {added} clip(s); {skipped} were already here.")
        return {**load(values, request), zip_in: None}

    zip_in.upload(do_import_zip, inputs=filters | {zip_in}, outputs=list_outputs + [zip_in], api_visibility="private")

    # ---- recall and branch ------------------------------------------------------------------------
    recall_outputs: list = [tabs_container]
    for t in tabs.values():
        recall_outputs += list(t.fields.values()) + [t.seeds, t.branch, t.branch_note, t.settings]
        recall_outputs += [w for pair in t.vary for w in pair]

    def fill(request, *, keep: str = "all", seeds: int = 1, branch: dict | None = None) -> dict:
        """Updates that put `request` into its tab: every field (keep="all"), or only some."""
        tab = tabs["i2v" if request.mode == "extend" else request.mode]
        values = widgets_from_request(request)
        if keep == "seed":
            values = {"seed": values["seed"]}
        elif keep == "prompt":
            values = {"prompt": values["prompt"], "negative_prompt": values["negative_prompt"]}
        elif keep == "remix":
            values["seed"] = -1
        if values.get("seed", 0) is None:
            values["seed"] = -1  # a branch: a new random seed
        out: dict = {tabs_container: gr.Tabs(selected=tab.mode), tab.seeds: seeds, tab.branch: branch}
        for axis, axis_values in tab.vary:  # what was recalled is one clip, not a sweep
            out[axis], out[axis_values] = "", ""
        if keep in ("all", "remix"):  # the settings show, to tweak one and generate again
            out[tab.settings] = gr.Accordion(open=True)
        for name, value in values.items():
            if name not in tab.fields:
                continue
            if name == "profile" and value is None:
                value = "default"
            out[tab.fields[name]] = value
        if branch:
            what = "extends" if branch.get("extend") else "branches from"
            out[tab.branch_note] = f"↳ This request {what} clip `{branch['clip'][:8]}`."
        elif keep in ("all", "remix"):
            out[tab.branch_note] = ""
        return out

    def recall_with(keep: str, seeds: int = 1):
        def handler(clip_id):
            if not clip_id:
                return {tabs_container: gr.update()}
            try:
                request = studio.recall(clip_id)
            except KeyError as e:
                raise gr.Error(str(e))
            gr.Info(f"Recalled {'seed ' + str(request.seed) if keep != 'prompt' else 'the prompt'} into "
                    f"{MODE_NAMES[request.mode]}.")
            return fill(request, keep=keep, seeds=seeds)
        return handler

    use_all.click(recall_with("all"), inputs=selected, outputs=recall_outputs, api_visibility="private")
    remix.click(recall_with("remix"), inputs=selected, outputs=recall_outputs, api_visibility="private")
    use_seed.click(recall_with("seed"), inputs=selected, outputs=recall_outputs, api_visibility="private")
    use_prompt.click(recall_with("prompt"), inputs=selected, outputs=recall_outputs, api_visibility="private")
    vary_seed.click(recall_with("remix", seeds=4), inputs=selected, outputs=recall_outputs, api_visibility="private")

    def branch_to(mode: str):
        from pipelines.contract import REQUEST_TYPES

        def handler(clip_id, frame_index):
            view = studio.clip(clip_id) if clip_id else None
            if view is None:
                return {tabs_container: gr.update()}
            base = studio.recall(clip_id)
            cls = REQUEST_TYPES[mode]
            # the clip's settings (its model, size, steps, CFG...), a new seed, and the model's strength
            fields = {k: getattr(base, k) for k in ("prompt", "negative_prompt", "model_id", "steps", "cfg_scale",
                                                     "frames", "fps", "width", "height", "profile")}
            placeholder = {name: "-" for name in cls.media_fields}
            request = cls(**fields, **placeholder)
            try:
                pick = int(frame_index) if mode == "i2v" else None
                request = studio.absolute_inputs(studio.from_clip(request, clip_id, pick))
                if hasattr(request, "strength"):
                    spec = studio.spec(request.model_id)
                    request = dataclasses.replace(request, strength=spec.defaults.strength_for(mode))
            except (RequestError, KeyError) as e:
                raise gr.Error(str(e))
            if mode == "inpaint":
                request = dataclasses.replace(request, mask="")
            out = fill(request, branch={"clip": clip_id, "extend": mode == "extend"})
            tab = tabs["i2v" if mode == "extend" else mode]
            if mode == "inpaint":
                out[tab.fields["mask"]] = None
            gr.Info(f"{MODE_NAMES[mode]} from clip {clip_id[:8]}: edit the prompt and Generate.")
            return out
        return handler

    for button, mode in ((animate, "i2v"), (extend, "extend"), (restyle, "v2v"), (inpaint, "inpaint")):
        button.click(branch_to(mode), inputs=[selected, frame], outputs=recall_outputs, api_visibility="private")

    def interpolate_with(factor: int):
        def handler(clip_id, request: gr.Request):
            """A new clip with `factor` times the frame rate (a job in the queue); shown here when it is done."""
            if not clip_id:
                return {selected: gr.update()}
            try:
                submission = studio.interpolate(clip_id, factor, account=studio.account(signed_in(request)))
            except (RequestError, NotAllowed) as e:
                raise gr.Error(str(e), print_exception=False)
            [status] = studio.wait(submission.job_ids)
            if status.status != "done":
                raise gr.Error(f"interpolation {status.status}: {status.error or ''}", print_exception=False)
            gr.Info(f"Interpolated {factor}x: clip {status.clip_id[:8]}, a branch of {clip_id[:8]}.")
            return show(status.clip_id, request)
        return handler

    for button, factor in ((interp2, 2), (interp4, 4)):
        button.click(interpolate_with(factor), inputs=selected, outputs=detail_outputs, api_visibility="private")

    def recall_dropped(path):
        if not path:
            return {tabs_container: gr.update()}
        try:
            request, clip_id = studio.recall_file(path)
        except RequestError as e:
            return {dropped_info: f"⚠️ {e}"}
        known = clip_id is not None and studio.clip(clip_id) is not None
        where = "It is in this gallery." if known else "It is not in this gallery yet."
        return {**fill(request), dropped_info: f"Recalled seed {request.seed} into {MODE_NAMES[request.mode]}. {where}",
                import_dropped: gr.update(visible=not known and clip_id is not None)}

    dropped.upload(recall_dropped, inputs=dropped, outputs=recall_outputs + [dropped_info, import_dropped],
                   api_visibility="private")

    def do_import_dropped(path, request: gr.Request):
        if not path:
            return {import_dropped: gr.update(visible=False)}
        try:
            view = studio.import_mp4(path, account=studio.account(signed_in(request)))
        except (RequestError, QueryError, NotAllowed) as e:
            raise gr.Error(str(e), print_exception=False)
        return {dropped_info: f"Imported clip `{view.id[:8]}` into the gallery.", import_dropped: gr.update(visible=False)}

    import_dropped.click(do_import_dropped, inputs=dropped, outputs=[dropped_info, import_dropped],
                         api_visibility="private")

    # ---- compare ----------------------------------------------------------------------------------
    def on_selection(text):
        ids = [i for i in _strip(text).split(",") if i]
        n = len(ids)
        ok = 2 <= n <= MAX_COMPARE
        msg = (f"{n} selected." if n else "Click a clip to open it; tick boxes (or Ctrl/Shift-click) to compare.")
        if n > MAX_COMPARE:
            msg += f" Compare takes at most {MAX_COMPARE}."
        return (gr.update(value=msg), gr.update(interactive=ok, value=f"Compare {n} selected" if ok else "Compare selected"),
                gr.update(interactive=n > 0))

    selection_box.change(on_selection, inputs=selection_box, outputs=[selection_info, compare_btn, export_sel],
                         api_visibility="private")

    def compare(ids, request: gr.Request = None):
        if isinstance(ids, str):
            ids = [i for i in _strip(ids).split(",") if i]
        views = [v for v in (studio.clip(i) for i in ids[:MAX_COMPARE]) if v is not None]
        if len(views) < 2:
            return {compare_view: gr.update(visible=bool(views)), compare_title: "Pick at least two clips to compare.",
                    compare_grid: "", compare_subject: None, compare_share_link: ""}
        return {compare_view: gr.update(visible=True),
                compare_title: f"### Comparing {len(views)} clips (settings that differ are highlighted)",
                compare_grid: compare_html(views), compare_link: f"{base_url(request)}/?compare=" + ",".join(v.id for v in views),
                compare_subject: {"kind": "compare", "ids": [v.id for v in views]}, compare_share_link: ""}

    compare_outputs = [compare_view, compare_title, compare_grid, compare_link, compare_subject, compare_share_link]
    compare_btn.click(compare, inputs=selection_box, outputs=compare_outputs, api_visibility="private")

    def sweep(sweep_id, request=None):  # type: ignore[no-untyped-def]
        body = sweep_html(studio, sweep_id)
        if not body:
            return {compare_view: gr.update(visible=True), compare_title: f"No sweep {sweep_id!r}.", compare_grid: "",
                    compare_subject: None, compare_share_link: ""}
        return {compare_view: gr.update(visible=True), compare_title: f"### Sweep `{sweep_id[:8]}`",
                compare_grid: body, compare_link: f"{base_url(request)}/?sweep={sweep_id}",
                compare_subject: {"kind": "sweep", "subject": sweep_id}, compare_share_link: ""}

    def share_compared(subject, expires, comments, request: gr.Request):
        if not subject:
            raise gr.Error("compare some clips (or open a sweep) first", print_exception=False)
        url = make_link(request, subject["kind"], subject.get("ids", ()), subject=subject.get("subject"),
                        expires=expires, comments=comments)
        return {compare_share_link: url, **review_links(request)}

    compare_share.click(share_compared, inputs=[compare_subject, compare_expires, compare_comments],
                        outputs=[compare_share_link, reviews_list, revoke_pick], api_visibility="private")

    return GalleryTab(gallery_tab, open_box, selection_box, show, compare, sweep, detail_outputs, compare_outputs)


def _date(label: str, text: str | None):  # type: ignore[no-untyped-def]
    if not text or not text.strip():
        return None
    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=timezone.utc)
    except ValueError:
        raise QueryError(label, f"{text!r} is not a date like 2026-12-01") from None


def _strip(value: str | None) -> str:
    """The page script appends `#n` to every value it hands over, so that a repeated click is a change."""
    return (value or "").split("#", 1)[0]


def sweep_html(studio: "StudioFacade", sweep_id: str) -> str:
    """A sweep's clips as a labelled lock-step grid: axis values on the rows, seeds on the columns."""
    views, _ = studio.search(GalleryQuery(sweep_id=sweep_id, sort="oldest", limit=64))
    if not views:
        return ""
    seeds = sorted({v.seed for v in views})
    rows: dict[str, dict[int, "ClipView"]] = {}
    for v in views:
        rows.setdefault(axes_label(v.axes or {}), {})[v.seed] = v
    table = [(label, [GridCell(by_seed[s]) if s in by_seed else GridCell(text="—") for s in seeds])
             for label, by_seed in rows.items()]
    return grid_html(table, [f"seed {s}" for s in seeds], elem_id="sweep-grid")
