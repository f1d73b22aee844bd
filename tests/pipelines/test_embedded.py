"""The embedded model: world, analyser, tokenizer, networks, sampler, and the backend's modes.

Tiny components are built in code (random weights) so everything runs on a CPU in seconds; one
smoke test uses the shipped weights in assets/embedded and skips when they are absent.
"""

from __future__ import annotations

import ast
import dataclasses
import gc
import json
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pipelines.contract import Cancelled, MediaInputs, ModelLoadError  # noqa: E402
from pipelines.embedded import diffusion, world  # noqa: E402
from pipelines.embedded.backend import EMBEDDED_SPEC, EmbeddedBackend, embedded_entry  # noqa: E402
from pipelines.embedded.dit import DiTConfig  # noqa: E402
from pipelines.embedded.training.config import TrainConfig  # noqa: E402
from pipelines.embedded.training.export import write_assets  # noqa: E402
from pipelines.embedded.weights import TRAIN_COMMAND, WEIGHTS_DIR, WEIGHTS_VERSION  # noqa: E402
from pipelines.embedded.evaluate import analyse, groundtruth_clips, jump, object_mask, psnr, score  # noqa: E402
from pipelines.embedded.text import BOS, UNK, Tokenizer  # noqa: E402
from pipelines.embedded.unet import UNetConfig, build_denoiser  # noqa: E402
from pipelines.embedded.vae import VAEConfig, VideoAutoencoder, frames_to_model  # noqa: E402
from pipelines.contract import (  # noqa: E402
    ImageToVideoRequest,
    InpaintRequest,
    TextToVideoRequest,
    VideoToVideoRequest,
)

torch.set_num_threads(1)

TINY_VAE = VAEConfig(arch="v2", ch=(4, 4, 4), t_ch=8)  # 4x in space: 16x16 latent cells
TINY_DIT = dict(width=16, depth=1, heads=2, text_width=16, text_depth=1, latent_size=16, patch=4)
TINY_UNET = dict(arch="unet", ch=(8, 8, 16), mid_depth=1, heads=2, text_width=16, text_depth=1, latent_size=16)


@pytest.fixture(scope="module", params=["dit", "unet"])
def tiny_weights(request, tmp_path_factory):
    """Random tiny weights in the shipping format, for each denoiser architecture the loader knows."""
    torch.manual_seed(0)
    tok = Tokenizer()
    vae = VideoAutoencoder(TINY_VAE)
    vocab = max(256, len(tok))  # as training sizes it (denoiser_dict): the init does not move when the grammar grows
    dcfg = (DiTConfig(vocab_size=vocab, **TINY_DIT) if request.param == "dit"
            else UNetConfig(vocab_size=vocab, **TINY_UNET))
    dit = build_denoiser(dcfg.to_dict())
    for p in dit.parameters():  # the zero-initialised output would make every mode trivially the mean
        torch.nn.init.normal_(p, std=0.05)
    d = tmp_path_factory.mktemp("embedded")
    write_assets(d, vae.state_dict(), dit.state_dict(), TINY_VAE.to_dict(), dcfg.to_dict(), tok.vocab)
    return d


@pytest.fixture(scope="module")
def backend(tiny_weights):
    return embedded_entry(tiny_weights).load("cpu", None)


def run(backend, request, media=MediaInputs(), seed=1, on_step=None, cancel=lambda: False):
    req = request.resolve(backend.spec, seed)
    req.validate(backend.spec)
    g = torch.Generator().manual_seed(req.seed)
    return backend.generate(req, media, g, on_step or (lambda *a: None), cancel)


# ---- world and analyser ------------------------------------------------------------------------
def test_world_renders_the_palette_exactly():
    clips, labels = groundtruth_clips(8)
    assert clips.shape == (8, 16, 64, 64, 3) and clips.dtype == np.uint8
    for clip, lab in zip(clips, labels):
        corner = clip[0, 0, 0]
        assert tuple(int(v) for v in corner) == world.BACKGROUNDS[lab["bg"]]
        colours = {tuple(int(v) for v in px) for px in clip.reshape(-1, 3)}
        assert world.OBJECT_COLOURS[lab["obj"]] in colours


def test_analyser_scores_ground_truth_clips_perfectly():
    clips, labels = groundtruth_clips(120, seed=5)
    s = score([(lab, analyse(c)) for c, lab in zip(clips, labels)])
    assert all(v >= 0.99 for v in s.values()), s
    still = [analyse(c) for c, lab in zip(clips, labels) if lab["motion"] == "still"]
    assert all(a.flicker < 0.01 for a in still)
    assert max(jump(analyse(c).track) for c in clips[:20]) < 1.5  # world motion is smooth
    teleport = clips[0].copy()
    teleport[8:] = np.roll(teleport[8:], 20, axis=2)  # the object (and all) moves 20 px at frame 8
    assert jump(analyse(teleport).track) > 15
    smudge = np.full_like(clips[0], 120)  # a gray clip with a faint blotch in every frame, no object in any
    smudge[:, 30:34, 30:34] = 140
    a = analyse(smudge)
    assert a.fill == 0.0 and a.shape is None  # not scored as a triangle (fill 0 used to read as one)


def test_copy_measures_count_close_pairs_and_world_clips_are_the_reference():
    """geometric_copies: pairs with start and size within 2 px; world_copies applies both measures to
    the world's own draws (a small object on a close background is a 'near-copy' by MAD even there)."""
    from pipelines.embedded.evaluate import geometric_copies, near_copies, world_copies

    geo = np.array([[10, 10, 12], [11, 10.5, 12.5], [30, 10, 12], [np.nan, 10, 12]], dtype=np.float64)
    assert geometric_copies(geo) == 1
    same = np.zeros((4, 8, 8, 3), np.uint8)
    assert near_copies([same, same, same + 10]) == (1, 3, 0.0)
    mad, geo_n, pairs = world_copies({"bg": "beige", "obj": "white", "shape": "triangle", "motion": "still"}, 3, seed=0)
    assert pairs == 84 and 0 <= geo_n <= pairs and 1 <= mad <= pairs  # white on beige: close by MAD even here


def test_captions_vary_and_eval_templates_are_held_out():
    import random

    rng = random.Random(0)
    lab = {"bg": "navy", "obj": "red", "shape": "circle", "motion": "left"}
    caps = {world.caption(lab, rng) for _ in range(100)}
    assert len(caps) > 30
    assert not set(world.EVAL_TEMPLATES) & set(world.TRAIN_TEMPLATES)


# ---- tokenizer -------------------------------------------------------------------------------------
def test_tokenizer_is_case_and_spacing_blind_and_never_fails():
    tok = Tokenizer()
    assert tok.encode("A  RED   circle") == tok.encode("a red circle")
    assert tok.encode("")[0] == BOS and len(tok.encode("")) == 1
    assert tok.encode("a zorblax circle")[2] == UNK
    assert tok.encode("ruby")[1] == tok.encode("red")[1]  # held-out synonym through the alias table
    assert tok.encode("circles")[1] == tok.encode("circle")[1]
    assert len(tok.encode("word " * 500)) == tok.max_len
    ids = tok.batch(["🙂 ✓ ünïcödé", "", "x" * 3000])
    assert ids.shape[0] == 3


# ---- networks and sampler -----------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [VAEConfig(), TINY_VAE, VAEConfig(arch="v2", ch=(4, 4, 4, 4), t_ch=8),
                                 VAEConfig(dec_ch=(4, 4, 4, 4), dec_t_ch=8)],
                         ids=["v1", "v2-4x", "v2-8x", "v1-residual-decoder"])
def test_vae_shapes(cfg):
    vae = VideoAutoencoder(cfg)
    x = torch.rand(2, 3, 16, 64, 64) * 2 - 1
    z = vae.encode(x)
    s = 64 // cfg.space_down
    assert z.shape == (2, cfg.latent_channels, 4, s, s)
    assert vae.decode(z).shape == x.shape
    loss, _ = vae.loss(x)
    loss.backward()


