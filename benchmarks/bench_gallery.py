"""Gallery queries at scale: a fresh SQLite gallery filled with realistic rows, then p50/p95 per query.

    python benchmarks/bench_gallery.py [--rows 100000] [--runs 60]

Queries (each a 50-clip page, as the gallery page asks): the first page, a filtered page (mode + model +
CFG range + starred), a page deep in the list (by keyset cursor, at 90% of the rows), and a full-text
search over prompt and negative prompt. Goal: p95 at most 50 ms for each at 100,000 rows. The baseline
line times the same deep page with OFFSET, which keyset pages replace.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

COLOURS = ["red", "blue", "green", "yellow", "pink", "white", "orange", "purple", "teal", "black"]
SHAPES = ["circle", "square", "triangle", "ball", "box", "kite", "star", "dot"]
MOTIONS = ["moving right", "moving left", "rising", "falling", "gliding east", "drifting up", "standing still"]
SCENES = ["on a navy background", "over beige", "on black", "in a forest", "at dusk", "under neon lights"]
STYLES = ["", "cinematic", "watercolour", "35mm film", "anime style", "slow motion"]
MODELS = ["embedded-shapes", "wan2.1-t2v-1.3b", "ltx-video-0.9.7-dev", "cogvideox-2b", "svd-xt"]
MODES = ["t2v", "i2v", "v2v", "inpaint"]


def fake_rows(n: int, rng: random.Random):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        prompt = " ".join(w for w in (f"a {rng.choice(COLOURS)} {rng.choice(SHAPES)}", rng.choice(MOTIONS),
                                      rng.choice(SCENES), rng.choice(STYLES)) if w)
        cid = uuid.UUID(int=rng.getrandbits(128)).hex
        yield dict(
            id=cid, job_id=None, batch_id=uuid.UUID(int=rng.getrandbits(128)).hex if i % 4 == 0 else f"b{i // 4}",
            created_at=start + timedelta(seconds=37 * i), mode=rng.choice(MODES), model_id=rng.choice(MODELS),
            model_version="1", prompt=prompt, negative_prompt=rng.choice(["", "", "blurry, low quality"]),
            seed=rng.getrandbits(32), steps=rng.choice([8, 20, 30, 50]), cfg_scale=rng.choice([1.0, 3.0, 5.0, 7.5]),
            frames=16, fps=8, width=64, height=64, strength=None, profile=None,
            params={"schema_version": 1, "mode": "t2v", "prompt": prompt}, manifest={}, inputs={},
            video_path=f"clips/{cid}.mp4", thumb_path=f"clips/{cid}.jpg", sidecar_path=f"clips/{cid}.json",
            generation_seconds=1.0, starred=rng.random() < 0.05, note="", parent_id=None, sweep_id=None, axes=None,
        )


def timed(fn, runs: int) -> tuple[float, float]:
    fn()  # warm the page cache and the statement cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args(argv)

    from sqlalchemy import insert, select

    from storage.db import make_engine, make_session_factory, upgrade
    from storage.models import Clip
    from storage.repositories import GalleryQuery, GalleryRepository, _encode_cursor

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/gallery.db")
        upgrade(engine)
        t0 = time.perf_counter()
        rows = list(fake_rows(args.rows, random.Random(0)))
        with engine.begin() as conn:
            for i in range(0, len(rows), 5000):
                conn.execute(insert(Clip), rows[i:i + 5000])
        print(f"filled {args.rows} rows in {time.perf_counter() - t0:.1f} s (full-text index included)")
        with make_session_factory(engine)() as session:
            repo = GalleryRepository(session)
            deep_row = session.execute(select(Clip.created_at, Clip.id).order_by(Clip.created_at.desc(), Clip.id.desc())
                                       .offset(int(args.rows * 0.9)).limit(1)).one()
            cursor = _encode_cursor(deep_row[0], deep_row[1])
            queries = {
                "first page": GalleryQuery(limit=50),
                "filtered": GalleryQuery(mode="t2v", model_id="wan2.1-t2v-1.3b", cfg_min=3, cfg_max=7.5, starred=False,
                                         limit=50),
                "deep page": GalleryQuery(limit=50, after=cursor),
                "search": GalleryQuery(text="red circ", limit=50),
            }
            for name, q in queries.items():
                n = len(repo.search(q).clips)
                p50, p95 = timed(lambda q=q: (repo.search(q).clips, session.expunge_all()), args.runs)
                print(f"{name}: p50 {p50:.1f} ms p95 {p95:.1f} ms ({n} clips)")
            offset = int(args.rows * 0.9)
            base = select(Clip).order_by(Clip.created_at.desc(), Clip.id.desc()).offset(offset).limit(50)
            p50, p95 = timed(lambda: (list(session.scalars(base)), session.expunge_all()), max(5, args.runs // 4))
            print(f"baseline deep page by OFFSET {offset}: p50 {p50:.1f} ms p95 {p95:.1f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
