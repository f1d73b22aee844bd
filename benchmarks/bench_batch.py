"""Seeds as one batch: 8 seeds of one request through the embedded model in one batch vs one by one.

    python benchmarks/bench_batch.py [--seeds 8] [--runs 3] [--threads 2] [--mode t2v]

Alternates the two ways, after a warm-up, so machine noise hits both alike; prints the median time of
each and ends with `ratio R` = batched / sequential (goal: at most 0.5 on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default="a red circle moving right on a navy background")
    args = ap.parse_args(argv)

    import torch

    from pipelines.contract import MediaInputs, TextToVideoRequest
    from pipelines.embedded.backend import EMBEDDED_SPEC, EmbeddedBackend

    torch.set_num_threads(args.threads)
    backend = EmbeddedBackend()
    base = TextToVideoRequest(prompt=args.prompt).resolve(EMBEDDED_SPEC, 0)
    requests = [dataclasses.replace(base, seed=s) for s in range(args.seeds)]

    def gens():
        return [torch.Generator().manual_seed(r.seed) for r in requests]

    def sequential():
        for r, g in zip(requests, gens()):
            backend.generate(r, MediaInputs(), g, lambda *a: None, lambda: False)

    def batched():
        backend.generate_batch(requests, MediaInputs(), gens(), lambda *a: None, lambda: False)

    sequential(), batched()  # warm-up
    seq, bat = [], []
    for _ in range(args.runs):
        for fn, out in ((sequential, seq), (batched, bat)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    s, b = statistics.median(seq), statistics.median(bat)
    print(f"{args.seeds} seeds, {base.steps} steps, {args.threads} threads, median of {args.runs}")
    print(f"one by one: {s:.2f} s ({s / args.seeds:.2f} s a clip)")
    print(f"batched:    {b:.2f} s ({b / args.seeds:.2f} s a clip)")
    print(f"ratio {b / s:.2f}")


if __name__ == "__main__":
    main()
