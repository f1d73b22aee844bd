"""The studio backend of the embedded model: t2v, i2v, v2v (SDEdit) and inpaint (latent blending).

Follows the diffusers skeleton: check inputs, encode prompt, timesteps, latents, denoise (cancel flag
and progress at every step), decode. Weights: assets/embedded/model.safetensors + config.json, made
by `python -m pipelines.embedded.train --stage export`.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
from pathlib import Path
from typing import Callable

from pipelines.contract import (
    MODES,
    Cancelled,
    MediaInputs,
    ModelDefaults,
    ModelLimits,
    ModelLoadError,
    ModelSpec,
    Range,
    StepCallback,
)
from pipelines.contract import RegistryEntry
from pipelines.embedded.weights import (
    CONFIG_FILE,
    DENOISER_KEY,
    SAMPLER_FALLBACK,
    TRAIN_COMMAND,
    WEIGHTS_DIR,
    WEIGHTS_FILE,
    WEIGHTS_VERSION,
    missing,
    split_state,
)

PREVIEW_EVERY = 4
TRAIN_HINT = f"train it with `{TRAIN_COMMAND}` (the shipped recipe: every stage, then export to assets/embedded/)"

EMBEDDED_SPEC = ModelSpec(
    id="embedded-shapes",
    version=WEIGHTS_VERSION,  # the shipped weights' (pipelines/embedded/weights.py); config.json's wins
    label="Embedded shapes (CPU, 64x64)",
    family="embedded",
    modes=MODES,
    # inpaint starts from the input noised to t = 0.75: from pure noise (1.0) the model places and sizes the
    # object at random, and what falls outside the mask is erased, so an object in a tight mask comes out small
    # or not at all (MODEL_CARD.md, "Session 12")
    defaults=ModelDefaults(steps=20, cfg_scale=5.0, frames=16, fps=8, width=64, height=64, strength=0.6,
                           inpaint_strength=0.75),
    limits=ModelLimits(
        steps=Range(1, 100),
        cfg_scale=Range(0.0, 20.0),
        frames=Range(16, 16),
        fps=Range(1, 60),
        width=Range(64, 64),
        height=Range(64, 64),
    ),
    description=(
        "A small latent video diffusion transformer trained by the project on a procedural world: one "
        "coloured circle, square or triangle moving left, right, up, down or staying still on a plain "
        "background. 64x64, 16 frames, runs offline on a CPU in seconds."
    ),
)


def embedded_entry(weights_dir: Path | None = None) -> RegistryEntry:
    """The registry entry; reads only the small config.json (for the weights' version), loads nothing.
    Its `missing()` names the absent weights files and the command that rebuilds them."""
    wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    spec = EMBEDDED_SPEC
    try:
        version = json.loads((wdir / CONFIG_FILE).read_text()).get("version")
        if version:
            spec = dataclasses.replace(spec, version=str(version))
    except (OSError, ValueError):
        pass

    def load(device: str, profile: str | None) -> "EmbeddedBackend":
        return EmbeddedBackend(wdir, device=device, spec=spec)

    tokenizer: list = []  # the weights' own vocabulary and prompt length (config.json), read at the first prompt

    def prompt_warnings(prompt: str) -> list[str]:
        from pipelines.embedded.text import Tokenizer

        if not tokenizer:
            try:
                meta = json.loads((wdir / CONFIG_FILE).read_text())
                tokenizer.append(Tokenizer(meta["vocab"], max_len=int(meta[DENOISER_KEY]["text_len"])))
            except (OSError, ValueError, KeyError, TypeError):
                return []  # no weights to ask: loading says what is missing
        return tokenizer[0].warnings(prompt)

    def prompt_read_as(mode: str, prompt: str, media: MediaInputs) -> str | None:  # as the backend will read it
        return read_with_input(mode, prompt, media) if EmbeddedBackend.read_inputs else None

    return RegistryEntry(spec=spec, load=load, missing=lambda: missing(wdir), prompt_warnings=prompt_warnings,
                         prompt_read_as=prompt_read_as)


def read_with_input(mode: str, prompt: str, media: MediaInputs) -> str | None:
    """What an i2v or v2v prompt is read as: the prompt with what the input already shows said in it (the
    analyser reads the image's or the source's colour, shape and background, and a source's motion; what the
    prompt names wins). None when nothing is added: another mode, a prompt that names everything, or an input
    in which the analyser finds no object. Pixels only, no model: the page shows it before generating."""
    if mode not in ("i2v", "v2v"):
        return None
    import numpy as np

    from pipelines.embedded.analysis import analyse
    from pipelines.embedded.text import complete_prompt

    source = media.image if mode == "i2v" else media.video
    if source is None:
        return None
    clip = np.asarray(source)[None] if mode == "i2v" else np.asarray(source)
    seen = analyse(clip).labels()
    if mode == "i2v":
        seen["motion"] = None  # one frame shows no motion
    return complete_prompt(prompt, seen)


class EmbeddedBackend:
    # i2v returns the given image as frame 0 exactly and inpaint the input outside the mask exactly
    # (pixel composites after decoding); evaluation turns these off to measure the model itself.
    paste_first_frame: bool = True
    composite_inpaint: bool = True
    max_batch: int = 8  # seeds of one request per denoiser batch (generate_batch)
    # i2v: the first latent chunk is replaced by the image's (re-noised) latent while t >= this value,
    # so the clip starts from the image (measurements: MODEL_CARD.md, "Experiments")
    i2v_anchor: float = 0.2
    # inpaint: after sampling, this many Adam steps on the latent so that its decoding matches the input
    # outside the mask and the generated clip inside (Blended Latent Diffusion's background
    # reconstruction): latent cells straddle the mask's edge, so blending alone repaints a band of
    # outside pixels; the refit brings them back, so the final composite has no seam
    # guidance only while t is in this interval (diffusion.cfg_velocity; config.json's sampler.cfg_interval
    # overrides): guided at t > 0.7, CFG 5 draws objects ~10 px larger than any in the world and narrows
    # their spread; without it the size's W1 distance to the world falls from 9.9 to 3.9 px, near-copies from
    # 8.3 to 5.4% of pairs, and the step costs one network evaluation instead of two
    cfg_interval: tuple[float, float] = tuple(SAMPLER_FALLBACK["cfg_interval"])
    # the last this-many sampling steps run without guidance (the prompt's branch alone): at 8 steps the
    # guided last step (t = 0.125 -> 0) overshoots colours and backgrounds; unguided, 8 steps get bg, colour
    # and motion 100% (from 79 / 88 / 94%), default steps unchanged. config.json's sampler.unguided_final_steps
    # overrides (measurements: MODEL_CARD.md, "Second round")
    unguided_final_steps: int = SAMPLER_FALLBACK["unguided_final_steps"]
    # guided steps also move away from the prompt with its shape said as the confusable one ("square" ->
    # "circle": diffusion.cfg_velocity's contrast, text.contrast_prompt); 0 turns it off. config.json's
    # sampler.shape_contrast overrides (measurements: MODEL_CARD.md, "Session 11")
    shape_contrast: float = SAMPLER_FALLBACK["shape_contrast"]
    inpaint_refine_steps: int = 4
    inpaint_refine_lr: float = 0.1
    # i2v and v2v: say in the prompt what the input already shows. The analyser (analysis.analyse) reads the
    # image's or the source's colour, shape and background (and a source's motion); what the prompt names
    # wins (text.complete_prompt). "moves left" on an image of a green circle on beige is read as "a green
    # circle moves left on a beige background", "make it blue" on a video as the video's description with
    # the new colour. The manifest's prompt_read_as says what the model was given (MODEL_CARD.md, "Session 8")
    read_inputs: bool = True

    def __init__(self, weights_dir: Path | None = None, device: str = "cpu", spec: ModelSpec = EMBEDDED_SPEC):
        import torch
        from safetensors.torch import load_file

        from pipelines.embedded.text import Tokenizer
        from pipelines.embedded.unet import build_denoiser
        from pipelines.embedded.vae import VAEConfig, VideoAutoencoder

        wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
        wfile, cfile = wdir / WEIGHTS_FILE, wdir / CONFIG_FILE
        absent = missing(wdir)
        if absent:
            raise ModelLoadError(absent)
        try:
            meta = json.loads(cfile.read_text())
            vae_state, denoiser_state = split_state(load_file(str(wfile)))
            self.vae = VideoAutoencoder(VAEConfig.from_dict(meta["vae"]))
            self.vae.load_state_dict({k: v.float() for k, v in vae_state.items()})
            self.denoiser = build_denoiser(meta[DENOISER_KEY])  # the DiT or the U-Net, as config.json says
            self.denoiser.load_state_dict({k: v.float() for k, v in denoiser_state.items()})
        except Exception as exc:  # corrupt or mismatched files: say which and what to do
            raise ModelLoadError(f"could not load the embedded model from {wdir}: {exc}; {TRAIN_HINT}") from exc
        self.device = torch.device(device)
        self.vae.to(self.device).eval().requires_grad_(False)
        self.denoiser.to(self.device).eval().requires_grad_(False)
        self.tokenizer = Tokenizer(meta["vocab"], max_len=self.denoiser.cfg.text_len)
        self.shift = float(meta.get("sampler", {}).get("shift", 1.0))
        self.solver = str(meta.get("sampler", {}).get("solver", SAMPLER_FALLBACK["solver"]))  # diffusion.SOLVERS
        self.cfg_interval = tuple(float(v) for v in meta.get("sampler", {}).get("cfg_interval", self.cfg_interval))
        self.unguided_final_steps = int(meta.get("sampler", {}).get("unguided_final_steps", self.unguided_final_steps))
        self.shape_contrast = float(meta.get("sampler", {}).get("shape_contrast", self.shape_contrast))
        self.meta = meta
        self.spec = spec
        h = hashlib.sha256()
        with open(wfile, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self.weights_sha = h.hexdigest()[:12]

    # ---- the protocol ---------------------------------------------------------------------------
    def manifest(self) -> dict:
        import torch

        return {
            "model": self.spec.ref,
            "weights_sha256": self.weights_sha,
            "device": str(self.device),
            "dtype": "float32",
            "torch": torch.__version__,
            "sampler": f"flow-matching {self.solver}, shift {self.shift}"
                       + ("" if self.cfg_interval == (0.0, 1.0) else f", CFG for t in {list(self.cfg_interval)}")
                       + (f", last {self.unguided_final_steps} step(s) unguided" if self.unguided_final_steps else "")
                       + (f", shape contrast {self.shape_contrast}" if self.shape_contrast else ""),
            "dit_steps_trained": self.meta.get("training", {}).get("dit_steps"),
            # the prompt as the model was given it, when the last clip's input completed it (read_inputs)
            "prompt_read_as": getattr(self, "prompt_read_as", None),
        }

    def unload(self) -> None:
        """Drop the networks (the backend holds the only references to them) and free their memory."""
        for name in ("vae", "denoiser"):
            if hasattr(self, name):
                delattr(self, name)
        gc.collect()
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def generate(
        self,
        request,
        media: MediaInputs,
        generator,
        on_step: StepCallback,
        should_cancel: Callable[[], bool],
    ):
        import torch

        if not hasattr(self, "denoiser"):
            raise ModelLoadError("the embedded model was unloaded; load it again through the registry")
        with torch.inference_mode():
            return self._generate(request, media, [generator], on_step, should_cancel)[0]

    def generate_batch(self, requests, media: MediaInputs, generators, on_step: StepCallback,
                       should_cancel: Callable[[], bool]):
        """Several seeds of one request as one batch through the network: the clips `generate` gives one by
        one (up to float rounding), in about half the time for 8 seeds on 2 cores (benchmarks/bench_batch.py)."""
        import torch

        if not hasattr(self, "denoiser"):
            raise ModelLoadError("the embedded model was unloaded; load it again through the registry")
        first = requests[0]
        for other in requests[1:]:
            if dataclasses.replace(other, seed=first.seed) != first:
                raise ValueError("a batch takes requests that differ only in their seed")
        if len(requests) != len(generators) or not 1 <= len(requests) <= self.max_batch:
            raise ValueError(f"a batch takes 1 to {self.max_batch} requests, one generator each")
        with torch.inference_mode():
            return self._generate(first, media, list(generators), on_step, should_cancel)

    # ---- the pipeline -----------------------------------------------------------------------------
    def _check_inputs(self, request, media: MediaInputs) -> None:
        lim = self.spec.limits
        for name, rng in (("frames", lim.frames), ("width", lim.width), ("height", lim.height)):
            v = getattr(request, name)
            if not rng.min <= v <= rng.max:
                raise ValueError(f"{name}={v}: the embedded model makes {int(rng.min)} only")
        if request.mode == "i2v" and media.image is None:
            raise ValueError("i2v needs media.image")
        if request.mode in ("v2v", "inpaint") and media.video is None:
            raise ValueError(f"{request.mode} needs media.video")
        if request.mode == "inpaint" and media.mask is None:
            raise ValueError("inpaint needs media.mask")

    def _pixels(self, frames_uint8):
        """(F, H, W, 3) uint8 numpy -> model-space pixels (1, 3, F, H, W) in [-1, 1]."""
        import numpy as np
        import torch

        from pipelines.embedded.vae import frames_to_model

        return frames_to_model(torch.from_numpy(np.asarray(frames_uint8)).to(self.device)[None])

    def _encode_pixels(self, frames_uint8):
        """(F, H, W, 3) uint8 numpy -> normalised latents (1, C, T, h, w)."""
        return self.vae.encode(self._pixels(frames_uint8))

    def _decode(self, z):
        """Latents (B, C, T, h, w) -> the first clip's frames (F, H, W, 3) uint8."""
        from pipelines.embedded.vae import model_to_frames

        return model_to_frames(self.vae.decode(z[:1]))[0].cpu().numpy()

    def _prompt_for(self, request, media) -> str:
        """The prompt the model is given: the request's, or for i2v and v2v the request's with what the input
        already shows said in it (read_inputs). Kept in prompt_read_as for the clip's manifest."""
        self.prompt_read_as = read_with_input(request.mode, request.prompt or "", media) if self.read_inputs else None
        return self.prompt_read_as or request.prompt or ""

    def _generate(self, request, media, generators, on_step, should_cancel):
        """One clip per generator (same request otherwise), as one batch through the denoiser."""
        if getattr(request, "loras", ()):
            raise ValueError(f"model {self.spec.id} does not take LoRAs; pick a diffusers model")
        import numpy as np
        import torch

        from pipelines.embedded import diffusion
        from pipelines.embedded.text import contrast_prompt

        # 1. check inputs
        self._check_inputs(request, media)
        mode = request.mode
        k = self.vae.cfg.time_down
        # 2. encode the prompt: row 0 = prompt, row 1 = negative prompt (the empty prompt = unconditional)
        prompt = self._prompt_for(request, media)
        contrast = contrast_prompt(prompt) if self.shape_contrast > 0 else None  # row 2, when the prompt names a shape
        rows = [prompt, request.negative_prompt or ""] + ([contrast] if contrast is not None else [])
        ids = self.tokenizer.batch(rows).to(self.device)
        ctx, ctx_mask, pooled = self.denoiser.encode_text(ids)
        # 3. conditioning latents per mode
        image = None
        x_start, strength, keep, keep_mask, keep_until = None, 1.0, None, None, 0.0
        src_px = mask_px = None  # inpaint: the input in model space and its pixel mask, for the refit
        if mode == "i2v":
            still = np.repeat(media.image[None], k, axis=0)  # (k, H, W, 3): a still chunk
            image = self._encode_pixels(still)[:, :, 0]  # (1, C, h, w)
            if self.i2v_anchor > 0:  # steer the first latent chunk towards the image while t is high
                C_, T_ = self.denoiser.cfg.latent_channels, self.denoiser.cfg.latent_frames
                keep = image[:, :, None].expand(1, C_, T_, *image.shape[-2:]).clone()  # (1, C, T, h, w)
                keep_mask = torch.zeros(1, 1, T_, 1, 1, device=self.device)
                keep_mask[:, :, 0] = 1.0
                keep_until = self.i2v_anchor
        elif mode in ("v2v", "inpaint"):
            src_px = self._pixels(media.video)
            src = self.vae.encode(src_px)  # (1, C, T, h, w)
            s = getattr(request, "strength", None)
            strength = float(s if s is not None else self.spec.defaults.strength_for(mode))
            x_start = src
            if mode == "inpaint":
                mask_px = torch.from_numpy(np.asarray(media.mask, dtype=np.float32)).to(self.device)  # (F, H, W)
                F_, H, W = mask_px.shape
                h = w = self.denoiser.cfg.latent_size
                m = mask_px.reshape(F_ // k, k, h, H // h, w, W // w).amax(dim=(1, 3, 5))  # (T, h, w): any pixel -> cell
                keep_mask = (1 - (m > 0.01).float())[None, None]  # (1, 1, T, h, w) 1 = keep
                keep = src
        # 4. latents: one noise draw per clip from its own generator, as a single generation would draw it
        B = len(generators)
        C, T, hw = self.denoiser.cfg.latent_channels, self.denoiser.cfg.latent_frames, self.denoiser.cfg.latent_size
        noise = torch.cat([torch.randn((1, C, T, hw, hw), generator=g, device=g.device) for g in generators])
        noise = noise.to(self.device)  # (B, C, T, h, w)
        if strength <= 0.0 and x_start is not None:
            frames = self._decode(x_start) if mode == "v2v" else np.asarray(media.video).copy()
            on_step(request.steps, request.steps, None)
            return [self._composite(frames, media) if mode == "inpaint" else frames.copy() for _ in range(B)]

        # 5. denoise, with classifier-free guidance: [prompt x B; negative x B (; contrast x B)] on the batch
        scale = float(request.cfg_scale)

        def model_fn(x, t, rows):  # x: (len(rows) * B, ...); rows index ctx: 0 prompt, 1 negative, 2 contrast
            index = torch.tensor(rows, device=self.device).repeat_interleave(B)
            text = tuple(a[index] for a in (ctx, ctx_mask, pooled))
            img = None if image is None else image.expand(len(rows) * B, -1, -1, -1)
            return self.denoiser(x, t, text, img)

        velocity = diffusion.cfg_velocity(model_fn, scale, self._guidance_interval(int(request.steps), strength, x_start),
                                          contrast=self.shape_contrast if contrast is not None else 0.0)

        def step_cb(i, total, x0):
            preview = None
            if (i + 1) % PREVIEW_EVERY == 0 and i + 1 < total:
                preview = self._decode(x0)  # the first clip of the batch
            on_step(i + 1, total, preview)

        z = diffusion.sample(
            velocity, noise, int(request.steps), x_start=x_start, strength=strength, keep=keep,
            keep_mask=keep_mask, keep_until=keep_until, shift=self.shift, solver=self.solver, on_step=step_cb,
            should_cancel=should_cancel,
        )
        if z is None:
            raise Cancelled()
        out = []
        for b in range(B):
            zb = z[b:b + 1]
            if mode == "inpaint" and self.inpaint_refine_steps > 0:
                zb = self._fit_outside(zb, src_px, mask_px)
            # 6. decode
            frames = self._decode(zb)
            if mode == "i2v" and self.paste_first_frame:
                frames[0] = media.image
            if mode == "inpaint" and self.composite_inpaint:
                frames = self._composite(frames, media)
            out.append(frames)
        return out

    def _guidance_interval(self, steps: int, strength: float, x_start) -> tuple[float, float]:
        """cfg_interval, narrowed so that the last `unguided_final_steps` steps of this request's grid run on
        the prompt's branch alone (at few steps the guided last step overshoots colours and backgrounds)."""
        from pipelines.embedded import diffusion

        lo, hi = self.cfg_interval
        k = min(self.unguided_final_steps, steps - 1)
        if k > 0:
            ts = diffusion.timesteps(steps, strength if x_start is not None else 1.0, self.shift)
            lo = max(lo, float(ts[steps - k] + ts[steps - k - 1]) / 2)  # between the last guided and first unguided t
        return lo, hi

    def _fit_outside(self, z, src_px, mask_px):
        """Inpaint: move the latent so that its decoding is the input (src_px, (1, 3, F, H, W)) outside
        the mask (mask_px, (F, H, W), 1 = regenerate) and stays the generated clip inside
        (deterministic: Adam from the sampled latent, no randomness)."""
        import torch

        with torch.inference_mode(False), torch.enable_grad():
            m = mask_px.clone()[None, None]  # (1, 1, F, H, W); clones are normal tensors, usable in autograd
            src = src_px.clone()
            z = z.clone()
            target = m * self.vae.decode(z) + (1 - m) * src
            z.requires_grad_(True)
            opt = torch.optim.Adam([z], lr=self.inpaint_refine_lr)
            for _ in range(self.inpaint_refine_steps):
                loss = (self.vae.decode(z) - target).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return z.detach()

    @staticmethod
    def _composite(frames, media: MediaInputs):
        """Inpaint: pixels outside the mask are the input's, exactly; inside, the model's."""
        import numpy as np

        m = np.asarray(media.mask, dtype=np.float32)[..., None]  # (F, H, W, 1)
        out = m * frames.astype(np.float32) + (1 - m) * np.asarray(media.video, dtype=np.float32)
        return (out + 0.5).clip(0, 255).astype(np.uint8)
