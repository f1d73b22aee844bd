"""What the diffusers backend costs on top of the bare diffusers call.

For each family, one tiny random pipeline is built in code, saved and loaded back through the
backend (local folder). The same request then runs two ways on the same pipeline object:

  bare:    pipe(prompt=..., num_inference_steps=..., generator=..., output_type="np")
  backend: DiffusersBackend.generate(request, media, generator, on_step, should_cancel)
           (kwargs mapping, progress callback every step, a latent preview every few steps,
           cancel check, uint8 conversion)

Runs alternate (bare, backend, then backend, bare, ...) so drift hits both; medians of wall
clock and of process CPU time are printed with their ratios. Target: ratio <= 1.03. One torch
thread; on a shared machine the CPU-time ratio is the steadier figure.

    python benchmarks/bench_diffusers_overhead.py [--runs 9] [--steps 10] [--families wan,ltx]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# family -> (tiny kind, mode, frames, size)
CASES = {
    "wan": ("wan-t2v", "t2v", 9, 64),
    "wan-v2v": ("wan-t2v", "v2v", 9, 64),
    "ltx": ("ltx", "t2v", 17, 64),
    "cogvideox": ("cogvideox-t2v", "t2v", 9, 64),
    "animatediff": ("animatediff", "t2v", 8, 32),
    "svd": ("svd", "i2v", 4, 32),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--families", default=",".join(CASES))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import numpy as np
    import torch

    from pipelines.contract import REQUEST_TYPES, MediaInputs
    from pipelines.diffusers import local_model_resolver
    from pipelines.diffusers.preview import StepHook
    from tests.support.tiny_diffusers import build_tiny_kind

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench-diffusers-"))
    print(f"torch threads={args.threads}, steps={args.steps}, runs={args.runs} (median)")
    print("median seconds per generation: wall clock, and CPU time of this process (one thread, so CPU time")
    print("is what the work costs; wall clock also counts time other processes held the cores)")
    print("own ms: CPU time the backend adds (generate() outside the diffusers call + its step callback);")
    print("own ratio = (bare cpu + own) / bare cpu, the overhead without run-to-run kernel noise")
    print(f"{'case':<12} {'frames x size':>14} {'bare wall':>9} {'bknd wall':>10} {'ratio':>7} "
          f"{'bare cpu':>9} {'bknd cpu':>9} {'ratio':>7} {'own ms':>8} {'own r':>7}")
    ratios = []
    for name in args.families.split(","):
        kind, mode, frames, size = CASES[name]
        backend = local_model_resolver(str(build_tiny_kind(kind, root / kind))).load("cpu", None)
        family = backend.spec.family
        fields = dict(prompt="a red ball moves left", width=size, height=size, frames=frames, steps=args.steps,
                      cfg_scale=3.0, fps=8, seed=3, model_id=name)
        rng = np.random.default_rng(0)
        video = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
        media = MediaInputs(image=video[0], video=video)
        if mode == "i2v":
            fields["image"] = "x.png"
        if mode == "v2v":
            fields.update(video="x.mp4", strength=0.8)
        request = REQUEST_TYPES[mode](**fields)
        pipe = backend.pipeline_for(mode)

        # the equivalent hand-written diffusers call
        from PIL import Image

        bare = dict(height=size, width=size, num_inference_steps=args.steps, output_type="np")
        if family != "svd":
            bare.update(prompt=request.prompt, guidance_scale=3.0)
        if mode == "t2v" or family == "svd":
            bare["num_frames"] = frames
        if family == "ltx":
            bare["frame_rate"] = 8
        if family == "cogvideox":
            bare["max_sequence_length"] = pipe.transformer.config.max_text_seq_length
        if family == "svd":
            bare.update(image=Image.fromarray(video[0]), min_guidance_scale=1.0, max_guidance_scale=3.0, fps=8)
            bare.update(backend.model.call)
        if mode == "v2v":
            bare.update(video=[Image.fromarray(f) for f in video], strength=0.8)

        def run_bare():
            with torch.inference_mode():
                return pipe(**bare, generator=torch.Generator().manual_seed(3)).frames

        def run_backend():
            return backend.generate(request, media, torch.Generator().manual_seed(3),
                                    lambda s, n, p: None, lambda: False)

        # the backend's own time: generate() outside the pipeline call, plus its step callback inside it
        own = {"call": 0.0, "hook": 0.0}
        cls, hook_cls = type(pipe), StepHook
        orig_call, orig_hook = cls.__call__, hook_cls.__call__

        @functools.wraps(orig_call)  # the backend reads the call's signature
        def timed_call(self, *a, **k):
            t = time.process_time()
            try:
                return orig_call(self, *a, **k)
            finally:
                own["call"] += time.process_time() - t

        def timed_hook(self, *a, **k):
            t = time.process_time()
            try:
                return orig_hook(self, *a, **k)
            finally:
                own["hook"] += time.process_time() - t

        def run_backend_split():
            own.update(call=0.0, hook=0.0)
            cls.__call__, hook_cls.__call__ = timed_call, timed_hook
            try:
                c = time.process_time()
                run_backend()
                total = time.process_time() - c
            finally:
                cls.__call__, hook_cls.__call__ = orig_call, orig_hook
            return total - own["call"] + own["hook"]

        run_bare(), run_backend()  # warm up
        wall: dict[str, list[float]] = {"bare": [], "backend": []}
        cpu: dict[str, list[float]] = {"bare": [], "backend": []}
        for i in range(args.runs):  # alternate which goes first, so order effects cancel
            for key, fn in (("bare", run_bare), ("backend", run_backend))[:: 1 if i % 2 == 0 else -1]:
                t, c = time.perf_counter(), time.process_time()
                fn()
                wall[key].append(time.perf_counter() - t)
                cpu[key].append(time.process_time() - c)
        own_s = statistics.median(run_backend_split() for _ in range(5))
        wb, wk = statistics.median(wall["bare"]), statistics.median(wall["backend"])
        cb, ck = statistics.median(cpu["bare"]), statistics.median(cpu["backend"])
        ratios.append((cb + own_s) / cb)
        print(f"{name:<12} {f'{frames}x{size}x{size}':>14} {wb:9.4f} {wk:10.4f} {wk / wb:7.3f} "
              f"{cb:9.4f} {ck:9.4f} {ck / cb:7.3f} {own_s * 1000:8.2f} {(cb + own_s) / cb:7.3f}")
        backend.unload()
    print(f"worst own ratio {max(ratios):.4f} (target <= 1.03)")


if __name__ == "__main__":
    main()
