"""One writer per data dir, and recovery at start: temporary files, clip files without a row, interrupted
jobs; and a crash test that kills `studio generate` at random moments (#14)."""

import dataclasses
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.contract import TextToVideoRequest
from storage.lease import DataDirBusy
from storage.models import Job
from studio.cli import main
from studio.wiring import build_studio
from tests.support.postgres import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "assets" / "embedded" / "model.safetensors"


def test_one_writer_per_data_dir(settings, registry, capsys):
    first = build_studio(settings, registry, holder="studio serve on 127.0.0.1:7860")
    try:
        with pytest.raises(DataDirBusy, match=r"in use by studio serve on 127.0.0.1:7860 \(pid \d+\)"):
            build_studio(settings, registry)
        code = main(["generate", "--prompt", "x", "--data-dir", str(settings.data_dir)])
        err = capsys.readouterr().err
        assert code == 2 and "studio serve on 127.0.0.1:7860" in err and len(err.strip().splitlines()) == 1
        reader = build_studio(settings, registry, start=False)  # reading the gallery needs no lease
        reader.close()
    finally:
        first.close()
    again = build_studio(settings, registry)  # closed: the lease is free again
    again.close()


@pytest.mark.parametrize("db_backend", BACKENDS, indirect=True)
def test_start_removes_what_a_crash_left(settings, registry, caplog):
    studio = build_studio(settings, registry)
    sub = studio.facade.submit(TextToVideoRequest(prompt="a red circle", seed=1), 1)
    [status] = studio.facade.wait(sub.job_ids)
    studio.close()
    data = settings.data_dir
    (data / "clips" / ".tmp-abc-x.mp4").write_bytes(b"half")  # a write cut short
    (data / "inputs" / "ab").mkdir(parents=True, exist_ok=True)
    (data / "inputs" / "ab" / ".tmp-def-y.png").write_bytes(b"half")
    for ext in ("mp4", "jpg", "json"):  # killed between moving the files and committing the row
        (data / "clips" / f"{'0' * 32}.{ext}").write_bytes(b"x")
    kept = studio.gallery.get(status.clip_id)
    kept.thumb.unlink()  # a row whose file is gone is reported, not deleted
    with caplog.at_level(logging.INFO, logger="studio"):
        again = build_studio(settings, registry)
    try:
        left = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file() and ".tmp-" in p.name)
        assert left == []
        assert not any((data / "clips").glob("0" * 32 + ".*"))
        assert again.gallery.get(status.clip_id) is not None
        assert f"clip {status.clip_id}: files missing" in caplog.text
    finally:
        again.close()


@pytest.mark.parametrize("db_backend", BACKENDS, indirect=True)
def test_an_interrupted_job_runs_once_more_then_fails_with_a_message(settings, registry):
    studio = build_studio(settings, registry, start=False)
    params = dataclasses.replace(TextToVideoRequest(prompt="x"), model_id="test-gradient", seed=3, steps=2,
                                 cfg_scale=2.0, frames=8, fps=8, width=32, height=32).to_params()
    with studio.jobs._session_factory() as session, session.begin():
        for job_id, attempts in (("a" * 32, 1), ("b" * 32, 2)):
            session.add(Job(id=job_id, batch_id=job_id, status="running", mode="t2v", model_id="test-gradient",
                            params=params, attempts=attempts))
    studio.close()
    studio = build_studio(settings, registry)
    try:
        once_more, twice = studio.facade.wait(["a" * 32, "b" * 32], timeout=60)
        assert once_more.status == "done" and once_more.clip_id
        assert twice.status == "failed" and "interrupted 2 times" in twice.error
    finally:
        studio.close()


@pytest.mark.slow
@pytest.mark.skipif(not WEIGHTS.is_file(), reason="the embedded model's weights are not shipped")
def test_kill_9_at_random_moments_loses_nothing_and_runs_nothing_twice(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STUDIO_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    rng = random.Random(7)
    cmd = [sys.executable, "-m", "studio.cli", "generate", "--prompt", "a red circle moving right", "--seeds", "2",
           "--steps", "2", "--data-dir", str(data)]
    deadline = time.monotonic() + 300
    kills = 0

    def jobs_in_db() -> int:
        import sqlite3

        try:
            with sqlite3.connect(f"file:{data / 'gallery.db'}?mode=ro", uri=True, timeout=5) as db:
                return db.execute("SELECT count(*) FROM jobs").fetchone()[0]
        except sqlite3.Error:
            return 0

    while kills < 20 and time.monotonic() < deadline:
        before = jobs_in_db()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        while proc.poll() is None and jobs_in_db() <= before and time.monotonic() - started < 60:
            time.sleep(0.05)  # until this run has queued its jobs (python and torch take a while to start)
        time.sleep(rng.uniform(0.0, 2.5))  # then anywhere in loading, generating, writing or committing
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 10
    from studio.settings import Settings

    studio = build_studio(Settings(data_dir=data, device="cpu", torch_threads=1))  # recovery, then the queue
    try:
        with studio.jobs._session_factory() as session:
            jobs = session.query(Job).all()
            statuses = studio.facade.wait([j.id for j in jobs], timeout=600)
        clips = studio.gallery.list(limit=1000)
        done = [s for s in statuses if s.status == "done"]
        assert len(jobs) >= 2 * kills and len(done) >= kills
        assert all(s.status in ("done", "failed") for s in statuses), {s.status for s in statuses}
        assert all("interrupted" in (s.error or "") for s in statuses if s.status == "failed")
        assert sorted(s.clip_id for s in done) == sorted(c.id for c in clips)  # each job made one clip, once
        on_disk = {p.stem for p in (data / "clips").glob("*.mp4")}
        assert on_disk == {c.id for c in clips}  # every file has its row, every row its files
        assert all(c.video.is_file() and c.thumb.is_file() for c in clips)
        assert not [p for p in data.rglob("*") if ".tmp-" in p.name]
        print(json.dumps({"kills": kills, "jobs": len(jobs), "clips": len(clips),
                          "failed": len(statuses) - len(done)}))
    finally:
        studio.close()
