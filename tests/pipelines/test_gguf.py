"""GGUF-quantized transformers on the CPU: a tiny Wan transformer written to GGUF in code (Q8_0, Q4_0; the
original Wan tensor names, as published files have them), loaded as `<catalog id>@<file>` with the rest of
the pipeline from the model's folder, generating close to the unquantized model; files for another family
or size refused before loading; recorded in the manifest; through the job service and the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from pipelines.contract import (MediaInputs, ModelLoadError, ModelRegistry, RequestError, TextToVideoRequest,
                                UnknownModel)
from pipelines.diffusers import catalog_entries, gguf_resolver
from tests.support.tiny_diffusers import SIZE, build_tiny_pipe
from tests.support.tiny_gguf import build_wide_wan_folder, wide_wan_transformer, write_gguf

torch.set_num_threads(1)

BASE = "wan2.1-t2v-1.3b"
REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(base folder, GGUF folder): the folder's own transformer written as Q8_0 and Q4_0, plus misfits."""
    root = tmp_path_factory.mktemp("gguf")
    folder = build_wide_wan_folder(root / "wan")
    ggufs = root / "gguf"
    from diffusers import WanTransformer3DModel

    own = WanTransformer3DModel.from_pretrained(folder / "transformer")
    write_gguf(own, ggufs / f"{BASE}-tiny-Q8_0.gguf", "Q8_0")
    write_gguf(own, ggufs / f"{BASE}-tiny-Q4_0.gguf", "Q4_0")
    write_gguf(own, ggufs / "diffusers-names-Q8_0.gguf", "Q8_0", original_names=False)
    write_gguf(wide_wan_transformer(head_dim=32), ggufs / "bigger-Q8_0.gguf", "Q8_0")  # another size
    ltx = build_tiny_pipe("ltx").transformer
    write_gguf(ltx, ggufs / "ltx-Q8_0.gguf", "Q8_0", original_names=False, architecture="ltxv")  # another family
    (ggufs / "not-really.gguf").write_bytes(b"<html>not a gguf file</html>")
    return folder, ggufs


def _entries(made):
    folder, ggufs = made
    return catalog_entries(local_dirs={BASE: folder}, gguf_dir=ggufs)


def _request(model_id: str, size: int = SIZE) -> TextToVideoRequest:
    return TextToVideoRequest(prompt="a red ball moves left", width=size, height=size, frames=5, steps=3,
                              cfg_scale=2.0, fps=8, seed=3, model_id=model_id)


CATALOG_SIZE = 256  # the smallest the catalog's Wan entries take (the tiny VAE does any multiple of 8)


def _run(backend, model_id: str) -> np.ndarray:
    g = torch.Generator().manual_seed(3)
    return backend.generate(_request(model_id), MediaInputs(), g, lambda *a: None, lambda: False)


@pytest.fixture(scope="module")
def base_frames(made):
    backend = _entries(made)[BASE].load("cpu", None)
    try:
        return _run(backend, BASE).astype(np.float32)
    finally:
        backend.unload()


@pytest.mark.parametrize("qtype,bound", [("Q8_0", 0.05), ("Q4_0", 2.0)])  # measured 0.0004, 0.27
def test_a_gguf_transformer_loads_quantized_and_generates_close_to_the_base(made, base_frames, qtype, bound):
    from diffusers.quantizers.gguf.utils import GGUFParameter

    entries = _entries(made)
    model_id = f"{BASE}@{BASE}-tiny-{qtype}.gguf"
    assert model_id in entries  # listed: the file name starts with a catalog id
    assert entries[model_id].spec.label.endswith(f"({qtype})") and entries[model_id].missing() is None
    backend = entries[model_id].load("cpu", None)
    try:
        q = backend.pipeline.transformer.blocks[0].attn1.to_q.weight
        assert isinstance(q, GGUFParameter) and q.dtype == torch.uint8  # held quantized, dequantized per layer
        frames = _run(backend, model_id).astype(np.float32)
        manifest = backend.manifest()["transformer_file"]
    finally:
        backend.unload()
    assert frames.shape == base_frames.shape
    diff = np.abs(frames - base_frames).mean()
    assert 0 < diff < bound, diff  # quantized (not the base's weights), yet the same clip
    path = made[1] / f"{BASE}-tiny-{qtype}.gguf"
    assert manifest["file"] == path.name and manifest["quantization"] == qtype
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["types"][qtype] > 20 and manifest["types"]["F32"] > 0


