"""`studio generate` end to end, as a subprocess, on the embedded default model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "assets" / "embedded" / "model.safetensors"


def studio(*args, data_dir: Path, check=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STUDIO_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "studio.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=check)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--mode", "i2v", "--prompt", "x"], "image: --image is required"),
        (["--mode", "t2v", "--prompt", "x", "--video", "a.mp4"], "video: --video is not used"),
        (["--prompt", "x", "--width", "abc"], "invalid int value"),
        (["--prompt", "x", "--mode", "zoom"], "invalid choice"),
        (["--prompt", "x", "--strength", "0.5"], "strength"),
        (["--prompt", "x", "--model", "a" * 300], "unknown model 'aaaa"),
        (["--prompt", "x", "--vary", "zoom=2"], "'zoom' is not an axis"),
    ],
)
def test_bad_arguments_exit_nonzero_with_one_line(tmp_path, args, words):
    result = studio("generate", *args, data_dir=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_out_of_range_value_is_refused_before_anything_is_made(tmp_path):
    result = studio("generate", "--prompt", "a red circle", "--steps", "0", data_dir=tmp_path)
    assert result.returncode == 2 and "steps" in result.stderr
    assert not (tmp_path / "clips").exists() or not any((tmp_path / "clips").iterdir())


@pytest.mark.skipif(not WEIGHTS.is_file(), reason="the embedded model's weights are not in assets/embedded yet")
def test_generate_json_same_seed_same_frames(tmp_path):
    from studio.media import MediaLimits
    from studio.media.video import read_video

    args = ("generate", "--prompt", "a red circle moving right on navy", "--seed", "11", "--seeds", "2",
            "--steps", "4", "--json")
    first = studio(*args, data_dir=tmp_path, check=True)
    rows = json.loads(first.stdout)
    assert [r["seed"] for r in rows] == [11, 12]
    for r in rows:
        assert {"id", "path", "seed", "prompt", "model", "mode"} <= r.keys()
        assert Path(r["path"]).is_absolute() and Path(r["path"]).is_file()
        assert r["model"] == "embedded-shapes" and r["mode"] == "t2v"
    out = tmp_path / "copy.mp4"
    again = json.loads(studio(*args[:-3], "--seeds", "1", "--steps", "4", "--out", str(out), "--json",
                              data_dir=tmp_path, check=True).stdout)
    assert again[0]["seed"] == 11 and out.is_file()
    a, _ = read_video(rows[0]["path"], MediaLimits())
    b, _ = read_video(again[0]["path"], MediaLimits())
    c, _ = read_video(rows[1]["path"], MediaLimits())
    # seeds 11 and 12 ran as one batch, seed 11 alone the second time: the same clip up to rounding in the
    # batched matrix products (which H.264 may turn into a few levels in a block), another seed another clip
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.mean() < 0.5, diff.mean()
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 10 * max(diff.mean(), 0.05)
    batch_again = json.loads(studio(*args, data_dir=tmp_path, check=True).stdout)  # the same batch: bit-identical
    for r, r2 in zip(rows, batch_again):
        x, _ = read_video(r["path"], MediaLimits())
        y, _ = read_video(r2["path"], MediaLimits())
        assert np.array_equal(x, y)


def test_train_embedded_help_is_its_own(tmp_path):
    result = subprocess.run([sys.executable, "-m", "studio.cli", "train-embedded", "--help"], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and "--stage" in result.stdout, result.stderr


def test_a_catalog_model_without_weights_exits_2_with_the_download_command_on_its_own_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty hub cache
    result = subprocess.run([sys.executable, "-m", "studio.cli", "generate", "--prompt", "x", "--model",
                             "wan2.1-t2v-1.3b", "--data-dir", str(tmp_path / "data")], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert any(line.strip().startswith("hf download ") for line in result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize("flags, named", [(["--share"], "--share"), (["--host", "0.0.0.0"], "--host 0.0.0.0")])
def test_serving_beyond_this_machine_without_a_login_needs_allow_anonymous(tmp_path, flags, named):
    from studio.cli import main

    code = main(["serve", *flags, "--data-dir", str(tmp_path)])
    assert code == 2
    assert not (tmp_path / ".writer.lock").exists()  # refused before anything started


def test_the_refusal_names_the_flag(tmp_path, capsys):
    from studio.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0" in err and "--allow-anonymous" in err and len(err.strip().splitlines()) == 1


def test_users_add_list_passwd_remove_and_serve_auth_needs_a_user(tmp_path, capsys, monkeypatch):
    import io

    from studio.cli import main

    data = ["--data-dir", str(tmp_path)]
    assert main(["serve", "--auth", *data]) == 2
    assert "no users yet" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("long-enough-password\n"))
    assert main(["users", "add", "ann", "--role", "admin", *data]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["users", "add", "bob", *data]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("another-password\n"))
    assert main(["users", "add", "ann", *data]) == 2 and "already exists" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-new-password\n"))
    assert main(["users", "passwd", "ann", *data]) == 0
    assert main(["users", "list", *data]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "ann\tadmin"
    from studio.settings import Settings
    from studio.wiring import build_studio

    built = build_studio(Settings(data_dir=tmp_path, device="cpu"), start=False)
    try:
        assert built.accounts.login("ann", "a-new-password") and not built.accounts.login("ann", "long-enough-password")
        stored = built.engine.connect().exec_driver_sql("SELECT password_hash FROM users").scalar()
        assert stored.startswith("$argon2") and "a-new-password" not in stored
    finally:
        built.close()
    assert main(["users", "remove", "ann", *data]) == 0
    assert main(["users", "remove", "ann", *data]) == 2


@pytest.mark.parametrize("command", [["generate", "--prompt", "x"], ["gallery", "list"], ["users", "list"],
                                     ["serve"]])
def test_a_data_dir_that_cannot_be_used_is_one_line_not_a_traceback(tmp_path, capsys, command):
    from studio.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main([*command, "--data-dir", str(blocker / "data")]) == 2
    err = capsys.readouterr().err
    assert "cannot use the data dir" in err and len(err.strip().splitlines()) == 1, err
