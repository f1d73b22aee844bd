"""LoRAs on the tiny Wan, LTX and CogVideoX pipelines: tiny random LoRAs built in code (PEFT layout,
`save_lora_weights`), applied by the backend with a weight, stacked, unloaded between jobs, refused when
they do not fit; and through the job service: pinned (file name, sha256, weight) in the recipe, recalled."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from pipelines.contract import LoraRef, RequestError, TextToVideoRequest, parse_lora, request_from_params
from pipelines.contract.loras import describe, read_shapes
from pipelines.diffusers import local_model_resolver
from tests.support.tiny_diffusers import SIZE, TINY, build_tiny_kind
from tests.support.tiny_loras import make_lora

torch.set_num_threads(1)

KINDS = ["wan-t2v", "ltx", "cogvideox-t2v"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """kind -> (folder, entry, backend, {lora name: path}) built once per module."""
    root = tmp_path_factory.mktemp("tiny-loras")
    made: dict = {}

    def get(kind: str):
        if kind not in made:
            folder = build_tiny_kind(kind, root / kind)
            entry = local_model_resolver(str(folder))
            backend = entry.load("cpu", None)
            loras = {
                "a": make_lora(backend.pipeline, root / "loras" / kind / "a.safetensors", seed=1),
                "b": make_lora(backend.pipeline, root / "loras" / kind / "b.safetensors", seed=2),
                "wide": make_lora(backend.pipeline, root / "loras" / kind / "wide.safetensors", seed=3, widen=3),
            }
            made[kind] = (folder, entry, backend, loras)
        return made[kind]

    yield get
    for _, _, backend, _ in made.values():
        backend.unload()


def _request(kind: str, loras=()) -> TextToVideoRequest:
    return TextToVideoRequest(prompt="a red ball moves left", width=SIZE, height=SIZE, frames=TINY[kind].frames,
                              steps=2, cfg_scale=2.0, fps=8, seed=1, model_id="tiny", loras=loras)


def _run(backend, request) -> np.ndarray:
    from pipelines.contract import MediaInputs

    g = torch.Generator().manual_seed(request.seed)
    return backend.generate(request, MediaInputs(), g, lambda *a: None, lambda: False)


def _ref(path, weight: float) -> LoraRef:
    return LoraRef(name=path.name, weight=weight, path=str(path), sha256=path.stem)


@pytest.mark.parametrize("kind", KINDS)
def test_lora_changes_the_clip_weight_zero_is_the_base_and_two_stack(tiny, kind):
    _, _, backend, loras = tiny(kind)
    base = _run(backend, _request(kind))
    a = _run(backend, _request(kind, (_ref(loras["a"], 1.0),)))
    b = _run(backend, _request(kind, (_ref(loras["b"], 1.0),)))
    zero = _run(backend, _request(kind, (_ref(loras["a"], 0.0),)))
    both = _run(backend, _request(kind, (_ref(loras["a"], 1.0), _ref(loras["b"], 1.0))))
    assert not np.array_equal(a, base)
    assert np.array_equal(zero, base), "weight 0 gives the base output exactly"
    assert not np.array_equal(both, a) and not np.array_equal(both, b) and not np.array_equal(a, b)
    assert [x["name"] for x in backend.manifest()["last_run"]["loras"]] == ["a.safetensors", "b.safetensors"]
    # the next job without LoRAs gets the base model back: nothing leaks between jobs
    assert np.array_equal(_run(backend, _request(kind)), base)
    assert backend.manifest()["last_run"]["loras"] == []
    # replaced: a after b gives a's clip, not a stack
    _run(backend, _request(kind, (_ref(loras["b"], 1.0),)))
    assert np.array_equal(_run(backend, _request(kind, (_ref(loras["a"], 1.0),))), a)


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_shape_lora_is_refused_naming_lora_and_model(tiny, kind):
    folder, entry, backend, loras = tiny(kind)
    assert entry.check_lora("a.safetensors", str(loras["a"])) is None
    why = entry.check_lora("wide.safetensors", str(loras["wide"]))
    assert why and "wide.safetensors" in why and str(folder) in why
    # loaded anyway (no pre-check), the backend refuses it too and stays usable
    with pytest.raises(ValueError, match="wide.safetensors"):
        _run(backend, _request(kind, (_ref(loras["wide"], 1.0),)))
    assert np.array_equal(_run(backend, _request(kind)), _run(backend, _request(kind)))


def test_a_lora_of_another_family_is_refused(tiny):
    _, wan_entry, _, _ = tiny("wan-t2v")
    _, _, _, ltx_loras = tiny("ltx")
    why = wan_entry.check_lora("ltx-a", str(ltx_loras["a"]))
    assert why and "ltx-a" in why and "wan" in why


def test_family_guess_and_rank_from_the_keys(tiny):
    _, _, _, wan = tiny("wan-t2v")
    assert describe(read_shapes(wan["a"])) == {"family": "wan", "rank": 2, "tensors": 16}


def test_request_loras_are_validated_and_round_trip():
    r = TextToVideoRequest(prompt="x", loras=[("style", 0.5), "detail:-1.5"])
    assert r.loras == (LoraRef("style", 0.5), LoraRef("detail", -1.5))
    assert parse_lora("/p/x.safetensors") == LoraRef("/p/x.safetensors", 1.0)
    assert request_from_params(r.to_params()) == r
    from pipelines.contract.spec import ModelDefaults, ModelSpec

    spec = ModelSpec("m", "1", "M", "wan", ("t2v",), ModelDefaults(2, 5.0, 5, 8, 32, 32))
    for bad, why in [((("a", float("nan")),), "not a number"), ((("a", 5.0),), "outside -4 to 4"),
                     ((("a", 1.0), ("a", 2.0)), "twice"), ((("", 1.0),), "not a LoRA name")]:
        with pytest.raises(RequestError, match=why):
            dataclasses.replace(r, loras=bad).resolve(spec, 1).validate(spec)


# ---- through the job service ---------------------------------------------------------------------------
@pytest.fixture
def lora_studio(settings, tiny, monkeypatch, tmp_path):
    from studio.wiring import build_studio

    folder, _, _, loras = tiny("wan-t2v")
    lib = tmp_path / "lora-folder"
    lib.mkdir()
    for name in ("a", "b", "wide"):
        (lib / f"{name}.safetensors").write_bytes(loras[name].read_bytes())
    monkeypatch.setenv("STUDIO_LORA_DIR", str(lib))
    s = build_studio(settings)
    yield s, str(folder), lib
    s.close()


def test_job_records_each_lora_and_recall_reproduces(lora_studio):
    s, model, lib = lora_studio
    req = dataclasses.replace(_request("wan-t2v", (("a", 0.8), ("b.safetensors", 0.5))), model_id=model)
    [st] = s.jobs.wait(s.jobs.submit(req).job_ids, timeout=120)
    assert st.status == "done", st.error
    clip = s.gallery.get(st.clip_id)
    import hashlib

    recorded = [{k: x[k] for k in ("name", "sha256", "weight")} for x in clip.params["loras"]]
    assert recorded == [
        {"name": "a.safetensors", "sha256": hashlib.sha256((lib / "a.safetensors").read_bytes()).hexdigest(),
         "weight": 0.8},
        {"name": "b.safetensors", "sha256": hashlib.sha256((lib / "b.safetensors").read_bytes()).hexdigest(),
         "weight": 0.5},
    ]
    again = s.gallery.recall(st.clip_id)
    [st2] = s.jobs.wait(s.jobs.submit(again).job_ids, timeout=120)
    assert st2.status == "done", st2.error
    from studio.media.video import read_video

    one, _ = read_video(s.gallery.get(st.clip_id).video, s.media.limits)
    two, _ = read_video(s.gallery.get(st2.clip_id).video, s.media.limits)
    assert np.array_equal(one, two)
    # a file changed since: recall refuses rather than silently differ
    (lib / "a.safetensors").write_bytes((lib / "b.safetensors").read_bytes())
    with pytest.raises(RequestError, match="changed"):
        s.jobs.submit(again)


def test_wrong_shape_or_unknown_lora_is_refused_before_the_job_runs(lora_studio):
    s, model, _ = lora_studio
    with pytest.raises(RequestError) as err:
        s.jobs.submit(dataclasses.replace(_request("wan-t2v", (("wide", 1.0),)), model_id=model))
    assert err.value.field == "loras" and "wide.safetensors" in str(err.value) and model in str(err.value)
    with pytest.raises(RequestError, match="no LoRA 'nope'.*a.safetensors"):
        s.jobs.submit(dataclasses.replace(_request("wan-t2v", (("nope", 1.0),)), model_id=model))


def test_the_embedded_model_refuses_loras(lora_studio):
    s, _, _ = lora_studio
    with pytest.raises(RequestError, match="does not take LoRAs"):
        s.jobs.submit(TextToVideoRequest(prompt="a red circle", model_id="embedded-shapes", loras=(("a", 1.0),)))


# ---- the CLI ---------------------------------------------------------------------------------------------
def _cli(*args, data_dir, lora_dir):
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "OMP_NUM_THREADS": "1", "STUDIO_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "STUDIO_LORA_DIR": str(lora_dir)}
    return subprocess.run([sys.executable, "-m", "studio.cli", *args, "--data-dir", str(data_dir)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[2], env=env, timeout=300)


def test_cli_generate_with_loras_and_loras_list(tiny, tmp_path):
    import hashlib
    import json

    folder, _, _, loras = tiny("wan-t2v")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.safetensors").write_bytes(loras["a"].read_bytes())
    listed = _cli("loras", "list", "--json", data_dir=tmp_path / "data", lora_dir=lib)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["name"] == "a.safetensors" and row["family"] == "wan" and row["rank"] == 2 and row["size"] > 0
    text = _cli("loras", "list", data_dir=tmp_path / "data", lora_dir=lib)
    assert "a.safetensors" in text.stdout and "wan" in text.stdout

    out = _cli("generate", "--model", str(folder), "--prompt", "a red ball", "--steps", "2", "--frames", "5",
               "--width", "32", "--height", "32", "--seed", "1", "--lora", "a:0.7", "--lora", f"{loras['b']}:-0.5",
               "--json", data_dir=tmp_path / "data", lora_dir=lib)
    assert out.returncode == 0, out.stderr
    [clip] = json.loads(out.stdout)
    assert clip["loras"] == [
        {"name": "a.safetensors", "sha256": hashlib.sha256(loras["a"].read_bytes()).hexdigest(), "weight": 0.7},
        {"name": str(loras["b"]), "sha256": hashlib.sha256(loras["b"].read_bytes()).hexdigest(), "weight": -0.5},
    ]
    bad = _cli("generate", "--model", str(folder), "--prompt", "x", "--lora", "a:9", data_dir=tmp_path / "data",
               lora_dir=lib)
    assert bad.returncode == 2 and "outside -4 to 4" in bad.stderr


def test_sweep_axis_lora_weight_varies_the_first_loras_weight():
    from pipelines.contract import SweepRequest, parse_axis

    req = TextToVideoRequest(prompt="x", loras=(("a", 1.0), ("b", 0.5)))
    sweep = SweepRequest(req, 1, (parse_axis("lora_weight=0,0.5,1"), parse_axis("cfg=3,5")))
    sweep.validate()
    cells = sweep.cells()
    assert len(cells) == 6 and cells[0].axes == {"lora_weight": 0.0, "cfg": 3.0}
    assert [c.request.loras[0].weight for c in cells[::2]] == [0.0, 0.5, 1.0]
    assert all(c.request.loras[1] == LoraRef("b", 0.5) for c in cells)
    with pytest.raises(RequestError, match="no LoRA"):
        SweepRequest(TextToVideoRequest(prompt="x"), 1, (parse_axis("lora_weight=0,1"),)).validate()


def test_lora_weight_sweep_through_the_job_service(lora_studio):
    from pipelines.contract import SweepRequest, parse_axis

    s, model, _ = lora_studio
    req = dataclasses.replace(_request("wan-t2v", (("a", 1.0),)), model_id=model)
    with pytest.raises(RequestError, match="lora_weight=9.0"):
        s.jobs.submit_sweep(SweepRequest(req, 1, (parse_axis("lora_weight=0,9"),)))
    sub = s.jobs.submit_sweep(SweepRequest(req, 1, (parse_axis("lora_weight=0,1"),)))
    statuses = s.jobs.wait(sub.job_ids, timeout=120)
    assert all(st.status == "done" for st in statuses), [st.error for st in statuses]
    weights = [s.gallery.get(st.clip_id).params["loras"][0]["weight"] for st in statuses]
    assert weights == [0.0, 1.0]


def test_ui_widgets_make_and_recall_loras():
    from studio.ui.widgets import loras_from_widgets, request_from_widgets, widgets_from_request

    assert loras_from_widgets(["a.safetensors", "b:0.25"], 0.5) == (LoraRef("a.safetensors", 0.5), LoraRef("b", 0.25))
    assert loras_from_widgets("a, b:2") == (LoraRef("a", 1.0), LoraRef("b", 2.0))
    with pytest.raises(RequestError, match="LoRA folder"):
        loras_from_widgets(["../x.safetensors"])
    req = request_from_widgets("t2v", {"prompt": "x", "loras": ["a:0.5"], "lora_weight": 1.0})
    values = widgets_from_request(dataclasses.replace(req, loras=(LoraRef("/p/q/a.safetensors", 0.5),)))
    assert values["loras"] == ["a.safetensors:0.5"] and values["lora_weight"] == 1.0
    assert request_from_widgets("t2v", values).loras == (LoraRef("a.safetensors", 0.5),)


def test_generation_tabs_offer_the_folder_loras(studio, settings):
    import gradio as gr

    from studio.ui.app import build_ui

    folder = settings.data_dir / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "style.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    blocks = build_ui(studio.facade)
    pickers = {b.elem_id: b for b in blocks.blocks.values() if isinstance(b, gr.Dropdown)
               and (b.elem_id or "").endswith("-loras")}
    assert set(pickers) == {"t2v-loras", "i2v-loras", "v2v-loras", "inpaint-loras"}
    assert [c[0] for c in pickers["t2v-loras"].choices] == ["style.safetensors"]


def test_a_sidecar_recommends_steps_and_cfg(studio, settings):
    import json

    folder = settings.data_dir / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "turbo.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    (folder / "turbo.json").write_text(json.dumps({"steps": 8, "cfg": 1.0, "note": "distilled"}))
    (folder / "plain.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    f = studio.facade
    assert f.lora_recommended(["plain.safetensors", "turbo.safetensors:0.8"]) == ("turbo.safetensors",
                                                                                 {"steps": 8, "cfg": 1.0})
    assert f.lora_recommended(["plain.safetensors"]) == ("", {})
    rows = {r["name"]: r for r in f.loras()}
    assert rows["turbo.safetensors"]["recommended"] == {"steps": 8, "cfg": 1.0}
    assert rows["plain.safetensors"]["recommended"] == {}


def test_a_fusing_profile_merges_the_loras_and_unmerges_for_the_next_job(tiny):
    """The "compiled" profile (no compiling on a CPU) fuses: the same clip as the unfused LoRA, the LoRA
    layers merged; the same LoRAs again reuse the merge; other weights or none unmerge first."""
    folder, entry, plain, loras = tiny("wan-t2v")
    refs = (_ref(loras["a"], 0.8), _ref(loras["b"], -0.5))
    unfused = _run(plain, _request("wan-t2v", refs)).astype(np.float32)
    unfused_b = _run(plain, _request("wan-t2v", (_ref(loras["b"], 1.0),))).astype(np.float32)
    base = _run(plain, _request("wan-t2v")).astype(np.float32)
    assert np.abs(unfused - base).max() > 8 and np.abs(unfused_b - unfused).max() > 8  # the LoRAs matter
    fused = entry.load("cpu", "compiled")
    try:
        assert fused.settings["fuse_loras"] is True
        one = _run(fused, _request("wan-t2v", refs)).astype(np.float32)
        merged = [m for m in fused.pipeline.transformer.modules() if getattr(m, "merged_adapters", None)]
        assert merged and fused.manifest()["last_run"]["loras_fused"] is True
        assert np.abs(one - unfused).max() <= 1.0  # fp32 merge: the same clip, up to a rounding step
        weights = {n: p.detach().clone() for n, p in fused.pipeline.transformer.named_parameters()}
        again = _run(fused, _request("wan-t2v", refs)).astype(np.float32)  # reuses the merge
        assert np.array_equal(again, one)
        assert all(torch.equal(weights[n], p) for n, p in fused.pipeline.transformer.named_parameters())
        other = _run(fused, _request("wan-t2v", (_ref(loras["b"], 1.0),))).astype(np.float32)
        assert np.abs(other - unfused_b).max() <= 1.0
        none = _run(fused, _request("wan-t2v")).astype(np.float32)
        assert np.abs(none - base).max() <= 1.0 and fused.manifest()["last_run"]["loras_fused"] is False
    finally:
        fused.unload()
