"""The repository is a Hugging Face Space as it is (#15): the README's metadata and requirements.txt agree with
pyproject.toml's pins, and what the platform's environment means to the studio (studio/space.py)."""

import re
import tomllib
from pathlib import Path

import pytest

from studio.space import EPHEMERAL_NOTICE, detect, gpu_seconds, prepare_environment, zero_gpu_runner

ROOT = Path(__file__).resolve().parents[1]


def space_metadata() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "the README must open with the Space's metadata block"
    block = text[4:text.index("\n---\n", 4)]
    out = {}
    for line in block.splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip().strip('"')
    return out


def pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[\[=<>]", d)[0]: d for d in deps}


def test_the_readme_metadata_matches_the_pins():
    meta, pinned = space_metadata(), pins()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and (ROOT / meta["app_file"]).is_file()
    assert "gradio" in pinned and pinned["gradio"].endswith(f"=={meta['sdk_version']}")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=" + meta["python_version"] or requires.startswith(">=3.1")
    major, minor = (int(x) for x in meta["python_version"].split("."))
    assert (major, minor) >= tuple(int(x) for x in requires.removeprefix(">=").split("."))
    assert meta["hf_oauth"] == "true"
    assert meta["suggested_hardware"] in ("cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "a10g-small",
                                          "a10g-large", "a100-large", "h100")
    assert 0 < len(meta["short_description"]) <= 60 and meta["title"] and meta["emoji"]


def test_requirements_are_the_dependencies_torch_first():
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert lines == deps and lines[0] == "torch==2.13.0"  # the pin, first, as scripts/setup.sh installs it


def test_detect_reads_the_platform(tmp_path):
    assert detect({}) is None and detect({"SPACE_ID": "a/b"}) is None  # SYSTEM=spaces is what says "a Space"
    volume = tmp_path / "volume"
    volume.mkdir()
    env = {"SYSTEM": "spaces", "SPACE_ID": "a/b", "STUDIO_SPACE_VOLUME": str(volume)}
    space = detect(env)
    assert (space.host, space.port, space.zero_gpu) == ("0.0.0.0", 7860, False)
    assert space.data_dir == volume / "studio" and space.notice is None
    assert detect({**env, "GRADIO_SERVER_NAME": "::", "GRADIO_SERVER_PORT": "9000"}).port == 9000
    gone = detect({**env, "STUDIO_SPACE_VOLUME": str(tmp_path / "none")})
    assert gone.volume is None and gone.data_dir is None and gone.notice == EPHEMERAL_NOTICE
    prepared = dict(env)
    prepare_environment(prepared)
    assert prepared["HF_HOME"] == str(volume / "huggingface")  # the model cache lives on the volume too
    kept = {**env, "HF_HOME": "/elsewhere"}
    prepare_environment(kept)
    assert kept["HF_HOME"] == "/elsewhere"


def test_settings_on_a_space(tmp_path):
    from studio.settings import Settings

    volume = tmp_path / "volume"
    volume.mkdir()
    env = {"SYSTEM": "spaces", "SPACE_ID": "a/b", "STUDIO_SPACE_VOLUME": str(volume), "HOME": str(tmp_path)}
    s = Settings.from_env(env)
    assert (s.host, s.port, s.data_dir, s.notice) == ("0.0.0.0", 7860, volume / "studio", None)
    assert not s.hf_login  # no OAuth variables: no Sign in with Hugging Face
    s = Settings.from_env({**env, "STUDIO_SPACE_VOLUME": str(tmp_path / "none")})
    assert s.notice == EPHEMERAL_NOTICE and s.data_dir.is_relative_to(tmp_path)
    assert Settings.from_env({**env, "STUDIO_DATA_DIR": str(tmp_path / "d")}).data_dir == tmp_path / "d"
    assert Settings.from_env({"HOME": str(tmp_path)}).host == "127.0.0.1"  # off a Space: loopback


def test_zero_gpu_runs_generation_inside_spaces_gpu(tmp_path, monkeypatch):
    import sys
    import types

    from pipelines.contract import TextToVideoRequest

    calls = []
    fake = types.ModuleType("spaces")

    def GPU(duration):  # noqa: N802 - the platform's name
        def wrap(fn):
            def run(*args):
                calls.append(duration)
                return fn(*args)
            return run
        return wrap

    fake.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", fake)
    space = detect({"SYSTEM": "spaces", "SPACES_ZERO_GPU": "true", "STUDIO_SPACE_VOLUME": str(tmp_path)})
    run = zero_gpu_runner(space)
    small = TextToVideoRequest(prompt="x", steps=4, frames=9, width=64, height=64)
    big = TextToVideoRequest(prompt="x", steps=50, frames=121, width=1280, height=720)
    assert run(lambda a, b: a + b, small, 2, 3) == 5 and run(lambda: "ok", big) == "ok"
    assert calls[0] == 30 and calls[0] < calls[1] <= 300  # sized from the request, within ZeroGPU's bounds
    assert zero_gpu_runner(detect({"SYSTEM": "spaces", "STUDIO_SPACE_VOLUME": str(tmp_path)})) is None
    monkeypatch.delitem(sys.modules, "spaces")
    monkeypatch.setattr("builtins.__import__", _no_spaces(__import__))
    assert zero_gpu_runner(space) is None  # ZeroGPU hardware named but no `spaces` package: run directly


def _no_spaces(real):
    def fake_import(name, *a, **kw):
        if name == "spaces":
            raise ImportError("no spaces")
        return real(name, *a, **kw)
    return fake_import


@pytest.mark.parametrize("steps, expected", [(None, 120), (1, 30)])
def test_gpu_seconds(steps, expected):
    class R:
        frames, width, height = 49, 832, 480

    r = R()
    r.steps = steps
    assert gpu_seconds(r) == expected


def test_jobs_generate_through_the_runner(settings, registry):
    from pipelines.contract import TextToVideoRequest
    from studio.jobs import JobService
    from studio.wiring import build_studio

    studio = build_studio(settings, registry)
    seen = []

    def runner(fn, request, *args):
        seen.append(request.prompt)
        return fn(*args)

    try:
        jobs = studio.jobs
        jobs._runner = runner  # what wiring passes on ZeroGPU
        [status] = jobs.wait(jobs.submit(TextToVideoRequest(prompt="inside", seed=1)).job_ids, timeout=30)
        assert status.status == "done" and seen == ["inside"]
        assert isinstance(jobs, JobService)
    finally:
        studio.close()
