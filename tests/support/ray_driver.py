"""Drives a studio whose executor is a real local Ray cluster (two CPU workers, the embedded model) and prints
what it saw as one JSON object on the last line of stdout. tests/studio/test_ray_executor.py runs it in a
network namespace with only loopback up (Ray's processes would otherwise talk over the machine's address):

    unshare -n bash -c 'ip link set lo up; .venv/bin/python -m tests.support.ray_driver DATA_DIR'

Every check goes through the same code as the UI: StudioFacade.submit / status / preview / cancel / wait.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

STEP_TIMEOUT = 120.0


def _wait_until(predicate, timeout: float = STEP_TIMEOUT, every: float = 0.005):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def _busy_pid(executor) -> int:  # type: ignore[no-untyped-def]
    return _wait_until(lambda: next((w["pid"] for w in executor.workers() if w["busy"]), None))


def main(data_dir: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from pipelines.contract import MediaInputs, TextToVideoRequest
    from storage.repositories import JobRepository
    from studio.media import MediaLimits
    from studio.media.video import read_video
    from studio.settings import Settings
    from studio.wiring import build_executor, build_studio

    out: dict = {}
    settings = Settings(data_dir=Path(data_dir), device="cpu", torch_threads=1, executor="ray", ray_workers=2)
    t0 = time.monotonic()
    executor = build_executor(settings)
    studio = build_studio(settings, executor=executor)
    facade = studio.facade
    model = facade.default_model_id
    out["model"] = model
    out["concurrency"] = executor.concurrency()
    executor.warm_up(model)
    workers = executor.workers()
    out["warm_workers"] = len(workers)
    out["warm_pids_distinct"] = len({w["pid"] for w in workers}) == len(workers) and os.getpid() not in {
        w["pid"] for w in workers}
    out["warm_loaded"] = [list(w["loaded"]) if w["loaded"] else None for w in workers]
    out["startup_s"] = round(time.monotonic() - t0, 2)

    def job_row(job_id: str):  # type: ignore[no-untyped-def]
        with studio.jobs._session_factory() as session:
            job = JobRepository(session).get(job_id)
            return {"status": job.status, "attempts": job.attempts, "clip_id": job.clip_id, "error": job.error}

    # 1. four clips through the facade: rows and files, two at a time on the two workers
    sub = facade.submit(TextToVideoRequest(prompt="a red circle moving right", steps=12, seed=100), seeds=4)
    most_busy = 0
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        statuses = [facade.status(j) for j in sub.job_ids]
        most_busy = max(most_busy, sum(w["busy"] for w in executor.workers()))
        if all(s.status in ("done", "failed", "cancelled") for s in statuses):
            break
        time.sleep(0.01)
    statuses = facade.wait(sub.job_ids, timeout=STEP_TIMEOUT)
    clips = [facade.clip(s.clip_id) if s.clip_id else None for s in statuses]
    out["batch"] = {
        "statuses": [s.status for s in statuses],
        "errors": [s.error for s in statuses if s.error],
        "most_workers_busy_at_once": most_busy,
        "seeds": [c.seed if c else None for c in clips],
        "models": sorted({c.model_id for c in clips if c}),
        "shapes": [[c.frames, c.width, c.height, c.steps] if c else None for c in clips],
        "files": all(c is not None and c.video.is_file() and c.thumb.is_file() and c.video.with_suffix(".json").is_file()
                     for c in clips),
        "sidecar_seed": [json.loads(c.video.with_suffix(".json").read_text())["params"]["seed"] for c in clips if c],
        "manifest_has_torch": all(c is not None and "torch" in (c.manifest or {}) for c in clips),
        "gallery_count": len(facade.recent()),
    }
    first = clips[0]
    decoded = read_video(first.video, MediaLimits())[0] if first else None
    out["batch"]["decoded_shape"] = list(decoded.shape) if decoded is not None else None

    # 2. the workers' frames are the in-process backend's frames, bit for bit (same seed, same request)
    request = TextToVideoRequest(prompt="a blue square moving up", steps=6, seed=7).resolve(facade.spec(model), 7)
    remote = executor.generate(request, MediaInputs(), 7, lambda *a: None, lambda: False,
                               model_id=model, profile=request.profile)
    backend = studio.registry.load(model)
    local = backend.generate(request, MediaInputs(), torch.Generator(device="cpu").manual_seed(7),
                             lambda *a: None, lambda: False)
    out["same_frames_as_local"] = bool(np.array_equal(remote.frames, local)) and remote.frames.dtype == np.uint8
    out["remote_spec"] = [remote.spec.id, remote.spec.version]
    studio.registry.unload()

    # 3. progress and previews, as the UI polls them
    sub = facade.submit(TextToVideoRequest(prompt="a green triangle", steps=60, seed=3))
    job = sub.job_ids[0]
    seen_steps, preview_shape, preview_versions = [], None, set()
    while True:
        st = facade.status(job)
        if st.status == "running" and st.step:
            seen_steps.append(st.step)
            preview_versions.add(st.preview_version)
            p = facade.preview(job)
            if p is not None:
                preview_shape = list(p.shape)
        if st.status in ("done", "failed", "cancelled"):
            break
        time.sleep(0.01)
    st = facade.wait([job], timeout=STEP_TIMEOUT)[0]
    out["progress"] = {"status": st.status, "distinct_steps": len(set(seen_steps)),
                       "increasing": seen_steps == sorted(seen_steps), "max_step": max(seen_steps or [0]),
                       "total": st.total, "final_step": st.step, "preview_shape": preview_shape,
                       "preview_versions": len(preview_versions - {0})}

    # 4. cancel reaches the running worker within a step or so
    sub = facade.submit(TextToVideoRequest(prompt="a yellow circle", steps=100, seed=4))
    job = sub.job_ids[0]
    _wait_until(lambda: facade.status(job).step >= 3)
    at_cancel = facade.status(job).step
    t_cancel = time.monotonic()
    facade.cancel([job])
    st = facade.wait([job], timeout=STEP_TIMEOUT)[0]
    out["cancel"] = {"status": st.status, "step_at_cancel": at_cancel, "last_step": st.step,
                     "seconds": round(time.monotonic() - t_cancel, 3), "clip_id": st.clip_id,
                     "row": job_row(job)["status"]}

    # 5. a worker killed with SIGKILL mid-job: the job finishes on the other, once
    sub = facade.submit(TextToVideoRequest(prompt="a purple square moving left", steps=60, seed=5))
    job = sub.job_ids[0]
    _wait_until(lambda: facade.status(job).step >= 2)
    victim = _busy_pid(executor)
    os.kill(victim, signal.SIGKILL)
    st = facade.wait([job], timeout=STEP_TIMEOUT)[0]
    row = job_row(job)
    clip = facade.clip(st.clip_id) if st.clip_id else None
    with studio.jobs._session_factory() as session:
        from storage.models import Clip

        rows_for_job = session.query(Clip).filter(Clip.job_id == job).count()
    out["kill_once"] = {"status": st.status, "error": st.error, "attempts": row["attempts"],
                        "victim_gone": victim not in {w["pid"] for w in executor.workers()},
                        "clip_rows_for_job": rows_for_job, "clip_file": bool(clip and clip.video.is_file()),
                        "clip_seed": clip.seed if clip else None}

    # 6. killed twice: failed, with the reason
    sub = facade.submit(TextToVideoRequest(prompt="a red triangle", steps=100, seed=6))
    job = sub.job_ids[0]
    _wait_until(lambda: facade.status(job).step >= 2)
    first_victim = _busy_pid(executor)
    os.kill(first_victim, signal.SIGKILL)
    _wait_until(lambda: job_row(job)["attempts"] == 2)
    second_victim = _wait_until(lambda: next((w["pid"] for w in executor.workers()
                                              if w["busy"] and w["pid"] != first_victim), None))
    os.kill(second_victim, signal.SIGKILL)
    st = facade.wait([job], timeout=STEP_TIMEOUT)[0]
    row = job_row(job)
    out["kill_twice"] = {"status": st.status, "error": st.error, "row_status": row["status"],
                         "row_error": row["error"], "attempts": row["attempts"], "clip_id": st.clip_id}

    # 7. the pool grows back after the deaths, and shrinks when idle
    sub = facade.submit(TextToVideoRequest(prompt="a blue circle", steps=8, seed=8), seeds=2)
    statuses = facade.wait(sub.job_ids, timeout=STEP_TIMEOUT)
    out["after_deaths"] = {"statuses": [s.status for s in statuses], "workers": len(executor.workers())}
    executor.idle_timeout_s = 0.3
    try:
        _wait_until(lambda: not executor.workers(), timeout=10.0, every=0.05)
        out["shrunk_to"] = 0
    except TimeoutError:
        out["shrunk_to"] = len(executor.workers())
    sub = facade.submit(TextToVideoRequest(prompt="a green square", steps=8, seed=9))
    executor.idle_timeout_s = 300.0
    out["regrown"] = {"status": facade.wait(sub.job_ids, timeout=STEP_TIMEOUT)[0].status,
                      "workers": len(executor.workers())}
    out["total_s"] = round(time.monotonic() - t0, 2)
    studio.close()
    out["closed_workers"] = len(executor.workers())
    return out


if __name__ == "__main__":
    result = main(sys.argv[1])
    print(json.dumps(result))
