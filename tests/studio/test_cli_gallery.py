"""The CLI of #13 in-process on the embedded model: sweeps (--vary), branching (--clip, --frame, extend),
`studio gallery ...`, export/import and `studio recall`."""

import json
import shutil
from pathlib import Path

import pytest

from studio.cli import main

WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "embedded" / "model.safetensors"
pytestmark = pytest.mark.skipif(not WEIGHTS.is_file(), reason="the embedded model's weights are not shipped")
SMALL = ["--steps", "2", "--threads", "1"]
CLIP_KEYS = {"id", "path", "prompt", "seed", "mode", "model", "cfg", "steps", "starred", "tags", "note", "sweep",
             "parent", "created_at", "negative_prompt", "strength", "profile", "inputs", "axes", "frames", "fps",
             "width", "height"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def generate(capsys, data, *args):
    code, out, err = run(capsys, "generate", "--prompt", "a red circle moving right", *SMALL, *args,
                         "--json", "--data-dir", data)
    assert code == 0, err
    return json.loads(out)


def test_a_sweep_gives_every_clip_its_sweep_and_axes(tmp_path, capsys):
    clips = generate(capsys, tmp_path, "--seed", "7", "--seeds", "2", "--vary", "cfg=3,5")
    assert len(clips) == 4
    assert len({c["sweep"] for c in clips}) == 1 and clips[0]["sweep"]
    assert sorted((c["axes"]["cfg"], c["axes"]["seed"]) for c in clips) == [(3.0, 7), (3.0, 8), (5.0, 7), (5.0, 8)]
    assert all(c["cfg"] == c["axes"]["cfg"] for c in clips)
    code, out, _ = run(capsys, "gallery", "list", "--sweep", clips[0]["sweep"], "--json", "--data-dir", tmp_path)
    assert code == 0 and len(json.loads(out)) == 4


@pytest.mark.parametrize("vary, words", [
    ("zoom=1,2", "'zoom' is not an axis"),
    ("cfg=3,abc", "cfg='abc' is not a number"),
    ("steps=0,10", "steps"),
])
def test_a_bad_axis_exits_2_with_one_line_naming_it(tmp_path, capsys, vary, words):
    code, out, err = run(capsys, "generate", "--prompt", "x", *SMALL, "--vary", vary, "--data-dir", tmp_path)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err and "vary" in err, err
    assert not (tmp_path / "clips").exists() or not any((tmp_path / "clips").iterdir())


def test_gallery_list_show_star_tag_note_delete(tmp_path, capsys):
    [a] = generate(capsys, tmp_path, "--seed", "1")
    [b] = generate(capsys, tmp_path, "--seed", "2", "--prompt", "a blue square on gray")
    assert run(capsys, "gallery", "star", a["id"], "--data-dir", tmp_path)[0] == 0
    assert run(capsys, "gallery", "tag", a["id"], "keeper", "red", "--data-dir", tmp_path)[0] == 0
    assert run(capsys, "gallery", "note", a["id"], "the good one", "--data-dir", tmp_path)[0] == 0
    code, out, _ = run(capsys, "gallery", "list", "--starred", "--json", "--data-dir", tmp_path)
    [row] = json.loads(out)
    assert CLIP_KEYS <= row.keys()
    assert row["id"] == a["id"] and row["starred"] and row["tags"] == ["keeper", "red"] and row["note"] == "the good one"
    code, out, _ = run(capsys, "gallery", "list", "--search", "blue", "--json", "--data-dir", tmp_path)
    assert [r["id"] for r in json.loads(out)] == [b["id"]]
    run(capsys, "gallery", "tag", a["id"], "red", "--remove", "--data-dir", tmp_path)
    run(capsys, "gallery", "star", a["id"], "--off", "--data-dir", tmp_path)
    code, out, _ = run(capsys, "gallery", "show", a["id"], "--json", "--data-dir", tmp_path)
    shown = json.loads(out)
    assert shown["tags"] == ["keeper"] and not shown["starred"] and shown["children"] == []
    code, _, err = run(capsys, "gallery", "show", "nope", "--data-dir", tmp_path)
    assert code == 2 and "no clip 'nope'" in err
    assert run(capsys, "gallery", "delete", b["id"], "--data-dir", tmp_path)[0] == 0
    assert not Path(b["path"]).exists()
    code, out, _ = run(capsys, "gallery", "list", "--json", "--data-dir", tmp_path)
    assert [r["id"] for r in json.loads(out)] == [a["id"]]


def test_extend_and_branches_record_their_parent(tmp_path, capsys):
    [root] = generate(capsys, tmp_path, "--seed", "3")
    [ext] = generate(capsys, tmp_path, "--mode", "extend", "--clip", root["id"], "--seed", "4")
    assert ext["mode"] == "extend" and ext["parent"] == root["id"]
    [restyled] = generate(capsys, tmp_path, "--mode", "v2v", "--clip", ext["id"], "--strength", "0.5")
    assert restyled["parent"] == ext["id"] and restyled["inputs"]["video"]["path"].startswith("inputs/")
    [animated] = generate(capsys, tmp_path, "--mode", "i2v", "--clip", root["id"], "--frame", "2")
    assert animated["parent"] == root["id"]
    code, out, _ = run(capsys, "gallery", "show", root["id"], "--json", "--data-dir", tmp_path)
    assert sorted(json.loads(out)["children"]) == sorted([ext["id"], animated["id"]])
    code, _, err = run(capsys, "generate", "--prompt", "x", *SMALL, "--mode", "i2v", "--clip", root["id"], "--frame",
                       "99", "--data-dir", tmp_path)
    assert code == 2 and "frame" in err and "outside" in err
    code, _, err = run(capsys, "generate", "--prompt", "x", *SMALL, "--clip", root["id"], "--data-dir", tmp_path)
    assert code == 2 and "--clip is not used by --mode t2v" in err


def test_export_import_round_trip_keeps_everything_and_adds_nothing_twice(tmp_path, capsys):
    src, dst = tmp_path / "a", tmp_path / "b"
    [root] = generate(capsys, src, "--seed", "5")
    [child] = generate(capsys, src, "--mode", "extend", "--clip", root["id"])
    run(capsys, "gallery", "star", root["id"], "--data-dir", src)
    run(capsys, "gallery", "tag", child["id"], "ending", "--data-dir", src)
    run(capsys, "gallery", "note", child["id"], "use this", "--data-dir", src)
    archive = tmp_path / "out.zip"
    code, out, err = run(capsys, "gallery", "export", root["id"], child["id"], "--out", archive, "--data-dir", src)
    assert code == 0 and archive.is_file(), err
    for expected in ("imported 2 clip(s), 0 already here", "imported 0 clip(s), 2 already here"):
        code, out, err = run(capsys, "gallery", "import", archive, "--data-dir", dst)
        assert code == 0 and expected in out, err
    before = {r["id"]: r for r in json.loads(run(capsys, "gallery", "list", "--json", "--data-dir", src)[1])}
    after = {r["id"]: r for r in json.loads(run(capsys, "gallery", "list", "--json", "--data-dir", dst)[1])}
    assert before.keys() == after.keys()
    for clip_id, row in before.items():
        other = after[clip_id]
        assert Path(other["path"]).read_bytes() == Path(row["path"]).read_bytes()
        assert {k: v for k, v in other.items() if k != "path"} == {k: v for k, v in row.items() if k != "path"}
    assert after[child["id"]]["parent"] == root["id"] and after[root["id"]]["starred"]
    code, _, err = run(capsys, "gallery", "import", tmp_path / "missing.zip", "--data-dir", dst)
    assert code == 2 and "not a zip" in err


def test_recall_reads_the_recipe_from_a_renamed_mp4(tmp_path, capsys):
    [clip] = generate(capsys, tmp_path / "data", "--seed", "9", "--cfg", "4.5")
    moved = tmp_path / "downloaded again.mp4"
    shutil.copyfile(clip["path"], moved)
    code, out, err = run(capsys, "recall", moved, "--json")
    assert code == 0, err
    recipe = json.loads(out)
    for key in ("prompt", "seed", "mode", "model", "cfg", "steps", "frames", "fps", "width", "height"):
        assert recipe[key] == clip[key], key
    assert recipe["id"] == clip["id"]
    not_ours = tmp_path / "other.mp4"
    from studio.media.video import write_mp4
    import numpy as np

    write_mp4(np.zeros((2, 16, 16, 3), np.uint8), 8, not_ours, {})
    code, _, err = run(capsys, "recall", not_ours)
    assert code == 2 and "carries no recipe" in err


def test_an_out_path_that_cannot_be_written_is_refused_before_generating(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run(capsys, "generate", "--prompt", "x", *SMALL, "--out", blocker / "sub" / "clip.mp4",
                       "--data-dir", tmp_path / "data")
    assert code == 2 and "out: cannot write" in err and "not a folder" in err
    assert not (tmp_path / "data" / "clips").exists() or not any((tmp_path / "data" / "clips").iterdir())
