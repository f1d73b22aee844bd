"""Load: N signed-in clients, 2 jobs each, against one launched studio with accounts (`--auth`).

    python benchmarks/bench_load.py --clients 20 [--steps 2] [--threads 2]

Starts a studio on a fresh data dir with the embedded model, adds one member per client, and has each
client (gradio_client, its own login) ask for two clips at once. Prints the total time, the p50/p95
latency of a request, the latency of loading the page (/config, signed in) while the queue is full
against an idle baseline, and checks that every clip exists exactly once, made by its own author.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.cookiejar
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def page_latency(url: str, name: str, password: str, runs: int) -> list[float]:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(url + "/login", urllib.parse.urlencode({"username": name, "password": password}).encode(), timeout=60)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with opener.open(url + "/config", timeout=60) as r:
            r.read()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2, help="jobs per client")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the studio")
    args = parser.parse_args()

    import socket

    from gradio_client import Client

    from studio.settings import Settings
    from studio.ui.app import serve
    from studio.wiring import build_studio

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = Path(tempfile.mkdtemp(prefix="bench-load-"))
    settings = Settings(data_dir=data, port=port, auth=True, device="cpu", torch_threads=args.threads)
    studio = build_studio(settings)
    names = [f"user{i:02d}" for i in range(args.clients)]
    for name in names:
        studio.accounts.add(name, f"{name}-password")
    studio.accounts.add("watcher", "watcher-password", "viewer")
    demo = serve(studio.facade)
    url = f"http://127.0.0.1:{port}"
    try:
        idle = page_latency(url, "watcher", "watcher-password", 10)
        latencies: list[float] = []
        made: dict[str, list[dict]] = {name: [] for name in names}
        errors: list[str] = []
        lock = threading.Lock()

        def client(name: str) -> None:
            try:
                c = Client(url + "/", auth=(name, f"{name}-password"), verbose=False, httpx_kwargs={"timeout": 300})
            except Exception as e:  # noqa: BLE001 - counted and printed
                with lock:
                    errors.append(f"{name}: could not connect: {e}")
                return

            def one(i: int) -> None:
                t0 = time.perf_counter()
                try:
                    _, clips = c.predict(prompt=f"a red circle moving right, {name} #{i}", steps=args.steps,
                                         api_name="/text_to_video")
                except Exception as e:  # noqa: BLE001 - counted and printed
                    with lock:
                        errors.append(f"{name}: {e}")
                    return
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    made[name] += clips

            jobs = [threading.Thread(target=one, args=(i,)) for i in range(args.jobs)]
            for t in jobs:
                t.start()
            for t in jobs:
                t.join()

        threads = [threading.Thread(target=client, args=(n,)) for n in names]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(2.0)
        busy = page_latency(url, "watcher", "watcher-password", 10)
        for t in threads:
            t.join()
        total = time.perf_counter() - t0
        clips = studio.gallery.list(limit=10_000)
        ids = [c["id"] for name in names for c in made[name]]
        ok_once = len(ids) == len(set(ids)) == len(clips) == args.clients * args.jobs
        ok_authors = all(c["author"] == name for name in names for c in made[name])
        print(f"clients {args.clients}, jobs {args.clients * args.jobs}, steps {args.steps}, errors {len(errors)}")
        print(f"total: {total:.1f} s ({total / max(1, len(latencies)):.2f} s a clip)")
        if latencies:
            print(f"request latency: p50 {pct(latencies, 0.5):.1f} s p95 {pct(latencies, 0.95):.1f} s")
        print(f"page (/config) idle: p50 {statistics.median(idle) * 1000:.0f} ms; under load: p50 "
              f"{statistics.median(busy) * 1000:.0f} ms p95 {pct(busy, 0.95) * 1000:.0f} ms")
        print(f"every clip exactly once: {ok_once} ({len(ids)} answered, {len(set(ids))} distinct, {len(clips)} in the "
              f"gallery, {args.clients * args.jobs} asked); each made by its own author: {ok_authors}")
        for e in errors[:5]:
            print("error:", e)
        return 0 if ok_once and ok_authors and not errors else 1
    finally:
        demo.close()
        studio.close()


if __name__ == "__main__":
    sys.exit(main())
