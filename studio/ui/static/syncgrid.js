// Lock-step playback for a grid of clips (a batch, a sweep, a comparison): one clock for every <video>.
//
//   StudioSync.attach(container)  -> controller    (idempotent: attaching twice returns the same one)
//
// The container holds the <video> elements (each may carry data-fps, default 8) and gets a control bar:
// Play/Pause, a scrubber, frame stepping, speed 0.25x to 2x and loop. Videos play natively at the chosen
// rate; every animation frame each one is compared with the shared clock and re-seeked when it drifts
// by more than half a frame. Clips of different lengths line up by time: a shorter one holds its last
// frame until the clock wraps. Nothing here talks to the server.
(function () {
  "use strict";
  if (window.StudioSync) return;
  const SPEEDS = [0.25, 0.5, 1, 1.5, 2];
  const END = 1e-3; // a hair before the end, so a held clip shows its last frame, not a blank

  function fpsOf(v) {
    const f = parseFloat(v.dataset.fps || v.closest("[data-fps]")?.dataset.fps || "8");
    return f > 0 ? f : 8;
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, val] of Object.entries(attrs || {})) e.setAttribute(k, val);
    if (text) e.textContent = text;
    return e;
  }

  class Controller {
    constructor(container) {
      this.container = container;
      this.videos = [];
      this.speed = 1;
      this.loop = true;
      this.playing = false;
      this.position = 0; // seconds on the shared clock when paused, or at `since`
      this.since = 0; // performance.now() when play started or the clock was last re-based
      this.raf = null;
      this.buildBar();
      this.refresh();
      this.observer = new MutationObserver(() => this.refresh());
      this.observer.observe(container, { childList: true, subtree: true });
    }

    // ---- the control bar ------------------------------------------------------------------------
    buildBar() {
      const bar = el("div", { class: "studio-sync-bar", role: "toolbar", "aria-label": "Playback of all clips" });
      this.playBtn = el("button", { type: "button", "aria-label": "Play/Pause", class: "studio-sync-play" }, "▶");
      this.prevBtn = el("button", { type: "button", "aria-label": "Previous frame" }, "‹");
      this.nextBtn = el("button", { type: "button", "aria-label": "Next frame" }, "›");
      this.scrub = el("input", { type: "range", min: "0", max: "1000", value: "0", step: "1",
                                 "aria-label": "Position", class: "studio-sync-scrub" });
      this.clock = el("span", { class: "studio-sync-time", "aria-live": "off" }, "0.00 s");
      this.speedSel = el("select", { "aria-label": "Speed" });
      for (const s of SPEEDS) {
        const o = el("option", { value: String(s) }, `${s}×`);
        if (s === 1) o.selected = true;
        this.speedSel.appendChild(o);
      }
      const loopLabel = el("label", { class: "studio-sync-loop" });
      this.loopBox = el("input", { type: "checkbox", "aria-label": "Loop" });
      this.loopBox.checked = true;
      loopLabel.append(this.loopBox, document.createTextNode(" loop"));
      bar.append(this.playBtn, this.prevBtn, this.nextBtn, this.scrub, this.clock, this.speedSel, loopLabel);
      this.container.prepend(bar);
      this.bar = bar;

      this.playBtn.addEventListener("click", () => (this.playing ? this.pause() : this.play()));
      this.prevBtn.addEventListener("click", () => this.step(-1));
      this.nextBtn.addEventListener("click", () => this.step(1));
      this.scrub.addEventListener("input", () => this.seek((this.scrub.value / 1000) * this.duration()));
      this.speedSel.addEventListener("change", () => this.setSpeed(parseFloat(this.speedSel.value)));
      this.loopBox.addEventListener("change", () => (this.loop = this.loopBox.checked));
    }

    // ---- the clock --------------------------------------------------------------------------------
    refresh() {
      // a page that re-renders the grid's HTML in place (Gradio morphs it) may drop the bar: put it back
      if (!this.container.contains(this.bar)) this.container.prepend(this.bar);
      const found = [...this.container.querySelectorAll("video")];
      for (const v of found) {
        if (this.videos.includes(v)) continue;
        v.muted = true;
        v.loop = false; // the shared clock loops, not each video
        v.autoplay = false;
        v.removeAttribute("autoplay");
        v.playsInline = true;
        v.pause();
        v.addEventListener("loadedmetadata", () => this.sync(true));
      }
      this.videos = found;
    }

    duration() {
      const ds = this.videos.map((v) => v.duration).filter((d) => isFinite(d) && d > 0);
      return ds.length ? Math.max(...ds) : 0;
    }

    frameSeconds() {
      const fps = this.videos.length ? Math.min(...this.videos.map(fpsOf)) : 8;
      return 1 / fps;
    }

    now() {
      if (!this.playing) return this.position;
      return this.position + ((performance.now() - this.since) / 1000) * this.speed;
    }

    rebase(t) {
      this.position = t;
      this.since = performance.now();
    }

    play() {
      const d = this.duration();
      if (d && this.position >= d - END) this.position = 0; // play again from the start
      this.playing = true;
      this.rebase(this.position);
      this.playBtn.textContent = "⏸";
      this.sync(true);
      if (!this.raf) this.raf = requestAnimationFrame(() => this.tick());
    }

    pause() {
      this.position = this.now();
      this.playing = false;
      this.playBtn.textContent = "▶";
      this.sync(true);
    }

    seek(t) {
      const d = this.duration();
      this.rebase(Math.max(0, Math.min(t, d || t)));
      this.sync(true);
    }

    step(frames) {
      if (this.playing) this.pause();
      // land on a frame boundary of the slowest clip, then move by whole frames
      const f = this.frameSeconds();
      const here = Math.round(this.position / f);
      this.seek((here + frames) * f + f / 2 > this.duration() ? this.duration() - END : (here + frames) * f);
    }

    setSpeed(s) {
      this.rebase(this.now());
      this.speed = s;
      for (const v of this.videos) v.playbackRate = s;
      this.sync(true);
    }

    tick() {
      this.raf = null;
      if (!this.playing) return;
      const d = this.duration();
      let t = this.now();
      if (d && t >= d) {
        if (this.loop) {
          t = t % d;
          this.rebase(t);
          this.sync(true);
        } else {
          this.rebase(d);
          this.pause();
          return;
        }
      }
      this.sync(false);
      this.raf = requestAnimationFrame(() => this.tick());
    }

    // Put every video where the clock says: seek when forced or when it drifted by half a frame.
    sync(force) {
      const t = this.now();
      const d = this.duration();
      for (const v of this.videos) {
        if (!(v.duration > 0)) continue;
        const held = t >= v.duration - END; // shorter clip: hold its last frame
        const target = held ? v.duration - END : t;
        const tolerance = 0.5 / fpsOf(v);
        if (force || Math.abs(v.currentTime - target) > tolerance) v.currentTime = target;
        v.playbackRate = this.speed;
        if (this.playing && !held) {
          if (v.paused) v.play().catch(() => {});
        } else if (!v.paused) {
          v.pause();
        }
      }
      if (d) this.scrub.value = String(Math.round((Math.min(t, d) / d) * 1000));
      this.clock.textContent = `${Math.min(t, d || t).toFixed(2)} s`;
      this.container.dataset.clock = String(t);
    }
  }

  window.StudioSync = {
    attach(container) {
      if (!container) return null;
      if (!container.__studioSync) container.__studioSync = new Controller(container);
      return container.__studioSync;
    },
    // Attach to every element with the class `studio-sync` now and whenever one appears later.
    auto(root) {
      const scan = () => (root || document).querySelectorAll(".studio-sync").forEach((c) => this.attach(c));
      scan();
      new MutationObserver(scan).observe(root || document.body, { childList: true, subtree: true });
    },
  };
})();
