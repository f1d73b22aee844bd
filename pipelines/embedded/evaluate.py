"""Evaluate the embedded model with a pixel analyser, and measure its speed.

    python -m pipelines.embedded.evaluate [--weights assets/embedded] [--seeds 2] [--threads 1] [--quick]

The analyser reads a clip's background colour (border median -> nearest palette colour), object
colour (median of object pixels -> nearest palette colour), shape (fill ratio of the object's
bounding box: square ~1, circle ~0.79, triangle ~0.5), motion (centroid track) and flicker. It is
validated on ground-truth world clips (`--groundtruth`, and a test) where it should score ~100%.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.embedded import world

BG_RGB = np.array(list(world.BACKGROUNDS.values()), dtype=np.float32)
OBJ_RGB = np.array(list(world.OBJECT_COLOURS.values()), dtype=np.float32)
STILL_PX = 8.0  # a centroid moving less than this over the clip counts as still
MIN_AREA = 12  # object pixels needed in a frame to use it


@dataclass
class Analysis:
    bg: str
    obj: str | None
    shape: str | None
    motion: str | None
    fill: float  # median bbox fill ratio
    displacement: tuple[float, float]  # (dx, dy) pixels over the clip
    flicker: float  # mean abs frame-to-frame change of background pixels, 0..1
    area_cv: float  # std/mean of object area over frames
    track: np.ndarray  # (F, 2) object centroid (x, y) per frame, NaN where the object is missing

    def labels(self) -> dict:
        return {"bg": self.bg, "obj": self.obj, "shape": self.shape, "motion": self.motion}


def analyse(clip: np.ndarray) -> Analysis:
    """clip: (F, H, W, 3) uint8."""
    x = clip.astype(np.float32)
    Fr, H, W, _ = x.shape
    border = np.concatenate([x[:, :2].reshape(-1, 3), x[:, -2:].reshape(-1, 3), x[:, :, :2].reshape(-1, 3),
                             x[:, :, -2:].reshape(-1, 3)])
    bg_rgb = np.median(border, axis=0)
    bg = world.BG_NAMES[int(np.argmin(((BG_RGB - bg_rgb) ** 2).sum(1)))]
    dist = np.sqrt(((x - bg_rgb) ** 2).sum(-1))  # (F, H, W)
    mask = dist > 45.0
    core = dist > 0.6 * max(float(dist.max()), 1.0)
    areas = mask.reshape(Fr, -1).sum(1).astype(np.float32)
    track = np.full((Fr, 2), np.nan)
    if core.sum() < MIN_AREA:
        return Analysis(bg, None, None, None, 0.0, (0.0, 0.0), _flicker(x, mask), 0.0, track)
    obj_rgb = np.median(x[core], axis=0)
    obj = world.OBJ_NAMES[int(np.argmin(((OBJ_RGB - obj_rgb) ** 2).sum(1)))]
    fills, cents, idx = [], [], []
    ys, xs = np.mgrid[0:H, 0:W]
    for f in range(Fr):
        m = mask[f]
        if m.sum() < MIN_AREA:
            continue
        r, c = np.nonzero(m)
        bbox = (r.max() - r.min() + 1) * (c.max() - c.min() + 1)
        fills.append(m.sum() / bbox)
        cents.append((xs[m].mean(), ys[m].mean()))
        idx.append(f)
        track[f] = cents[-1]
    fill = float(np.median(fills)) if fills else 0.0
    shape = "square" if fill > 0.88 else "circle" if fill > 0.64 else "triangle"
    motion, disp = None, (0.0, 0.0)
    if len(cents) >= 2:
        c = np.array(cents)
        t = np.array(idx, dtype=np.float32)
        slope = np.polyfit(t, c, 1)[0]  # (2,) pixels per frame, least squares over the track
        dx, dy = float(slope[0] * (Fr - 1)), float(slope[1] * (Fr - 1))
        disp = (dx, dy)
        if max(abs(dx), abs(dy)) < STILL_PX:
            motion = "still"
        elif abs(dx) >= abs(dy):
            motion = "right" if dx > 0 else "left"
        else:
            motion = "down" if dy > 0 else "up"
    area_cv = float(areas.std() / max(areas.mean(), 1.0))
    return Analysis(bg, obj, shape, motion, fill, disp, _flicker(x, mask), area_cv, track)


def jump(track: np.ndarray) -> float:
    """Largest frame-to-frame step of a centroid track (`Analysis.track`) minus the median step, in
    pixels: 0 for smooth motion."""
    steps = np.linalg.norm(np.diff(track, axis=0), axis=1)
    return float(np.nanmax(steps) - np.nanmedian(steps)) if np.isfinite(steps).sum() >= 2 else 0.0


def _flicker(x: np.ndarray, mask: np.ndarray) -> float:
    if x.shape[0] < 2:
        return 0.0
    bgpix = ~(mask[1:] | mask[:-1])
    d = np.abs(x[1:] - x[:-1]).mean(-1)
    return float(d[bgpix].mean() / 255.0) if bgpix.any() else 0.0


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if where is not None:
        d = d[where]
    mse = float(d.mean()) if d.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def groundtruth_clips(n: int, seed: int = 0):
    """n world clips as (uint8 (n, F, H, W, 3) numpy, list of label dicts)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    b = world.sample_batch(n, g)
    clips = world.to_uint8(world.render(b)).numpy()
    return clips, [b.labels(i) for i in range(n)]


