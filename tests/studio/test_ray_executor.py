"""The ray executor on a real local Ray cluster: two CPU workers, the embedded model, jobs through the facade.

A second driver (tests/support/ray_frontends_driver.py) runs two front-end processes on one PostgreSQL
database and one Ray cluster (`ray start --head`) and checks that every job ran once.

The cluster runs inside a network namespace with only loopback up (`unshare -n`, as root): outside one, Ray's
processes talk over the machine's interface address. tests/support/ray_driver.py does the work in that
namespace and prints what it saw as JSON; the tests here check it. Skipped where Ray is not installed or a
namespace cannot be made (not root). The fast tests at the bottom need neither.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _namespace_reason() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return 'Ray is not installed (pip install -e ".[ray]")'
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip is missing: no loopback-only network namespace for Ray"
    probe = subprocess.run(["unshare", "-n", "bash", "-c", "ip link set lo up"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace here (unshare -n needs root): {probe.stderr.decode()[:200]}"
    return None


def _drive(module: str, arg: Path, timeout: float) -> dict:
    """Run a driver module in a loopback-only network namespace; what it printed last, as JSON."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    command = f"ip link set lo up; exec {sys.executable} -m {module} {arg}"
    done = subprocess.run(["unshare", "-n", "bash", "-c", command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"{module} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    reason = _namespace_reason()
    if reason:
        pytest.skip(reason)
    return _drive("tests.support.ray_driver", tmp_path_factory.mktemp("ray") / "data", 300)


def test_two_workers_start_with_the_model_loaded(seen):
    assert seen["concurrency"] == 2
    assert seen["warm_workers"] == 2 and seen["warm_pids_distinct"]
    assert seen["warm_loaded"] == [[seen["model"], None]] * 2


def test_jobs_through_the_facade_make_gallery_rows_and_files(seen):
    batch = seen["batch"]
    assert batch["statuses"] == ["done"] * 4, batch["errors"]
    assert batch["most_workers_busy_at_once"] == 2  # both workers generating at once
    assert batch["seeds"] == [100, 101, 102, 103] == batch["sidecar_seed"]
    assert batch["models"] == [seen["model"]]
    assert batch["shapes"] == [[16, 64, 64, 12]] * 4
    assert batch["files"] and batch["manifest_has_torch"]
    assert batch["gallery_count"] == 4
    assert batch["decoded_shape"] == [16, 64, 64, 3]


def test_a_worker_makes_the_same_frames_as_the_local_backend(seen):
    assert seen["same_frames_as_local"]
    assert seen["remote_spec"][0] == seen["model"]


def test_progress_and_previews_come_back_from_the_worker(seen):
    p = seen["progress"]
    assert p["status"] == "done" and p["total"] == 60 and p["increasing"]
    assert p["distinct_steps"] >= 3 and p["max_step"] <= 60  # a worker sends its step at most every 0.25 s
    assert p["final_step"] == 60  # the last step comes home with the frames
    assert p["preview_shape"] == [16, 64, 64, 3] and p["preview_versions"] >= 2


def test_cancel_reaches_the_running_worker_and_stops_it_at_once(seen):
    c = seen["cancel"]
    assert c["status"] == "cancelled" and c["row"] == "cancelled" and c["clip_id"] is None
    # the step the backend stopped at, against where it was when cancelled (reported up to 0.25 s late)
    assert c["step_at_cancel"] <= c["last_step"] < 50, c
    assert c["seconds"] < 1.0


def test_a_worker_killed_mid_job_leaves_its_job_to_the_other(seen):
    k = seen["kill_once"]
    assert k["status"] == "done", k["error"]
    assert k["attempts"] == 2 and k["victim_gone"]
    assert k["clip_rows_for_job"] == 1 and k["clip_file"] and k["clip_seed"] == 5  # nothing lost, nothing twice


def test_a_job_whose_second_worker_dies_too_fails_with_the_reason(seen):
    k = seen["kill_twice"]
    assert k["status"] == "failed" == k["row_status"] and k["clip_id"] is None and k["attempts"] == 2
    assert "died while running it" in k["error"] and "re-queued once" in k["error"]
    assert k["row_error"] == k["error"]


def test_the_pool_grows_back_and_shrinks_when_idle(seen):
    assert seen["after_deaths"] == {"statuses": ["done", "done"], "workers": 2}
    assert seen["shrunk_to"] == 0
    assert seen["regrown"] == {"status": "done", "workers": 1}
    assert seen["closed_workers"] == 0


# ---- two front ends, one PostgreSQL database, one cluster ------------------------------------------------
@pytest.fixture(scope="module")
def two_front_ends(tmp_path_factory):
    from tests.support.postgres import missing_reason

    reason = _namespace_reason() or missing_reason()
    if reason:
        pytest.skip(reason)
    return _drive("tests.support.ray_frontends_driver", tmp_path_factory.mktemp("ray-front-ends"), 600)


def test_two_front_ends_on_one_database_and_one_cluster_run_every_job_once(two_front_ends):
    seen = two_front_ends
    for fe in seen["front_ends"]:  # each saw its own clips finish, whoever ran them
        assert fe["statuses"] == ["done"] * len(fe["job_ids"]), fe["errors"]
        assert fe["shown_here"]  # each clip's files in this front end's data dir, fetched if made elsewhere
    assert seen["jobs"] == seen["distinct_jobs"] == 12
    assert seen["rows"] == {"status": ["done"], "attempts": [1], "clips_per_job": [1], "distinct_clips": 12}
    assert seen["files"]  # in the object store both front ends use, each with a data dir of its own
    assert all(n > 0 for n in seen["ran_on"].values()), seen["ran_on"]  # both front ends' workers took part


# ---- without a cluster ------------------------------------------------------------------------------------
def test_the_local_executor_is_no_object_and_an_unknown_one_is_refused(tmp_path):
    from studio.settings import Settings
    from studio.wiring import ExecutorUnavailable, build_executor

    assert build_executor(Settings(data_dir=tmp_path)) is None
    with pytest.raises(ExecutorUnavailable, match="unknown executor 'dask'"):
        build_executor(Settings(data_dir=tmp_path, executor="dask"))
    ray_ex = build_executor(Settings(data_dir=tmp_path, executor="ray", ray_address="ray://head:10001", ray_workers=3))
    assert (ray_ex.name, ray_ex.address, ray_ex.max_workers) == ("ray", "ray://head:10001", 3)


def test_settings_read_the_executor_from_the_environment(tmp_path):
    from studio.settings import Settings

    s = Settings.from_env({"STUDIO_DATA_DIR": str(tmp_path), "STUDIO_EXECUTOR": "Ray", "RAY_ADDRESS": "auto",
                           "STUDIO_RAY_WORKERS": "4"})
    assert (s.executor, s.ray_address, s.ray_workers) == ("ray", "auto", 4)
    assert Settings.from_env({"STUDIO_DATA_DIR": str(tmp_path)}).executor == "local"
    flags = Settings.from_env({"STUDIO_DATA_DIR": str(tmp_path), "STUDIO_EXECUTOR": "ray"}, executor="local")
    assert flags.executor == "local"  # a flag beats the environment


def test_nothing_imports_ray_unless_the_executor_is_chosen():
    code = ("import sys; from studio.wiring import build_studio, build_executor; import studio.executors, "
            "studio.jobs, studio.cli; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_without_ray_the_executor_says_how_to_install_it(tmp_path, monkeypatch):
    from studio.executors import ExecutorUnavailable, RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ExecutorUnavailable, match=r'pip install -e "\.\[ray\]"'):
        RayExecutor(lambda: None).start()


def test_serve_refuses_a_bad_executor_in_one_line(tmp_path, monkeypatch, capsys):
    from studio.cli import EXIT_BAD_ARGS, main

    monkeypatch.setenv("STUDIO_EXECUTOR", "spark")
    assert main(["serve", "--data-dir", str(tmp_path)]) == EXIT_BAD_ARGS
    assert "STUDIO_EXECUTOR='spark'" in capsys.readouterr().err
    monkeypatch.delenv("STUDIO_EXECUTOR")
    assert main(["serve", "--data-dir", str(tmp_path), "--executor", "ray", "--ray-workers", "0"]) == EXIT_BAD_ARGS
    assert "--ray-workers 0" in capsys.readouterr().err
