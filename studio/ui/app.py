"""The Gradio studio: four generation tabs, a gallery, and the public API, all over one `StudioFacade`.

The tabs live in their own modules (generate, gallery, api); this one puts them on a page, adds the
page script and styles, opens the view a link asks for (`/?clip=`, `/?compare=`, `/?sweep=`), and
launches. It imports neither torch nor SQLAlchemy, and reaches the services only through the facade.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
from starlette.middleware import Middleware

from studio.ui.api import register_api
from studio.ui.common import MODES
from studio.ui.gallery import build_gallery
from studio.ui.generate import ModeTab, build_mode_tab
from studio.ui.refusals import StudioBlocks
from studio.ui.review import ReviewRoutes
from studio.ui.security import SafeFiles

if TYPE_CHECKING:
    from studio.facade import StudioFacade
    from studio.settings import Settings

STATIC = Path(__file__).resolve().parent / "static"
SERVED_FOLDERS = ("exports", "inputs")  # clips are served by id (security.SafeFiles), never by path
MAX_LINK_IDS = 9


def build_ui(studio: "StudioFacade") -> gr.Blocks:
    # no calls home; uploads and served copies in the data dir's tmp/ are deleted after a day (checked hourly)
    # StudioBlocks: a call Gradio refuses before a handler runs (a server path as a file) gets a message
    with StudioBlocks(title="Video Diffusion Studio", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("## Video Diffusion Studio\nType a prompt, compare seeds side by side, recall any clip's "
                        "recipe.", elem_id="studio-title")
            if studio.hf_login:  # signed in by Hugging Face: the button shows who, and signs out
                gr.LoginButton(elem_id="studio-login", scale=0, min_width=200, size="sm", icon=None)
        if studio.settings.notice:  # a Space without persistent storage says so, where everyone sees it
            gr.Markdown(f"**{studio.settings.notice}**", elem_id="studio-notice")
        tabs: dict[str, ModeTab] = {}
        with gr.Tabs(overflow_behavior="wrap") as container:  # on a phone, tabs wrap instead of hiding
            for mode, title in MODES.items():
                with gr.Tab(title, id=mode):
                    tabs[mode] = build_mode_tab(studio, mode)
            gallery = build_gallery(studio, tabs, container)
        register_api(studio)

        def open_link(request: gr.Request):
            """`/?clip=ID`, `/?compare=ID,ID,...` or `/?sweep=ID`: open the studio on that view."""
            q = request.query_params if request is not None else {}
            clip, compare, sweep = q.get("clip"), q.get("compare"), q.get("sweep")
            if not (clip or compare or sweep):
                return {container: gr.update()}
            out: dict = {container: gr.Tabs(selected="gallery")}
            if clip:
                out.update(gallery.show(studio.resolve_clip_id(clip[:64]) or clip[:64], request))
            if compare:
                ids = [studio.resolve_clip_id(i[:64]) or i[:64] for i in compare.split(",")[:MAX_LINK_IDS]]
                out.update(gallery.compare(ids, request))
            elif sweep:
                out.update(gallery.sweep(sweep[:64], request))
            return out

        demo.load(open_link, outputs=[container] + gallery.detail_outputs + gallery.compare_outputs,
                  api_visibility="private")
    return demo


CSS = """
.pixelated img, .pixelated video { image-rendering: pixelated; }
#studio-title h2 { margin-bottom: 0; }
.studio-hidden { display: none !important; }
.studio-grid { max-width: 100%; overflow-x: auto; }
.studio-grid table { border-collapse: collapse; }
.studio-grid th { font-weight: 600; font-size: 0.85em; padding: 2px 6px; text-align: center; }
.studio-grid td { padding: 2px; vertical-align: top; }
.studio-grid video { width: 100%; min-width: 96px; max-width: 320px; display: block; }
#compare-grid video { width: 260px; max-width: 30vw; }
.studio-pending { min-width: 96px; height: 64px; text-align: center; color: var(--body-text-color-subdued); }
.studio-diff { font-size: 0.8em; }
.studio-settings tr.studio-differs { background: var(--color-accent-soft); font-weight: 600; }
.studio-settings td, .studio-settings th { padding: 1px 8px; text-align: left; font-size: 0.85em; }
.studio-sync-bar { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; margin: 4px 0; }
.studio-sync-bar button { min-width: 2em; }
.studio-tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; }
.studio-stack, .studio-single { display: contents; }
.studio-stack:not(.open) > .studio-tile:not(:first-child) { display: none; }
.studio-tile { position: relative; margin: 0; cursor: pointer; border: 2px solid transparent; border-radius: 6px; }
.studio-tile.picked { border-color: var(--color-accent); }
.studio-tile video, .studio-tile img { width: 100%; display: block; border-radius: 4px; }
.studio-tile figcaption { font-size: 0.75em; line-height: 1.3; word-break: break-word; }
.studio-pick { position: absolute; top: 4px; left: 4px; width: 18px; height: 18px; }
.studio-stack-toggle { position: absolute; top: 4px; right: 4px; font-size: 0.75em; padding: 0 4px;
  background: var(--background-fill-primary); border-radius: 4px; }
