"""DiffusersBackend: one loaded diffusers pipeline behind pipelines.contract.Backend.

The pipeline for each mode is assembled from the same components (no second copy of the weights),
so a T2V repo also serves video-to-video and latent-blend inpainting. What differs by family is
asked of the model's Family class; what differs by model is catalog data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipelines.contract import (
    Cancelled,
    MediaInputs,
    ModelLoadError,
    OutOfMemory,
    StepCallback,
    is_out_of_memory,
)
from pipelines.diffusers import gguf, hub
from pipelines.diffusers.blend import Blend
from pipelines.diffusers.catalog import DEFAULT_PROFILE, CatalogModel
from pipelines.diffusers.loras import LoraState
from pipelines.diffusers.preview import StepHook
from pipelines.diffusers.profiles import apply_profile, dtypes, set_cache

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pipelines.contract import GenerationRequest


class DiffusersBackend:
    """pipelines.contract.BatchBackend for a diffusers video pipeline."""

    def __init__(
        self,
        model: CatalogModel,
        *,
        device: str = "cpu",
        profile: str | None = None,
        models_dir: str | Path | None = None,
        preview_every: int = 5,
    ):
        """Load `model` (eagerly, so a missing download shows at load time) under `profile`."""
        self._setup(model, device, profile, models_dir, preview_every)
        self._load()

    @classmethod
    def from_pipeline(cls, model: CatalogModel, pipeline, *, device: str = "cpu", profile: str | None = None,
                      preview_every: int = 5) -> "DiffusersBackend":
        """A backend around a pipeline the caller built (benchmarks with random full-size weights).
        The profile is applied to it as to loaded weights; it cannot be reloaded after `unload()`."""
        self = cls.__new__(cls)
        self._setup(model, device, profile, None, preview_every)
        self._given = pipeline
        self._load()
        return self

    def _setup(self, model, device, profile, models_dir, preview_every) -> None:
        self.model = model
        self.spec = model.spec
        self.family = model.family
        self.device = device
        self.preview_every = preview_every
        self.models_dir = Path(models_dir) if models_dir else None
        if profile is None:
            profile = self.spec.profiles[0] if self.spec.profiles else None
        if profile is not None and profile not in model.profiles:
            why = model.unavailable.get(profile)
            raise ModelLoadError(f"{self.spec.id} has no profile {profile!r}"
                                 + (f" ({why})" if why else "") + f"; it has: {', '.join(self.spec.profiles)}")
        self.profile = model.profiles.get(profile) if profile else DEFAULT_PROFILE
        # seeds per batch (generate_batch): the family's rule for this profile (Family.max_batch)
        self.max_batch = model.family.max_batch(self.profile, model.pipelines)
        self.folder = model.folder
        self.settings: dict[str, Any] = {}
        self._base = None  # the loaded DiffusionPipeline
        self._pipes: dict[str, Any] = {}  # pipeline class name -> pipeline assembled from the base's components
        self._offloaded_for: Any = None
        self._last: dict[str, Any] = {}
        self._given = None
        self._loaded_once = False
        self._loras = LoraState()
        self._gguf: dict[str, Any] | None = None  # gguf.manifest of the GGUF transformer, read at load

    @property
    def pipeline(self):
        """The loaded DiffusionPipeline (None after unload)."""
        return self._base

    # ---- loading --------------------------------------------------------------------------------
    def _lower_profile(self) -> str | None:
        lower = self.profile.lower
        return lower if lower and lower in self.spec.profiles else None

    def _load(self) -> None:
        try:
            self._load_pipeline()
        except Exception as e:
            self.unload()
            if not is_out_of_memory(e):
                raise
            lower = self._lower_profile()
            advice = f"try the '{lower}' profile" if lower else "free GPU memory"
            raise ModelLoadError(f"{self.spec.label} does not fit in GPU memory with the '{self.profile.name}' "
                                 f"profile; {advice}.") from None

    def _load_pipeline(self) -> None:
        import torch

        on_cpu = torch.device(self.device).type == "cpu"
        if self._loaded_once and self._given is None and self.folder is None:
            raise ModelLoadError(f"{self.spec.id}: a pipeline handed in by the caller cannot be reloaded after unload()")
        self._loaded_once = True
        if self._given is not None:  # a pipeline built by the caller: used as it is
            pipe, self._given = self._given, None
        else:
            folder, adapter = hub.locate(dataclasses.replace(self.model, folder=self.folder), self.models_dir)
            self.folder = folder
            pipe = self._from_pretrained(folder, adapter, on_cpu)
        if self.model.scheduler:
            import diffusers

            over = dict(self.model.scheduler)
            cls_name = over.pop("class", None)
            sched_cls = getattr(diffusers, cls_name) if cls_name else type(pipe.scheduler)
            pipe.scheduler = sched_cls.from_config(pipe.scheduler.config, **over)
        pipe.set_progress_bar_config(disable=True)
        self._base = pipe
        try:
            settings = apply_profile(pipe, self.model, self.profile, self.device)
        except Exception as e:
            if is_out_of_memory(e):
                raise
            others = [p for p in self.spec.profiles if p != self.profile.name]
            first = str(e).splitlines()[0] if str(e) else ""
            raise ModelLoadError(f"{self.spec.label}: the '{self.profile.name}' profile could not be applied "
                                 f"({type(e).__name__}: {first})"
                                 + (f"; try another profile: {', '.join(others)}" if others else "")) from None
        self.settings = {"dtype": _name(next(self._denoiser_dtypes(pipe), None)),
                         **{f"{k}_dtype": _name(getattr(pipe, k).dtype) for k in ("vae", "image_encoder")
                            if getattr(pipe, k, None) is not None}, **settings}

    @staticmethod
    def _denoiser_dtypes(pipe):
        for name in ("transformer", "unet"):
            m = getattr(pipe, name, None)
            if m is not None:
                yield m.dtype

    def _from_pretrained(self, folder: Path, adapter: Path | None, on_cpu: bool):
        import diffusers

        dtype, fp32 = dtypes(self.model, self.profile, on_cpu)
        index = json.loads((folder / "model_index.json").read_text())
        kwargs: dict[str, Any] = {"dtype": {"default": dtype, **fp32} if fp32 else dtype, "local_files_only": True}
        if self.model.variant and hub.has_variant(folder, self.model.variant):
            kwargs["variant"] = self.model.variant  # e.g. only the *.fp16.safetensors files were downloaded
        cls_name, extra = self.family.load_arguments(index, adapter, dtype)
        if self.model.transformer_file is not None:  # quantized weights from one GGUF file (gguf.py)
            path = Path(self.model.transformer_file)
            extra = {**extra, "transformer": gguf.load_transformer(folder, path, dtype, self.spec.label)}
            self._gguf = gguf.manifest(path)  # once per load, not once per clip (header read, sha256)
            # DiffusionPipeline.from_pretrained drops a component passed in: load through the folder's own class
            cls_name = cls_name or index.get("_class_name")
        try:
            cls = getattr(diffusers, cls_name) if cls_name else diffusers.DiffusionPipeline
            return cls.from_pretrained(folder, **kwargs, **extra)
        except (OSError, ValueError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelLoadError(f"{self.model.repo or folder.name}: could not load the pipeline: {first}") from None

    def pipeline_for(self, mode: str):
        """The pipeline for `mode`, built from the loaded components (shared, not copied)."""
        import diffusers

        if self._base is None:
            self._load()
        name = self.model.pipeline_class(mode)
        pipe = self._pipes.get(name)
        if pipe is None:
            cls = getattr(diffusers, name)
            if type(self._base) is cls:
                pipe = self._base
            else:
                params = inspect.signature(cls.__init__).parameters
                comps = {k: v for k, v in self._base.components.items() if k in params}
                config = {k: v for k, v in self._base.config.items()
                          if k in params and k not in comps and not k.startswith("_")}
                pipe = cls(**comps, **config)
                pipe.set_progress_bar_config(disable=True)
            self.family.check_pipeline(pipe)
            self._pipes[name] = pipe
        if self.settings.get("offload") == "model" and self._offloaded_for is not pipe:
            pipe.enable_model_cpu_offload(device=self.device)  # re-hooks the shared components for this pipeline
            self._offloaded_for = pipe
        return pipe

    # ---- generation -----------------------------------------------------------------------------
    def generate(
        self,
        request: "GenerationRequest",
        media: MediaInputs,
        generator: "torch.Generator",
        on_step: StepCallback,
        should_cancel: Callable[[], bool],
    ) -> "np.ndarray":
        return self._generate(request, media, [generator], on_step, should_cancel)[0]

    def generate_batch(
        self,
        requests: "list[GenerationRequest]",
        media: MediaInputs,
        generators: "list[torch.Generator]",
        on_step: StepCallback,
        should_cancel: Callable[[], bool],
    ) -> "list[np.ndarray]":
        """Several seeds of one request as one batch through the pipeline (a list of generators, one per seed):
        the clips `generate` gives one by one, up to the rounding of batched matrix products. Previews show
        the first seed's latents. A mode whose pipeline cannot batch (Family.batch_by) runs the seeds one
        by one, and so does a batch that ran out of GPU memory (then max_batch drops to 1)."""
        first = requests[0] if requests else None
        for other in requests[1:]:
            if dataclasses.replace(other, seed=first.seed) != first:
                raise ValueError("a batch takes requests that differ only in their seed")
        if len(requests) != len(generators) or not 1 <= len(requests) <= max(1, self.max_batch):
            raise ValueError(f"a batch takes 1 to {self.max_batch} requests, one generator each")
        if len(requests) > 1 and self._batches(first):
            states = [g.get_state() for g in generators]
            try:
                return self._generate(first, media, list(generators), on_step, should_cancel)
            except _BatchTooBig:
                self.max_batch = 1  # remembered for the job service's next batches
                _free_device_memory()
                for g, state in zip(generators, states):  # the batch drew its noise already: draw it again
                    g.set_state(state)
        return [self.generate(r, media, g, on_step, should_cancel) for r, g in zip(requests, generators)]

    def _batches(self, request) -> bool:
        """Whether the pipeline of `request`'s mode takes several seeds in one call."""
        mode = request.mode
        return mode in self.spec.modes and self.family.batches(self.model.pipeline_class(mode), request)

    def _generate(self, request, media: MediaInputs, generators: list, on_step: StepCallback,
                  should_cancel: Callable[[], bool]) -> "list[np.ndarray]":
        """One clip per generator, in one pipeline call (one generator: the plain single run)."""
        mode = request.mode
        if mode not in self.spec.modes:
            raise ValueError(f"model {self.spec.id!r} cannot do {mode}; it supports: {', '.join(self.spec.modes)}")
        if should_cancel():
            raise Cancelled()
        import torch

        n = len(generators)
        pipe = None
        too_big = False
        try:
            pipe = self.pipeline_for(mode)
            self._loras.apply(pipe, getattr(request, "loras", ()), f"{self.spec.label} ({self.spec.id})",
                              fuse=self.profile.fuse_loras and self.model.transformer_file is None)
            cached = set_cache(pipe, self.model, self.settings, self.profile.cache_threshold)
            kwargs, blend = self._call_kwargs(pipe, request, media, generators)
            hook = StepHook(self.family, request, on_step, should_cancel, blend, self.preview_every)
            with torch.inference_mode(), _sliced_decode(pipe, n > 1):
                out = pipe(**kwargs, output_type="np", return_dict=True, callback_on_step_end=hook,
                           callback_on_step_end_tensor_inputs=["latents"])
        except BaseException as e:
            if is_out_of_memory(e) and n > 1:
                too_big = True  # handled outside this block, so that the failed step's tensors are freed
            elif is_out_of_memory(e):
                hint = self.family.oom_hint(self._lower_profile())
                self.unload()  # drops the weights and empties the CUDA cache
                raise OutOfMemory(hint) from None
            else:
                if pipe is not None:
                    _end_of_call(pipe)  # what the pipeline's own __call__ skips when it is left early
                raise
        if too_big:
            _end_of_call(pipe)
            raise _BatchTooBig()
        clips = _clips(out.frames)
        if len(clips) != n:
            raise RuntimeError(f"{type(pipe).__name__} returned {len(clips)} clips for {n} seeds")
        self._last = {"mode": mode, "pipeline": type(pipe).__name__, "first_block_cache": cached,
                      "inpaint": ("latent-blend" if blend else "native") if mode == "inpaint" else None,
                      "batch": n, "arguments": _scalars(kwargs), "loras": list(self._loras.active),
                      "loras_fused": self._loras.fused is not None,
                      "notes": self.family.notes(pipe, request, kwargs)}
        return clips

    def _call_kwargs(self, pipe, request, media: MediaInputs, generators: list) -> tuple[dict[str, Any], Blend | None]:
        """Map a request onto the pipeline's `__call__`: the common arguments, then the family's; for
        several generators, the family's batch arguments."""
        mode, family = request.mode, self.family
        n = len(generators)
        params = _call_parameters(type(pipe))
        kw: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "height": request.height,
            "width": request.width,
            "num_frames": request.frames,
            "num_inference_steps": request.steps,
            "guidance_scale": request.cfg_scale,
            "generator": generators[0] if n == 1 else list(generators),
        }
        kw.update(family.arguments(pipe, request))
        blend = None
        if mode == "i2v":
            kw.update(family.image_arguments(pipe, _pil(media.image, "image"), request))
        elif mode in ("v2v", "inpaint"):
            video = _require(media.video, "video")
            if mode == "inpaint" and not self.model.blends(mode):
                mask = _require(media.mask, "mask")
                mask_rgb = (mask * 255.0).round().clip(0, 255).astype("uint8")[..., None].repeat(3, -1)
                kw.update(family.inpaint_arguments(pipe, _pil_frames(video), _pil_frames(mask_rgb)))
            else:
                strength = getattr(request, "strength", None)
                if strength is None:
                    strength = self.spec.defaults.strength_for(mode)
                x0 = self._encode(pipe, video) if family.v2v_from_latents or mode == "inpaint" else None
                if {"strength", "denoise_strength"} & params:  # else a t2v pipeline: from noise, strength 1
                    batched = x0.expand(n, *x0.shape[1:]) if x0 is not None and n > 1 else x0  # one per seed
                    kw.update(family.video_arguments(pipe, _pil_frames(video), batched, strength))
                if mode == "inpaint":
                    blend = Blend.build(family, pipe, x0, _require(media.mask, "mask"), generators)
        kw.update(self.model.call)
        if n > 1:
            kw = family.batch_arguments(pipe, kw, n)
        return {k: v for k, v in kw.items() if k in params}, blend

    def _encode(self, pipe, video) -> "torch.Tensor":
        """(F, H, W, 3) uint8 -> the family's normalised latents (1, C, f, h, w)."""
        import torch

        x = torch.from_numpy(video).to(device=self.device, dtype=pipe.vae.dtype).permute(3, 0, 1, 2)[None]
        with torch.no_grad():
            z = self.family.encode(pipe, x / 127.5 - 1.0)
        if self.settings.get("offload") == "model":
            pipe.maybe_free_model_hooks()  # the VAE back to the CPU: it must not sit on the GPU through denoising
        return z

    # ---- reporting and memory -------------------------------------------------------------------
    def manifest(self) -> dict:
        import diffusers
        import torch
        import transformers

        return {
            "backend": "diffusers",
            "model": self.spec.ref,
            "family": self.spec.family,
            "repo": self.model.repo,
            "folder": str(self.folder) if self.folder else None,
            "revision": hub.revision(self.folder) if self.folder else None,
            "adapter": self.model.adapter,
            "transformer_file": dict(self._gguf) if self._gguf is not None else None,
            "profile": self.profile.name,
            "settings": dict(self.settings),
            "dtype": self.settings.get("dtype"),
            "device": self.device,
            "scheduler": type(self._base.scheduler).__name__ if self._base is not None else None,
            "pipelines": dict(self.model.pipelines),
            "last_run": dict(self._last),
            "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__,
                         "transformers": transformers.__version__},
        }

    def unload(self) -> None:
        base, self._base = self._base, None
        self._pipes.clear()
        self._loras.clear()
        self._offloaded_for = None
        if base is not None:
            try:
                base.remove_all_hooks()
            except Exception:  # no hooks, or an older diffusers
                pass
            for comp in base.components.values():
                if hasattr(comp, "to") and hasattr(comp, "parameters"):
                    try:
                        comp.to("meta")  # drop the storage now, whoever still holds a reference
                    except Exception:
                        pass
            del base
        _free_device_memory()


