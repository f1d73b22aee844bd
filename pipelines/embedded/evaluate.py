"""Evaluate the embedded model with a pixel analyser, and measure its speed.

    python -m pipelines.embedded.evaluate [--weights assets/embedded] [--threads 1] [--quick] [--json FILE]

The analyser (pipelines/embedded/analysis.py) reads a clip's background and object colours, shape,
motion, start and size. It is validated on ground-truth world clips (`--groundtruth`, and a test) where
it should score ~100%.
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
from pipelines.embedded.analysis import Analysis, analyse

def jump(track: np.ndarray) -> float:
    """Largest frame-to-frame step of a centroid track (`Analysis.track`) minus the median step, in
    pixels: 0 for smooth motion."""
    steps = np.linalg.norm(np.diff(track, axis=0), axis=1)
    return float(np.nanmax(steps) - np.nanmedian(steps)) if np.isfinite(steps).sum() >= 2 else 0.0


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


def wasserstein1(a: np.ndarray, b: np.ndarray, q: int = 1000) -> float:
    """1-D Wasserstein-1 distance between two empirical distributions (mean absolute quantile gap)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return float("nan")
    u = (np.arange(q) + 0.5) / q
    return float(np.mean(np.abs(np.quantile(a, u) - np.quantile(b, u))))


def geometry(analyses: list[Analysis]) -> np.ndarray:
    """(N, 3): start x, start y and size in pixels per clip (NaN where the analyser found no track)."""
    return np.array([[a.start[0], a.start[1], a.size] for a in analyses], dtype=np.float64)


def _world_clips(labels: dict, n: int, g) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """n world clips (uint8) with the attributes `labels` names fixed, the others drawn as in training."""
    b = world.sample_batch(n, g, **{k: names.index(labels[k]) for k, names in world.VALUES.items() if k in labels})
    return list(world.to_uint8(world.render(b)).numpy())


def world_geometry(labels: dict, n: int, seed: int) -> np.ndarray:
    """geometry() of n world clips with the attributes `labels` names fixed (others drawn as in training)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, 128):
        out += [analyse(c) for c in _world_clips(labels, min(128, n - i), g)]
    return geometry(out)


def near_copies(clips: list[np.ndarray], tol: float = 3.0) -> tuple[int, int, float]:
    """(pairs whose mean absolute difference is under tol levels of 255, pairs, the smallest difference)."""
    n, hits, lo = len(clips), 0, float("inf")
    for i in range(n):
        for j in range(i + 1, n):
            d = float(np.abs(clips[i].astype(np.float32) - clips[j].astype(np.float32)).mean())
            hits += d < tol
            lo = min(lo, d)
    return hits, n * (n - 1) // 2, lo


def geometric_copies(geo: np.ndarray, tol: float = 2.0) -> int:
    """Pairs among the rows of geometry() whose start (x and y) and size all lie within tol pixels: the
    same layout drawn twice, whatever the colours (a pair with no track counts as no copy)."""
    n, hits = len(geo), 0
    for i in range(n):
        for j in range(i + 1, n):
            hits += bool(np.all(np.abs(geo[i] - geo[j]) < tol))
    return hits


def world_copies(labels: dict, draws: int, seed: int) -> tuple[int, int, int]:
    """The near-copy measures on the world itself: `draws` sets of 8 clips with these attributes, as
    the training data draws them. (MAD near-copy pairs, geometric copies, pairs)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    mad = geo = pairs = 0
    for _ in range(draws):
        clips = _world_clips(labels, 8, g)
        h, m, _ = near_copies(clips)
        mad, pairs = mad + h, pairs + m
        geo += geometric_copies(geometry([analyse(c) for c in clips]))
    return mad, geo, pairs