.studio-tag { display: inline-block; margin-left: 4px; padding: 0 4px; border-radius: 4px;
  background: var(--background-fill-secondary); }
.studio-mini { max-width: 120px; }
.studio-mode { font-size: 0.9em; padding: 0 3px; border-radius: 3px; background: var(--color-accent-soft); }
.studio-ab-stage { position: relative; display: inline-block; }
.studio-ab-stage video { display: block; width: 320px; }
.studio-ab-b { position: absolute; top: 0; left: 0; clip-path: inset(0 0 0 50%); }
.studio-ab-diff { display: block; width: 320px; max-width: 100%; margin-top: 4px; }
.studio-ab label { display: inline-block; margin: 4px 12px 4px 0; }
.studio-feedback { margin-top: 6px; font-size: 0.9em; }
.studio-comments { list-style: none; padding: 0; margin: 4px 0; }
.studio-comment { border-top: 1px solid var(--border-color-primary); padding: 3px 0; }
.studio-comment.resolved { opacity: 0.6; }
.studio-comment-text { white-space: pre-wrap; word-break: break-word; }
.studio-guest { color: var(--body-text-color-subdued); }
.studio-resolve, .studio-comment-at { font-size: 0.85em; padding: 0 4px; border: 1px solid var(--border-color-primary);
  border-radius: 4px; }
@media (max-width: 600px) { .studio-tiles { grid-template-columns: repeat(2, 1fr); } }
"""

PAGE_JS = """
() => {
  let nonce = 0;
  const hidden = (id, value) => {  // hand a value to a hidden textbox; the suffix makes every click a change
    const box = document.querySelector(`#${id} textarea, #${id} input`);
    if (!box) return;
    box.value = `${value}#${++nonce}`;
    box.dispatchEvent(new Event('input', { bubbles: true }));
  };
  // ---- gallery tiles: click opens, checkbox / Ctrl / Shift-click selects, hover plays ----------------
  let picked = [], lastIndex = null;
  const tilesOf = () => [...document.querySelectorAll('#gallery-grid .studio-tile')];
  const showPicked = () => {
    tilesOf().forEach(t => {
      const on = picked.includes(t.dataset.clip);
      t.classList.toggle('picked', on);
      const box = t.querySelector('.studio-pick'); if (box) box.checked = on;
    });
    hidden('gallery-selection', picked.join(','));
  };
  document.addEventListener('click', (e) => {
    // ---- review feedback in the detail: resolve a comment, or show the clip at a comment's time ----------
    const resolve = e.target.closest('#gallery-feedback .studio-resolve');
    if (resolve) { hidden('gallery-resolve', `${resolve.dataset.comment}:${resolve.dataset.resolved}`); return; }
    const at = e.target.closest('#gallery-feedback .studio-comment-at');
    if (at) {
      const v = document.querySelector('#gallery-player video');
      if (v) { v.pause(); v.currentTime = parseFloat(at.dataset.at); }
      return;
    }
    const toggle = e.target.closest('.studio-stack-toggle');
    if (toggle) { toggle.closest('.studio-stack').classList.toggle('open'); e.stopPropagation(); return; }
    const tile = e.target.closest('#gallery-grid .studio-tile, #gallery-lineage .studio-tile');
    if (!tile) return;
    const id = tile.dataset.clip, all = tilesOf(), index = all.indexOf(tile);
    const box = e.target.classList.contains('studio-pick');
    if (tile.closest('#gallery-grid') && (box || e.ctrlKey || e.metaKey || e.shiftKey)) {
      if (e.shiftKey && lastIndex !== null && index >= 0) {
        const [a, b] = [Math.min(lastIndex, index), Math.max(lastIndex, index)];
        for (const t of all.slice(a, b + 1)) if (!picked.includes(t.dataset.clip)) picked.push(t.dataset.clip);
      } else {
        picked = picked.includes(id) ? picked.filter(x => x !== id) : [...picked, id];
      }
      lastIndex = index;
      if (!box) e.preventDefault();
      showPicked();
      return;
    }
    lastIndex = index;
    hidden('gallery-open', id);
  }, true);
  new MutationObserver(() => { if (document.querySelector('#gallery-grid .studio-tile')) {
    tilesOf().forEach(t => t.classList.toggle('picked', picked.includes(t.dataset.clip)));
  } }).observe(document.body, { childList: true, subtree: true });
  document.addEventListener('mouseover', (e) => {
    const t = e.target.closest && e.target.closest('#gallery-grid .studio-tile');
    const v = t && t.querySelector('video');
    if (v) { v.muted = true; v.play().catch(() => {}); }
  }, true);
  document.addEventListener('mouseout', (e) => {
    const t = e.target.closest && e.target.closest('#gallery-grid .studio-tile');
    const v = t && t.querySelector('video');
    if (v && !(e.relatedTarget && t.contains(e.relatedTarget))) v.pause();
  }, true);
  // ---- Ctrl+Enter in a prompt generates -----------------------------------------------------------
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || !(e.ctrlKey || e.metaKey)) return;
    const prompt = e.target.closest && e.target.closest('.studio-prompt');
    if (!prompt) return;
    const mode = prompt.id.replace(/-prompt$/, '');
    const button = document.getElementById(`${mode}-generate`);
    if (button) { e.preventDefault(); button.click(); }
  }, true);
  // ---- A/B wipe and difference of two clips ------------------------------------------------------
  document.addEventListener('input', (e) => {
    if (!e.target.classList.contains('studio-ab-wipe')) return;
    const b = e.target.closest('.studio-ab').querySelector('.studio-ab-b');
    b.style.clipPath = `inset(0 0 0 ${e.target.value}%)`;
  }, true);
  const drawDiffs = () => {
    for (const ab of document.querySelectorAll('.studio-ab')) {
      const [a, b] = ab.querySelectorAll('video');
      const canvas = ab.querySelector('.studio-ab-diff');
      if (!a || !b || !canvas || a.readyState < 2 || b.readyState < 2) continue;
      const w = a.videoWidth, h = a.videoHeight;
      if (canvas.width !== w) { canvas.width = w; canvas.height = h; }
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      ctx.globalCompositeOperation = 'source-over';
      ctx.drawImage(a, 0, 0, w, h);
      ctx.globalCompositeOperation = 'difference';
      ctx.drawImage(b, 0, 0, w, h);
      const gain = Math.max(1, parseFloat(ab.querySelector('.studio-ab-gain').value) || 4);
      const img = ctx.getImageData(0, 0, w, h), d = img.data;
      for (let i = 0; i < d.length; i += 4) { d[i] *= gain; d[i + 1] *= gain; d[i + 2] *= gain; }
      ctx.putImageData(img, 0, 0);
      canvas.dataset.drawn = String((parseInt(canvas.dataset.drawn || '0') + 1));
    }
    requestAnimationFrame(drawDiffs);
  };
  requestAnimationFrame(drawDiffs);
  if (window.StudioSync) window.StudioSync.auto();
}
"""


def page_head() -> str:
    """The lock-step player, inlined so the page needs no extra route."""
    return f"<script>{(STATIC / 'syncgrid.js').read_text()}</script>"


def use_data_dir_for_temp(settings: "Settings") -> None:
    """Uploads and Gradio's copies stay in the data dir (the only place files are served from)."""
    tmp = settings.data_dir.resolve() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp))