def score(pairs: list[tuple[dict, Analysis]], keys=("bg", "obj", "shape", "motion")) -> dict[str, float]:
    return {k: float(np.mean([a.labels()[k] == want[k] for want, a in pairs])) for k in keys}


# ---- the model ----------------------------------------------------------------------------------------
def _gen(backend, req, media=None, seed: int = 0):
    import torch

    from pipelines.contract import MediaInputs

    req = req.resolve(backend.spec, seed)
    g = torch.Generator().manual_seed(req.seed)
    return backend.generate(req, media or MediaInputs(), g, lambda *a: None, lambda: False)


def eval_prompts(n_label_sets: int, seed: int = 0) -> list[tuple[dict, str]]:
    """(labels, prompt) pairs: held-out templates and synonyms, plus the issue's own examples."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_label_sets):
        lab = {"bg": rng.choice(world.BG_NAMES), "obj": rng.choice(world.OBJ_NAMES),
               "shape": rng.choice(world.SHAPES), "motion": rng.choice(world.MOTIONS)}
        out.append((lab, world.caption(lab, rng, "eval")))
    out += [
        ({"bg": "black", "obj": "orange", "shape": "circle", "motion": "right"}, "a tangerine dot heading right over black"),
        ({"bg": "gray", "obj": "blue", "shape": "square", "motion": "down"}, "Square. Blue. Moves to the bottom. Gray background."),
        ({"bg": "beige", "obj": "white", "shape": "triangle", "motion": "still"}, "on beige, a white triangle that stays put"),
    ]
    return out


def run_eval(weights: Path | None, seeds: int, n_prompts: int, n_modes: int, log=print) -> dict:
    import torch

    from pipelines.embedded.backend import EmbeddedBackend
    from pipelines.contract import ImageToVideoRequest, InpaintRequest, TextToVideoRequest, VideoToVideoRequest

    results: dict = {}
    # speed first, while the process is small
    t = time.perf_counter()
    backend = EmbeddedBackend(weights)
    results["load_s"] = time.perf_counter() - t
    backend.paste_first_frame = False  # measure the model's own first frame and outside-mask pixels
    backend.composite_inpaint = False
    _gen(backend, TextToVideoRequest(prompt="warm up"), seed=0)
    times = []
    for s in range(3):
        t = time.perf_counter()
        _gen(backend, TextToVideoRequest(prompt="a red circle moving right on a black background"), seed=s)
        times.append(time.perf_counter() - t)
    results["t2v_s"] = float(np.median(times))
    log(f"load {results['load_s']:.2f}s, t2v at defaults (20 steps, CFG 5) {results['t2v_s']:.2f}s median of 3, "
        f"threads {torch.get_num_threads()}")

    # t2v on paraphrased prompts
    pairs, train_pairs = [], []
    flick = []
    for lab, prompt in eval_prompts(n_prompts):
        for s in range(seeds):
            a = analyse(_gen(backend, TextToVideoRequest(prompt=prompt), seed=1000 + s))
            pairs.append((lab, a))
            flick.append(a.flicker)
    rng = random.Random(1)
    for _ in range(max(4, n_prompts // 2)):  # in-distribution (training templates) for comparison
        lab = {"bg": rng.choice(world.BG_NAMES), "obj": rng.choice(world.OBJ_NAMES),
               "shape": rng.choice(world.SHAPES), "motion": rng.choice(world.MOTIONS)}
        a = analyse(_gen(backend, TextToVideoRequest(prompt=world.caption(lab, rng, "train", world.TRAIN_TEMPLATES[0])), seed=7))
        train_pairs.append((lab, a))
    results["t2v_paraphrase"] = score(pairs)
    results["t2v_train_template"] = score(train_pairs)
    results["t2v_flicker"] = float(np.mean(flick))
    results["t2v_clips"] = len(pairs)
    log(f"t2v paraphrased ({len(pairs)} clips): " + _fmt(results["t2v_paraphrase"]) + f" flicker {results['t2v_flicker']:.4f}")
    log(f"t2v training template ({len(train_pairs)} clips): " + _fmt(results["t2v_train_template"]))

    # i2v, inpaint, v2v on ground-truth world clips
    from pipelines.contract import MediaInputs

    clips, labels = groundtruth_clips(n_modes, seed=123)
    rng = random.Random(2)
    i2v_psnr, i2v_jump, i2v_pairs, inp_psnr, v2v_col, v2v_mot = [], [], [], [], [], []
    for i in range(n_modes):
        clip, lab = clips[i], labels[i]
        prompt = world.caption(lab, rng, "eval")
        out = _gen(backend, ImageToVideoRequest(prompt=prompt, image="-"), MediaInputs(image=clip[0]), seed=i)
        a = analyse(out)
        i2v_psnr.append(psnr(out[0], clip[0]))
        i2v_jump.append(jump(a.track))
        i2v_pairs.append((lab, a))
        mask = np.zeros(clip.shape[:3], np.float32)
        y0, x0 = rng.randrange(0, 32), rng.randrange(0, 32)
        mask[:, y0 : y0 + 32, x0 : x0 + 32] = 1.0
        out = _gen(backend, InpaintRequest(prompt=prompt, video="-", mask="-"), MediaInputs(video=clip, mask=mask), seed=i)
        inp_psnr.append(psnr(out, clip, mask < 0.5))
        new = dict(lab, obj=rng.choice([c for c in world.OBJ_NAMES if c != lab["obj"]]))
        out = _gen(backend, VideoToVideoRequest(prompt=world.caption(new, rng, "eval"), video="-", strength=0.6),
                   MediaInputs(video=clip), seed=i)
        a = analyse(out)
        v2v_col.append(a.obj == new["obj"])
        v2v_mot.append(a.motion == lab["motion"])
    results["i2v_first_frame_psnr"] = float(np.mean(i2v_psnr))
    results["i2v_jump_px"] = float(np.mean(i2v_jump))
    results["i2v"] = score(i2v_pairs)
    results["inpaint_outside_psnr"] = float(np.mean(inp_psnr))
    results["v2v_new_colour"] = float(np.mean(v2v_col))
    results["v2v_motion_kept"] = float(np.mean(v2v_mot))
    log(f"i2v ({n_modes} clips): first-frame PSNR {results['i2v_first_frame_psnr']:.1f} dB, "
        f"jump {results['i2v_jump_px']:.1f} px (largest centroid step over the median), " + _fmt(results["i2v"]))
    log(f"inpaint ({n_modes} clips): outside-mask PSNR {results['inpaint_outside_psnr']:.1f} dB")
    log(f"v2v strength 0.6 ({n_modes} clips): new colour {results['v2v_new_colour']:.0%}, "
        f"motion kept {results['v2v_motion_kept']:.0%}")
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(f"peak RSS {results['peak_rss_mb']:.0f} MB")
    log("targets: colour, background >=95%, motion >=90%, shape >=85% (paraphrased); i2v PSNR >=25 dB; "
        "inpaint outside >=30 dB; v2v colour, motion >=90%; t2v <=3 s, load <=2 s, RSS <1.5 GB")
    return results


def _fmt(s: dict) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in s.items())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.embedded.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="folder with model.safetensors (default assets/embedded)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--prompts", type=int, default=40, help="label sets with paraphrased prompts")
    p.add_argument("--modes", type=int, default=20, help="clips per i2v / inpaint / v2v check")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--groundtruth", action="store_true", help="only validate the analyser on world clips")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.groundtruth:
        clips, labels = groundtruth_clips(500)
        s = score([(lab, analyse(c)) for c, lab in zip(clips, labels)])
        print("analyser on 500 ground-truth clips: " + _fmt(s))
        return 0
    results = run_eval(args.weights, args.seeds, args.prompts, args.modes)
    if args.json:
        import json

        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