def test_decoder_widths_must_match_the_encoder():
    with pytest.raises(ValueError, match="doubles the size 2 times"):
        VideoAutoencoder(VAEConfig(dec_ch=(4, 4, 4)))  # 4x decoder on the 8x v1 encoder


def test_new_decoder_stage_keeps_encoder_and_latents(tmp_path):
    """`--stage decoder --decoder-ch`: a new, wider decoder is trained; the encoder, its latent
    normalisation (so the cached latents and the trained DiT) stay exactly as they were."""
    from pipelines.embedded.training.autoencoder import train_vae
    from pipelines.embedded.training.common import load_vae, save_atomic

    cfg = dataclasses.replace(TrainConfig.shipped(), vae=VAEConfig(ch=(4, 4, 4), t_ch=8), vae_batch=2, log_every=1)
    torch.manual_seed(0)
    old = VideoAutoencoder(cfg.vae)
    old.shift.fill_(0.3)
    old.scale.fill_(2.0)
    save_atomic({"model": old.state_dict(), "opt": {}, "step": 7, "config": cfg.to_dict(), "decoder_only": False},
                tmp_path / "vae.pt")
    train_vae(TrainConfig.shipped(), tmp_path, 0.02, True, "cpu", decoder_only=True, new_decoder=((4, 4, 4, 4), 8))
    new = load_vae(tmp_path)
    assert new.cfg.dec_ch == (4, 4, 4, 4) and new.cfg.ch == (4, 4, 4)  # the checkpoint's encoder config kept
    assert type(new.decoder).__name__ == "Decoder2"
    x = torch.rand(1, 3, 16, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(new.encode(x), old.encode(x))
        assert new.decode(new.encode(x)).shape == x.shape
    train_vae(TrainConfig.shipped(), tmp_path, 0.01, True, "cpu", decoder_only=True, new_decoder=((4, 4, 4, 4), 8))
    assert torch.load(tmp_path / "vae.pt", weights_only=False)["step"] > 7  # resumes the same decoder


def test_size_normalised_object_weight_gives_small_and_large_objects_the_same_total():
    """vae_object_norm: a clip's object pixels weigh in total what the batch's average object does, so
    the loss cares about a 10 px square's corners as much as about a 22 px one's."""
    from pipelines.embedded.training.autoencoder import object_weight

    b = world.sample_batch(2, torch.Generator().manual_seed(0), motion=4)
    b.size = torch.tensor([10.0, 22.0])
    x = world.render(b)
    extra = lambda wt: (wt[:, 0] - 1).sum((1, 2, 3))  # noqa: E731  (per clip: the object part)
    plain, normed = extra(object_weight(b, x, 5.0)), extra(object_weight(b, x, 5.0, norm=True))
    assert plain[1] > 3 * plain[0]  # without: the large object dominates
    assert torch.allclose(normed[0], normed[1], rtol=1e-4)
    assert torch.allclose(normed.sum(), plain.sum(), rtol=1e-4)  # the same total as before, redistributed


def test_outline_weight_is_on_the_ring_around_the_object_only():
    """vae_edge_weight: the pixels within 1 px of a still square's outline (a ring 2 px each side of the edge
    at most) get the extra weight; the background and the object's inside do not."""
    from pipelines.embedded.training.autoencoder import object_weight

    b = world.sample_batch(1, torch.Generator().manual_seed(0), motion=4)
    b.size = torch.tensor([16.0])
    x = world.render(b)
    plain, ringed = object_weight(b, x, 5.0)[0, 0, 0], object_weight(b, x, 5.0, edge=3.0)[0, 0, 0]
    ring = (ringed - plain) / 3.0
    assert set(ring.unique().tolist()) <= {0.0, 1.0}
    cy, cx = (int(v) for v in b.start[0].round().tolist()[::-1])
    assert ring[cy, cx] == 0 and ring[0, 0] == 0  # the centre and a corner of the frame
    rows, cols = ring.nonzero(as_tuple=True)
    assert 16 <= cols.max() - cols.min() + 1 <= 16 + 6  # the outline of a 16 px square, grown by 1-2 px a side
    assert 4 * 16 <= ring.sum() <= 4 * 20 * 3  # a ring, not a disc: 2-3 px wide around the perimeter


def test_the_decoder_stage_can_train_on_the_denoisers_predictions(tmp_path):
    """decoder_on_denoised: part of each batch is decoded from dit.pt's prediction of the clean latent (as a
    sampled clip's latents are); the encoder stays as it was, and the prediction is near the latent at small t."""
    from pipelines.embedded.training.autoencoder import DenoisedLatents, train_vae
    from pipelines.embedded.training.common import load_vae, save_atomic

    torch.manual_seed(0)
    vcfg = VAEConfig(ch=(4, 4, 4), t_ch=8)
    cfg = dataclasses.replace(TrainConfig.shipped(), vae=vcfg, vae_batch=4, log_every=1, decoder_on_denoised=1.0,
                              decoder_denoised_t=(0.05, 0.05))
    vae = VideoAutoencoder(vcfg)
    save_atomic({"model": vae.state_dict(), "opt": {}, "step": 3, "config": cfg.to_dict(), "decoder_only": False},
                tmp_path / "vae.pt")
    tok = Tokenizer()
    dcfg = DiTConfig(vocab_size=max(256, len(tok)), latent_channels=vcfg.latent_channels, **TINY_DIT)
    dcfg = dataclasses.replace(dcfg, latent_size=8)
    dit = build_denoiser(dcfg.to_dict())
    save_atomic({"model": dit.state_dict(), "ema": dit.state_dict(), "opt": None, "step": 5,
                 "dit_config": dcfg.to_dict(), "vocab": tok.vocab}, tmp_path / "dit.pt")
    b = world.sample_batch(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = vae.encoder(frames_to_model(world.render(b)))
        zd = DenoisedLatents(tmp_path, vae, (0.05, 0.05), "cpu")(z, [b.labels(i) for i in range(2)],
                                                                   torch.Generator().manual_seed(2))
    assert zd.shape == z.shape and 0 < (zd - z).abs().mean() < z.abs().mean()
    train_vae(cfg, tmp_path, 0.02, True, "cpu", decoder_only=True, new_decoder=(cfg.decoder_ch, cfg.decoder_t_ch))
    new = load_vae(tmp_path)
    x = torch.rand(1, 3, 16, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(new.encoder(x), vae.encoder(x))
    assert torch.load(tmp_path / "vae.pt", weights_only=False)["step"] > 3
    (tmp_path / "dit.pt").unlink()
    with pytest.raises(SystemExit, match="needs the denoiser"):
        train_vae(cfg, tmp_path, 0.01, True, "cpu", decoder_only=True, new_decoder=(cfg.decoder_ch, cfg.decoder_t_ch))



@pytest.mark.parametrize("arch", ["dit", "unet", "unet-attn8"])
def test_denoiser_shapes_and_conditioning(arch):
    tok = Tokenizer()
    cfg = (DiTConfig(vocab_size=len(tok), **TINY_DIT) if arch == "dit"
           else UNetConfig(vocab_size=len(tok), **TINY_UNET, depth_8=int(arch == "unet-attn8")))
    dit = build_denoiser(cfg.to_dict())
    assert type(dit).__name__ == {"dit": "DiT"}.get(arch, "UNet")
    x = torch.randn(3, 8, 4, 16, 16)
    ids = tok.batch(["a red circle", "", "blue square moving left on gray"])
    text = dit.encode_text(ids)
    v = dit(x, torch.rand(3), text)
    assert v.shape == x.shape
    v2 = dit(x, torch.rand(3), text, image=torch.randn(3, 8, 16, 16), has_image=torch.tensor([True, False, True]))
    assert v2.shape == x.shape
    for p in dit.parameters():  # zero-initialised outputs: perturb so that conditioning can show
        torch.nn.init.normal_(p, std=0.05)
    text = dit.encode_text(ids)
    t, x = torch.full((3,), 0.5), x[:1].expand(3, -1, -1, -1, -1)  # rows differ in their prompt only
    base = dit(x, t, text)
    assert not torch.allclose(base, dit(x, torch.full((3,), 0.9), text))  # the timestep is used
    assert not torch.allclose(base, dit(x, t, text, image=torch.randn(3, 8, 16, 16)))  # the image is used
    assert not torch.allclose(base[0], base[1])  # the prompt is used
    diffusion.fm_loss(lambda xt, t: dit(xt, t, text), x).backward()


def test_edit_variants_keep_geometry_and_change_the_colour():
    g = torch.Generator().manual_seed(0)
    b = world.sample_batch(200, g)
    v = world.variant(b, g, p_bg=0.5, p_shape=0.0)
    assert bool((v.obj != b.obj).all()) and torch.equal(v.shape, b.shape) and torch.equal(v.motion, b.motion)
    assert torch.equal(v.start, b.start) and torch.equal(v.size, b.size)
    assert 0.3 < (v.bg != b.bg).float().mean() < 0.7


def test_edit_paths_run_straight_from_the_noised_input_to_the_target():
    """fm_loss with src/edit: every sample's x_t lies on a straight line to x0 whose velocity is the
    target (so the sampler's x0 = x_t - t v is x0), and the edit rows start from src, not x0."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 8, 4, 8, 8, generator=g)
    src = x0 + 10.0
    edit = torch.arange(64) % 2 == 0
    seen = {}

    def oracle(xt, t):
        seen["xt"], seen["t"] = xt, t
        return (xt - x0) / t.view(-1, 1, 1, 1, 1)

    loss = diffusion.fm_loss(oracle, x0, torch.Generator().manual_seed(1), src=src, edit=edit, edit_t=(0.4, 0.8))
    assert loss.item() < 1e-6
    t = seen["t"]
    assert bool((t[edit] <= 0.8).all())
    drift = (seen["xt"] - x0).mean(dim=(1, 2, 3, 4))  # the edit rows carry (1 - t_e) t / t_e of src - x0
    assert bool((drift[edit] > 10 * 0.2 * t[edit] * 0.9).all()) and drift[~edit].abs().max() < 0.1
    plain = diffusion.fm_loss(oracle, x0, torch.Generator().manual_seed(1))  # no src: the ordinary path
    assert plain.item() < 1e-6


def test_object_weight_weighs_the_cells_that_differ_from_the_plain_background():
    from pipelines.embedded.training.denoiser import object_cells

    bg = torch.zeros(4, 8, 4, 8, 8)
    bg[2] = 3.0  # background code 2 has another latent
    x0 = bg[torch.tensor([0, 2])].clone()
    x0[0, :, 1, 2:4, 5] += 1.0  # an "object" in clip 0
    cells = object_cells(x0, bg, torch.tensor([0, 2], dtype=torch.int8), 0.2)
    assert cells.shape == (2, 1, 4, 8, 8)
    assert cells[0, 0, 1, 2:4, 5].eq(1).all() and cells.sum() == 2  # clip 1 is its plain background: none

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, 8, 4, 8, 8, generator=g)
    wrong = torch.zeros(1, 1, 4, 8, 8)
    wrong[..., 0, 0] = 1.0  # a velocity wrong on one cell only

    def off(xt, t):  # the exact velocity, plus an error on that cell
        return (xt - x0) / t.view(-1, 1, 1, 1, 1) + wrong

    ones = diffusion.fm_loss(off, x0, torch.Generator().manual_seed(1), weight=torch.ones(16, 1, 4, 8, 8))
    assert ones.item() == pytest.approx(diffusion.fm_loss(off, x0, torch.Generator().manual_seed(1)).item())
    on_cell = diffusion.fm_loss(off, x0, torch.Generator().manual_seed(1), weight=1 + 4 * wrong.expand(16, -1, -1, -1, -1))
    elsewhere = diffusion.fm_loss(off, x0, torch.Generator().manual_seed(1), weight=1 + 4 * (1 - wrong).expand(16, -1, -1, -1, -1))
    assert on_cell > ones > elsewhere  # a weighted mean: the error counts more where the weight is


@pytest.mark.parametrize("object_weight", [0.0, 2.0])
def test_cache_and_dit_stages_train_on_edit_pairs(tmp_path, object_weight):
    """`--stage cache` stores each clip's edit partner; `--stage dit` with p_edit > 0 trains on them (with the
    object's cells weighted or not), checkpoints and resumes."""
    from pipelines.embedded.training.common import save_atomic
    from pipelines.embedded.training.denoiser import build_cache, train_denoiser as train_dit

    cfg = dataclasses.replace(TrainConfig.shipped(), vae=TINY_VAE, cache_clips=6,
                              denoiser={**TINY_DIT, "latent_size": 16}, denoiser_batch=4, p_edit=0.5, log_every=1,
                              denoiser_object_weight=object_weight)
    torch.manual_seed(0)
    save_atomic({"model": VideoAutoencoder(cfg.vae).state_dict(), "step": 1, "config": cfg.to_dict()},
                tmp_path / "vae.pt")
    build_cache(cfg, tmp_path, "cpu", batch=4)
    data = torch.load(tmp_path / "latents.pt", weights_only=False)
    assert data["edit_latents"].shape == data["latents"].shape == (6, 8, 4, 16, 16)
    assert bool((data["edit_labels"][:, 1] != data["labels"][:, 1]).all())  # another object colour
    assert torch.equal(data["edit_labels"][:, 3], data["labels"][:, 3])  # the same motion
    train_dit(cfg, tmp_path, 0.01, False, "cpu")
    first = torch.load(tmp_path / "dit.pt", weights_only=False)["step"]
    assert first > 0
    train_dit(cfg, tmp_path, 0.01, True, "cpu")
    assert torch.load(tmp_path / "dit.pt", weights_only=False)["step"] > first
    del data["edit_latents"]
    save_atomic(data, tmp_path / "latents.pt")
    with pytest.raises(SystemExit, match="rebuild it with --stage cache"):
        train_dit(cfg, tmp_path, 0.01, True, "cpu")


def test_sampler_is_deterministic_and_reaches_the_target():
    target = torch.randn(1, 8, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def velocity(x, t):  # the exact velocity field towards `target`
        t = t.view(-1, 1, 1, 1, 1)
        return (x - target) / t.clamp_min(1e-6)

    def go(seed):
        noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(seed))
        return diffusion.sample(velocity, noise, 20)

    assert torch.equal(go(3), go(3))
    assert torch.allclose(go(3), target, atol=1e-4)
    keep = torch.zeros_like(target)
    mask = torch.zeros(1, 1, 4, 1, 1)
    mask[:, :, 0] = 1.0
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    inpainted = diffusion.sample(velocity, noise, 20, keep=keep, keep_mask=mask)
    assert torch.equal(inpainted[:, :, 0], keep[:, :, 0])  # kept to the end
    steered = diffusion.sample(velocity, noise, 20, keep=keep, keep_mask=mask, keep_until=0.5)
    assert torch.allclose(steered, target, atol=1e-4)  # released at t < 0.5, then flows to the target
    ts = diffusion.timesteps(20, 0.6)
    assert ts[0] == pytest.approx(0.6) and ts[-1] == 0


# ---- the backend -------------------------------------------------------------------------------------
def _copy_weights(src: Path, dst: Path, version: str | None = None) -> Path:
    shutil.copytree(src, dst)
    if version is not None:
        meta = json.loads((dst / "config.json").read_text())
        meta["version"] = version
        (dst / "config.json").write_text(json.dumps(meta))
    return dst


def test_entry_takes_the_weights_version_from_config_json_and_loads_nothing(tiny_weights, tmp_path):
    assert embedded_entry(tiny_weights).spec.ref == f"embedded-shapes@{WEIGHTS_VERSION}"  # what export wrote
    newer = _copy_weights(tiny_weights, tmp_path / "newer", version="99")
    entry = embedded_entry(newer)
    assert entry.spec.ref == "embedded-shapes@99" and entry.spec.limits == EMBEDDED_SPEC.limits
    backend = entry.load("cpu", None)
    assert backend.spec == entry.spec and backend.manifest()["model"] == "embedded-shapes@99"
    # the entry reads config.json only: corrupt weights are found when loading, with the command
    (newer / "model.safetensors").write_bytes(b"not safetensors")
    entry = embedded_entry(newer)
    assert entry.spec.version == "99"
    with pytest.raises(ModelLoadError, match="pipelines.embedded.train"):
        entry.load("cpu", None)


def test_backend_refuses_what_the_spec_does_not_allow(backend):
    req = TextToVideoRequest(prompt="a red circle", steps=2).resolve(backend.spec, 1)
    for field, bad in (("frames", 8), ("width", 32), ("height", 128)):
        with pytest.raises(ValueError, match=f"{field}={bad}"):
            backend.generate(dataclasses.replace(req, **{field: bad}), MediaInputs(), torch.Generator(),
                             lambda *a: None, lambda: False)
    with pytest.raises(ValueError, match="media.image"):
        backend.generate(ImageToVideoRequest(prompt="x", image="x", steps=2).resolve(backend.spec, 1),
                         MediaInputs(), torch.Generator(), lambda *a: None, lambda: False)


def test_missing_names_the_absent_files_and_the_command(tiny_weights, tmp_path):
    from pipelines.contract import ModelRegistry

    assert embedded_entry(tiny_weights).missing() is None
    empty = embedded_entry(tmp_path).missing()
    assert "model.safetensors" in empty and "config.json" in empty
    assert empty.splitlines()[-1].startswith(TRAIN_COMMAND) and str(tmp_path) not in empty
    half = _copy_weights(tiny_weights, tmp_path / "half")
    (half / "model.safetensors").unlink()
    msg = ModelRegistry({"embedded-shapes": embedded_entry(half)}).missing("embedded-shapes")
    assert "model.safetensors" in msg and "config.json" not in msg.splitlines()[0]
    with pytest.raises(ModelLoadError):  # what missing() warns of is what load would hit
        embedded_entry(half).load("cpu", None)
    if (WEIGHTS_DIR / "model.safetensors").is_file():
        assert embedded_entry().missing() is None


def test_missing_weights_raise_model_load_error_with_the_command(tmp_path):
    with pytest.raises(ModelLoadError, match="pipelines.embedded.train"):
        embedded_entry(tmp_path).load("cpu", None)


def test_t2v_shape_determinism_progress_and_previews(backend):
    calls = []
    out = run(backend, TextToVideoRequest(prompt="a red circle moving left", steps=8),
              on_step=lambda s, n, p: calls.append((s, n, p)))
    assert out.shape == (16, 64, 64, 3) and out.dtype == np.uint8
    assert [c[0] for c in calls] == list(range(1, 9)) and all(c[1] == 8 for c in calls)
    previews = [c[2] for c in calls if c[2] is not None]
    assert previews and all(p.shape == (16, 64, 64, 3) for p in previews)
    again = run(backend, TextToVideoRequest(prompt="a red circle moving left", steps=8))
    assert np.array_equal(out, again)
    other = run(backend, TextToVideoRequest(prompt="a red circle moving left", steps=8), seed=2)
    assert not np.array_equal(out, other)
    # the negative prompt is the guidance's other branch: guide every step and look at what the denoiser
    # predicts (the tiny random nets' text path moves the frames by less than a level of 255 on some CPUs)
    saved = backend.cfg_interval, backend.unguided_final_steps, backend.shape_contrast
    backend.cfg_interval, backend.unguided_final_steps, backend.shape_contrast = (0.0, 1.0), 0, 0.0  # two rows
    predicted: list[list] = [[]]  # per run, the denoiser's output at every step
    hook = backend.denoiser.register_forward_hook(lambda m, i, o: predicted[-1].append(o.detach().clone()))
    try:
        run(backend, TextToVideoRequest(prompt="a red circle moving left", steps=8))
        predicted.append([])
        run(backend, TextToVideoRequest(prompt="a red circle moving left", negative_prompt="blue", steps=8))
    finally:
        hook.remove()
        backend.cfg_interval, backend.unguided_final_steps, backend.shape_contrast = saved
    pos, neg = predicted
    assert len(pos) == len(neg) == 8 and all(p.shape[0] == 2 for p in pos)  # prompt and negative rows, each step
    assert torch.equal(pos[0][0], neg[0][0])  # the prompt's row is the same: only the other branch differs
    assert not torch.equal(pos[0][1], neg[0][1])
    run(backend, TextToVideoRequest(prompt="qwzx ✓ ??? " * 50, steps=2))  # unknown words never fail


def test_cancel_raises_cancelled(backend):
    n = []

    def cancel():
        n.append(1)
        return len(n) > 3

    with pytest.raises(Cancelled):
        run(backend, TextToVideoRequest(prompt="a red circle", steps=10), cancel=cancel)


def test_i2v_first_frame_is_the_image(backend):
    clips, _ = groundtruth_clips(1)
    req, media = ImageToVideoRequest(prompt="moves right", image="x", steps=4), MediaInputs(image=clips[0][0])
    out = run(backend, req, media)
    assert out.shape == (16, 64, 64, 3)
    assert np.array_equal(out[0], clips[0][0])
    backend.paste_first_frame = False
    try:
        anchored = run(backend, req, media)  # the default anchor steers the first latent chunk
        backend.i2v_anchor = 0.0
        free = run(backend, req, media)
    finally:
        backend.i2v_anchor, backend.paste_first_frame = EmbeddedBackend.i2v_anchor, True
    assert EmbeddedBackend.i2v_anchor > 0
    assert anchored.shape == out.shape and not np.array_equal(anchored[0], clips[0][0])
    assert not np.array_equal(anchored, free)


def test_inpaint_keeps_pixels_outside_the_mask(backend):
    clips, _ = groundtruth_clips(1)
    mask = np.zeros((16, 64, 64), np.float32)
    mask[:, 8:40, 16:48] = 1.0
    out = run(backend, InpaintRequest(prompt="a pink square", video="x", mask="x", steps=4),
              MediaInputs(video=clips[0], mask=mask))
    assert np.array_equal(out[:, mask[0] < 0.5], clips[0][:, mask[0] < 0.5])
    assert psnr(out, clips[0], mask < 0.5) == float("inf")


def test_v2v_strength_zero_is_the_reconstruction_and_one_ignores_input(backend):
    clips, _ = groundtruth_clips(2)
    media = MediaInputs(video=clips[0])
    # a prompt that names everything: nothing is read from the input into it (read_inputs)
    req = dict(prompt="a green square moves left on a black background", video="x", steps=4)
    out0 = run(backend, VideoToVideoRequest(strength=0.0, **req), media)
    with torch.inference_mode():
        rec = backend._decode(backend._encode_pixels(clips[0]))
    assert np.array_equal(out0, rec)
    full_a = run(backend, VideoToVideoRequest(strength=1.0, **req), media)
    full_b = run(backend, VideoToVideoRequest(strength=1.0, **req), MediaInputs(video=clips[1]))
    assert np.array_equal(full_a, full_b)
    mid = run(backend, VideoToVideoRequest(strength=0.5, **req), media)
    assert mid.shape == (16, 64, 64, 3)


def test_manifest_and_unload(tiny_weights):
    b = EmbeddedBackend(tiny_weights)
    m = b.manifest()
    assert len(m["weights_sha256"]) == 12 and m["device"] == "cpu" and m["torch"]
    run(b, TextToVideoRequest(prompt="a red circle", steps=2))
    nets = [weakref.ref(b.vae), weakref.ref(b.denoiser)]
    b.unload()
    gc.collect()
    assert all(r() is None for r in nets)  # nothing else held the networks: their memory is freed
    with pytest.raises(ModelLoadError, match="unloaded"):
        run(b, TextToVideoRequest(prompt="a red circle", steps=2))
    b.unload()  # twice is harmless


def test_registry_unload_frees_the_backend_and_load_gives_a_working_one(tiny_weights):
    from pipelines.contract import ModelRegistry

    reg = ModelRegistry({"embedded-shapes": embedded_entry(tiny_weights)})
    first = reg.load("embedded-shapes")
    net = weakref.ref(first.denoiser)
    reg.unload()
    gc.collect()
    assert net() is None
    again = reg.load("embedded-shapes")
    assert again is not first
    assert run(again, TextToVideoRequest(prompt="a red circle", steps=2)).shape == (16, 64, 64, 3)


# ---- the training recipe and the layout of the training code ----------------------------------------
def test_train_with_no_flags_uses_the_shipped_recipe():
    from pipelines.embedded import train

    args = train.build_parser().parse_args([])
    cfg = train.resolve_config(args)
    assert cfg == TrainConfig.shipped()
    assert args.stage == "all" and train.STAGES == ("vae", "decoder", "cache", "dit", "export")
    assert [train.stage_minutes(cfg, s, args) for s in ("vae", "decoder", "dit")] == [
        cfg.vae_minutes, cfg.decoder_minutes, cfg.denoiser_minutes]
    assert train.stage_minutes(cfg, "dit", train.build_parser().parse_args(["--minutes", "3"])) == 3


def test_the_recipe_builds_the_shipped_architecture():
    """What the recipe trains is what was shipped: the v1 encoder with the residual decoder, the DiT
    (not the unshipped v2 autoencoder and U-Net), the shipped sampler shift, batch and cache size."""
    from pipelines.embedded.training.denoiser import denoiser_dict

    meta = json.loads((WEIGHTS_DIR / "config.json").read_text())
    cfg = TrainConfig.shipped()
    # the latent noise is a loss setting, not the architecture: 5.3's decoder was continued with less
    # (training/decoder_53.json) than the recipe trained the autoencoder with
    shipped = VAEConfig.from_dict(meta["vae"])
    assert cfg.shipped_vae == dataclasses.replace(shipped, latent_noise=cfg.vae.latent_noise)
    assert json.loads((WEIGHTS_DIR.parents[1] / "pipelines/embedded/training/decoder_53.json").read_text())["vae"] == {
        "latent_noise": shipped.latent_noise}
    assert denoiser_dict(cfg, cfg.vae, Tokenizer()) == meta["dit"]
    assert cfg.t_shift == meta["sampler"]["shift"]
    assert (cfg.denoiser_batch, cfg.cache_clips) == (meta["training"]["dit_batch"], meta["training"]["cache_clips"])
    assert cfg.p_edit == 0.25 and cfg.vae.arch == "v1"


@pytest.mark.skipif(not (WEIGHTS_DIR / "model.safetensors").is_file(), reason="no shipped weights")
def test_the_shipped_tensors_fit_the_recipes_networks_exactly():
    from safetensors.torch import load_file

    from pipelines.embedded.training.denoiser import denoiser_dict
    from pipelines.embedded.weights import split_state

    cfg = TrainConfig.shipped()
    vae_state, den_state = split_state(load_file(str(WEIGHTS_DIR / "model.safetensors")))
    VideoAutoencoder(cfg.shipped_vae).load_state_dict(vae_state)  # strict: same names, same shapes
    build_denoiser(denoiser_dict(cfg, cfg.vae, Tokenizer())).load_state_dict(den_state)


def test_old_checkpoint_configs_still_load():
    """Checkpoints written before the rename say dit / dit_lr / dit_batch and lack the decoder keys."""
    old = {k: v for k, v in TrainConfig.shipped().to_dict().items() if not k.startswith(("decoder", "denoiser"))}
    old.update(dit={"arch": "unet"}, dit_lr=1e-3, dit_batch=32, dit_warmup=100)
    cfg = TrainConfig.from_dict(old)
    assert (cfg.denoiser, cfg.denoiser_lr, cfg.denoiser_batch) == ({"arch": "unet"}, 1e-3, 32)
    assert cfg.decoder_ch == TrainConfig.shipped().decoder_ch
    assert TrainConfig.shipped().updated({"dit_lr": 2e-4, "vae": {"t_ch": 8}}).denoiser_lr == 2e-4
    with pytest.raises(ValueError, match="unknown training config key"):
        TrainConfig.from_dict({**old, "dit_lrr": 1.0})


def _project_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("pipelines.")}


def test_training_modules_do_not_import_the_command_line_or_the_backend():
    """No cycle: the entry (train.py) imports the training package, never the other way round."""
    pkg = Path(__file__).resolve().parents[2] / "pipelines" / "embedded"
    for path in sorted((pkg / "training").glob("*.py")):
        bad = {n for n in _project_imports(path)
               if n == "pipelines.embedded.train" or n.startswith("pipelines.embedded.backend")}
        assert not bad, f"{path.name} imports {bad}"
    assert not (pkg / "dit_train.py").exists()


# ---- the shipped weights ---------------------------------------------------------------------------
needs_shipped = pytest.mark.skipif(not (WEIGHTS_DIR / "model.safetensors").is_file(),
                                   reason="no shipped weights in assets/embedded")


@pytest.fixture(scope="module")
def shipped():
    return embedded_entry().load("cpu", None)


@needs_shipped
def test_shipped_weights_get_the_colours_right(shipped):
    b = shipped
    cases = [("a red circle moving right on a black background", "red", "black"),
             ("yellow square, navy background, rising", "yellow", "navy"),
             ("on beige, a blue triangle that stays put", "blue", "beige"),
             ("a green ball falling over gray", "green", "gray")]
    hits = 0
    for prompt, obj, bg in cases:
        a = analyse(run(b, TextToVideoRequest(prompt=prompt), seed=0))
        hits += (a.obj == obj) + (a.bg == bg)
    assert hits >= 7, hits


@needs_shipped
def test_shipped_v2v_follows_a_new_colour_and_keeps_the_motion(shipped):
    """SDEdit at strength 0.6 with a prompt whose colour disagrees with the input (weights version 5
    learned it from edit pairs; version 4 lost small objects here)."""
    clips, labels = groundtruth_clips(4, seed=123)
    hits = 0
    for i, (clip, lab) in enumerate(zip(clips, labels)):
        new = dict(lab, obj=world.OBJ_NAMES[(world.OBJ_NAMES.index(lab["obj"]) + 4) % len(world.OBJ_NAMES)])
        req = VideoToVideoRequest(prompt=world.canonical_caption(new), video="-", strength=0.6)
        a = analyse(run(shipped, req, MediaInputs(video=clip), seed=i))
        hits += (a.obj == new["obj"]) + (a.motion == lab["motion"])
    assert hits >= 7, hits


@needs_shipped
def test_inpaint_redraws_a_still_object_in_a_tight_mask(shipped):
    """The mask is a still object's box grown by 4 px, the prompt the clip's description or another shape. From
    pure noise (strength 1) the model drew nothing in 5 of these 8 cases, since what it placed outside the mask was
    erased; at the model's default (0.75, from the input noised) the object is redrawn where it was, as told."""
    clips, labels = groundtruth_clips(20, seed=123)
    assert shipped.spec.defaults.inpaint_strength == 0.75
    right = []
    for i in (4, 16, 6, 19):  # still objects
        lab = labels[i]
        for new in (lab, dict(lab, shape=world.SHAPES[(world.SHAPES.index(lab["shape"]) + 1) % 3])):
            req = InpaintRequest(prompt=world.canonical_caption(new), video="-", mask="-")
            out = run(shipped, req, MediaInputs(video=clips[i], mask=object_mask(clips[i], lab)), seed=0)
            right.append(analyse(out).labels() == new)
    assert sum(right) >= 7, right


@needs_shipped
def test_inpaint_refinement_brings_the_decoded_outside_closer_to_the_input(shipped):
    clips, _ = groundtruth_clips(1)
    mask = np.zeros((16, 64, 64), np.float32)
    mask[:, 12:36, 20:44] = 1.0  # not aligned with the 8x8 latent cells: they straddle its edge
    req, media = InpaintRequest(prompt="a pink square", video="x", mask="x", steps=6), MediaInputs(video=clips[0], mask=mask)
    shipped.composite_inpaint = False
    try:
        refined = run(shipped, req, media)
        assert np.array_equal(refined, run(shipped, req, media))  # deterministic
        shipped.inpaint_refine_steps = 0
        blended = run(shipped, req, media)
    finally:
        shipped.composite_inpaint, shipped.inpaint_refine_steps = True, EmbeddedBackend.inpaint_refine_steps
    assert psnr(refined, clips[0], mask < 0.5) > psnr(blended, clips[0], mask < 0.5) + 1.0
    assert all(not p.requires_grad for p in shipped.vae.parameters())  # the weights take no gradients


def test_unet_8x8_attention_blocks_start_as_identity():
    """Adding the zero-initialised 8x8 spacetime blocks to a trained U-Net must not change it (warm start)."""
    tok = Tokenizer()
    torch.manual_seed(0)
    base = build_denoiser(UNetConfig(vocab_size=len(tok), **TINY_UNET).to_dict())
    for p in base.parameters():  # stands in for trained weights
        torch.nn.init.normal_(p, std=0.05)
    grown = build_denoiser(UNetConfig(vocab_size=len(tok), **TINY_UNET, depth_8=1).to_dict())
    missing = grown.load_state_dict(base.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith(("blocks8.", "c8.")) for k in missing)
    x, t, ids = torch.randn(2, 8, 4, 16, 16), torch.full((2,), 0.5), tok.batch(["a red circle moving left", ""])
    with torch.no_grad():
        assert torch.allclose(grown(x, t, grown.encode_text(ids)), base(x, t, base.encode_text(ids)), atol=1e-5)


def test_every_stage_runs_from_the_command_line_and_the_export_loads(tmp_path):
    """`python -m pipelines.embedded.train --stage all` (tiny sizes through --config): vae, the
    recipe's residual decoder on the frozen encoder, cache, denoiser, export; the backend loads it."""
    from pipelines.embedded.train import main

    tiny = {"vae": {"ch": [4, 4, 4], "t_ch": 8}, "decoder_ch": [4, 4, 4, 4], "decoder_t_ch": 8, "vae_batch": 2,
            "cache_clips": 4, "denoiser": {"width": 16, "depth": 1, "heads": 2, "text_width": 16, "text_depth": 1},
            "denoiser_batch": 2, "log_every": 1}
    (tmp_path / "tiny.json").write_text(json.dumps(tiny))
    assets = tmp_path / "assets"
    assert main(["--config", str(tmp_path / "tiny.json"), "--out", str(tmp_path / "run"), "--minutes", "0.01",
                 "--assets", str(assets), "--threads", "1"]) == 0
    meta = json.loads((assets / "config.json").read_text())
    assert meta["version"] == WEIGHTS_VERSION
    assert meta["vae"]["arch"] == "v1" and meta["vae"]["dec_ch"] == [4, 4, 4, 4]  # the decoder stage ran
    assert "arch" not in meta["dit"] and meta["dit"]["latent_size"] == 8  # a DiT on the 8x latents
    b = EmbeddedBackend(assets)
    assert type(b.denoiser).__name__ == "DiT" and type(b.vae.decoder).__name__ == "Decoder2"


@pytest.mark.parametrize("mode", ["t2v", "i2v", "inpaint"])
def test_a_batch_of_seeds_gives_the_clips_of_single_generations(backend, mode):
    """generate_batch runs the seeds through the network together; each clip is what generate gives alone
    (up to float rounding in the batched matmuls: at most one level in a few pixels)."""
    import dataclasses

    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    mask = np.zeros((16, 64, 64), np.float32)
    mask[:, 16:48, 16:48] = 1
    media = {"t2v": MediaInputs(), "i2v": MediaInputs(image=video[0]),
             "inpaint": MediaInputs(video=video, mask=mask)}[mode]
    cls = {"t2v": TextToVideoRequest, "i2v": ImageToVideoRequest, "inpaint": InpaintRequest}[mode]
    extra = {"i2v": {"image": "x.png"}, "inpaint": {"video": "v.mp4", "mask": "m.png"}}.get(mode, {})
    base = cls(prompt="a red circle moving right", steps=3, **extra).resolve(EMBEDDED_SPEC, 0)
    requests = [dataclasses.replace(base, seed=s) for s in (5, 6, 7)]
    steps = []
    batch = backend.generate_batch(requests, media, [torch.Generator().manual_seed(r.seed) for r in requests],
                                   lambda i, n, p: steps.append(i), lambda: False)
    assert steps == [1, 2, 3] and len(batch) == 3
    for request, frames in zip(requests, batch):
        alone = backend.generate(request, media, torch.Generator().manual_seed(request.seed),
                                 lambda *a: None, lambda: False)
        diff = np.abs(alone.astype(int) - frames.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert not np.array_equal(batch[0], batch[1])  # different seeds, different clips
    with pytest.raises(ValueError, match="differ only in their seed"):
        backend.generate_batch([requests[0], dataclasses.replace(requests[1], cfg_scale=9.0)], media,
                               [torch.Generator(), torch.Generator()], lambda *a: None, lambda: False)


# ---- second round (#16): partial captions, edit pairs of every kind, fine-tuning from shipped weights, solvers
def _mentions(text: str) -> dict[str, set[str]]:
    """Which attribute values a caption names: longest synonyms first, each match removed from the text
    (so "navy blue" is the background navy, not the colour blue)."""
    import re

    tables = {"obj": world.OBJ_WORDS, "bg": world.BG_WORDS, "shape": world.SHAPE_WORDS,
              "motion": {k: (a + c, b + d) for k, ((a, b), (c, d)) in
                         ((k, (world.MOTION_VERBS[k], world.MOTION_GERUNDS[k])) for k in world.MOTIONS)}}
    phrases = sorted(((p, key, value) for key, table in tables.items() for value, (train, held) in table.items()
                      for p in train + held), key=lambda x: -len(x[0]))
    text = " " + re.sub(r"[^a-z]+", " ", text.lower()) + " "
    found: dict[str, set[str]] = {k: set() for k in tables}
    for p, key, value in phrases:
        if f" {p} " in text:
            found[key].add(value)
            text = text.replace(f" {p} ", " | ")
    return found


@pytest.mark.parametrize("split", ["train", "eval"])
def test_a_change_only_caption_names_exactly_what_differs(split):
    import random

    rng = random.Random(0)
    g = torch.Generator().manual_seed(0)
    b = world.sample_batch(300, g)
    v = world.edit_variant(b, g)
    kinds = set()
    for i in range(len(b)):
        src, dst = b.labels(i), v.labels(i)
        diff = world.changed(src, dst)
        kinds.add(tuple(diff))
        said = _mentions(world.edit_caption(src, dst, rng, split))
        for key in ("obj", "shape", "bg"):
            assert said[key] == ({dst[key]} if key in diff else set()), (src, dst, said)
        assert not said["motion"]
    assert {("obj",), ("shape",), ("bg",), ("obj", "shape"), ("obj", "bg"), ("shape", "bg")} <= kinds
    assert world.edit_caption(src, src, rng) == ""


def test_edit_variants_of_every_kind_keep_geometry_and_motion():
    g = torch.Generator().manual_seed(1)
    b = world.sample_batch(400, g)
    v = world.edit_variant(b, g)
    ch = torch.stack([v.obj != b.obj, v.shape != b.shape, v.bg != b.bg], 1)
    assert bool(ch.any(1).all())  # something always changes
    assert 0.1 < float((ch.sum(1) == 1).float().mean()) < 0.9  # often one attribute alone, sometimes more
    assert torch.equal(v.motion, b.motion) and torch.equal(v.start, b.start) and torch.equal(v.size, b.size)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_i2v_captions_say_the_motion_and_only_the_look_asked_for(split):
    import random

    rng = random.Random(2)
    lab = {"bg": "navy", "obj": "red", "shape": "circle", "motion": "down"}
    for look in world.I2V_TEMPLATES:
        for _ in range(20):
            said = _mentions(world.i2v_caption(lab, rng, split, look))
            assert said["motion"] == {"down"}
            for key, letter in (("obj", "c"), ("shape", "s"), ("bg", "b")):
                assert said[key] == ({lab[key]} if letter in look else set())
    looks = [_mentions(world.i2v_caption(lab, rng, split)) for _ in range(200)]
    assert 0.35 < np.mean([not (s["obj"] or s["shape"] or s["bg"]) for s in looks]) < 0.65  # half motion-only
    held = {t for _, held in world.I2V_TEMPLATES.values() for t in held}
    assert not held & {t for train, _ in world.I2V_TEMPLATES.values() for t in train}
    assert not {t for _, h in world.EDIT_PHRASES.values() for t in h} & {t for tr, _ in world.EDIT_PHRASES.values() for t in tr}


def test_training_captions_keep_the_old_stream_unless_the_new_keys_are_set():
    import random

    from pipelines.embedded.training.denoiser import captions_for, label_dict

    g = torch.Generator().manual_seed(3)
    b = world.sample_batch(64, g)
    v = world.edit_variant(b, g)
    labels, src = b.codes(), v.codes()
    flags = torch.arange(64) % 2 == 0
    old = [world.caption(label_dict(r), rng_, "train") if rng_.random() >= 0.1 else ""
           for rng_ in [random.Random(5)] for r in labels.tolist()]
    assert captions_for(labels, random.Random(5), 0.1, flags, 0.0, src, ~flags, 0.0) == old
    new = captions_for(labels, random.Random(5), 0.0, flags, 1.0, src, ~flags, 1.0)
    for i, text in enumerate(new):
        said = _mentions(text)
        if flags[i]:  # i2v rows: the motion, at most part of the look
            assert said["motion"] == {label_dict(labels[i].tolist())["motion"]}
        else:  # edit rows: exactly what differs from the source
            lab, s = label_dict(labels[i].tolist()), label_dict(src[i].tolist())
            assert {k for k in ("obj", "shape", "bg") if said[k]} == set(world.changed(s, lab))


def test_the_tokenizer_grows_a_trained_vocabulary_without_moving_its_words():
    tok = Tokenizer()
    old = [w for w in tok.vocab if w not in ("instead", "make", "it")]
    grown = Tokenizer.extending(old)
    assert grown.vocab[: len(old)] == old and set(grown.vocab) == set(tok.vocab)
    assert grown.encode("make it blue")[1] != UNK and grown.encode("colour")[1] == grown.encode("color")[1]


def test_fine_tuning_starts_from_shipped_weights_and_resumes(tmp_path):
    """--from-assets seeds vae.pt and dit.pt from a weights folder; the cache (edit pairs of every kind)
    and the denoiser stage (partial and change-only captions) then run, checkpoint and resume."""
    from safetensors.torch import load_file

    from pipelines.embedded.train import main
    from pipelines.embedded.weights import split_state

    torch.manual_seed(0)
    tok = Tokenizer()
    dcfg = DiTConfig(vocab_size=256, **TINY_DIT)
    tiny_weights = tmp_path / "assets"
    write_assets(tiny_weights, VideoAutoencoder(TINY_VAE).state_dict(), build_denoiser(dcfg.to_dict()).state_dict(),
                 TINY_VAE.to_dict(), dcfg.to_dict(), tok.vocab)
    meta = json.loads((tiny_weights / "config.json").read_text())
    ft = {"cache_clips": 6, "denoiser_batch": 4, "log_every": 1, "edit_pairs": "any", "p_image_partial": 0.5,
          "p_edit_change": 0.5, "p_t_uniform": 0.2, "denoiser_lr": 1e-4}
    (tmp_path / "ft.json").write_text(json.dumps(ft))
    run_dir = tmp_path / "run"
    args = ["--out", str(run_dir), "--config", str(tmp_path / "ft.json"), "--threads", "1", "--assets", str(tiny_weights)]
    assert main(["--from-assets", "--stage", "cache", *args]) == 0
    ck = torch.load(run_dir / "dit.pt", weights_only=False)
    _, shipped = split_state(load_file(str(tiny_weights / "model.safetensors")))
    assert all(torch.equal(ck["ema"][k], shipped[k].float()) for k in shipped)
    assert ck["vocab"] == meta["vocab"] and ck["config"]["p_edit_change"] == 0.5
    data = torch.load(run_dir / "latents.pt", weights_only=False)
    ch = (data["edit_labels"][:, :3] != data["labels"][:, :3])
    assert bool(ch.any(1).all())
    with pytest.raises(SystemExit, match="exists"):  # never clobbers a run
        main(["--from-assets", "--stage", "dit", *args])
    step0 = ck["step"]
    assert main(["--stage", "dit", "--resume", "--minutes", "0.01", "--out", str(run_dir), "--threads", "1"]) == 0
    ck = torch.load(run_dir / "dit.pt", weights_only=False)
    assert ck["step"] > step0 and ck["opt"] is not None and ck["config"]["p_image_partial"] == 0.5
    step1 = ck["step"]
    assert main(["--stage", "dit", "--resume", "--minutes", "0.01", "--out", str(run_dir), "--threads", "1"]) == 0
    assert torch.load(run_dir / "dit.pt", weights_only=False)["step"] > step1


@pytest.mark.parametrize("solver", diffusion.SOLVERS)
def test_solvers_are_deterministic_exact_on_straight_paths_and_second_order_ones_beat_euler(solver):
    target = torch.randn(1, 8, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(3))

    def straight(x, t):
        return (x - target) / t.view(-1, 1, 1, 1, 1).clamp_min(1e-6)

    out = diffusion.sample(straight, noise, 8, solver=solver)
    assert torch.equal(out, diffusion.sample(straight, noise, 8, solver=solver))
    assert torch.allclose(out, target, atol=1e-4)

    def curved(x, t):  # dx/dt = 2 t x: x(0) = x(1) exp(-1)
        return 2 * t.view(-1, 1, 1, 1, 1) * x

    err = {s: float((diffusion.sample(curved, noise, 8, solver=s) - noise * np.exp(-1)).abs().max())
           for s in diffusion.SOLVERS}
    if solver != "euler":
        assert err[solver] < 0.5 * err["euler"]
    with pytest.raises(ValueError, match="solver"):
        diffusion.sample(straight, noise, 8, solver="rk45")


def test_interval_guidance_evaluates_the_prompt_alone_outside_its_interval():
    calls = []

    def model_fn(x, t, rows):
        calls.append(rows)
        n = x.shape[0] // len(rows)
        return torch.cat([torch.full_like(x[:n], {0: 1.0, 1: 0.0, 2: 3.0}[r]) for r in rows])

    v = diffusion.cfg_velocity(model_fn, 5.0, (0.2, 1.0))
    x = torch.zeros(2, 3)
    assert torch.equal(v(x, torch.full((2,), 0.5)), torch.full((2, 3), 5.0)) and calls == [(0, 1)]  # 0 + 5 (1 - 0)
    assert torch.equal(v(x, torch.full((2,), 0.1)), torch.ones(2, 3)) and calls == [(0, 1), (0,)]  # the prompt alone
    calls.clear()  # the contrast branch (2) pushes away from it: 5 + 2 (1 - 3) = 1, on the guided steps only
    v = diffusion.cfg_velocity(model_fn, 5.0, (0.2, 1.0), contrast=2.0)
    assert torch.equal(v(x, torch.full((2,), 0.5)), torch.full((2, 3), 1.0)) and calls == [(0, 1, 2)]
    assert torch.equal(v(x, torch.full((2,), 0.1)), torch.ones(2, 3)) and calls[-1] == (0,)
    v = diffusion.cfg_velocity(model_fn, 1.0, (0.2, 1.0), contrast=2.0)  # CFG 1 guides nothing, the contrast neither
    assert torch.equal(v(x, torch.full((2,), 0.5)), torch.ones(2, 3)) and calls[-1] == (0,)


def test_guidance_skips_the_noisiest_steps_and_the_last_by_default_and_the_manifest_says_so(tiny_weights):
    b = EmbeddedBackend(tiny_weights)
    assert b.unguided_final_steps == 1 and "last 1 step(s) unguided" in b.manifest()["sampler"]
    assert b.cfg_interval == (0.0, 0.7) and "CFG for t in [0.0, 0.7]" in b.manifest()["sampler"]
    lo, hi = b._guidance_interval(8, 1.0, None)  # grid 1, 0.875, ..., 0.125, 0: only t = 0.125 is unguided
    assert 0.125 < lo < 0.25 and hi == 0.7
    lo, _ = b._guidance_interval(20, 0.6, "v2v")  # an SDEdit grid from t = 0.6: only its last step
    assert 0.03 < lo < 0.06
    b.cfg_interval = (0.0, 1.0)
    assert b._guidance_interval(1, 1.0, None) == (0.0, 1.0)  # a single step stays guided
    b.unguided_final_steps = 0
    assert b._guidance_interval(8, 1.0, None) == (0.0, 1.0) and "unguided" not in b.manifest()["sampler"]


def test_a_config_without_a_sampler_samples_as_version_5_1(tiny_weights, tmp_path):
    """config.json files written before export recorded the sampler keep their sampler: euler, guidance for
    t <= 0.7, the last step unguided, no shape contrast, whatever the exporter's SAMPLER becomes."""
    old = tmp_path / "old"
    shutil.copytree(tiny_weights, old)
    meta = json.loads((old / "config.json").read_text())
    meta.pop("sampler")
    (old / "config.json").write_text(json.dumps(meta))
    b = EmbeddedBackend(old)
    assert (b.solver, b.cfg_interval, b.unguided_final_steps, b.shift, b.shape_contrast) == ("euler", (0.0, 0.7), 1, 1.0, 0.0)


@pytest.mark.parametrize("prompt, named", [
    ("moves left", {"motion": "left"}),
    ("a pink triangle", {"obj": "pink", "shape": "triangle"}),
    ("make it blue", {"obj": "blue"}),
    ("a light blue disk on a navy blue backdrop", {"obj": "cyan", "shape": "circle", "bg": "navy"}),  # longest wins
    ("the jade thing glides west", {"obj": "green", "motion": "left"}),  # held-out words through the aliases
    ("Square. Blue. Moves to the bottom. Gray background.",
     {"shape": "square", "obj": "blue", "motion": "down", "bg": "gray"}),
    ("on top of beige, a red dot that rises", {"bg": "beige", "obj": "red", "shape": "circle", "motion": "up"}),
    ("a cat playing piano", {}),
])
def test_named_labels_reads_what_a_prompt_says(prompt, named):
    from pipelines.embedded.text import named_labels

    assert named_labels(prompt) == named


@pytest.mark.parametrize("prompt, contrast", [
    ("a small khaki square drifting up over sand", "a small khaki circle drifting up over sand"),
    ("Ruby-colored CUBE lifting off!", "ruby colored circle lifting off"),  # a held-out synonym, through the aliases
    ("a round shape on black", "a square on black"),
    ("on beige, a white triangle that stays put", "on beige a white circle that stays put"),
    ("a trigon, then a box", "a circle then a circle"),  # every mention
    ("moves left", None), ("a cat playing piano", None), ("", None),
])
def test_contrast_prompt_says_the_shape_the_model_hedges_towards(prompt, contrast):
    from pipelines.embedded.text import contrast_prompt

    assert contrast_prompt(prompt) == contrast


def test_shape_contrast_adds_a_branch_only_for_a_prompt_that_names_a_shape(tiny_weights):
    """The denoiser sees [prompt; negative; contrast] on guided steps when the prompt names a shape, [prompt;
    negative] otherwise; off (shape_contrast 0), never."""
    b = EmbeddedBackend(tiny_weights)
    b.shape_contrast = 2.0
    batches, forward = [], b.denoiser.forward
    b.denoiser.forward = lambda x, *a, **k: (batches.append(x.shape[0]), forward(x, *a, **k))[1]
    shaped = TextToVideoRequest(prompt="a red square moving left on black", steps=4).resolve(b.spec, 3)
    b.generate(shaped, MediaInputs(), torch.Generator().manual_seed(3), lambda *a: None, lambda: False)
    assert 3 in batches and "shape contrast 2.0" in b.manifest()["sampler"]
    batches.clear()
    b.generate(TextToVideoRequest(prompt="something red moving left", steps=4).resolve(b.spec, 3), MediaInputs(),
               torch.Generator().manual_seed(3), lambda *a: None, lambda: False)
    assert 3 not in batches and 2 in batches
    b.shape_contrast = 0.0
    batches.clear()
    b.generate(shaped, MediaInputs(), torch.Generator().manual_seed(3), lambda *a: None, lambda: False)
    assert 3 not in batches and "shape contrast" not in b.manifest()["sampler"]


def test_complete_prompt_says_what_the_input_shows_and_the_prompt_wins():
    from pipelines.embedded.text import complete_prompt

    seen = {"obj": "green", "shape": "circle", "bg": "beige", "motion": "right"}
    assert complete_prompt("moves left", seen) == "a green circle moves left on a beige background"
    assert complete_prompt("make it blue", seen) == "a blue circle moves right on a beige background"
    assert complete_prompt("a triangle instead, on black", seen) == "a green triangle moves right on a black background"
    assert complete_prompt("a green circle", {**seen, "motion": None}) == "a green circle on beige"  # no motion seen
    assert complete_prompt("a red square rises on navy", seen) is None  # names everything: used as typed
    assert complete_prompt("moves left", {"obj": None, "shape": None, "bg": "beige", "motion": None}) is None


@pytest.mark.parametrize("mode", ["i2v", "v2v"])
def test_i2v_and_v2v_read_what_the_input_shows_into_the_prompt(backend, mode):
    """The image's or source's look (and a source's motion) is said in the prompt the model is given;
    the manifest says what it was; off (read_inputs False), or in t2v, the prompt is used as typed."""
    g = torch.Generator().manual_seed(3)
    b = world.sample_batch(1, g, bg=world.BG_NAMES.index("beige"), obj=world.OBJ_NAMES.index("green"),
                           shape=world.SHAPES.index("square"), motion=world.MOTIONS.index("down"))
    clip = world.to_uint8(world.render(b))[0].numpy()
    if mode == "i2v":
        req, media = ImageToVideoRequest(prompt="moves left", image="x", steps=2), MediaInputs(image=clip[0])
        want = "a green square moves left on a beige background"
    else:
        req, media = VideoToVideoRequest(prompt="make it red", video="x", steps=2), MediaInputs(video=clip)
        want = "a red square moves down on a beige background"
    run(backend, req, media)
    assert backend.manifest()["prompt_read_as"] == want
    backend.read_inputs = False
    try:
        run(backend, req, media)
        assert backend.manifest()["prompt_read_as"] is None
    finally:
        backend.read_inputs = True
    run(backend, TextToVideoRequest(prompt="moves left", steps=2))
    assert backend.manifest()["prompt_read_as"] is None
