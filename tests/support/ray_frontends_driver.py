"""Two front ends, one PostgreSQL database, one Ray cluster (#17): every job runs once.

Run inside a network namespace with only loopback up (tests/studio/test_ray_executor.py does it):

    unshare -n bash -c 'ip link set lo up; .venv/bin/python -m tests.support.ray_frontends_driver WORK_DIR'

It starts a throwaway PostgreSQL cluster and a Ray head (`ray start --head`, two CPUs), then two front-end
processes (`... ray_frontends_driver frontend ...`), each a whole studio as `studio serve` builds it
(build_executor + build_studio, STUDIO_SHARED_QUEUE on) with a data dir of its own, as on two machines,
the clips going to one object store (STUDIO_STORAGE_URL, a file:// "bucket"), and at most one Ray worker of
its own, so that both take part. Each submits clips through the facade, as the UI does, and
waits for its own. The main process then reads the database and prints what it saw as one JSON object on the
last line of stdout.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUBMISSIONS = 3  # per front end, each of SEEDS clips
SEEDS = 2


def frontend(name: str, data_dir: str, url: str, address: str, seed_base: int, bucket: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from pipelines.contract import TextToVideoRequest
    from studio.settings import Settings
    from studio.wiring import build_executor, build_studio

    settings = Settings(data_dir=Path(data_dir), device="cpu", torch_threads=1, executor="ray", ray_address=address,
                        ray_workers=1, database_url=url, shared_queue=True, storage_url=f"file://{bucket}")
    studio = build_studio(settings, holder=name, executor=build_executor(settings))
    try:
        facade = studio.facade
        ids = []
        for i in range(SUBMISSIONS):
            sub = facade.submit(TextToVideoRequest(prompt="a red circle moving right", steps=8,
                                                   seed=seed_base + 10 * i), seeds=SEEDS)
            ids += sub.job_ids
        statuses = facade.wait(ids, timeout=240)
        views = [facade.clip(s.clip_id) if s.clip_id else None for s in statuses]  # made here or elsewhere
        return {"shown_here": all(v is not None and v.video.is_file() and v.thumb.is_file() for v in views),"name": name, "front_end": studio.jobs._front_end, "job_ids": ids,
                "statuses": [s.status for s in statuses], "errors": [s.error for s in statuses if s.error],
                "clip_ids": [s.clip_id for s in statuses]}
    finally:
        studio.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(work: str) -> dict:
    from sqlalchemy import func, select

    from storage.db import Clip, Job, make_engine, make_session_factory
    from tests.support.postgres import PostgresCluster

    work_dir = Path(work)
    bucket = work_dir / "bucket"
    out: dict = {}
    pg = PostgresCluster()
    pg.start()
    ray_bin = str(Path(sys.executable).parent / "ray")
    # the cluster's token (Ray's token authentication, on for `ray start`), as a real deployment hands it to
    # its front ends: RAY_AUTH_MODE=token and a token file; ~/.ray is left alone
    token = work_dir / "ray-auth-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_AUTH_TOKEN", None)
    port = _free_port()
    try:
        url = pg.url(pg.create_database())
        started = subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                                  "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
                                  "--disable-usage-stats"], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=120)
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{started.stdout[-2000:]}{started.stderr[-2000:]}")
        address = f"127.0.0.1:{port}"
        t0 = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "tests.support.ray_frontends_driver", "frontend", name,
                                   str(work_dir / name.replace(" ", "-")), url, address, str(base), str(bucket)],
                                  cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name, base in (("front end a", 100), ("front end b", 200))]
        seen = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=300)
            lines = stdout.strip().splitlines()
            if p.returncode != 0 or not lines:
                raise RuntimeError(f"a front end failed ({p.returncode}):\n{stderr[-4000:]}")
            seen.append(json.loads(lines[-1]))
        out["seconds"] = round(time.monotonic() - t0, 1)
        out["front_ends"] = seen
        ids = [j for s in seen for j in s["job_ids"]]
        engine = make_engine(url)
        try:
            with make_session_factory(engine)() as session:
                jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(ids)))}
                clips_per_job = dict(session.execute(select(Clip.job_id, func.count()).where(Clip.job_id.in_(ids))
                                                     .group_by(Clip.job_id)).all())
                clip_files = [session.get(Clip, j.clip_id).video_path for j in jobs.values() if j.clip_id]
        finally:
            engine.dispose()
        by_id = {s["front_end"]: s["name"] for s in seen}
        out["jobs"] = len(ids)
        out["distinct_jobs"] = len(set(ids))
        out["rows"] = {"status": sorted({j.status for j in jobs.values()}),
                       "attempts": sorted({j.attempts for j in jobs.values()}),
                       "clips_per_job": sorted(set(clips_per_job.get(j, 0) for j in ids)),
                       "distinct_clips": len({j.clip_id for j in jobs.values() if j.clip_id})}
        out["ran_on"] = {name: sum(1 for j in jobs.values() if by_id.get(j.claimed_by) == name)
                         for name in by_id.values()}
        # jobs one front end queued and the other ran (the queue is the database's, not a front end's)
        submitted_by = {j: s["name"] for s in seen for j in s["job_ids"]}
        out["ran_elsewhere"] = sum(1 for j in ids if by_id.get(jobs[j].claimed_by) != submitted_by[j])
        out["files"] = len(clip_files) == len(ids) and all((bucket / p).is_file() for p in clip_files)
        return out
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        pg.stop()


if __name__ == "__main__":
    if sys.argv[1] == "frontend":
        print(json.dumps(frontend(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7])))
    else:
        print(json.dumps(main(sys.argv[1])))
