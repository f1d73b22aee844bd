"""Cold start, as a Space (or a fresh `bash scripts/start.sh`) lives it: from process start, seconds to the first
page and to the first finished clip on the embedded model, in a fresh data dir (#15).

Goal (2 cores): page <= 10 s, first clip <= 3 s after the page. The baseline, measured in the same run, is a
bare `python -c "import torch, gradio"`: the floor any Gradio + torch app starts from on this machine.

    python benchmarks/bench_cold_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def baseline() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, gradio"], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def one_run() -> tuple[float, float, float, float]:
    """Seconds: to the first page, from then to the first clip, the clip's own generation, the client's connect."""
    import httpx
    from gradio_client import Client

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "STUDIO_DATA_DIR": str(Path(tmp) / "data"), "HF_HUB_OFFLINE": "1",
               "STUDIO_DEVICE": "cpu"}
        env.pop("GRADIO_TEMP_DIR", None)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/"
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"app.py exited with {proc.returncode}")
                try:
                    r = httpx.get(url, timeout=5)
                    if r.status_code == 200 and "<html" in r.text.lower():
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            page = time.perf_counter() - t0
            t1 = time.perf_counter()
            client = Client(url, verbose=False)
            connect = time.perf_counter() - t1
            _, clips = client.predict(prompt="a red circle moving right", seed=1, api_name="/text_to_video")
            clip = time.perf_counter() - t0 - page
            return page, clip, float(clips[0]["seconds"]), connect
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = statistics.median(baseline() for _ in range(args.runs))
    runs = [one_run() for _ in range(args.runs)]
    page = statistics.median(r[0] for r in runs)
    clip = statistics.median(r[1] for r in runs)
    gen = statistics.median(r[2] for r in runs)
    connect = statistics.median(r[3] for r in runs)
    print(f"cores: {os.cpu_count()}  runs: {args.runs}")
    print(f"baseline `import torch, gradio`: {base:.2f} s")
    print(f"first page:  {page:.2f} s from process start ({page / base:.2f}x the baseline)  goal <= 10 s: "
          f"{'met' if page <= 10 else 'NOT met'}")
    print(f"first clip:  {clip:.2f} s after the page (gradio_client connecting {connect:.2f} s, generating "
          f"{gen:.2f} s, embedded model, default settings)  goal <= 3 s: {'met' if clip <= 3 else 'NOT met'}")
    for i, (p, c, g, k) in enumerate(runs, 1):
        print(f"  run {i}: page {p:.2f} s, clip +{c:.2f} s (connect {k:.2f} s, generation {g:.2f} s)")


if __name__ == "__main__":
    main()