def test_a_gguf_file_in_diffusers_names_loads_too(made, base_frames):
    registry = ModelRegistry(_entries(made), resolvers=[gguf_resolver(made[1], local_dirs={BASE: made[0]})])
    backend = registry.load(f"{BASE}@diffusers-names-Q8_0.gguf")
    try:
        assert np.abs(_run(backend, BASE).astype(np.float32) - base_frames).mean() < 2.0
    finally:
        registry.unload()


def test_files_for_another_size_or_family_or_no_gguf_are_refused_naming_both(made):
    registry = ModelRegistry(_entries(made), resolvers=[gguf_resolver(made[1], local_dirs={BASE: made[0]})])
    with pytest.raises(ModelLoadError, match=r"bigger-Q8_0.gguf was made for a transformer of another size: .* is "
                                             r"\[[\d, ]+\] in the file and \[[\d, ]+\] in Wan 2.1 T2V 1.3B"):
        registry.load(f"{BASE}@bigger-Q8_0.gguf")
    with pytest.raises(ModelLoadError, match=r"ltx-Q8_0.gguf is not a (WanTransformer3DModel checkpoint for|"
                                             r"transformer of) Wan 2.1 T2V 1.3B"):
        registry.load(f"{BASE}@ltx-Q8_0.gguf")
    with pytest.raises(ModelLoadError, match="not-really.gguf is not a readable GGUF file"):
        registry.load(f"{BASE}@not-really.gguf")
    # ids that name no file of the folder, or no model that takes GGUF
    with pytest.raises(ModelLoadError, match="no GGUF file nope.gguf in the GGUF folder"):
        registry.entry(f"{BASE}@nope.gguf")
    with pytest.raises(ModelLoadError, match="not a catalog model"):
        registry.entry(f"no-such-model@{BASE}-tiny-Q8_0.gguf")
    with pytest.raises(ModelLoadError, match="cannot take a GGUF transformer"):
        registry.entry(f"svd-xt@{BASE}-tiny-Q8_0.gguf")
    for escape in (f"{BASE}@../gguf/{BASE}-tiny-Q8_0.gguf", f"{BASE}@{made[1]}/{BASE}-tiny-Q8_0.gguf",
                   f"{BASE}@/etc/passwd"):
        with pytest.raises(UnknownModel):  # never a path: only names in the folder
            registry.entry(escape)


