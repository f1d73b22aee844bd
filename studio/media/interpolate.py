"""Frame interpolation: 2x or 4x the frame rate of a clip with optical flow (OpenCV) or RIFE, not duplication.

For each pair of neighbouring frames (I0, I1):

1. Flow both ways on grey levels: F01 (where each pixel of I0 goes in I1) and F10 (the same from I1),
   with OpenCV's DIS optical flow (Kroeger et al. 2016; `dis-flow`, the default) or Farneback's.
2. Forward-backward consistency: a pixel p of I0 is seen in I1 when F01(p) + F10(p + F01(p)) ~ 0; the
   error e(p) is large where p is covered in I1 (occluded) or the flow is wrong. Its colour should also
   match where it lands: c(p) = |I0(p) - I1(p + F01(p))| (mean over RGB). The same for I1.
   Confidence w = exp(-(e / CONSISTENCY_SIGMA_PX)^2 - (c / COLOUR_SIGMA)^2), floored at MIN_WEIGHT.
3. At time t in (0, 1) each frame is *forward-warped* (splatted, bilinearly) to where its pixels are at t:
   I0's pixel p lands at p + t F01(p), I1's pixel q at q + (1 - t) F10(q). Each splat carries its
   confidence times a temporal weight ((1 - t) for I0, t for I1). Where both frames put a pixel, the
   one that sees it (consistent flow) outweighs the one that does not, so a moving object does not leave
   a ghost behind and the background it uncovers comes from the frame that shows it.
4. The sum of weighted colours over the sum of weights is the frame at t. Pixels no splat reached (holes
   where the flow spreads) take a backward-warped blend: I0 at x - t F01(x) and I1 at x - (1 - t) F10(x).

The flow of a pair is computed once and serves every t of that pair (t = 1/2 for 2x; 1/4, 1/2, 3/4 for
4x). Output: (n - 1) * factor + 1 frames, the originals kept at their places. Memory: the source frames,
the output frames and a few float32 (H, W, 2) arrays for the pair at hand.

Method `rife` instead asks a learned interpolator for the frames at t (RIFE 4.6, `pipelines.rife`; the same
output layout). Its weights are a local file only, never downloaded (`RifeWeights`: STUDIO_RIFE_WEIGHTS, else
`<data dir>/models/rife/flownet.pkl`); when no method is named, RIFE is used where that file exists and
`dis-flow` otherwise (`choose_method`). This module imports no torch: the composition root hands `RifeWeights`
the function that builds the network from the file's bytes.

This module also holds the typed request of an interpolation job (`InterpolationRequest`), which the job
service queues like a generation (a job kind with no model behind it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, Sequence

import numpy as np

from pipelines.contract import Cancelled, RequestError

FACTORS = (2, 4)
FLOW_METHODS = ("dis-flow", "farneback")
RIFE = "rife"
METHODS = (*FLOW_METHODS, RIFE)
DEFAULT_METHOD = "dis-flow"  # what a request names when it names none (jobs queued before RIFE existed, too)
RIFE_SETTING = "STUDIO_RIFE_WEIGHTS"
CONSISTENCY_SIGMA_PX = 1.5  # forward-backward disagreement (pixels) at which a splat's weight falls to 1/e
COLOUR_SIGMA = 10.0  # colour mismatch (0-255) at its destination at which a splat's weight falls to 1/e
MIN_WEIGHT = 1e-4  # an inconsistent pixel still counts where nothing better lands
MAX_FPS = 240  # what the mp4 writer takes


@dataclass(frozen=True)
class InterpolationRequest:
    """Make a clip with `factor` times the frame rate of the gallery clip `source`."""

    mode: ClassVar[str] = "interpolate"  # the job kind in the jobs table (no model: no backend is loaded)
    source: str
    factor: int = 2
    method: str = DEFAULT_METHOD

    def validate(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise RequestError("clip", "name the clip to interpolate")
        if isinstance(self.factor, bool) or self.factor not in FACTORS:
            raise RequestError("factor", f"{self.factor!r} is not one of {', '.join(map(str, FACTORS))}")
        if self.method not in METHODS:
            raise RequestError("method", f"{self.method!r} is not one of {', '.join(METHODS)}")

    def to_params(self) -> dict[str, Any]:
        return {"schema_version": 1, "mode": self.mode, "source": self.source, "factor": self.factor,
                "method": self.method}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "InterpolationRequest":
        return cls(source=str(params["source"]), factor=int(params["factor"]),
                   method=str(params.get("method", DEFAULT_METHOD)))


def output_frames(n: int, factor: int) -> int:
    """Frames of the interpolated clip: every source frame, and factor - 1 new ones in each gap."""
    return (n - 1) * factor + 1 if n > 0 else 0


class LearnedInterpolator(Protocol):
    """A network that makes the frames between two (`pipelines.rife.ifnet.RifeInterpolator`)."""

    version: str

    def between(self, i0: np.ndarray, i1: np.ndarray, times: Sequence[float]) -> np.ndarray:
        """(H, W, 3) uint8 twice, times in (0, 1) -> (len(times), H, W, 3) uint8."""
        ...


@dataclass(frozen=True)
class RifeWeights:
    """Where RIFE's weights are (a local file, never downloaded) and how a network is built from its bytes
    (`pipelines.rife.load_rife`, raising ValueError for a file of another layout)."""

    path: Path
    build: Callable[[bytes], LearnedInterpolator]
    version: str  # of the network `build` makes ("4.6"), named when the file is missing or of another layout

    def present(self) -> bool:
        return self.path.is_file()

    def load(self) -> tuple[LearnedInterpolator, dict[str, Any]]:
        """The network and what the recipe records of it: version, file name (never the path), sha256 of the
        very bytes loaded. RequestError (field `method`) when the file is missing or is not RIFE weights."""
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise RequestError("method", f"cannot read the RIFE weights {self.path.name} ({RIFE_SETTING}): "
                                         f"{e.strerror or type(e).__name__}") from None
        try:
            model = self.build(data)
        except ValueError as e:
            raise RequestError("method", f"the RIFE weights {self.path.name} ({RIFE_SETTING}): {e}") from None
        return model, {"rife_version": model.version, "weights": self.path.name,
                       "weights_sha256": hashlib.sha256(data).hexdigest()}


def choose_method(method: str | None, rife: RifeWeights | None) -> str:
    """The method a job runs with: the one named, else `rife` where its weights file exists, else dis-flow.
    Naming `rife` with no weights file is refused here, before anything is queued, with the setting and path."""
    if method is None:
        return RIFE if rife is not None and rife.present() else DEFAULT_METHOD
    if method == RIFE and rife is None:
        raise RequestError("method", "rife: this studio has no RIFE weights file configured; use dis-flow")
    if method == RIFE and not rife.present():
        raise RequestError("method", f"rife needs a RIFE {rife.version} weights file (Practical-RIFE's flownet.pkl): "
                                     f"{RIFE_SETTING} is {str(rife.path)!r}, which does not exist. Put the file "
                                     f"there or point {RIFE_SETTING} at it, or use dis-flow")
    return method


def interpolate(frames: np.ndarray, factor: int, method: str = DEFAULT_METHOD, *,
                model: LearnedInterpolator | None = None,
                on_pair: Callable[[int, int], None] | None = None,
                should_cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """(F, H, W, 3) uint8 -> ((F - 1) * factor + 1, H, W, 3) uint8. `on_pair(done, total)` after each
    pair of neighbours; `should_cancel()` is asked before each pair (Cancelled). Method `rife` takes the
    loaded network as `model` (`RifeWeights.load`)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if factor not in FACTORS or method not in METHODS:
        raise ValueError(f"factor {factor!r} / method {method!r} not supported")
    if method == RIFE and model is None:
        raise ValueError("method rife needs the loaded network (model=)")
    n, h, w, _ = frames.shape
    out = np.empty((output_frames(n, factor), h, w, 3), np.uint8)
    out[::factor] = frames
    if method == RIFE:
        times = [k / factor for k in range(1, factor)]
        for i in range(n - 1):
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            out[i * factor + 1:(i + 1) * factor] = model.between(frames[i], frames[i + 1], times)
            if on_pair is not None:
                on_pair(i + 1, n - 1)
        return out
    flow = _flow_function(method)
    grey = [None] * n  # converted lazily: one pair's greys at a time
    for i in range(n - 1):
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        g0 = grey[i] if grey[i] is not None else _grey(frames[i])
        g1 = _grey(frames[i + 1])
        grey[i] = None
        grey[i + 1] = g1
        f01, f10 = flow(g0, g1), flow(g1, g0)
        pair = _Pair(frames[i], frames[i + 1], f01, f10)
        for k in range(1, factor):
            out[i * factor + k] = pair.at(k / factor)
        if on_pair is not None:
            on_pair(i + 1, n - 1)
    return out


