"""Seconds per denoising step and peak GPU memory of each speed/memory profile, at full size.

Random weights in the real architectures (no download): the Wan 2.1 1.3B transformer and the
Wan VAE at 832x480, 81 frames (latents 16 x 21 x 60 x 104), and CogVideoX-2B (transformer and
VAE) at 720x480, 49 frames. The text encoders are stand-ins with the right output width
(4096) but one layer: UMT5-XXL / T5-XXL would add 11 GB / 9 GB of weights that the offload
profiles keep off the GPU anyway, so peak memory here is transformer + VAE + activations.

Each profile runs through DiffusersBackend.generate (the code the studio runs); "plain" is
the bare diffusers call with everything on the GPU in bf16 (fp16 for CogVideoX-2B) and
PyTorch SDPA attention. s/step is the median over steps after the first (compile warm-up
shows in "first step"). Caching decisions on random weights say little about real hit
rates: read the "fast" row as an upper bound on its cost, not a measure of its speed-up.

The gguf-Q8_0 and gguf-Q4_0 rows (Wan only) write the same random transformer to a GGUF file of that type
(gguf-py; it cannot write the K-quants, so Q4_0 stands in for Q4_K) and load it as the studio loads a
`<catalog id>@<file>.gguf` model (pipelines/diffusers/gguf.py), then run under the quality profile: read
them against the "quality" row (bf16) for the memory saved and the per-step cost of dequantizing.

Published reference (Wan2.1 README): 832x480x81, 50 steps, RTX 4090 with offload: 261 s, 8.19 GB.

    python benchmarks/bench_diffusers_gpu.py [--family wan,cogvideox] [--profiles plain,quality,balanced,...]
                                             [--steps 4] [--tiny]   # --tiny: small configs, any device
Needs torch, diffusers and transformers (accelerate for the offload profiles). Exits with a
message on a machine without CUDA unless --tiny.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FAMILIES = {
    # family: (catalog id, width, height, frames)
    "wan": ("wan2.1-t2v-1.3b", 832, 480, 81),
    "cogvideox": ("cogvideox-2b", 720, 480, 49),
}


def cast(model, dtype):
    """model.to(dtype), keeping the parameters the class marks float32 (as from_pretrained does)."""
    import torch

    model.to(dtype)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, p in model.named_parameters():
        if any(k in name.split(".") for k in keep):
            p.data = p.data.to(torch.float32)
    return model


def build_wan(tiny: bool, dtype):
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from tests.support.tiny_diffusers import t5_tokenizer

    if tiny:
        tr = dict(num_attention_heads=2, attention_head_dim=12, ffn_dim=32, num_layers=2, text_dim=32)
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
        d_model = 32
    else:  # Wan2.1-T2V-1.3B transformer config; the VAE's defaults are the Wan 2.1 VAE
        tr = dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, text_dim=4096)
        vae = AutoencoderKLWan()
        d_model = 4096
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), in_channels=16, out_channels=16, freq_dim=256,
                                        cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                                        rope_max_seq_len=1024, **tr)
    enc = UMT5EncoderModel(UMT5Config(vocab_size=64, d_model=d_model, d_kv=64, d_ff=256, num_layers=1,
                                      num_heads=max(1, d_model // 64), relative_attention_num_buckets=32,
                                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = WanPipeline(tokenizer=t5_tokenizer(), text_encoder=enc.to(dtype), vae=vae.to(torch.float32),
                       scheduler=scheduler, transformer=cast(transformer, dtype))
    return pipe


def build_cogvideox(tiny: bool, dtype):
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from tests.support.tiny_diffusers import t5_tokenizer

    if tiny:
        transformer = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4,
                                                  out_channels=4, time_embed_dim=2, text_embed_dim=32, num_layers=1,
                                                  sample_width=4, sample_height=4, sample_frames=9, patch_size=2,
                                                  temporal_compression_ratio=4, max_text_seq_length=16)
        vae = AutoencoderKLCogVideoX(down_block_types=("CogVideoXDownBlock3D",) * 4,
                                     up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                     latent_channels=4, layers_per_block=1, norm_num_groups=2)
        d_model = 32
    else:  # the defaults are CogVideoX-2B
        transformer, vae, d_model = CogVideoXTransformer3DModel(), AutoencoderKLCogVideoX(), 4096
    enc = T5EncoderModel(T5Config(vocab_size=64, d_model=d_model, d_kv=64, d_ff=256, num_layers=1,
                                  num_heads=max(1, d_model // 64), relative_attention_num_buckets=32,
                                  decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    return CogVideoXPipeline(tokenizer=t5_tokenizer(), text_encoder=enc.to(dtype), vae=cast(vae, dtype),
                             transformer=cast(transformer, dtype), scheduler=CogVideoXDDIMScheduler())


def to_gguf(pipe, quant: str, dtype, label: str):
    """The pipeline with its transformer written to a GGUF file of type `quant` and loaded back quantized."""
    import tempfile

    from pipelines.diffusers import gguf
    from tests.support.tiny_gguf import write_gguf

    folder = Path(tempfile.mkdtemp(prefix="bench-gguf-"))
    pipe.transformer.save_config(folder / "transformer")
    t0 = time.perf_counter()
    path = write_gguf(pipe.transformer, folder / f"transformer-{quant}.gguf", quant, original_names=False)
    print(f"  (wrote {path.name}: {path.stat().st_size / 2**30:.2f} GB in {time.perf_counter() - t0:.0f} s)")
    transformer = gguf.load_transformer(folder, path, dtype, label)  # the tensors are copied out of the file
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    pipe.transformer = None
    pipe.register_modules(transformer=transformer)
    gc.collect()
    return pipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="wan,cogvideox")
    ap.add_argument("--profiles", default="plain,quality,balanced,low-vram,fast,compiled,gguf-Q8_0,gguf-Q4_0")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--tiny", action="store_true", help="small configs on any device: checks the script itself")
    args = ap.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print("bench_diffusers_gpu: no CUDA GPU here; this benchmark measures GPU time and memory.")
        print("Run it on a machine with an NVIDIA GPU, or pass --tiny to check the script on this one.")
        return
    device = "cuda" if cuda else "cpu"
    if not cuda:
        torch.set_num_threads(1)  # a shared CPU: oversubscribed threads make timings meaningless
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    from pipelines.contract import MediaInputs
    from pipelines.contract import TextToVideoRequest
    from pipelines.diffusers import DiffusersBackend, read_catalog

    catalog = {m.spec.id: m for m in read_catalog().models}
    print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu'}; torch {torch.__version__}; "
          f"steps per run: {args.steps}{'; TINY configs' if args.tiny else ''}")
    header = f"{'model':<18} {'profile':<9} {'s/step':>7} {'1st step':>8} {'peak GB':>8} {'run s':>7} {'50-step est s':>13}  settings"
    print(header)
    print("-" * len(header))
    for family in args.family.split(","):
        model_id, width, height, frames = FAMILIES[family]
        if args.tiny:
            width, height, frames = 32, 32, 9
        model = catalog[model_id]
        fp16 = model.dtype == "fp16"
        dtype = torch.float32 if not cuda else (torch.float16 if fp16 else torch.bfloat16)
        build = build_wan if family == "wan" else build_cogvideox
        request = TextToVideoRequest(prompt="a red ball moves left", model_id=model_id, width=width, height=height,
                                     frames=frames, steps=args.steps, cfg_scale=5.0, fps=16, seed=0)
        for profile in args.profiles.split(","):
            quant = profile.removeprefix("gguf-") if profile.startswith("gguf-") else None
            if quant and family != "wan":
                continue
            if profile != "plain" and not quant and profile not in model.profiles:
                continue
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            torch.manual_seed(0)
            pipe = build(args.tiny, dtype)
            stamps: list[float] = []
            backend = None
            try:
                if profile == "plain":
                    pipe.to(device)
                    pipe.set_progress_bar_config(disable=True)
                    kw = {}
                    if family == "cogvideox":
                        kw["max_sequence_length"] = pipe.transformer.config.max_text_seq_length
                    if cuda:
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                    t0 = time.perf_counter()
                    stamps.append(t0)

                    def cb(p, i, t, kwargs):
                        if cuda:
                            torch.cuda.synchronize()
                        stamps.append(time.perf_counter())
                        return kwargs

                    pipe(prompt=request.prompt, height=height, width=width, num_frames=frames,
                         num_inference_steps=args.steps, guidance_scale=5.0, output_type="np",
                         generator=torch.Generator().manual_seed(0), callback_on_step_end=cb, **kw)
                    settings = f"{str(dtype).removeprefix('torch.')}, sdpa, everything on the GPU"
                else:
                    if quant:
                        pipe = to_gguf(pipe, quant, dtype, model.spec.label)
                    backend = DiffusersBackend.from_pipeline(model, pipe, device=device,
                                                             profile="quality" if quant else profile)
                    if cuda:
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                    t0 = time.perf_counter()
                    stamps.append(t0)

                    def on_step(step, total, preview):
                        if cuda:
                            torch.cuda.synchronize()
                        stamps.append(time.perf_counter())

                    backend.generate(request, MediaInputs(), torch.Generator().manual_seed(0), on_step, lambda: False)
                    s = backend.manifest()["settings"]
                    settings = ", ".join(f"{k}={v}" for k, v in s.items() if v not in (False, "none"))
                if cuda:
                    torch.cuda.synchronize()
                total = time.perf_counter() - t0
                steps = [b - a for a, b in zip(stamps, stamps[1:])]
                per_step = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
                fixed = total - sum(steps)  # text encoding before, VAE decode after
                peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
                est = fixed + steps[0] + 49 * per_step
                print(f"{model_id:<18} {profile:<9} {per_step:7.3f} {steps[0]:8.3f} {peak:8.2f} {total:7.1f} "
                      f"{est:13.0f}  {settings}")
            except Exception as e:  # one profile failing (OOM, missing accelerate) must not hide the others
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                print(f"{model_id:<18} {profile:<9} failed: {type(e).__name__}: {msg[:150]}")
            finally:
                if backend is not None:
                    backend.unload()
                del pipe, backend
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
    print("reference: Wan2.1 1.3B 832x480x81, 50 steps, RTX 4090 with offload: 261 s, 8.19 GB (Wan2.1 README)")


if __name__ == "__main__":
    main()
