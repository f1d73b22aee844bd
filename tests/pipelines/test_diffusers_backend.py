"""The diffusers backend, end to end on tiny random pipelines (CPU, no downloads).

Each tiny pipeline is built in code once per session, saved with save_pretrained and loaded
back through the backend's own loading path (local_model_resolver / catalog_entries with a
local folder), then every mode its weights support runs through `generate`. The tests
parametrise over one table, tests.support.tiny_diffusers.TINY (kinds of repo, by family).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil
import tomllib

import numpy as np
import pytest
import torch

from pipelines.contract import MODES, REQUEST_TYPES, Cancelled, MediaInputs, ModelLoadError, OutOfMemory
from pipelines.diffusers import (
    DEFAULT_CATALOG,
    FAMILIES,
    DiffusersBackend,
    catalog_entries,
    local_model_resolver,
    read_catalog,
)
from tests.support.tiny_diffusers import (
    BLEND_KINDS,
    CASES,
    FAMILY_KINDS,
    SIZE,
    TINY,
    build_tiny_kind,
    build_tiny_sd15_and_adapter,
)

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-diffusers")

    def folder(kind: str):
        return build_tiny_kind(kind, root / kind)  # built once, then reused

    return folder


@pytest.fixture(scope="session")
def backends(tiny_dir):
    loaded: dict[str, DiffusersBackend] = {}

    def get(kind: str) -> DiffusersBackend:
        if kind not in loaded:
            entry = local_model_resolver(str(tiny_dir(kind)))
            loaded[kind] = entry.load("cpu", None)
        return loaded[kind]

    yield get
    for b in loaded.values():
        b.unload()


def make_request(mode: str, kind: str, *, seed: int = 1, steps: int = 2, strength: float | None = None, **kw):
    fields = dict(prompt="a red ball moves left", width=SIZE, height=SIZE, frames=TINY[kind].frames, steps=steps,
                  cfg_scale=2.0, fps=8, seed=seed, model_id="tiny")
    if mode == "i2v":
        fields["image"] = "first.png"
    if mode in ("v2v", "inpaint"):
        fields["video"] = "in.mp4"
        fields["strength"] = strength if strength is not None else (0.7 if mode == "v2v" else 1.0)
    if mode == "inpaint":
        fields["mask"] = "mask.png"
    fields.update(kw)
    return REQUEST_TYPES[mode](**fields)


def make_media(kind: str, mask: np.ndarray | None = None) -> MediaInputs:
    f = TINY[kind].frames
    # smooth content (a gradient plus a square), so a VAE round trip is meaningful
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    frame = np.stack([xx * 8, yy * 8, np.full_like(xx, 128)], -1).astype(np.uint8)
    video = np.stack([np.roll(frame, 2 * i, axis=1) for i in range(f)])
    video[:, 8:16, 8:16] = (230, 40, 40)
    if mask is None:
        mask = np.zeros((f, SIZE, SIZE), np.float32)
        mask[:, :, SIZE // 2 :] = 1.0  # regenerate the right half
    return MediaInputs(image=video[0].copy(), video=video, mask=mask)


def run(backend, request, media, *, seed=None, cancel_after=None):
    steps: list[tuple[int, int, object]] = []

    def on_step(step, total, preview):
        steps.append((step, total, preview))

    def should_cancel():
        return cancel_after is not None and len(steps) >= cancel_after

    g = torch.Generator().manual_seed(request.seed if seed is None else seed)
    frames = backend.generate(request, media, g, on_step, should_cancel)
    return frames, steps


# ---- loading -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(TINY))
def test_local_folder_gives_family_and_modes(tiny_dir, kind):
    entry = local_model_resolver(str(tiny_dir(kind)))
    assert entry is not None
    assert entry.spec.family == TINY[kind].family
    assert entry.spec.modes == TINY[kind].modes
    assert entry.spec.profiles, "a local model offers the family's profiles"


def test_resolver_ignores_what_is_not_a_model(tmp_path):
    assert local_model_resolver("embedded-shapes") is None
    assert local_model_resolver(str(tmp_path)) is None  # a folder without model_index.json


def _fake_hf_cache(root, repo: str, folder, commit: str = "0123456789abcdef0123456789abcdef01234567"):
    """The layout huggingface_hub's cache uses: models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    shutil.copytree(folder, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return commit