def object_mask(clip: np.ndarray, lab: dict, pad: int = 4) -> np.ndarray:
    """(F, H, W) float mask: the bounding box of every pixel that is not the background, over the whole
    clip, grown by pad pixels (inpaint then redraws the whole object)."""
    bg = np.array(world.BACKGROUNDS[lab["bg"]], np.float32)
    m = np.abs(clip.astype(np.float32) - bg).sum(-1).max(0) > 30  # (H, W) any frame
    r, c = np.nonzero(m)
    out = np.zeros(clip.shape[:3], np.float32)
    H, W = m.shape
    out[:, max(r.min() - pad, 0): min(r.max() + pad + 1, H), max(c.min() - pad, 0): min(c.max() + pad + 1, W)] = 1.0
    return out


# held-out i2v prompts: what the look of each clip's prompt mentions, cycled ("" = motion only)
I2V_LOOKS = ("", "", "c", "s", "b", "cs")
# v2v: the attributes each clip's change-only prompt changes, cycled
V2V_CHANGES = (("obj",), ("shape",), ("bg",), ("obj",), ("shape",), ("bg",), ("obj", "shape"), ("obj", "bg"))
# the and README's own examples: (source labels, prompt, what changes to)
I2V_EXAMPLES = [({"bg": "black", "obj": "green", "shape": "circle", "motion": "left"}, "moves left"),
                ({"bg": "gray", "obj": "green", "shape": "circle", "motion": "up"}, "moves up")]
V2V_EXAMPLES = [({"bg": "navy", "obj": "red", "shape": "square", "motion": "right"}, "make it blue", {"obj": "blue"}),
                ({"bg": "beige", "obj": "green", "shape": "circle", "motion": "down"}, "a triangle instead",
                 {"shape": "triangle"}),
                ({"bg": "gray", "obj": "yellow", "shape": "triangle", "motion": "left"}, "on a black background",
                 {"bg": "black"}),
                ({"bg": "black", "obj": "cyan", "shape": "square", "motion": "up"}, "a pink triangle",
                 {"obj": "pink", "shape": "triangle"})]
# seed diversity: (prompt, what it fixes, first seed); 8 consecutive seeds for near-copies, more for the spread
DIVERSITY_PROMPTS = [
    ("Square. Blue. Moves to the bottom. Gray background.", {"bg": "gray", "obj": "blue", "shape": "square", "motion": "down"}, 1935594021),
    ("a red circle moving right on a black background", {"bg": "black", "obj": "red", "shape": "circle", "motion": "right"}, 1000),
    ("on beige, a white triangle that stays put", {"bg": "beige", "obj": "white", "shape": "triangle", "motion": "still"}, 2000),
    ("a small orange triangle drifting upward over a beige backdrop", {"bg": "beige", "obj": "orange", "shape": "triangle", "motion": "up"}, 3000),
    ("a tangerine dot heading right over black", {"bg": "black", "obj": "orange", "shape": "circle", "motion": "right"}, 4000),
    ("a green square", {"obj": "green", "shape": "square"}, 5000),
]


def clip_with(lab: dict, seed: int) -> np.ndarray:
    """One world clip with these labels (random geometry): (F, H, W, 3) uint8."""
    import torch

    g = torch.Generator().manual_seed(seed)
    b = world.sample_batch(1, g, bg=world.BG_NAMES.index(lab["bg"]), obj=world.OBJ_NAMES.index(lab["obj"]),
                           shape=world.SHAPES.index(lab["shape"]), motion=world.MOTIONS.index(lab["motion"]))
    return world.to_uint8(world.render(b)).numpy()[0]


def _gen_seeds(backend, req, seeds: list[int], media=None) -> list[np.ndarray]:
    """Several seeds of one request, in batches of backend.max_batch (the clips single generations give,
    up to float rounding)."""
    import torch

    from pipelines.contract import MediaInputs

    out = []
    for i in range(0, len(seeds), backend.max_batch):
        chunk = seeds[i : i + backend.max_batch]
        reqs = [req.resolve(backend.spec, s) for s in chunk]
        gens = [torch.Generator().manual_seed(s) for s in chunk]
        out += backend.generate_batch(reqs, media or MediaInputs(), gens, lambda *a: None, lambda: False)
    return out


