"""Frame interpolation: seconds per output frame at 64x64 and 512x512, 2x and 4x, against the baseline of
reading and writing the same clip alone (read_video + write_mp4 of the output's frame count), measured in
the same run. A square moves 8 px (64x64) or 32 px (512x512) a frame on a textured background; 9 source frames.

    python benchmarks/bench_interpolate.py
    python benchmarks/bench_interpolate.py --method rife [--threads 2]   # RIFE 4.6 on the CPU

RIFE runs with STUDIO_RIFE_WEIGHTS when that file exists, else with random weights in the published layout
(the time does not depend on the values; the picture does, so only the seconds mean anything then).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.media import MediaLimits  # noqa: E402
from studio.media.interpolate import interpolate  # noqa: E402
from studio.settings import Settings  # noqa: E402
from studio.media.video import read_video, write_mp4  # noqa: E402
from tests.support.fakes import moving_square  # noqa: E402

FRAMES = 9


def clip(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), 2)
    texture = ((texture - texture.mean()) * 3 + 110).clip(0, 255).astype(np.uint8)
    step = size // 16
    return moving_square(FRAMES, size, size, size=size // 4, step=step, x0=step, y0=size // 3, background=texture)


def rife_model(threads: int):  # type: ignore[no-untyped-def]
    import torch

    from pipelines.rife import load_rife

    torch.set_num_threads(threads)
    path = Settings.from_env().rife_weights_path
    if path.is_file():
        print(f"RIFE weights: {path.name}, {torch.get_num_threads()} torch threads")
        return load_rife(path.read_bytes())
    from pipelines.rife.ifnet import IFNet, RifeInterpolator

    print(f"RIFE: random weights ({path} not found), {torch.get_num_threads()} torch threads")
    torch.manual_seed(0)
    return RifeInterpolator(IFNet())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", choices=["dis-flow", "rife"], default="dis-flow")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for rife")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    model = rife_model(args.threads) if args.method == "rife" else None
    print(f"{'size':>8} {'factor':>6} {'out frames':>10} {'interp s/frame':>15} {'read+write s/frame':>19} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (64, 512):
            source = Path(tmp) / f"src{size}.mp4"
            write_mp4(clip(size), 8, source, {})
            for factor in (2, 4):
                t0 = time.perf_counter()
                frames, _ = read_video(source, MediaLimits())
                out = interpolate(frames, factor, args.method, model=model)
                write_mp4(out, 8 * factor, Path(tmp) / "out.mp4", {})
                total = time.perf_counter() - t0
                t0 = time.perf_counter()  # baseline: the same read and a write of as many frames, no flow
                frames, _ = read_video(source, MediaLimits())
                write_mp4(np.repeat(frames, factor, axis=0)[: len(out)], 8 * factor, Path(tmp) / "base.mp4", {})
                base = time.perf_counter() - t0
                n = len(out)
                print(f"{size:>5}x{size:<3} {factor:>5}x {n:>10} {total / n:>15.4f} {base / n:>19.4f} {total / base:>6.1f}")


if __name__ == "__main__":
    main()