# ---- flow ---------------------------------------------------------------------------------------------


def _grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def _flow_function(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(grey0, grey1) -> (H, W, 2) float32 flow, (dx, dy) per pixel of grey0."""
    import cv2

    if method == "dis-flow":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        dis.setFinestScale(0)  # refine down to full resolution (the preset stops at half): sharper motion edges
        dis.setPatchStride(2)
        return lambda a, b: dis.calc(a, b, None)
    return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=5, winsize=15,
                                                     iterations=5, poly_n=7, poly_sigma=1.5, flags=0)


def _sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of `image` at float coordinates (clamped at the border)."""
    import cv2

    return cv2.remap(image, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


class _Pair:
    """Two neighbouring frames and their flows; `at(t)` is the frame between them at time t."""

    def __init__(self, i0: np.ndarray, i1: np.ndarray, f01: np.ndarray, f10: np.ndarray):
        h, w, _ = i0.shape
        self.h, self.w = h, w
        self.gx, self.gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self.i0, self.i1 = i0.astype(np.float32), i1.astype(np.float32)
        self.f01, self.f10 = f01, f10
        self.w0 = self._confidence(f01, f10, self.i0, self.i1)  # (H, W): does I1 see this pixel of I0?
        self.w1 = self._confidence(f10, f01, self.i1, self.i0)

    def _confidence(self, fa: np.ndarray, fb: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        x, y = self.gx + fa[..., 0], self.gy + fa[..., 1]  # where fa says each pixel of `ia` lands in `ib`
        back = _sample(fb, x, y)
        err = np.hypot(fa[..., 0] + back[..., 0], fa[..., 1] + back[..., 1])
        colour = np.abs(_sample(ib, x, y) - ia).mean(axis=-1)
        w = np.exp(-((err / CONSISTENCY_SIGMA_PX) ** 2) - (colour / COLOUR_SIGMA) ** 2)
        return np.maximum(w, MIN_WEIGHT).astype(np.float32)

    def at(self, t: float) -> np.ndarray:
        acc = np.zeros((self.h * self.w, 4), np.float64)  # r, g, b, weight
        self._splat(acc, self.i0, self.f01 * t, self.w0 * (1.0 - t))
        self._splat(acc, self.i1, self.f10 * (1.0 - t), self.w1 * t)
        weight = acc[:, 3]
        covered = weight > 1e-6
        out = np.empty((self.h * self.w, 3), np.float64)
        out[covered] = acc[covered, :3] / weight[covered, None]
        if not covered.all():  # holes: a backward-warped blend of both frames
            b0 = _sample(self.i0, self.gx - t * self.f01[..., 0], self.gy - t * self.f01[..., 1])
            b1 = _sample(self.i1, self.gx - (1 - t) * self.f10[..., 0], self.gy - (1 - t) * self.f10[..., 1])
            fill = ((1 - t) * b0 + t * b1).reshape(-1, 3)
            out[~covered] = fill[~covered]
        return np.clip(out + 0.5, 0, 255).astype(np.uint8).reshape(self.h, self.w, 3)

    def _splat(self, acc: np.ndarray, image: np.ndarray, flow: np.ndarray, weight: np.ndarray) -> None:
        """Add each pixel's weighted colour to the four pixels around where `flow` takes it (bilinear)."""
        h, w = self.h, self.w
        x = (self.gx + flow[..., 0]).ravel()
        y = (self.gy + flow[..., 1]).ravel()
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = x - x0, y - y0
        x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
        colours = image.reshape(-1, 3)
        wt = weight.ravel()
        size = h * w
        for dx, dy, bw in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            idx = (yi * w + xi)[inside]
            ww = (bw * wt)[inside]
            acc[:, 3] += np.bincount(idx, ww, size)
            for c in range(3):
                acc[:, c] += np.bincount(idx, ww * colours[inside, c], size)


def check_output(frames: int, width: int, height: int, fps: int, factor: int, limits: Any) -> int:
    """Refuse, before anything is queued, an interpolation whose result the studio could not hold or read
    back (`MediaLimits`: frames, decoded bytes of source and result together; the mp4 writer's fps).
    Returns the output's frame count."""
    if frames < 2:
        raise RequestError("clip", f"has {frames} frame(s): there is nothing to interpolate between")
    out = output_frames(frames, factor)
    if fps * factor > MAX_FPS:
        raise RequestError("factor", f"{fps} fps x{factor} is {fps * factor} fps; the limit is {MAX_FPS}")
    if out > limits.max_frames:
        raise RequestError("factor", f"{frames} frames x{factor} make {out} frames; the limit is {limits.max_frames}")
    needed = (frames + out) * width * height * 3
    if needed > limits.max_decoded_bytes:
        raise RequestError("factor", f"{frames} frames of {width}x{height} x{factor} need {needed / 1024**2:.0f} MB "
                                     f"decoded; the limit is {limits.max_decoded_bytes / 1024**2:.0f} MB")
    return out