# ---- through the job service and the CLI -----------------------------------------------------------------
def _fake_hf_cache(root: Path, folder: Path) -> None:
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + REPO.replace("/", "--"))
    shutil.copytree(folder, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


def test_the_job_records_the_gguf_model_and_recall_reproduces(made, settings, monkeypatch, tmp_path):
    from huggingface_hub import constants

    from studio.media.video import read_video
    from studio.wiring import build_studio

    _fake_hf_cache(tmp_path / "hf", made[0])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    ggufs = tmp_path / "gguf"  # its own folder: this test changes a file
    ggufs.mkdir()
    q8 = ggufs / f"{BASE}-tiny-Q8_0.gguf"
    q8.write_bytes((made[1] / q8.name).read_bytes())
    monkeypatch.setenv("STUDIO_GGUF_DIR", str(ggufs))
    s = build_studio(settings)
    try:
        model_id = f"{BASE}@{BASE}-tiny-Q8_0.gguf"
        assert model_id in [spec.id for spec in s.registry.specs()]  # offered in the UI's model list
        [st] = s.jobs.wait(s.jobs.submit(_request(model_id, CATALOG_SIZE)).job_ids, timeout=120)
        assert st.status == "done", st.error
        clip = s.gallery.get(st.clip_id)
        assert clip.model_id == model_id
        recorded = clip.manifest["transformer_file"]
        assert recorded["quantization"] == "Q8_0" and recorded["file"] == f"{BASE}-tiny-Q8_0.gguf"
        [st2] = s.jobs.wait(s.jobs.submit(s.gallery.recall(st.clip_id)).job_ids, timeout=120)
        assert st2.status == "done", st2.error
        one, _ = read_video(clip.video, s.media.limits)
        two, _ = read_video(s.gallery.get(st2.clip_id).video, s.media.limits)
        assert np.array_equal(one, two)
        # the file's sha256 is in the recipe; a recall after the file changed is refused, nothing queued
        assert clip.params["transformer_sha256"] == hashlib.sha256(q8.read_bytes()).hexdigest()
        q8.write_bytes((made[1] / f"{BASE}-tiny-Q4_0.gguf").read_bytes())
        before = len(s.gallery.list()), _job_count(s)
        with pytest.raises(RequestError, match="has changed since the clip was made") as e:
            s.jobs.submit(s.gallery.recall(st.clip_id))
        assert e.value.field == "model_id" and q8.name in str(e.value)
        assert (len(s.gallery.list()), _job_count(s)) == before  # nothing queued, nothing lost
        with pytest.raises(RequestError, match="no transformer file to check"):  # a sha for a model without one
            s.jobs.submit(dataclasses.replace(s.gallery.recall(st.clip_id), model_id=BASE))
    finally:
        s.close()


def _job_count(studio) -> int:
    from sqlalchemy import func, select

    from storage.models import Job

    with studio.jobs._session_factory() as session:
        return session.scalar(select(func.count()).select_from(Job))


def test_loading_reloads_a_changed_file_and_refuses_one_a_request_was_not_made_for(made, tmp_path):
    """The registry keys a loaded GGUF model on its file's sha256: a replaced file is loaded afresh, never
    served from memory under the new pin; a job whose pin no longer matches the file fails at load."""
    folder, _ = made
    ggufs = tmp_path / "gguf"
    ggufs.mkdir()
    f = ggufs / f"{BASE}-tiny-Q8_0.gguf"
    f.write_bytes((made[1] / f.name).read_bytes())
    model_id = f"{BASE}@{f.name}"
    registry = ModelRegistry(catalog_entries(local_dirs={BASE: folder}, gguf_dir=ggufs))
    pin = registry.weights_sha256(model_id)
    assert pin == hashlib.sha256(f.read_bytes()).hexdigest() and registry.weights_sha256(BASE) is None
    first = registry.load(model_id, None, pin)
    assert registry.load(model_id, None, pin) is first  # unchanged file: the loaded backend is kept
    f.write_bytes((made[1] / f"{BASE}-tiny-Q4_0.gguf").read_bytes())
    with pytest.raises(ModelLoadError, match="changed after the job was queued"):
        registry.load(model_id, None, pin)
    again = registry.load(model_id, None, registry.weights_sha256(model_id))
    assert again is not first
    assert again.manifest()["transformer_file"]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest() != pin
    registry.unload()


def _cli(*args, data_dir: Path, hf: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STUDIO_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(hf)}
    env.pop("STUDIO_GGUF_DIR", None)
    return subprocess.run([sys.executable, "-m", "studio.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], env=env,
                          timeout=300)


def test_cli_generate_with_a_transformer_file(made, tmp_path):
    _fake_hf_cache(tmp_path / "hf", made[0])
    outside = tmp_path / "downloads" / "my-wan-Q4_0.gguf"
    outside.parent.mkdir()
    outside.write_bytes((made[1] / f"{BASE}-tiny-Q4_0.gguf").read_bytes())
    data = tmp_path / "data"
    out = _cli("generate", "--model", BASE, "--transformer-file", str(outside), "--prompt", "a red ball",
               "--steps", "2", "--frames", "5", "--width", "256", "--height", "256", "--seed", "1", "--json",
               data_dir=data, hf=tmp_path / "hf")
    assert out.returncode == 0, out.stderr
    [clip] = json.loads(out.stdout)
    assert clip["model"] == f"{BASE}@my-wan-Q4_0.gguf"
    linked = data / "gguf" / "my-wan-Q4_0.gguf"
    assert linked.is_symlink() and linked.resolve() == outside.resolve() and "linked" in out.stderr
    again = _cli("generate", "--model", BASE, "--transformer-file", "my-wan-Q4_0.gguf", "--prompt", "a red ball",
                 "--steps", "2", "--frames", "5", "--width", "256", "--height", "256", "--seed", "1", "--json",
                 data_dir=data, hf=tmp_path / "hf")  # a name in the folder
    assert again.returncode == 0, again.stderr
    bad = _cli("generate", "--transformer-file", str(outside), "--prompt", "x", data_dir=data, hf=tmp_path / "hf")
    assert bad.returncode == 2 and "--transformer-file needs --model" in bad.stderr
    other = tmp_path / "elsewhere" / "my-wan-Q4_0.gguf"
    other.parent.mkdir()
    other.write_bytes(b"GGUF")
    clash = _cli("generate", "--model", BASE, "--transformer-file", str(other), "--prompt", "x", data_dir=data,
                 hf=tmp_path / "hf")
    assert clash.returncode == 2 and "another my-wan-Q4_0.gguf is already in the GGUF folder" in clash.stderr


def test_gguf_files_are_recorded_per_request_model_in_a_sweep(made):
    """The model axis takes GGUF variants like any id: a base-vs-Q8-vs-Q4 sweep."""
    from pipelines.contract import SweepRequest, parse_axis

    sweep = SweepRequest(_request(BASE), 1, (parse_axis(f"model={BASE},{BASE}@{BASE}-tiny-Q8_0.gguf"),))
    sweep.validate()
    assert [c.request.model_id for c in sweep.cells()] == [BASE, f"{BASE}@{BASE}-tiny-Q8_0.gguf"]
    # a recalled request's transformer pin stays with its own model only
    q8, q4 = f"{BASE}@{BASE}-tiny-Q8_0.gguf", f"{BASE}@{BASE}-tiny-Q4_0.gguf"
    recalled = dataclasses.replace(_request(q8), transformer_sha256="ab" * 32)
    cells = SweepRequest(recalled, 1, (parse_axis(f"model={BASE},{q8},{q4}"),)).cells()
    assert [c.request.transformer_sha256 for c in cells] == [None, "ab" * 32, None]


def test_a_lora_applies_on_a_gguf_transformer(made, tmp_path):
    """The speed-LoRA-on-a-quantized-14B case: PEFT wraps the GGUF layers; the LoRA changes the clip as it
    does on the unquantized model (to under a level on average) and is never fused into quantized blocks."""
    from pipelines.contract import LoraRef
    from tests.support.tiny_loras import make_lora

    entries = _entries(made)
    plain = entries[BASE].load("cpu", None)
    try:
        lora = make_lora(plain.pipeline, tmp_path / "l.safetensors", seed=1)
        ref = (LoraRef(name="l", weight=1.0, path=str(lora), sha256="l"),)
        with_lora = _run_request(plain, _request(BASE), ref)
        without = _run_request(plain, _request(BASE), ())
    finally:
        plain.unload()
    quant = entries[f"{BASE}@{BASE}-tiny-Q8_0.gguf"].load("cpu", "compiled")  # a fusing profile
    try:
        q_with = _run_request(quant, _request(BASE), ref)
        assert quant.manifest()["last_run"]["loras_fused"] is False and quant.settings["fuse_loras"] is False
    finally:
        quant.unload()
    assert np.abs(with_lora - without).mean() > 0.3  # the LoRA matters
    assert np.abs(q_with - with_lora).mean() < 0.5


def _run_request(backend, request, loras) -> np.ndarray:
    import dataclasses

    g = torch.Generator().manual_seed(3)
    req = dataclasses.replace(request, loras=loras)
    return backend.generate(req, MediaInputs(), g, lambda *a: None, lambda: False).astype(np.float32)
