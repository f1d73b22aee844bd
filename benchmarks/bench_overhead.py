"""Studio overhead: a generation through the job service against the bare backend call, same request.

    python benchmarks/bench_overhead.py [--model embedded-shapes] [--runs 7] [--threads 2]

Prints the median wall time of each and their ratio, measured in one run (alternating the two, after a
warm-up) so that machine noise hits both alike. Through the service, the time covers submit (validation,
seed, job row), the queue, the backend, the mp4 + thumbnail + sidecar writes and the gallery commit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="registry id (default: the registry's default model)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default="a red circle moving right on a navy background")
    args = ap.parse_args(argv)

    import torch

    from pipelines.contract import MediaInputs
    from pipelines.contract import TextToVideoRequest
    from studio.settings import Settings
    from studio.wiring import build_studio

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        studio = build_studio(Settings(data_dir=Path(tmp), device="cpu"))
        try:
            model_id = args.model or studio.registry.default_id
            spec = studio.registry.spec(model_id)
            request = TextToVideoRequest(prompt=args.prompt, model_id=model_id, seed=1).resolve(spec, 1)
            backend = studio.registry.load(model_id)

            def bare() -> float:
                t = time.perf_counter()
                gen = torch.Generator().manual_seed(request.seed)
                backend.generate(request, MediaInputs(), gen, lambda *a: None, lambda: False)
                return time.perf_counter() - t

            def through_service() -> float:
                t = time.perf_counter()
                sub = studio.jobs.submit(request)
                [status] = studio.jobs.wait(sub.job_ids)
                assert status.status == "done", status.error
                return time.perf_counter() - t

            bare(), through_service()  # warm-up: weights, caches, ffmpeg on disk
            frames = backend.generate(request, MediaInputs(), torch.Generator().manual_seed(1),
                                      lambda *a: None, lambda: False)

            def write_files() -> float:  # the part of the overhead that is the mp4 + thumbnail + sidecar
                t = time.perf_counter()
                studio.files.save_clip(uuid.uuid4().hex, frames, request.fps, {"bench": True})
                return time.perf_counter() - t

            b, s, w = [], [], []
            for _ in range(args.runs):
                b.append(bare())
                s.append(through_service())
                w.append(write_files())
        finally:
            studio.close()
    mb, ms = statistics.median(b), statistics.median(s)
    print(f"model {spec.ref}, {request.frames} frames {request.width}x{request.height}, {request.steps} steps, "
          f"CFG {request.cfg_scale}, {args.threads} torch threads, {args.runs} runs each")
    print(f"bare backend call   median {mb * 1000:8.1f} ms")
    print(f"through job service median {ms * 1000:8.1f} ms")
    print(f"  of which writing the files (mp4 via an ffmpeg process, thumbnail, sidecar) "
          f"median {statistics.median(w) * 1000:.1f} ms")
    print(f"overhead ratio {ms / mb:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