def serve(studio: "StudioFacade", *, block: bool = False) -> gr.Blocks:
    """Launch the UI over a built studio. Files are served from the data dir only."""
    settings = studio.settings
    use_data_dir_for_temp(settings)
    demo = build_ui(studio)
    demo.queue(default_concurrency_limit=None)
    data = settings.data_dir.resolve()
    for folder in SERVED_FOLDERS:
        (data / folder).mkdir(parents=True, exist_ok=True)
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        # exports and inputs only: never the database, the lock or anything else of the data dir
        allowed_paths=[str(data / folder) for folder in SERVED_FOLDERS],
        # review links (`/review/<token>`) are answered there too, before Gradio and its login
        app_kwargs={"middleware": [Middleware(SafeFiles, media=studio.clip_file, reviews=ReviewRoutes(studio))]},
        # with accounts on, every route (page, handlers, API, uploads, files) needs a login: a password, or
        # on a Space the Hugging Face session (a visitor who is not signed in is sent to sign in first)
        auth=studio.login if studio.auth_required and not studio.hf_login else None,
        auth_dependency=(lambda request: studio.sign_in_hf(request.session.get("oauth_info"))
                         if "session" in request.scope else None) if studio.hf_login else None,
        auth_message="Sign in with the name and password `studio users add` gave you.",
        max_file_size=f"{settings.max_upload_mb}mb",
        prevent_thread_lock=True,
        css=CSS,
        js=PAGE_JS,
        head=page_head(),
        footer_links=["api", "gradio"],
        # the gallery is the studio's history: Gradio's run history would keep a second copy of prompts and
        # outputs in the browser (or a bucket), outside the gallery's owners and deletions
        run_history=False,
        quiet=not block,
    )
    if block:  # the served studio: with the page up, load the default model while nobody waits for it
        studio.warm_up()
        demo.block_thread()
    return demo
