"""The pixel analyser: what a clip of the embedded model's world shows.

It reads a clip's background colour (border median -> nearest palette colour), object colour (median of
the object's pixels -> nearest palette colour), shape (fill ratio of the object's bounding box: square ~1,
circle ~0.79, triangle ~0.5), motion (centroid track), start and size. The evaluation scores the model's
clips with it (validated on world clips, where it scores ~100%); the backend reads an i2v image or a v2v
source with it, to say in the prompt what the input already shows (text.complete_prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    start: tuple[float, float] = (float("nan"), float("nan"))  # centroid (x, y) at frame 0 of the fitted track
    size: float = float("nan")  # median over frames of the larger side of the bounding box of the pixels at
    # more than half the object's contrast against the background (the world's size, for world clips)

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
    fills, cents, idx, sizes = [], [], [], []
    contrast = float(np.sqrt(((obj_rgb - bg_rgb) ** 2).sum()))
    ys, xs = np.mgrid[0:H, 0:W]
    for f in range(Fr):
        m = mask[f]
        if m.sum() < MIN_AREA:
            continue
        r, c = np.nonzero(m)
        bbox = (r.max() - r.min() + 1) * (c.max() - c.min() + 1)
        fills.append(m.sum() / bbox)
        half = dist[f] > 0.5 * contrast  # half the object's contrast: a blurred edge does not grow it
        if half.any():
            r, c = np.nonzero(half)
            sizes.append(max(r.max() - r.min() + 1, c.max() - c.min() + 1))
        cents.append((xs[m].mean(), ys[m].mean()))
        idx.append(f)
        track[f] = cents[-1]
    fill = float(np.median(fills)) if fills else 0.0
    # no frame shows an object (only a faint smudge passed the core test): no shape, not a "triangle" of fill 0
    shape = None if not fills else "square" if fill > 0.88 else "circle" if fill > 0.64 else "triangle"
    motion, disp, start = None, (0.0, 0.0), (float("nan"), float("nan"))
    if len(cents) >= 2:
        c = np.array(cents)
        t = np.array(idx, dtype=np.float32)
        slope, icpt = np.polyfit(t, c, 1)  # (2,) pixels per frame and (2,) at frame 0, least squares over the track
        start = (float(icpt[0]), float(icpt[1]))
        dx, dy = float(slope[0] * (Fr - 1)), float(slope[1] * (Fr - 1))
        disp = (dx, dy)
        if max(abs(dx), abs(dy)) < STILL_PX:
            motion = "still"
        elif abs(dx) >= abs(dy):
            motion = "right" if dx > 0 else "left"
        else:
            motion = "down" if dy > 0 else "up"
    area_cv = float(areas.std() / max(areas.mean(), 1.0))
    size = float(np.median(sizes)) if sizes else float("nan")
    return Analysis(bg, obj, shape, motion, fill, disp, _flicker(x, mask), area_cv, track, start, size)


def _flicker(x: np.ndarray, mask: np.ndarray) -> float:
    if x.shape[0] < 2:
        return 0.0
    bgpix = ~(mask[1:] | mask[:-1])
    d = np.abs(x[1:] - x[:-1]).mean(-1)
    return float(d[bgpix].mean() / 255.0) if bgpix.any() else 0.0