@dataclass(frozen=True)
class EvalSize:
    """How many clips each section uses (main's flags; --quick shrinks them)."""

    seeds: int = 2  # seeds per paraphrased t2v prompt
    prompts: int = 40  # label sets with paraphrased t2v prompts
    modes: int = 20  # clips per i2v / inpaint / v2v check (full prompts)
    partial: int = 36  # clips per i2v-partial / v2v-change-only check (plus the examples)
    inpaint: int = 60  # clips per inpaint-redraw check (the object's whole path masked)
    diversity_prompts: int = 6  # of DIVERSITY_PROMPTS
    diversity_seeds: int = 32  # per prompt for the spread (the first 8 for near-copies)
    few_steps: int = 8
    recon: int = 200  # world clips through the autoencoder alone (the decoder's ceiling for the model)
    world_draws: int = 50  # sets of 8 world clips per diversity prompt: the near-copy rates of the data itself


def run_eval(weights: Path | None, size: EvalSize = EvalSize(), log=print, steps: int | None = None,
             solver: str | None = None, shift: float | None = None, sections: tuple[str, ...] | None = None,
             cfg_scale: float | None = None, cfg_interval: tuple[float, float] | None = None,
             unguided_final_steps: int | None = None, read_inputs: bool = True,
             shape_contrast: float | None = None) -> dict:
    """Every figure of the model card's evaluation. steps: the default step count (None: the spec's);
    solver / shift: override the weights' sampler (experiments); sections: a subset of
    ("speed", "recon", "t2v", "few", "modes", "partial", "inpaint", "diversity") (None: all); read_inputs False: i2v and
    v2v prompts as typed, without what the input shows (the model alone)."""
    import torch

    from pipelines.embedded.backend import EmbeddedBackend
    from pipelines.contract import (ImageToVideoRequest, InpaintRequest, MediaInputs, TextToVideoRequest,
                                    VideoToVideoRequest)

    want = set(sections or ("speed", "recon", "t2v", "few", "modes", "partial", "inpaint", "diversity"))
    results: dict = {}
    # speed first, while the process is small
    t = time.perf_counter()
    backend = EmbeddedBackend(weights)
    results["load_s"] = time.perf_counter() - t
    backend.paste_first_frame = False  # measure the model's own first frame and outside-mask pixels
    backend.composite_inpaint = False
    backend.read_inputs = read_inputs
    if solver is not None:
        backend.solver = solver
    if shift is not None:
        backend.shift = shift
    if cfg_interval is not None:
        backend.cfg_interval = tuple(cfg_interval)
    if unguided_final_steps is not None:
        backend.unguided_final_steps = unguided_final_steps
    if shape_contrast is not None:
        backend.shape_contrast = shape_contrast
    if cfg_scale is not None:  # every request below leaves cfg_scale to the spec's default
        import dataclasses

        backend.spec = dataclasses.replace(backend.spec, defaults=dataclasses.replace(backend.spec.defaults,
                                                                                      cfg_scale=cfg_scale))
    steps = steps or backend.spec.defaults.steps
    results["sampler"] = backend.manifest()["sampler"]
    results["steps"] = steps
    results["cfg_scale"] = backend.spec.defaults.cfg_scale
    results["read_inputs"] = read_inputs
    log(f"sampler: {results['sampler']}, {steps} steps by default, CFG {results['cfg_scale']}; i2v/v2v prompts "
        + ("completed from the input" if read_inputs else "as typed (--no-read-inputs)"))
    if "speed" in want:
        _gen(backend, TextToVideoRequest(prompt="warm up", steps=steps), seed=0)
        for n_steps, key in ((steps, "t2v_s"), (size.few_steps, "t2v_few_s")):
            times = []
            for s in range(3):
                t = time.perf_counter()
                _gen(backend, TextToVideoRequest(prompt="a red circle moving right on a black background", steps=n_steps), seed=s)
                times.append(time.perf_counter() - t)
            results[key] = float(np.median(times))
        log(f"load {results['load_s']:.2f}s, t2v {results['t2v_s']:.2f}s at {steps} steps (CFG {results['cfg_scale']}), "
            f"{results['t2v_few_s']:.2f}s at {size.few_steps}, median of 3, threads {torch.get_num_threads()}")

    if "recon" in want:  # the autoencoder alone: what the decoder draws of a perfect latent
        from pipelines.embedded.vae import frames_to_model, model_to_frames

        clips, labels = groundtruth_clips(size.recon, seed=789)
        pairs, db = [], []
        with torch.no_grad():
            for i in range(0, size.recon, 16):
                out = model_to_frames(backend.vae.decode(backend.vae.encode(frames_to_model(torch.from_numpy(
                    clips[i : i + 16]))))).numpy()
                for j in range(len(out)):
                    db.append(psnr(out[j], clips[i + j]))
                    pairs.append((labels[i + j], analyse(out[j])))
        results["recon_psnr"] = float(np.mean(db))
        results["recon"] = score(pairs)
        log(f"autoencoder alone ({size.recon} world clips): PSNR {results['recon_psnr']:.1f} dB, " + _fmt(results["recon"]))

    # t2v on paraphrased prompts, at the default steps and at few steps
    for key, n_steps in (("t2v_paraphrase", steps), ("t2v_paraphrase_few", size.few_steps)):
        if (key == "t2v_paraphrase" and "t2v" not in want) or (key == "t2v_paraphrase_few" and "few" not in want):
            continue
        pairs, flick = [], []
        for lab, prompt in eval_prompts(size.prompts):
            for s in range(size.seeds):
                a = analyse(_gen(backend, TextToVideoRequest(prompt=prompt, steps=n_steps), seed=1000 + s))
                pairs.append((lab, a))
                flick.append(a.flicker)
        results[key] = score(pairs)
        results[key.replace("paraphrase", "flicker")] = float(np.mean(flick))
        results[key.replace("paraphrase", "clips")] = len(pairs)
        log(f"t2v paraphrased at {n_steps} steps ({len(pairs)} clips): " + _fmt(results[key])
            + f" flicker {np.mean(flick):.4f}")
        if key == "t2v_paraphrase":
            train_pairs = []
            rng = random.Random(1)
            for _ in range(max(4, size.prompts // 2)):  # in-distribution (training templates) for comparison
                lab = {"bg": rng.choice(world.BG_NAMES), "obj": rng.choice(world.OBJ_NAMES),
                       "shape": rng.choice(world.SHAPES), "motion": rng.choice(world.MOTIONS)}
                prompt = world.caption(lab, rng, "train", world.TRAIN_TEMPLATES[0])
                train_pairs.append((lab, analyse(_gen(backend, TextToVideoRequest(prompt=prompt, steps=steps), seed=7))))
            results["t2v_train_template"] = score(train_pairs)
            log(f"t2v training template ({len(train_pairs)} clips): " + _fmt(results["t2v_train_template"]))

    if "modes" in want:  # i2v, inpaint, v2v on ground-truth world clips, with full (paraphrased) prompts
        n_modes = size.modes
        clips, labels = groundtruth_clips(n_modes, seed=123)
        rng = random.Random(2)
        i2v_psnr, i2v_jump, i2v_pairs, inp_psnr, inp_pairs, v2v_col, v2v_mot = [], [], [], [], [], [], []
        for i in range(n_modes):
            clip, lab = clips[i], labels[i]
            prompt = world.caption(lab, rng, "eval")
            out = _gen(backend, ImageToVideoRequest(prompt=prompt, image="-", steps=steps), MediaInputs(image=clip[0]), seed=i)
            a = analyse(out)
            i2v_psnr.append(psnr(out[0], clip[0]))
            i2v_jump.append(jump(a.track))
            i2v_pairs.append((lab, a))
            mask = np.zeros(clip.shape[:3], np.float32)
            y0, x0 = rng.randrange(0, 32), rng.randrange(0, 32)
            mask[:, y0 : y0 + 32, x0 : x0 + 32] = 1.0
            out = _gen(backend, InpaintRequest(prompt=prompt, video="-", mask="-", steps=steps),
                       MediaInputs(video=clip, mask=mask), seed=i)
            inp_psnr.append(psnr(out, clip, mask < 0.5))
            # inpaint over the whole object's path: the object is redrawn, so its shape is the model's
            out = _gen(backend, InpaintRequest(prompt=prompt, video="-", mask="-", steps=steps),
                       MediaInputs(video=clip, mask=object_mask(clip, lab)), seed=i)
            inp_pairs.append((lab, analyse(out)))
            new = dict(lab, obj=rng.choice([c for c in world.OBJ_NAMES if c != lab["obj"]]))
            out = _gen(backend, VideoToVideoRequest(prompt=world.caption(new, rng, "eval"), video="-", strength=0.6,
                                                    steps=steps), MediaInputs(video=clip), seed=i)
            a = analyse(out)
            v2v_col.append(a.obj == new["obj"])
            v2v_mot.append(a.motion == lab["motion"])
        results["i2v_first_frame_psnr"] = float(np.mean(i2v_psnr))
        results["i2v_jump_px"] = float(np.mean(i2v_jump))
        results["i2v"] = score(i2v_pairs)
        results["inpaint_outside_psnr"] = float(np.mean(inp_psnr))
        results["inpaint_object"] = score(inp_pairs)
        results["v2v_new_colour"] = float(np.mean(v2v_col))
        results["v2v_motion_kept"] = float(np.mean(v2v_mot))
        log(f"i2v ({n_modes} clips, full prompts): first-frame PSNR {results['i2v_first_frame_psnr']:.1f} dB, "
            f"jump {results['i2v_jump_px']:.1f} px (largest centroid step over the median), " + _fmt(results["i2v"]))
        log(f"inpaint ({n_modes} clips, strength {backend.spec.defaults.inpaint_strength:g}): outside-mask PSNR "
            f"{results['inpaint_outside_psnr']:.1f} dB; object's whole path masked: " + _fmt(results["inpaint_object"]))
        log(f"v2v strength 0.6 ({n_modes} clips, full prompts): new colour {results['v2v_new_colour']:.0%}, "
            f"motion kept {results['v2v_motion_kept']:.0%}")

    if "partial" in want:
        # i2v with prompts that say only the motion, or the motion and part of the look (held-out phrasings)
        clips, labels = groundtruth_clips(size.partial, seed=321)
        rng = random.Random(3)
        cases = [(clips[i], labels[i], world.i2v_caption(labels[i], rng, "eval", I2V_LOOKS[i % len(I2V_LOOKS)]))
                 for i in range(size.partial)]
        cases += [(clip_with(lab, 50 + i), lab, prompt) for i, (lab, prompt) in enumerate(I2V_EXAMPLES)]
        pairs, motion_only, examples = [], [], []
        for i, (clip, lab, prompt) in enumerate(cases):
            a = analyse(_gen(backend, ImageToVideoRequest(prompt=prompt, image="-", steps=steps),
                             MediaInputs(image=clip[0]), seed=i))
            pairs.append((lab, a))
            if i < size.partial and I2V_LOOKS[i % len(I2V_LOOKS)] == "":
                motion_only.append((lab, a))
            if i >= size.partial:
                examples.append(f"{prompt!r}: {'ok' if a.labels() == lab else a.labels()}")
        results["i2v_partial"] = score(pairs)
        results["i2v_partial"]["all"] = float(np.mean([a.labels() == lab for lab, a in pairs]))
        results["i2v_motion_only"] = score(motion_only)
        results["i2v_partial_clips"] = len(pairs)
        log(f"i2v, motion-only or partial prompts ({len(pairs)} clips; look kept, motion followed): "
            + _fmt(results["i2v_partial"]) + f"; motion-only ({len(motion_only)}): " + _fmt(results["i2v_motion_only"]))
        log("  examples: " + "; ".join(examples))
        # v2v with prompts that say only what changes
        clips, labels = groundtruth_clips(size.partial, seed=456)
        cases = []
        for i in range(size.partial):
            lab = labels[i]
            new = dict(lab)
            for key in V2V_CHANGES[i % len(V2V_CHANGES)]:
                new[key] = rng.choice([v for v in world.VALUES[key] if v != lab[key]])
            cases.append((clips[i], lab, new, world.edit_caption(lab, new, rng, "eval")))
        for i, (lab, prompt, change) in enumerate(V2V_EXAMPLES):
            cases.append((clip_with(lab, 60 + i), lab, {**lab, **change}, prompt))
        made, kept, both, per, examples = [], [], [], {}, []
        for i, (clip, lab, new, prompt) in enumerate(cases):
            a = analyse(_gen(backend, VideoToVideoRequest(prompt=prompt, video="-", strength=0.6, steps=steps),
                             MediaInputs(video=clip), seed=i)).labels()
            diff = world.changed(lab, new)
            made.append(all(a[k] == new[k] for k in diff))
            kept.append(all(a[k] == new[k] for k in ("obj", "shape", "bg", "motion") if k not in diff))
            both.append(made[-1] and kept[-1])
            for k in ("obj", "shape", "bg", "motion"):
                per.setdefault(k, []).append(a[k] == new[k])
            if i >= size.partial:
                examples.append(f"{prompt!r}: {'ok' if both[-1] else a}")
        results["v2v_change_only"] = {"change": float(np.mean(made)), "rest_kept": float(np.mean(kept)),
                                      "both": float(np.mean(both)),
                                      **{f"{k}_right": float(np.mean(v)) for k, v in per.items()}}
        results["v2v_change_only_clips"] = len(cases)
        log(f"v2v strength 0.6, change-only prompts ({len(cases)} clips): " + _fmt(results["v2v_change_only"]))
        log("  examples: " + "; ".join(examples))

    if "inpaint" in want:
        # inpaint over the object's whole path (its bounding box over the clip, grown by 4 px), at the model's default
        # strength: the prompt describes the clip, or the clip with another shape, or another colour; and the first
        # kind from pure noise (strength 1) for comparison. Right = all four attributes as the prompt says.
        clips, labels = groundtruth_clips(size.inpaint, seed=654)
        default = backend.spec.defaults.inpaint_strength
        kinds = (("describes the clip", None, default), ("another shape", "shape", default),
                 ("another colour", "obj", default), ("describes the clip, from noise", None, 1.0))
        results["inpaint_redraw"] = {"default_strength": default, "clips": size.inpaint}
        for name, key, strength in kinds:
            rng = random.Random(4)  # afresh per kind: the clip described at two strengths in the same words
            pairs = []
            for i in range(size.inpaint):
                lab = dict(labels[i])
                if key is not None:
                    lab[key] = rng.choice([v for v in world.VALUES[key] if v != lab[key]])
                out = _gen(backend, InpaintRequest(prompt=world.caption(lab, rng, "eval"), video="-", mask="-",
                                                   steps=steps, strength=strength),
                           MediaInputs(video=clips[i], mask=object_mask(clips[i], labels[i])), seed=i)
                pairs.append((lab, analyse(out)))
            sc = score(pairs)
            sc["all"] = float(np.mean([a.labels() == lab for lab, a in pairs]))
            results["inpaint_redraw"][name] = sc
            log(f"inpaint, the object's path masked, strength {strength:g}, the prompt {name} ({len(pairs)} clips): "
                + _fmt(sc))

    if "diversity" in want:
        hits = pairs_n = geo_hits = w_mad = w_geo = w_pairs = 0
        dist, floor, per_prompt = [], [], {}
        for k, (prompt, lab, seed0) in enumerate(DIVERSITY_PROMPTS[: size.diversity_prompts]):
            n = max(8, size.diversity_seeds)
            outs = _gen_seeds(backend, TextToVideoRequest(prompt=prompt, steps=steps), list(range(seed0, seed0 + n)))
            h, m, lo = near_copies(outs[:8])
            hits, pairs_n = hits + h, pairs_n + m
            geo = geometry([analyse(c) for c in outs])
            gh = geometric_copies(geo[:8])
            geo_hits += gh
            wm, wg, wp = world_copies(lab, size.world_draws, seed=200 + k)  # the same measures on the world
            w_mad, w_geo, w_pairs = w_mad + wm, w_geo + wg, w_pairs + wp
            ref = world_geometry(lab, 512, seed=10 + k)
            own = world_geometry(lab, n, seed=100 + k)  # n world clips: the distance sampling alone gives
            d = [wasserstein1(geo[:, j], ref[:, j]) for j in range(3)]
            f = [wasserstein1(own[:, j], ref[:, j]) for j in range(3)]
            dist.append(d)
            floor.append(f)
            per_prompt[prompt] = {"near_copies": h, "pairs": m, "min_mad": lo, "geometric_copies": gh,
                                  "world_near_copy_fraction": wm / max(wp, 1),
                                  "world_geometric_copy_fraction": wg / max(wp, 1),
                                  "w1_x_y_size": d}
            log(f"  {prompt!r}: near-copies {h}/{m} (smallest MAD {lo:.2f}/255; the world's own: {wm / max(wp, 1):.1%}), "
                f"geometric copies {gh}/{m} (world {wg / max(wp, 1):.1%}), W1 start x {d[0]:.1f}, "
                f"y {d[1]:.1f}, size {d[2]:.1f} px (world's own {n} clips: {f[0]:.1f}, {f[1]:.1f}, {f[2]:.1f})")
        dist_m, floor_m = np.nanmean(dist, 0), np.nanmean(floor, 0)
        results["diversity"] = {"near_copy_fraction": hits / max(pairs_n, 1), "near_copy_pairs": pairs_n,
                                "world_near_copy_fraction": w_mad / max(w_pairs, 1),
                                "geometric_copy_fraction": geo_hits / max(pairs_n, 1),
                                "world_geometric_copy_fraction": w_geo / max(w_pairs, 1),
                                "w1_start_x_px": float(dist_m[0]), "w1_start_y_px": float(dist_m[1]),
                                "w1_size_px": float(dist_m[2]), "w1_world_floor_px": [float(v) for v in floor_m],
                                "seeds": max(8, size.diversity_seeds), "per_prompt": per_prompt}
        log(f"seed diversity ({len(dist)} prompts): near-copy pairs (MAD < 3/255) among 8 consecutive seeds "
            f"{hits}/{pairs_n} = {hits / max(pairs_n, 1):.1%} (world clips of the same attributes: "
            f"{w_mad / max(w_pairs, 1):.1%}); geometric copies (start and size within 2 px) {geo_hits}/{pairs_n} = "
            f"{geo_hits / max(pairs_n, 1):.1%} (world {w_geo / max(w_pairs, 1):.1%}); W1 vs the world over {max(8, size.diversity_seeds)} "
            f"seeds: start x {dist_m[0]:.1f}, start y {dist_m[1]:.1f}, size {dist_m[2]:.1f} px "
            f"(floor from {max(8, size.diversity_seeds)} world clips: {floor_m[0]:.1f}, {floor_m[1]:.1f}, {floor_m[2]:.1f})")

    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(f"peak RSS {results['peak_rss_mb']:.0f} MB")
    log("targets: t2v colour, background >=95%, motion >=90%, shape >=95% (paraphrased); at 8 steps colour, bg, "
        "motion >=90%, shape >=85%; i2v PSNR >=25 dB; i2v partial: look kept and motion >=90%; inpaint outside "
        ">=30 dB; shape in i2v / inpaint >=95%; v2v colour, motion >=90%; v2v change-only: change and rest kept "
        ">=90%; near-copies <=5%; t2v <=1 s, load <=0.2 s")
    return results


def _fmt(s: dict) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in s.items())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.embedded.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="folder with model.safetensors (default assets/embedded)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per paraphrased t2v prompt (default 2)")
    p.add_argument("--prompts", type=int, default=None, help="label sets with paraphrased prompts (default 40)")
    p.add_argument("--modes", type=int, default=None, help="clips per i2v / inpaint / v2v check (default 20)")
    p.add_argument("--partial", type=int, default=None,
                   help="clips per i2v-partial / v2v-change-only check, plus the issue's examples (default 36)")
    p.add_argument("--inpaint", type=int, default=None, help="clips per inpaint-redraw check (default 60)")
    p.add_argument("--diversity-prompts", type=int, default=None, help=f"of {len(DIVERSITY_PROMPTS)} (default all)")
    p.add_argument("--diversity-seeds", type=int, default=None, help="seeds per diversity prompt (default 32)")
    p.add_argument("--few-steps", type=int, default=8, help="the few-step t2v check's step count")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (10 prompts x 1 seed, 8 modes, 12 partial, 12 inpaint, 3 diversity prompts x 16 seeds, 48 clips through the autoencoder)")
    p.add_argument("--steps", type=int, default=None, help="default step count to evaluate (default: the spec's)")
    p.add_argument("--solver", default=None, help="override the sampler's solver (experiments)")
    p.add_argument("--shift", type=float, default=None, help="override the sampler's timestep shift (experiments)")
    p.add_argument("--cfg", type=float, default=None, help="override the default guidance scale (experiments)")
    p.add_argument("--cfg-interval", type=lambda v: tuple(float(x) for x in v.split(",")), default=None,
                   help="lo,hi: guide only while lo <= t <= hi (experiments)")
    p.add_argument("--unguided-final-steps", type=int, default=None,
                   help="the last N sampling steps without guidance (default: the backend's)")
    p.add_argument("--shape-contrast", type=float, default=None,
                   help="override the sampler's shape-contrastive guidance scale (experiments; 0 = off)")
    p.add_argument("--sections", default=None,
                   help="comma-separated subset of speed,recon,t2v,few,modes,partial,inpaint,diversity (default all)")
    p.add_argument("--no-read-inputs", action="store_true",
                   help="i2v and v2v prompts as typed, without what the input shows: the model alone")
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
    base = (EvalSize(seeds=1, prompts=10, modes=8, partial=12, inpaint=12, diversity_prompts=3, diversity_seeds=16, recon=48,
                      world_draws=10)
            if args.quick else EvalSize())
    given = {"seeds": args.seeds, "prompts": args.prompts, "modes": args.modes, "partial": args.partial, "inpaint": args.inpaint,
             "diversity_prompts": args.diversity_prompts, "diversity_seeds": args.diversity_seeds,
             "few_steps": args.few_steps}
    import dataclasses

    size = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    sections = tuple(args.sections.split(",")) if args.sections else None
    results = run_eval(args.weights, size, steps=args.steps, solver=args.solver, shift=args.shift, sections=sections,
                       cfg_scale=args.cfg, cfg_interval=args.cfg_interval,
                       unguided_final_steps=args.unguided_final_steps, read_inputs=not args.no_read_inputs,
                       shape_contrast=args.shape_contrast)
    results["eval_size"] = dataclasses.asdict(size)
    if args.json:
        import json

        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
