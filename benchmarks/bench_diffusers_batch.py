"""Seeds as one batch through a diffusers pipeline: N seeds of one request in one call vs one by one.

    python benchmarks/bench_diffusers_batch.py [--kinds wan-t2v,ltx,...] [--seeds 4] [--steps 4]
                                               [--runs 3] [--threads 1] [--size 32]

The tiny random pipelines of the tests (tests/support/tiny_diffusers.py, no download), loaded through
DiffusersBackend under the `quality` profile (max_batch 4), each kind's first mode. The two ways alternate
after a warm-up, so machine noise hits both alike; prints the median time of each, the largest difference
between a batched clip and its single run (uint8 levels), and `ratio R` = batched / one by one per kind.
On tiny configs per-call overhead (prompt encoding, scheduler, Python) dominates, which batching shares;
on a GPU at full size the gain comes from a fuller device instead, and memory grows with the batch
(hence Family.max_batch).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main(argv=None) -> None:
    from tests.support.tiny_diffusers import TINY

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="wan-t2v,ltx,cogvideox-t2v,hunyuan,mochi,svd,animatediff")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=32, help="width and height in pixels")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from pipelines.contract import REQUEST_TYPES, MediaInputs
    from pipelines.diffusers import local_model_resolver
    from tests.support.tiny_diffusers import build_tiny_kind

    torch.set_num_threads(args.threads)
    print(f"{args.seeds} seeds, {args.steps} steps, {args.size}x{args.size}, {args.threads} threads, "
          f"median of {args.runs}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            tiny = TINY[kind]
            mode = tiny.modes[0]
            backend = local_model_resolver(str(build_tiny_kind(kind, Path(tmp) / kind))).load("cpu", "quality")
            fields = dict(prompt="a red ball moves left", width=args.size, height=args.size, frames=tiny.frames,
                          steps=args.steps, cfg_scale=2.0, fps=8, seed=0, model_id=kind)
            if mode == "i2v":
                fields["image"] = "first.png"
            base = REQUEST_TYPES[mode](**fields)
            rng = np.random.default_rng(0)
            media = MediaInputs(image=rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8))
            requests = [dataclasses.replace(base, seed=s) for s in range(args.seeds)]

            def gens():
                return [torch.Generator().manual_seed(r.seed) for r in requests]

            def one_by_one():
                return [backend.generate(r, media, g, lambda *a: None, lambda: False) for r, g in zip(requests, gens())]

            def batched():
                out = []
                for i in range(0, len(requests), backend.max_batch):  # as the job service groups them
                    out += backend.generate_batch(requests[i:i + backend.max_batch], media,
                                                  gens()[i:i + backend.max_batch], lambda *a: None, lambda: False)
                return out

            a, b = one_by_one(), batched()  # warm-up, and the check that both give the same clips
            worst = max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b))
            seq, bat = [], []
            for _ in range(args.runs):
                for fn, out in ((one_by_one, seq), (batched, bat)):
                    t0 = time.perf_counter()
                    fn()
                    out.append(time.perf_counter() - t0)
            s, t = statistics.median(seq), statistics.median(bat)
            print(f"{kind:14s} {mode:4s} max_batch {backend.max_batch}  one by one {s:6.2f} s  "
                  f"batched {t:6.2f} s  max diff {worst} level(s)  ratio {t / s:.2f}")
            backend.unload()


if __name__ == "__main__":
    main()