@functools.lru_cache(maxsize=None)
def _call_parameters(cls) -> frozenset[str]:
    return frozenset(inspect.signature(cls.__call__).parameters)


def _end_of_call(pipe) -> None:
    """maybe_free_model_hooks: resets stateful hooks (first-block cache residuals) and, under model offload,
    moves every component back to the CPU. A pipeline calls it at the end of __call__; a cancelled or failed
    call never gets there."""
    try:
        pipe.maybe_free_model_hooks()
    except Exception:  # the original error matters more
        pass


def _name(dtype) -> str | None:
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def _scalars(kwargs: dict) -> dict:
    """The call's plain arguments (no prompts, tensors or images), for the manifest."""
    skip = {"prompt", "negative_prompt"}
    return {k: v for k, v in kwargs.items() if k not in skip and (
        isinstance(v, (bool, int, float, str)) or (isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v)))}


def _require(x, name: str):
    if x is None:
        raise ValueError(f"{name} is required for this mode")
    return x


def _pil(image, name: str):
    from PIL import Image

    return Image.fromarray(_require(image, name))


def _pil_frames(video) -> list:
    from PIL import Image

    return [Image.fromarray(f) for f in video]


@contextlib.contextmanager
def _sliced_decode(pipe, on: bool):
    """A batch decodes clip by clip (the VAE's slicing, where it has it), so the decode peak, often the
    largest of a generation, stays one clip's whatever the batch; the profile's setting is restored after."""
    vae = getattr(pipe, "vae", None)
    if not on or getattr(vae, "use_slicing", None) is not False:
        yield
        return
    vae.use_slicing = True
    try:
        yield
    finally:
        vae.use_slicing = False


class _BatchTooBig(Exception):
    """A batch ran out of device memory; its seeds run one by one instead."""


def _free_device_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def _clips(frames) -> "list[np.ndarray]":
    """Pipeline output (np, [0, 1], batch first: an array or a list per clip) -> one (F, H, W, 3) uint8 each."""
    import numpy as np

    x = frames if isinstance(frames, (list, tuple)) else list(np.asarray(frames))
    return [_to_uint8(c) for c in x]


def _to_uint8(clip) -> "np.ndarray":
    """One clip (F, H, W, 3), [0, 1] floats or uint8 -> uint8."""
    import numpy as np

    x = np.asarray(clip)
    if x.dtype == np.uint8:
        return x
    return (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8)