def test_cached_hub_id_loads_offline_with_its_revision(tiny_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = _fake_hf_cache(tmp_path, "tiny-org/tiny-wan", tiny_dir("wan-t2v"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    entry = local_model_resolver("tiny-org/tiny-wan")
    assert entry.spec.modes == ("t2v", "v2v", "inpaint") and entry.spec.version == "local-" + commit[:12]
    backend = entry.load("cpu", None)
    try:
        frames, _ = run(backend, make_request("t2v", "wan-t2v", model_id="tiny-org/tiny-wan"), make_media("wan-t2v"))
        assert frames.shape == (5, SIZE, SIZE, 3)
        assert backend.manifest()["revision"] == commit
    finally:
        backend.unload()


def test_catalog_model_found_in_the_hf_cache(tiny_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = _fake_hf_cache(tmp_path, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", tiny_dir("wan-t2v"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    backend = catalog_entries()["wan2.1-t2v-1.3b"].load("cpu", None)
    try:
        m = backend.manifest()
        assert m["revision"] == commit and m["repo"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    finally:
        backend.unload()


def test_uncached_hub_id_says_how_to_download():
    with pytest.raises(ModelLoadError) as err:
        local_model_resolver("nobody-here/not-a-cached-model")
    msg = str(err.value)
    assert "model_index.json" in msg
    assert "hf download nobody-here/not-a-cached-model" in msg
    assert "Traceback" not in msg


def test_catalog_model_not_on_disk_says_what_is_missing(tmp_path):
    entry = catalog_entries(models_dir=tmp_path)["wan2.1-t2v-1.3b"]
    with pytest.raises(ModelLoadError) as err:
        entry.load("cpu", None)
    msg = str(err.value)
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in msg
    assert f"hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers --local-dir {tmp_path / 'Wan2.1-T2V-1.3B-Diffusers'}" in msg


def test_incomplete_folder_lists_missing_weights(tiny_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir("wan-t2v"), broken)
    for f in (broken / "transformer").glob("*.safetensors"):
        f.unlink()
    entry = local_model_resolver(str(broken))
    with pytest.raises(ModelLoadError) as err:
        entry.load("cpu", None)
    assert "transformer/ (weights)" in str(err.value)


# ---- every mode of every family ----------------------------------------------------------------------
@pytest.mark.parametrize("kind,mode", CASES)
def test_generate_every_mode(backends, kind, mode):
    backend = backends(kind)
    request = make_request(mode, kind)
    media = make_media(kind)
    frames, steps = run(backend, request, media)
    assert frames.shape == (TINY[kind].frames, SIZE, SIZE, 3)
    assert frames.dtype == np.uint8
    # progress: one call per denoising step, counting up to the total the pipeline runs
    assert steps and [s for s, _, _ in steps] == list(range(1, len(steps) + 1))
    assert steps[-1][0] == steps[-1][1]
    again, _ = run(backend, request, media)
    np.testing.assert_array_equal(frames, again)  # same seed, same frames
    manifest = backend.manifest()
    assert manifest["last_run"]["mode"] == mode


@pytest.mark.parametrize("kind", ["wan-t2v", "ltx", "cogvideox-t2v", "animatediff", "svd"])
def test_seed_changes_the_clip(backends, kind):
    request = make_request(TINY[kind].modes[0], kind)
    a, _ = run(backends(kind), request, make_media(kind), seed=1)
    b, _ = run(backends(kind), request, make_media(kind), seed=2)
    assert not np.array_equal(a, b)


def test_manifest(backends, tiny_dir):
    backend = backends("wan-t2v")
    run(backend, make_request("t2v", "wan-t2v"), make_media("wan-t2v"))
    m = backend.manifest()
    import diffusers
    import transformers

    assert m["backend"] == "diffusers"
    assert m["versions"] == {"diffusers": diffusers.__version__, "torch": torch.__version__,
                             "transformers": transformers.__version__}
    assert m["device"] == "cpu" and m["dtype"] == "float32"
    assert m["folder"] == str(tiny_dir("wan-t2v"))
    assert m["profile"] == backend.spec.profiles[0]
    assert m["settings"]["attention"] == "sdpa"
    assert m["settings"]["offload"] == "none (cpu)"
    assert m["last_run"]["pipeline"] == "WanPipeline"
    assert m["model"] == backend.spec.ref


def test_cancel_between_steps_raises_cancelled(backends):
    backend = backends("wan-t2v")
    request = make_request("t2v", "wan-t2v", steps=4)
    with pytest.raises(Cancelled):
        run(backend, request, make_media("wan-t2v"), cancel_after=1)
    with pytest.raises(Cancelled):  # cancelled before it started
        backend.generate(request, make_media("wan-t2v"), torch.Generator().manual_seed(1),
                         lambda *a: None, lambda: True)
    frames, steps = run(backend, request, make_media("wan-t2v"))  # still usable afterwards
    assert len(steps) == 4 and frames.shape[0] == TINY["wan-t2v"].frames


@pytest.mark.parametrize("kind", ["wan-t2v", "ltx", "cogvideox-t2v", "svd"])  # bcfhw, packed, bfchw
def test_previews_every_few_steps(tiny_dir, kind):
    entry = local_model_resolver(str(tiny_dir(kind)), preview_every=1)
    backend = entry.load("cpu", None)
    _, steps = run(backend, make_request(TINY[kind].modes[0], kind, steps=3), make_media(kind))
    previews = [p for _, _, p in steps]
    assert previews[-1] is None  # the final frames follow at once
    for p in previews[:-1]:
        assert p.shape == (TINY[kind].frames, SIZE, SIZE, 3) and p.dtype == np.uint8
    backend.unload()


def test_missing_shard_is_named(tiny_dir, tmp_path):
    import json

    broken = tmp_path / "sharded"
    shutil.copytree(tiny_dir("wan-t2v"), broken)
    tr = broken / "transformer"
    for f in tr.glob("*.safetensors"):
        f.rename(tr / "diffusion_pytorch_model-00001-of-00002.safetensors")
    weight_map = {"a": "diffusion_pytorch_model-00001-of-00002.safetensors",
                  "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}
    (tr / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ModelLoadError, match="transformer/diffusion_pytorch_model-00002-of-00002.safetensors"):
        local_model_resolver(str(broken)).load("cpu", None)


def test_unsupported_mode_is_refused(backends):
    backend = backends("wan-i2v")
    assert "t2v" not in backend.spec.modes
    with pytest.raises(ValueError, match="cannot do t2v"):
        run(backend, make_request("t2v", "wan-i2v"), make_media("wan-i2v"))


# ---- latent-blend inpainting ---------------------------------------------------------------------------
def _encode_raw(pipe, family, video):
    """The VAE's own encoding of the input (its mode), in the space vae.decode takes."""
    x = torch.from_numpy(video).float().permute(3, 0, 1, 2)[None] / 127.5 - 1.0
    with torch.no_grad():
        if family == "animatediff":
            return pipe.vae.encode(x[0].permute(1, 0, 2, 3)).latent_dist.mode()  # (F, C, h, w)
        return pipe.vae.encode(x).latent_dist.mode()  # (1, C, f, h, w)


def _round_trip(pipe, family, video):
    z = _encode_raw(pipe, family, video)
    with torch.no_grad():
        if family == "animatediff":
            x = pipe.vae.decode(z).sample.permute(1, 0, 2, 3)[None]
        else:
            x = pipe.vae.decode(z).sample
    x = ((x[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)  # (F, H, W, 3)
    return (x.numpy() * 255).round().astype(np.uint8)


def _spy_decode(monkeypatch, pipe):
    seen = []
    original = pipe.vae.decode

    def decode(z, *a, **k):
        seen.append(z.detach().clone())
        return original(z, *a, **k)

    monkeypatch.setattr(pipe.vae, "decode", decode)
    return seen


@pytest.mark.parametrize("kind", BLEND_KINDS)
def test_inpaint_keeps_the_unmasked_latents_exactly(backends, monkeypatch, kind):
    """Provable: every latent the mask does not touch is decoded from the input's own encoding."""
    family = TINY[kind].family
    backend = backends(kind)
    pipe = backend.pipeline_for("inpaint")
    media = make_media(kind)  # right half regenerated
    seen = _spy_decode(monkeypatch, pipe)
    frames, _ = run(backend, make_request("inpaint", kind, steps=3), media)
    decoded = torch.cat(seen)  # animatediff decodes in chunks of frames
    ref = _encode_raw(pipe, family, media.video)
    assert decoded.shape == ref.shape
    half = ref.shape[-1] // 2
    torch.testing.assert_close(decoded[..., :half], ref[..., :half], atol=1e-4, rtol=1e-4)
    assert (decoded[..., half:] - ref[..., half:]).abs().mean() > 1e-2  # the masked half was generated


@pytest.mark.parametrize("kind", BLEND_KINDS)
def test_inpaint_with_nothing_masked_returns_the_vae_round_trip(backends, kind):
    """In pixels: with an empty mask the output is the input through the VAE (all a random VAE can give)."""
    family = TINY[kind].family
    backend = backends(kind)
    media = make_media(kind, mask=np.zeros((TINY[kind].frames, SIZE, SIZE), np.float32))
    frames, _ = run(backend, make_request("inpaint", kind, steps=3), media)
    expected = _round_trip(backend.pipeline_for("inpaint"), family, media.video)
    assert np.abs(frames.astype(int) - expected.astype(int)).max() <= 2


# ---- profiles, catalog, errors -------------------------------------------------------------------------
def test_catalog_entry_with_local_folder_and_fast_profile(tiny_dir):
    entries = catalog_entries(local_dirs={"wan2.1-t2v-1.3b": tiny_dir("wan-t2v")})
    entry = entries["wan2.1-t2v-1.3b"]
    backend = entry.load("cpu", "fast")
    try:
        request = make_request("t2v", "wan-t2v", model_id="wan2.1-t2v-1.3b")
        frames, _ = run(backend, request, make_media("wan-t2v"))
        assert frames.shape == (5, SIZE, SIZE, 3)
        m = backend.manifest()
        assert m["repo"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" and m["profile"] == "fast"
        assert m["settings"]["cache"] == "first_block" and m["settings"]["cache_threshold"] == 0.05
        assert m["settings"]["compile"] is False  # never on a CPU
        assert m["last_run"]["first_block_cache"] is True
        assert m["scheduler"] and backend.pipeline.scheduler.config.flow_shift == 3.0  # catalog override
        # WanVideoToVideoPipeline marks no cache contexts: the cache is switched off for it
        run(backend, make_request("v2v", "wan-t2v", model_id="wan2.1-t2v-1.3b"), make_media("wan-t2v"))
        assert backend.manifest()["last_run"]["first_block_cache"] is False
    finally:
        backend.unload()


def test_animatediff_from_an_sd15_base_and_a_separate_adapter(tmp_path_factory):
    models_dir = build_tiny_sd15_and_adapter(tmp_path_factory.mktemp("models"))
    entry = catalog_entries(models_dir=models_dir)["animatediff-v1-5-2"]
    backend = entry.load("cpu", None)
    try:
        assert type(backend.pipeline).__name__ == "AnimateDiffPipeline"
        assert type(backend.pipeline.scheduler).__name__ == "DDIMScheduler"  # catalog scheduler class
        for mode in ("t2v", "v2v", "inpaint"):
            frames, _ = run(backend, make_request(mode, "animatediff", model_id="animatediff-v1-5-2"),
                            make_media("animatediff"))
            assert frames.shape == (8, SIZE, SIZE, 3)
        assert backend.manifest()["adapter"] == "guoyww/animatediff-motion-adapter-v1-5-2"
    finally:
        backend.unload()


def test_animatediff_without_its_adapter_says_which_download(tmp_path_factory):
    models_dir = build_tiny_sd15_and_adapter(tmp_path_factory.mktemp("models"))
    shutil.rmtree(models_dir / "animatediff-motion-adapter-v1-5-2")
    with pytest.raises(ModelLoadError, match="hf download guoyww/animatediff-motion-adapter-v1-5-2"):
        catalog_entries(models_dir=models_dir)["animatediff-v1-5-2"].load("cpu", None)
    shutil.rmtree(models_dir / "stable-diffusion-v1-5" / "unet")
    with pytest.raises(ModelLoadError) as err:  # the base: only the files AnimateDiff uses
        catalog_entries(models_dir=models_dir)["animatediff-v1-5-2"].load("cpu", None)
    assert "unet/ (config)" in str(err.value)
    assert '--include "model_index.json"' in str(err.value) and "safety_checker" not in str(err.value)


@pytest.mark.parametrize("kind,model_id", [("ltx", "ltx-video-0.9.7-dev"), ("cogvideox-t2v", "cogvideox-5b"),
                                            ("mochi", "mochi-1-preview"), ("hunyuan", "hunyuanvideo")])
def test_fast_profile_caches_the_transformer(tiny_dir, kind, model_id):
    backend = catalog_entries(local_dirs={model_id: tiny_dir(kind)})[model_id].load("cpu", "fast")
    try:
        frames, _ = run(backend, make_request("t2v", kind, model_id=model_id), make_media(kind))
        assert frames.shape[0] == TINY[kind].frames
        assert backend.manifest()["last_run"]["first_block_cache"] is True
    finally:
        backend.unload()


def test_hunyuan_i2v_latent_concat_gives_the_frames_asked_for(tiny_dir):
    """The latent_concat pipeline (the -33ch checkpoint) drops its first 4 decoded frames; the backend asks for 4 more."""
    entries = catalog_entries(local_dirs={"hunyuanvideo-i2v": tiny_dir("hunyuan-i2v-33ch")})
    backend = entries["hunyuanvideo-i2v"].load("cpu", "fast")
    try:
        assert backend.spec.modes == ("i2v",)
        for frames in (5, 9):
            out, _ = run(backend, make_request("i2v", "hunyuan-i2v-33ch", model_id="hunyuanvideo-i2v", frames=frames),
                         make_media("hunyuan-i2v-33ch"))
            assert out.shape == (frames, SIZE, SIZE, 3)
        m = backend.manifest()
        assert m["repo"] == "hunyuanvideo-community/HunyuanVideo-I2V"
        assert m["last_run"]["pipeline"] == "HunyuanVideoImageToVideoPipeline"
        assert m["last_run"]["first_block_cache"] is False  # the I2V pipeline marks no cache contexts
    finally:
        backend.unload()


def test_out_of_memory_unloads_and_names_a_lower_profile(tiny_dir, monkeypatch):
    entry = catalog_entries(local_dirs={"wan2.1-t2v-1.3b": tiny_dir("wan-t2v")})["wan2.1-t2v-1.3b"]
    backend = entry.load("cpu", "balanced")

    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(backend, "_call_kwargs", boom)
    request = make_request("t2v", "wan-t2v")
    with pytest.raises(OutOfMemory) as err:  # the contract's error: the job service words the message
        run(backend, request, make_media("wan-t2v"))
    assert err.value.hint.startswith("try the 'low-vram' profile")
    assert "UMT5" in err.value.hint  # the family's own advice
    assert backend.pipeline is None  # unloaded
    monkeypatch.undo()
    frames, _ = run(backend, request, make_media("wan-t2v"))  # reloads on the next call
    assert frames.shape[0] == 5
    backend.unload()


def test_out_of_memory_while_loading_is_a_load_error(tiny_dir, monkeypatch):
    entry = catalog_entries(local_dirs={"wan2.1-t2v-1.3b": tiny_dir("wan-t2v")})["wan2.1-t2v-1.3b"]

    def boom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("pipelines.diffusers.backend.apply_profile", boom)
    with pytest.raises(ModelLoadError, match="does not fit in GPU memory with the 'quality' profile; try the 'balanced'"):
        entry.load("cpu", "quality")


def test_unknown_profile_is_a_load_error(tiny_dir):
    entry = local_model_resolver(str(tiny_dir("wan-t2v")))
    with pytest.raises(ModelLoadError, match="no profile"):
        entry.load("cpu", "turbo")


REQUIRED_REPOS = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "Wan-AI/Wan2.1-T2V-14B-Diffusers", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    "Wan-AI/Wan2.1-VACE-1.3B-diffusers", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "Lightricks/LTX-Video-0.9.7-dev",
    "Lightricks/LTX-Video-0.9.7-distilled", "THUDM/CogVideoX-2b", "THUDM/CogVideoX-5b", "THUDM/CogVideoX-5b-I2V",
    "hunyuanvideo-community/HunyuanVideo", "hunyuanvideo-community/HunyuanVideo-I2V", "genmo/mochi-1-preview",
    "stabilityai/stable-video-diffusion-img2vid-xt", "stable-diffusion-v1-5/stable-diffusion-v1-5",
}


def test_catalog_is_consistent():
    import diffusers

    catalog = read_catalog()
    models = catalog.models
    with open(DEFAULT_CATALOG, "rb") as f:
        raw = {m["id"]: m for m in tomllib.load(f)["models"]}
    assert {m.repo for m in models} >= REQUIRED_REPOS
    ids = [m.spec.id for m in models]
    assert len(ids) == len(set(ids))
    for m in models:
        spec = m.spec
        assert spec.modes and set(spec.modes) <= set(MODES)
        assert set(m.pipelines) == set(spec.modes)
        for cls in m.pipelines.values():
            assert hasattr(diffusers, cls.removesuffix("+blend")), cls
        assert spec.profiles and all(p in catalog.profiles for p in spec.profiles)
        listed = raw[spec.id].get("profiles", catalog.families[spec.family].get("profiles"))
        assert list(spec.profiles) == listed, f"{spec.id} lists profiles its family cannot run: {m.unavailable}"
        for p in spec.profiles:
            lower = catalog.profiles[p].lower
            assert lower == "" or lower in catalog.profiles
        for mode in spec.modes:  # the defaults are a valid request in every mode
            request = make_request(mode, "wan-t2v", model_id=spec.id, width=None, height=None, frames=None,
                                   steps=None, cfg_scale=None, fps=None, seed=None, strength=None)
            request.resolve(spec, seed=1).validate(spec)


def test_catalog_modes_follow_the_weights():
    by_id = {m.spec.id: m for m in read_catalog().models}
    assert by_id["wan2.1-i2v-14b-480p"].spec.modes == ("i2v",)
    assert by_id["wan2.1-vace-1.3b"].pipelines["inpaint"] == "WanVACEPipeline"  # native
    assert by_id["wan2.1-t2v-1.3b"].pipelines["inpaint"].endswith("+blend")
    assert by_id["svd-xt"].spec.modes == ("i2v",)
    assert by_id["mochi-1-preview"].spec.modes == ("t2v", "inpaint")
    assert by_id["animatediff-v1-5-2"].adapter == "guoyww/animatediff-motion-adapter-v1-5-2"
    frames = by_id["wan2.1-t2v-1.3b"].spec.limits.frames
    assert (frames.multiple_of, frames.offset) == (4, 1)
    with open(DEFAULT_CATALOG, "rb") as f:
        assert tomllib.load(f)["schema"] == 1


def test_blend_noises_to_the_next_steps_level():
    """After step k the known latents sit at the noise level of step k+1, as the scheduler itself would noise them."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    from pipelines.diffusers.blend import Blend

    x0, noise = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    blend = Blend(x0=x0, noise=noise, keep=torch.ones_like(x0))
    flow = FlowMatchEulerDiscreteScheduler(shift=3.0)
    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    for scheduler, reference in (
        (flow, lambda t: flow.scale_noise(x0, t[None], noise)),
        (unipc, lambda t: unipc.add_noise(x0, noise, t[None])),
    ):
        scheduler.set_timesteps(5)
        ts = scheduler.timesteps
        for k in range(len(ts) - 1):
            if hasattr(scheduler, "_begin_index"):
                scheduler._begin_index = None  # reference lookups by timestep value
            torch.testing.assert_close(blend.noised(scheduler, ts[k]), reference(ts[k + 1]))
        torch.testing.assert_close(blend.noised(scheduler, ts[-1]), x0)  # clean after the last step


# ---- the families, one table ----------------------------------------------------------------------------
def _denoiser(pipe):
    return getattr(pipe, "transformer", None) or pipe.unet


@pytest.mark.parametrize("family", list(FAMILY_KINDS))
def test_family_capabilities_are_what_diffusers_really_supports(backends, family):
    """What a family class declares (VAE tiling/slicing, regional compile, first-block cache) is what
    its diffusers components do: so no profile is offered that silently does nothing or fails to load."""
    cls = FAMILIES[family]
    backend = backends(FAMILY_KINDS[family])
    pipe = backend.pipeline_for(backend.spec.modes[0])
    for method, declared in (("enable_tiling", cls.vae_tiling), ("enable_slicing", cls.vae_slicing)):
        try:
            getattr(pipe.vae, method)()
            works = True
        except NotImplementedError:
            works = False
        finally:
            getattr(pipe.vae, method.replace("enable", "disable"))()
        assert works == declared, f"{family}: vae.{method}"
    denoiser = _denoiser(pipe)
    assert cls.compilable == bool(getattr(type(denoiser), "_repeated_blocks", None))
    assert cls.cacheable == hasattr(denoiser, "enable_cache")


@pytest.mark.parametrize("family", [f for f, k in FAMILY_KINDS.items()
                                    if {"v2v", "inpaint"} & set(TINY[k].modes)])
def test_family_temporal_ratio_is_the_vaes(backends, family):
    """Inpaint masks are grouped by the family's temporal ratio: it must be the VAE's own (Mochi's is 6,
    read from MochiPipeline.vae_temporal_scale_factor, not the 1 a wrong attribute gave)."""
    kind = FAMILY_KINDS[family]
    backend = backends(kind)
    pipe = backend.pipeline_for("inpaint" if "inpaint" in TINY[kind].modes else "v2v")
    f = TINY[kind].frames
    x = torch.zeros(1, 3, f, SIZE, SIZE)
    with torch.no_grad():
        z = backend.family.encode(pipe, x)
    ratio = backend.family.temporal_ratio(pipe)
    assert z.shape[2] == ((f - 1) // ratio + 1 if ratio > 1 else f)
    if family == "mochi":
        assert ratio == 6


def test_temporal_inpaint_mask_keeps_the_first_latent_frame(backends, monkeypatch):
    """Mochi, 7 frames = 2 latent frames (frame 0, then frames 1-6): regenerating only frames 1-6 keeps
    latent frame 0 exactly the input's."""
    kind = "mochi"
    backend = backends(kind)
    pipe = backend.pipeline_for("inpaint")
    mask = np.zeros((7, SIZE, SIZE), np.float32)
    mask[1:] = 1.0
    media = make_media(kind, mask=mask)
    seen = _spy_decode(monkeypatch, pipe)
    run(backend, make_request("inpaint", kind, steps=3), media)
    ref = _encode_raw(pipe, "mochi", media.video)
    torch.testing.assert_close(seen[0][:, :, :1], ref[:, :, :1], atol=1e-4, rtol=1e-4)
    assert (seen[0][:, :, 1:] - ref[:, :, 1:]).abs().mean() > 1e-2


# ---- defects of issue #12 ---------------------------------------------------------------------------------
def test_wan22_16x_vae_never_meets_the_8x_video_to_video_pipeline(tiny_dir, tmp_path):
    """WanVideoToVideoPipeline sizes noise for an 8x VAE; Wan 2.2 TI2V's compresses 16x. The model offers
    no v2v, inpaints through WanPipeline, and a catalog that pairs them anyway is refused with the reason."""
    entry = catalog_entries(local_dirs={"wan2.2-ti2v-5b": tiny_dir("wan-ti2v")})["wan2.2-ti2v-5b"]
    assert entry.spec.modes == ("t2v", "i2v", "inpaint")
    backend = entry.load("cpu", None)
    try:
        assert backend.pipeline.vae.config.scale_factor_spatial == 16
        for mode in entry.spec.modes:
            frames, _ = run(backend, make_request(mode, "wan-ti2v", model_id="wan2.2-ti2v-5b"), make_media("wan-ti2v"))
            assert frames.shape == (5, SIZE, SIZE, 3)
    finally:
        backend.unload()
    text = DEFAULT_CATALOG.read_text().replace(
        'modes = { t2v = "WanPipeline", i2v = "WanImageToVideoPipeline", inpaint = "WanPipeline+blend" }',
        'modes = { t2v = "WanPipeline", v2v = "WanVideoToVideoPipeline" }')
    (tmp_path / "catalog.toml").write_text(text)
    bad = catalog_entries(tmp_path / "catalog.toml", local_dirs={"wan2.2-ti2v-5b": tiny_dir("wan-ti2v")})
    backend = bad["wan2.2-ti2v-5b"].load("cpu", None)
    try:
        with pytest.raises(ValueError, match="8x VAE but this model's VAE compresses 16x"):
            run(backend, make_request("v2v", "wan-ti2v"), make_media("wan-ti2v"))
    finally:
        backend.unload()


@pytest.mark.parametrize("profile", ["quality", "balanced", "low-vram"])
def test_svd_loads_with_every_profile(tiny_dir, profile):
    """AutoencoderKLTemporalDecoder has no tiling or slicing (enable_tiling raises NotImplementedError):
    the profile records them as unsupported instead of failing to load."""
    backend = catalog_entries(local_dirs={"svd-xt": tiny_dir("svd")})["svd-xt"].load("cpu", profile)
    try:
        if profile != "quality":
            assert backend.manifest()["settings"]["vae_tiling"] == "unsupported"
        frames, _ = run(backend, make_request("i2v", "svd", model_id="svd-xt"), make_media("svd"))
        assert frames.shape == (3, SIZE, SIZE, 3)
    finally:
        backend.unload()


def test_a_profile_that_fails_to_apply_is_a_load_error(tiny_dir, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("this attention backend needs a newer GPU\nsecond line")

    monkeypatch.setattr("pipelines.diffusers.profiles._apply_attention", boom)
    entry = catalog_entries(local_dirs={"wan2.1-t2v-1.3b": tiny_dir("wan-t2v")})["wan2.1-t2v-1.3b"]
    with pytest.raises(ModelLoadError) as err:
        entry.load("cpu", "balanced")
    msg = str(err.value)
    assert "the 'balanced' profile could not be applied (RuntimeError: this attention backend needs a newer GPU)" in msg
    assert "try another profile: quality, low-vram" in msg and "second line" not in msg


def test_first_block_cache_repeat_is_exact_on_wan_but_not_on_vace():
    """Why VACE is never cached: with the same input twice, the second call is served from the cache.
    On a plain Wan transformer that equals the uncached output; VACE adds its control hints inside its
    own block loop, so the replayed residual gets them twice."""
    from diffusers import FirstBlockCacheConfig

    from tests.support.tiny_diffusers import build_tiny_pipe

    for kind, exact in (("wan-t2v", True), ("wan-vace", False)):
        m = build_tiny_pipe(kind).transformer
        g = torch.Generator().manual_seed(0)
        x, t, text = torch.randn(1, 16, 2, 4, 4, generator=g), torch.tensor([500.0]), torch.randn(1, 8, 32, generator=g)
        kw = {"control_hidden_states": torch.randn(1, 96, 2, 4, 4, generator=g)} if kind == "wan-vace" else {}
        with torch.no_grad():
            uncached = m(x, t, text, return_dict=False, **kw)[0]
            m.enable_cache(FirstBlockCacheConfig(threshold=0.05))
            with m.cache_context("cond"):
                first = m(x, t, text, return_dict=False, **kw)[0]
                repeat = m(x, t, text, return_dict=False, **kw)[0]  # head residual unchanged: served from cache
        torch.testing.assert_close(first, uncached)
        assert torch.allclose(repeat, uncached, atol=1e-5) is exact, kind


def test_vace_refuses_the_fast_profile_and_says_why(tiny_dir):
    with pytest.raises(ModelLoadError, match="no profile 'fast' .*WanVACEPipeline adds work between the transformer"):
        catalog_entries(local_dirs={"wan2.1-vace-1.3b": tiny_dir("wan-vace")})["wan2.1-vace-1.3b"].load("cpu", "fast")
    local = local_model_resolver(str(tiny_dir("wan-vace")))  # a local VACE folder: the family's list without fast
    assert "fast" not in local.spec.profiles and "quality" in local.spec.profiles


def test_vace_pipeline_is_never_cached_even_when_the_settings_ask(backends):
    from pipelines.diffusers.profiles import set_cache

    backend = backends("wan-vace")
    pipe = backend.pipeline_for("inpaint")
    assert set_cache(pipe, backend.model, {"cache": "first_block"}, 0.05) is False
    assert not pipe.transformer.is_cache_enabled


def test_hunyuan_i2v_runs_with_embedded_guidance_and_flow_shift(tiny_dir):
    """hunyuanvideo-community/HunyuanVideo-I2V (token replace): embedded guidance 6.0 (the transformer
    sees guidance * 1000) and the scheduler shift of the diffusers docs (7 to 20), as its example runs it."""
    entry = catalog_entries(local_dirs={"hunyuanvideo-i2v": tiny_dir("hunyuan-i2v")})["hunyuanvideo-i2v"]
    assert entry.spec.defaults.cfg_scale == 6.0
    backend = entry.load("cpu", None)
    try:
        pipe = backend.pipeline_for("i2v")
        assert pipe.transformer.config.image_condition_type == "token_replace"
        assert pipe.transformer.config.guidance_embeds
        assert pipe.scheduler.config.shift == 7.0
        seen = []
        handle = pipe.transformer.register_forward_pre_hook(
            lambda mod, args, kwargs: seen.append(kwargs.get("guidance")), with_kwargs=True)
        try:
            request = make_request("i2v", "hunyuan-i2v", model_id="hunyuanvideo-i2v", cfg_scale=None)
            request = request.resolve(entry.spec, seed=1)
            frames, _ = run(backend, request, make_media("hunyuan-i2v"))
        finally:
            handle.remove()
        assert frames.shape == (5, SIZE, SIZE, 3)
        assert seen and all(float(g[0]) == 6000.0 for g in seen)
        assert "true_cfg_scale" not in backend.manifest()["last_run"]["arguments"]  # no second, true CFG pass
    finally:
        backend.unload()


def test_ltx_distilled_runs_its_own_timesteps_and_guidance_rescale(tiny_dir):
    entry = catalog_entries(local_dirs={"ltx-video-0.9.7-distilled": tiny_dir("ltx")})["ltx-video-0.9.7-distilled"]
    assert (entry.spec.limits.steps.min, entry.spec.limits.steps.max) == (8, 8)
    backend = entry.load("cpu", None)
    try:
        for mode in ("t2v", "i2v"):
            request = make_request(mode, "ltx", model_id="ltx-video-0.9.7-distilled", steps=8)
            frames, steps = run(backend, request, make_media("ltx"))
            assert frames.shape == (9, SIZE, SIZE, 3) and len(steps) == 8
            timesteps = backend.pipeline_for(mode).scheduler.timesteps
            torch.testing.assert_close(timesteps.float(), torch.tensor([1000, 993, 987, 981, 975, 909, 725, 0.03]))
            args = backend.manifest()["last_run"]["arguments"]
            assert args["guidance_rescale"] == 0.7 and args["guidance_scale"] == 2.0
    finally:
        backend.unload()


def _catalog_with_cache_threshold(tmp_path, threshold: float):
    text = DEFAULT_CATALOG.read_text()
    assert text.count("cache_threshold = 0.05") == 1  # the fast profile
    path = tmp_path / "catalog.toml"
    path.write_text(text.replace("cache_threshold = 0.05", f"cache_threshold = {threshold}"))
    return path


def test_cancel_resets_the_first_block_cache_for_the_next_job(tiny_dir, tmp_path):
    """A cancelled call never reaches the pipeline's own maybe_free_model_hooks(): the backend runs it,
    so no cached residual of the cancelled job leaks into the next (and under model offload the
    transformer leaves the GPU). With a threshold this high every step after a job's first is cached,
    so a stale residual would change the next job's whole clip."""
    path = _catalog_with_cache_threshold(tmp_path, 1e9)
    backend = catalog_entries(path, local_dirs={"wan2.1-t2v-1.3b": tiny_dir("wan-t2v")})["wan2.1-t2v-1.3b"].load(
        "cpu", "fast")
    try:
        request = make_request("t2v", "wan-t2v", steps=4)
        clean, _ = run(backend, request, make_media("wan-t2v"))
        other = make_request("t2v", "wan-t2v", steps=4, seed=7, prompt="a blue car jumps")
        with pytest.raises(Cancelled):
            run(backend, other, make_media("wan-t2v"), cancel_after=2)
        again, _ = run(backend, request, make_media("wan-t2v"))
        np.testing.assert_array_equal(again, clean)
    finally:
        backend.unload()


def test_fast_profile_with_threshold_zero_matches_quality(tiny_dir, tmp_path):
    """The cache machinery itself is faithful: a threshold of 0 never serves a step from the cache."""
    path = _catalog_with_cache_threshold(tmp_path, 0.0)
    entries = catalog_entries(path, local_dirs={"wan2.1-t2v-1.3b": tiny_dir("wan-t2v")})
    request = make_request("t2v", "wan-t2v", steps=3)
    out = {}
    for profile in ("quality", "fast"):
        backend = entries["wan2.1-t2v-1.3b"].load("cpu", profile)
        try:
            out[profile], _ = run(backend, request, make_media("wan-t2v"))
            assert backend.manifest()["last_run"]["first_block_cache"] is (profile == "fast")
        finally:
            backend.unload()
    assert np.abs(out["fast"].astype(int) - out["quality"].astype(int)).max() <= 1


def _load_as_if_on_a_gpu(entry, profile, monkeypatch):
    """Load through the accelerator path (bf16, offload set-up) on this CPU machine: offload calls are
    recorded instead of moving anything to a device that is not here."""
    from diffusers import DiffusionPipeline

    calls = []
    monkeypatch.setattr(DiffusionPipeline, "enable_group_offload", lambda self, **kw: calls.append(("group", kw)))
    monkeypatch.setattr(DiffusionPipeline, "enable_model_cpu_offload",
                        lambda self, device=None, **kw: calls.append(("model", {"device": device})))
    monkeypatch.setattr(DiffusionPipeline, "to", lambda self, *a, **k: self)
    return entry.load("cuda", profile), calls


def test_low_vram_group_offload_does_not_pin_every_weight(tiny_dir, monkeypatch):
    entry = catalog_entries(local_dirs={"wan2.1-i2v-14b-480p": tiny_dir("wan-i2v")})["wan2.1-i2v-14b-480p"]
    backend, calls = _load_as_if_on_a_gpu(entry, "low-vram", monkeypatch)
    try:
        [(kind, kw)] = calls
        assert kind == "group" and kw["low_cpu_mem_usage"] is True and kw["offload_type"] == "leaf_level"
        assert backend.manifest()["settings"]["offload"] == "group (leaf_level, stream)"
    finally:
        backend.unload()


def test_wan_i2v_keeps_its_image_encoder_and_vae_in_float32(tiny_dir, monkeypatch):
    entry = catalog_entries(local_dirs={"wan2.1-i2v-14b-480p": tiny_dir("wan-i2v")})["wan2.1-i2v-14b-480p"]
    backend, _ = _load_as_if_on_a_gpu(entry, "balanced", monkeypatch)
    try:
        pipe = backend.pipeline
        assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
        assert pipe.image_encoder.dtype == torch.float32 and pipe.vae.dtype == torch.float32
        s = backend.manifest()["settings"]
        assert (s["dtype"], s["vae_dtype"], s["image_encoder_dtype"]) == ("bfloat16", "float32", "float32")
    finally:
        backend.unload()


def test_model_offload_sends_the_vae_back_before_denoising(tiny_dir, monkeypatch):
    """Latent-blend inpaint (and LTX v2v) encode the input with the VAE before the loop: under model offload
    the VAE's hook leaves it on the GPU until another model's hook moves it, which the transformer's does
    not. The backend frees the hooks (everything back to the CPU) after encoding, before the first step."""
    backend = catalog_entries(local_dirs={"wan2.1-t2v-1.3b": tiny_dir("wan-t2v")})["wan2.1-t2v-1.3b"].load("cpu", None)
    try:
        pipe = backend.pipeline_for("inpaint")
        backend.settings["offload"] = "model"  # as on a GPU with the balanced profile
        backend._offloaded_for = pipe  # hooks "already installed" (there is no GPU to install them for)
        events = []
        encode = pipe.vae.encode
        monkeypatch.setattr(pipe.vae, "encode", lambda *a, **k: (events.append("vae.encode"), encode(*a, **k))[1])
        monkeypatch.setattr(pipe, "maybe_free_model_hooks", lambda: events.append("free hooks"))
        handle = pipe.transformer.register_forward_pre_hook(lambda *a: events.append("transformer"))
        try:
            run(backend, make_request("inpaint", "wan-t2v"), make_media("wan-t2v"))
        finally:
            handle.remove()
        first = events.index("transformer")
        assert "vae.encode" in events[:first] and "free hooks" in events[events.index("vae.encode"):first]
    finally:
        backend.unload()


def test_compiled_is_not_offered_where_nothing_would_compile(tiny_dir):
    for model_id, kind in (("cogvideox-5b", "cogvideox-t2v"), ("mochi-1-preview", "mochi")):
        entry = catalog_entries(local_dirs={model_id: tiny_dir(kind)})[model_id]
        assert "compiled" not in entry.spec.profiles
        local = local_model_resolver(str(tiny_dir(kind)))
        assert "compiled" not in local.spec.profiles
        with pytest.raises(ModelLoadError, match="no profile 'compiled'"):
            entry.load("cpu", "compiled")
    assert "compiled" in local_model_resolver(str(tiny_dir("wan-t2v"))).spec.profiles


def test_hunyuan_says_the_negative_prompt_is_not_used(backends):
    backend = backends("hunyuan")
    run(backend, make_request("t2v", "hunyuan", negative_prompt="blurry"), make_media("hunyuan"))
    [note] = backend.manifest()["last_run"]["notes"]
    assert "negative prompt not used" in note
    run(backend, make_request("t2v", "hunyuan"), make_media("hunyuan"))
    assert backend.manifest()["last_run"]["notes"] == []
    by_id = {m.spec.id: m for m in read_catalog().models}
    assert "negative prompt is not used" in by_id["hunyuanvideo"].spec.description


def test_cogvideox_5b_i2v_uses_dynamic_cfg(tiny_dir):
    entry = catalog_entries(local_dirs={"cogvideox-5b-i2v": tiny_dir("cogvideox-i2v")})["cogvideox-5b-i2v"]
    backend = entry.load("cpu", None)
    try:
        run(backend, make_request("i2v", "cogvideox-i2v", model_id="cogvideox-5b-i2v"), make_media("cogvideox-i2v"))
        assert backend.manifest()["last_run"]["arguments"]["use_dynamic_cfg"] is True
    finally:
        backend.unload()


def test_fp16_variant_files_load(tmp_path):
    """svd-xt names variant "fp16": a folder holding only *.fp16.safetensors (half the download) loads."""
    folder = build_tiny_kind("svd", tmp_path / "svd-fp16", variant="fp16")
    assert list(folder.glob("unet/*.fp16.safetensors")) and not list(folder.glob("unet/*model.safetensors"))
    entry = catalog_entries(local_dirs={"svd-xt": folder})["svd-xt"]
    assert entry.missing() is None
    backend = entry.load("cpu", None)
    try:
        frames, _ = run(backend, make_request("i2v", "svd", model_id="svd-xt"), make_media("svd"))
        assert frames.shape == (3, SIZE, SIZE, 3)
    finally:
        backend.unload()


def test_every_catalog_entry_says_what_is_missing_and_the_command(tmp_path, tiny_dir):
    entries = catalog_entries(models_dir=tmp_path)
    for model in read_catalog().models:
        msg = entries[model.spec.id].missing()
        assert msg and model.repo in msg.splitlines()[0], model.spec.id
        last = msg.splitlines()[-1]
        assert last.startswith(f"hf download {model.repo} --local-dir {tmp_path / model.repo.split('/')[-1]}")
    # a complete local folder: nothing missing; an incomplete one names the weights
    assert catalog_entries(local_dirs={"wan2.1-t2v-1.3b": tiny_dir("wan-t2v")})["wan2.1-t2v-1.3b"].missing() is None
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir("wan-t2v"), broken)
    for f in (broken / "transformer").glob("*.safetensors"):
        f.unlink()
    msg = catalog_entries(local_dirs={"wan2.1-t2v-1.3b": broken})["wan2.1-t2v-1.3b"].missing()
    assert "transformer/ (weights)" in msg and msg.splitlines()[-1] == "hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert local_model_resolver(str(broken)).missing().startswith("broken is not available offline")


@pytest.mark.parametrize("family", list(FAMILY_KINDS))
def test_out_of_memory_hint_per_family(family):
    cls = FAMILIES[family]
    assert cls.oom_hint("low-vram").startswith("try the 'low-vram' profile")
    assert cls.oom_hint(None).startswith("this is already the model's lowest-memory profile")


def test_every_family_has_its_catalog_table_and_a_tiny_kind():
    """Adding a family = its class in FAMILIES + its catalog table; this table of tests then covers it."""
    import diffusers

    assert set(FAMILIES) == set(read_catalog().families) == set(FAMILY_KINDS)
    for family in FAMILIES.values():
        assert family.layout in ("bcfhw", "bfchw", "packed")
        for cls, modes in family.local_pipelines.items():
            assert hasattr(diffusers, cls) and set(modes) <= set(MODES)
            assert all(hasattr(diffusers, p.removesuffix("+blend")) for p in modes.values())


# ---- batches of seeds (generate_batch) ------------------------------------------------------------------
# (kind, mode) whose pipeline cannot take several seeds in one call; their seeds run one by one:
# WanVACEPipeline refuses lists of prompts / generators and num_videos_per_prompt > 1; LTXConditionPipeline
# mis-broadcasts its sigma below strength 1 (the v2v requests here use 0.7)
UNBATCHED = {("wan-vace", "t2v"), ("wan-vace", "i2v"), ("wan-vace", "inpaint"), ("ltx", "v2v")}
SEEDS = (5, 6, 7)


@pytest.fixture(scope="session")
def batch_backends(tiny_dir):
    """Backends under the `quality` profile, where max_batch is above 1 (the first profile may offload)."""
    loaded: dict[str, DiffusersBackend] = {}

    def get(kind: str) -> DiffusersBackend:
        if kind not in loaded:
            loaded[kind] = local_model_resolver(str(tiny_dir(kind))).load("cpu", "quality")
        return loaded[kind]

    yield get
    for b in loaded.values():
        b.unload()


def _generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _batch_and_alone(backend, kind, mode, seeds=SEEDS):
    import dataclasses

    base = make_request(mode, kind, seed=seeds[0])
    requests = [dataclasses.replace(base, seed=s) for s in seeds]
    media = make_media(kind)
    steps: list = []
    batch = backend.generate_batch(requests, media, _generators(seeds), lambda i, n, p: steps.append((i, n, p)),
                                   lambda: False)
    batch_size = backend.manifest()["last_run"]["batch"]
    alone = [run(backend, r, media)[0] for r in requests]
    return batch, alone, steps, batch_size


@pytest.mark.parametrize("kind,mode", CASES)
def test_a_batch_of_seeds_gives_the_clips_of_single_generations(batch_backends, kind, mode):
    """Each clip of a batch is the clip its seed gives alone: every sample draws its noise (and the blend's)
    from its own generator in the single run's order. Tolerance: float32 matrix products and convolutions
    sum in another order over a batch (relative error about 1e-6), which moves a rare uint8 value by one
    level; measured at most 1 level in under 0.1% of the values, so allowed: 1 level in under 1%."""
    backend = batch_backends(kind)
    if all((kind, m) in UNBATCHED for m in TINY[kind].modes):  # no pipeline of this model batches
        assert backend.max_batch == 1
        request, media = make_request(mode, kind, seed=SEEDS[0]), make_media(kind)
        with pytest.raises(ValueError, match="1 to 1 requests"):
            backend.generate_batch([request, request], media, _generators(SEEDS[:2]), lambda *a: None, lambda: False)
        (frames,) = backend.generate_batch([request], media, _generators(SEEDS[:1]), lambda *a: None, lambda: False)
        np.testing.assert_array_equal(frames, run(backend, request, media)[0])
        return
    assert backend.max_batch == 4
    batch, alone, steps, batch_size = _batch_and_alone(backend, kind, mode)
    assert len(batch) == len(SEEDS)
    # one pipeline call for the whole batch where the pipeline allows, else the seeds one after another
    assert batch_size == (1 if (kind, mode) in UNBATCHED else len(SEEDS))
    total = steps[-1][1]  # progress: one pass of the denoising steps per pipeline call
    assert [s for s, _, _ in steps] == list(range(1, total + 1)) * (len(SEEDS) if batch_size == 1 else 1)
    for frames, single in zip(batch, alone):
        assert frames.shape == single.shape and frames.dtype == np.uint8
        diff = np.abs(frames.astype(int) - single.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
        if batch_size == 1:
            np.testing.assert_array_equal(frames, single)
    assert not np.array_equal(batch[0], batch[1]) and not np.array_equal(batch[1], batch[2])


@pytest.mark.parametrize("family", list(FAMILY_KINDS))
def test_max_batch_follows_the_profile(family):
    """The rule (Family.max_batch): 1 when no pipeline of the model batches, 1 under a profile that offloads
    (balanced, low-vram) or caches (fast: the cache's skip decision would be taken for the whole batch),
    else 4 (quality, compiled)."""
    from pipelines.diffusers.families.base import MAX_BATCH

    catalog = read_catalog()
    fam = FAMILIES[family]
    expected = {"quality": MAX_BATCH, "compiled": MAX_BATCH, "balanced": 1, "low-vram": 1, "fast": 1}
    models = [m for m in catalog.models if m.spec.family == family]
    assert models
    for model in models:
        batches = any(p.removesuffix("+blend") in fam.batch_by for p in model.pipelines.values())
        assert batches == (model.spec.id != "wan2.1-vace-1.3b")  # VACE: the one model that never batches
        for name, profile in catalog.profiles.items():
            assert fam.max_batch(profile, model.pipelines) == (expected[name] if batches else 1), (model.spec.id, name)


@pytest.mark.parametrize("kind,profile,expected", [("wan-t2v", "quality", 4), ("wan-t2v", "low-vram", 1),
                                                    ("svd", "balanced", 1), ("wan-vace", "quality", 1)])
def test_max_batch_of_loaded_backends(tiny_dir, kind, profile, expected):
    backend = local_model_resolver(str(tiny_dir(kind))).load("cpu", profile)
    assert backend.max_batch == expected
    backend.unload()


def test_a_batch_takes_requests_that_differ_only_in_their_seed(batch_backends):
    import dataclasses

    backend = batch_backends("wan-t2v")
    request, media = make_request("t2v", "wan-t2v", seed=5), make_media("wan-t2v")
    with pytest.raises(ValueError, match="differ only in their seed"):
        backend.generate_batch([request, dataclasses.replace(request, seed=6, cfg_scale=9.0)], media,
                               _generators((5, 6)), lambda *a: None, lambda: False)
    with pytest.raises(ValueError, match="one generator each"):
        backend.generate_batch([request, dataclasses.replace(request, seed=6)], media, _generators((5,)),
                               lambda *a: None, lambda: False)
    many = [dataclasses.replace(request, seed=s) for s in range(backend.max_batch + 1)]
    with pytest.raises(ValueError, match="1 to 4 requests"):
        backend.generate_batch(many, media, _generators(range(len(many))), lambda *a: None, lambda: False)


def test_cancel_stops_a_batch_between_steps(batch_backends):
    import dataclasses

    backend = batch_backends("wan-t2v")
    base, media = make_request("t2v", "wan-t2v", seed=5, steps=4), make_media("wan-t2v")
    requests = [dataclasses.replace(base, seed=s) for s in SEEDS]
    steps: list = []
    with pytest.raises(Cancelled):
        backend.generate_batch(requests, media, _generators(SEEDS), lambda i, n, p: steps.append(i),
                               lambda: len(steps) >= 1)
    assert steps == [1]  # left the loop after the first step: no decode of clips nobody wants
    with pytest.raises(Cancelled):  # cancelled before it started
        backend.generate_batch(requests, media, _generators(SEEDS), lambda *a: None, lambda: True)
    clips = backend.generate_batch(requests, media, _generators(SEEDS), lambda *a: None, lambda: False)
    assert len(clips) == 3  # still usable afterwards


@pytest.mark.parametrize("kind", ["wan-t2v", "ltx", "cogvideox-t2v"])  # bcfhw, packed, bfchw
def test_batch_previews_show_the_first_seed(tiny_dir, kind):
    import dataclasses

    backend = local_model_resolver(str(tiny_dir(kind)), preview_every=1).load("cpu", "quality")
    try:
        mode = TINY[kind].modes[0]
        base, media = make_request(mode, kind, seed=5, steps=3), make_media(kind)
        batch_steps: list = []
        backend.generate_batch([dataclasses.replace(base, seed=s) for s in SEEDS], media, _generators(SEEDS),
                               lambda i, n, p: batch_steps.append(p), lambda: False)
        _, alone = run(backend, base, media)
        assert len(batch_steps) == len(alone) == 3 and batch_steps[-1] is None
        for p, (_, _, q) in zip(batch_steps[:-1], alone[:-1]):
            assert p.shape == q.shape == (TINY[kind].frames, SIZE, SIZE, 3)
            assert np.abs(p.astype(int) - q.astype(int)).max() <= 1
    finally:
        backend.unload()


def test_a_batch_out_of_memory_runs_the_seeds_one_by_one(tiny_dir, monkeypatch):
    """Out of memory in a batch is not a failed job: the seeds run one by one, and the backend's max_batch
    drops to 1 so that the job service hands it no more batches."""
    import dataclasses

    backend = local_model_resolver(str(tiny_dir("wan-t2v"))).load("cpu", "quality")
    transformer = backend.pipeline_for("inpaint").transformer
    forward = transformer.forward

    def too_big(hidden_states, *a, **k):  # after the latents and the blend's noise were drawn
        if hidden_states.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(hidden_states, *a, **k)

    monkeypatch.setattr(transformer, "forward", too_big)
    base, media = make_request("inpaint", "wan-t2v", seed=5), make_media("wan-t2v")
    requests = [dataclasses.replace(base, seed=s) for s in SEEDS]
    clips = backend.generate_batch(requests, media, _generators(SEEDS), lambda *a: None, lambda: False)
    assert backend.max_batch == 1 and backend.pipeline is not None  # not unloaded: the weights still fit
    monkeypatch.undo()
    for clip, request in zip(clips, requests):  # each seed's own clip: the generators were rewound
        np.testing.assert_array_equal(clip, run(backend, request, media)[0])
    backend.unload()


def test_a_batch_restores_the_profiles_vae_slicing(batch_backends):
    import dataclasses

    backend = batch_backends("wan-t2v")
    pipe = backend.pipeline_for("t2v")
    assert pipe.vae.use_slicing is False  # quality: no slicing
    seen = []
    original = pipe.vae.decode

    def decode(z, *a, **k):
        seen.append((z.shape[0], pipe.vae.use_slicing))
        return original(z, *a, **k)

    pipe.vae.decode = decode
    try:
        base, media = make_request("t2v", "wan-t2v", seed=5), make_media("wan-t2v")
        backend.generate_batch([dataclasses.replace(base, seed=s) for s in SEEDS], media, _generators(SEEDS),
                               lambda *a: None, lambda: False)
    finally:
        del pipe.vae.decode
    assert seen == [(3, True)]  # the batch decoded clip by clip
    assert pipe.vae.use_slicing is False


def test_ltx_video_to_video_batches_at_full_strength_only(batch_backends):
    """LTXConditionPipeline mis-broadcasts its (B,) sigma below strength 1, so v2v below 1 runs seed by seed;
    at strength 1 (from noise, as latent-blend inpainting) one call takes the batch."""
    import dataclasses

    backend = batch_backends("ltx")
    media = make_media("ltx")
    for strength, batch_size in ((0.7, 1), (1.0, 3)):
        base = make_request("v2v", "ltx", seed=SEEDS[0], strength=strength)
        requests = [dataclasses.replace(base, seed=s) for s in SEEDS]
        clips = backend.generate_batch(requests, media, _generators(SEEDS), lambda *a: None, lambda: False)
        assert backend.manifest()["last_run"]["batch"] == batch_size
        for clip, request in zip(clips, requests):
            assert np.abs(clip.astype(int) - run(backend, request, media)[0].astype(int)).max() <= 1
