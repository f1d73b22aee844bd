"""Tiny random diffusers video pipelines, built in code with no download.

`build_tiny_kind(kind, folder)` builds the tiny pipeline of a kind of repo (the TINY table), saves
it with `save_pretrained(folder)` and returns the folder. The folders
look like real hub snapshots (model_index.json + one folder per component), so the
backend's local-folder path loads them exactly as it would load a downloaded model.

Configs are the smallest that still exercise every code path (after diffusers' own tests).
Tokenizers are built from in-code vocabularies (transformers 5 can do that offline).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Tiny:
    """A kind of tiny repo: its family, the modes a local folder of it offers, the smallest valid clip
    length, and the catalog model it stands in for (None: a variant the catalog does not list)."""

    family: str
    modes: tuple[str, ...]
    frames: int
    catalog_id: str | None
    blend: bool = False  # its inpaint mode is latent blending (not the pipeline's own)


# The one table the diffusers tests parametrise over: every kind of tiny repo, every family.
TINY: dict[str, Tiny] = {
    "wan-t2v": Tiny("wan", ("t2v", "v2v", "inpaint"), 5, "wan2.1-t2v-1.3b", blend=True),
    "wan-i2v": Tiny("wan", ("i2v",), 5, "wan2.1-i2v-14b-480p"),
    "wan-vace": Tiny("wan", ("t2v", "i2v", "inpaint"), 5, "wan2.1-vace-1.3b"),
    # Wan 2.2 TI2V: a 16x VAE (WanVideoToVideoPipeline assumes 8x: no v2v; inpaint blends into WanPipeline)
    "wan-ti2v": Tiny("wan", ("t2v", "i2v", "inpaint"), 5, "wan2.2-ti2v-5b", blend=True),
    "ltx": Tiny("ltx", ("t2v", "i2v", "v2v", "inpaint"), 9, "ltx-video-0.9.7-dev", blend=True),
    "cogvideox-t2v": Tiny("cogvideox", ("t2v", "v2v", "inpaint"), 9, "cogvideox-5b", blend=True),
    "cogvideox-i2v": Tiny("cogvideox", ("i2v",), 9, "cogvideox-5b-i2v"),
    "mochi": Tiny("mochi", ("t2v", "inpaint"), 7, "mochi-1-preview", blend=True),  # inpaint: t2v from noise
    "hunyuan": Tiny("hunyuan", ("t2v", "inpaint"), 5, "hunyuanvideo", blend=True),  # inpaint: t2v from noise
    # as hunyuanvideo-community/HunyuanVideo-I2V: 16 latent channels in, token replace, embedded guidance
    "hunyuan-i2v": Tiny("hunyuan", ("i2v",), 5, "hunyuanvideo-i2v"),
    "hunyuan-i2v-33ch": Tiny("hunyuan", ("i2v",), 5, None),  # latent_concat, as HunyuanVideo-I2V-33ch
    "svd": Tiny("svd", ("i2v",), 3, "svd-xt"),
    "animatediff": Tiny("animatediff", ("t2v", "v2v", "inpaint"), 8, "animatediff-v1-5-2", blend=True),
}
SIZE = 32  # pixels, square
CASES = [(kind, mode) for kind, t in TINY.items() for mode in t.modes]  # every mode of every kind
BLEND_KINDS = [kind for kind, t in TINY.items() if t.blend]
FAMILY_KINDS: dict[str, str] = {}  # family -> its first kind in TINY (the family's plain text- or image-to-video)
for _kind, _tiny in TINY.items():
    FAMILY_KINDS.setdefault(_tiny.family, _kind)

_WORDS = "a an the cat dog red blue green ball moves runs jumps left right on in over sky water tree car".split()


def t5_tokenizer():
    """A Unigram T5 tokenizer from an in-code vocabulary (T5 / UMT5 text encoders)."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    vocab += [("▁" + w, -1.0 - 0.01 * i) for i, w in enumerate(_WORDS)]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)  # 52 pieces


def clip_tokenizer():
    """A CLIP BPE tokenizer with characters only (no merges)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def llama_tokenizer():
    """A character-level Llama tokenizer (HunyuanVideo's prompt template tokenizes to > 95 tokens)."""
    import string

    from tokenizers import Tokenizer, models
    from transformers import LlamaTokenizerFast

    vocab = {"<unk>": 0, "<|begin_of_text|>": 1, "<|end_of_text|>": 2}
    for c in dict.fromkeys(string.printable):
        vocab.setdefault(c, len(vocab))
    return LlamaTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>")),
                              bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", unk_token="<unk>",
                              pad_token="<unk>")


# Llama 3's pre-tokenizer split (words with their leading space, 1-3 digits, punctuation, newline runs)
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                   "<image>"]


def llava_llama3_tokenizer():
    """A word-level tokenizer over Llama 3's own split, for HunyuanVideo I2V's Llava encoder.

    Every piece of the I2V prompt template is one token, as with the real tokenizer: the template
    ends at token 103 (the pipeline's crop_start), `<image>` sits at 5, and the header tokens the
    pipeline searches for exist. Pieces outside the vocabulary become <unk>.
    """
    import re

    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated")
    vocab = {"<unk>": 0, **{s: i + 1 for i, s in enumerate(_LLAMA3_SPECIAL)}}
    plain = re.split("|".join(map(re.escape, _LLAMA3_SPECIAL)), DEFAULT_PROMPT_TEMPLATE["template"].replace("{}", ""))
    pieces = [p for text in plain for p, _ in split.pre_tokenize_str(text)]
    pieces += [w for word in _WORDS for w in (word, " " + word)]
    for p in pieces:
        vocab.setdefault(p, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = split
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 1)])
    # the generic fast tokenizer keeps tokenizer.json as it is through save/load (LlamaTokenizer rebuilds it)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                                   unk_token="<unk>", pad_token="<unk>", additional_special_tokens=_LLAMA3_SPECIAL[2:])


def _t5_encoder(umt5: bool = False):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    kw = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
              relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    if umt5:
        return UMT5EncoderModel(UMT5Config(**kw)).eval()
    return T5EncoderModel(T5Config(**kw)).eval()


# ---- one builder per kind of repo ----------------------------------------------------------------
def _wan(kind: str):
    from diffusers import (AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline,
                           WanTransformer3DModel, WanVACEPipeline, WanVACETransformer3DModel)

    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])  # 8x spatial, 4x temporal
    common = dict(tokenizer=t5_tokenizer(), text_encoder=_t5_encoder(umt5=True), vae=vae,
                  scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                    flow_shift=5.0))  # as the Wan repos ship
    tr = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, out_channels=16,
              text_dim=32, freq_dim=256, ffn_dim=32, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    if kind == "wan-t2v":
        return WanPipeline(transformer=WanTransformer3DModel(in_channels=16, num_layers=2, **tr), **common)
    if kind == "wan-ti2v":  # Wan 2.2 TI2V: one transformer, the image enters as the first latent frame
        # the Wan 2.2 VAE: residual blocks over 2x2-patchified pixels (12 channels), 16x spatial, 4x temporal
        common["vae"] = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                         temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                                         out_channels=12, patch_size=2, scale_factor_spatial=16,
                                         scale_factor_temporal=4)
        transformer = WanTransformer3DModel(in_channels=16, num_layers=2, **tr)
        return WanPipeline(transformer=transformer, expand_timesteps=True, **common)
    if kind == "wan-i2v":  # Wan2.1 I2V: CLIP image embedding + 16 noise + 4 mask + 16 image-latent channels
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        enc = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            intermediate_size=16, patch_size=8)).eval()
        proc = CLIPImageProcessor(crop_size=32, size=32)
        transformer = WanTransformer3DModel(in_channels=36, num_layers=2, image_dim=4, added_kv_proj_dim=24, **tr)
        return WanImageToVideoPipeline(transformer=transformer, image_encoder=enc, image_processor=proc, **common)
    if kind == "wan-vace":  # control channels: 16 inactive + 16 reactive latents + 8*8 mask
        transformer = WanVACETransformer3DModel(in_channels=16, num_layers=3, vace_layers=[0, 2],
                                                vace_in_channels=96, **tr)
        return WanVACEPipeline(transformer=transformer, **common)
    raise ValueError(kind)


def _ltx():
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline,
                           LTXVideoTransformer3DModel)

    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                             num_layers=2, caption_channels=32)  # 2 blocks: first-block cache
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False,
        patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)  # 4x spatial, 4x temporal
    return LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=_t5_encoder(),
                       tokenizer=t5_tokenizer(), transformer=transformer)


def _cogvideox(kind: str):
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline,
                           CogVideoXPipeline, CogVideoXTransformer3DModel)

    i2v = kind == "cogvideox-i2v"
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8 if i2v else 4, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=2, sample_width=4, sample_height=4, sample_frames=9,
        patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
        use_rotary_positional_embeddings=i2v, use_learned_positional_embeddings=False)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)  # 8x spatial, 4x temporal
    cls = CogVideoXImageToVideoPipeline if i2v else CogVideoXPipeline
    return cls(tokenizer=t5_tokenizer(), text_encoder=_t5_encoder(), vae=vae, transformer=transformer,
               scheduler=CogVideoXDDIMScheduler())


def _hunyuan_vae():
    from diffusers import AutoencoderKLHunyuanVideo

    return AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        act_fn="silu", norm_num_groups=4, scaling_factor=0.476986, spatial_compression_ratio=8,
        temporal_compression_ratio=4, mid_block_add_attention=True)


def _hunyuan_clip():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=8,
                                        intermediate_size=37, num_attention_heads=2, num_hidden_layers=2,
                                        vocab_size=64)).eval()


def _hunyuan():
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel
    from transformers import LlamaConfig, LlamaModel

    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=2,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4))
    vae = _hunyuan_vae()
    # the pipeline takes the hidden state two layers from the top: at least 3 layers
    llama = LlamaModel(LlamaConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, hidden_size=16,
                                   intermediate_size=37, num_attention_heads=4, num_hidden_layers=3, vocab_size=128,
                                   hidden_act="gelu")).eval()
    clip = _hunyuan_clip()
    return HunyuanVideoPipeline(text_encoder=llama, tokenizer=llama_tokenizer(), transformer=transformer, vae=vae,
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=clip,
                                tokenizer_2=clip_tokenizer())


def _hunyuan_i2v(image_condition_type: str = "token_replace"):
    """HunyuanVideo I2V. token_replace (hunyuanvideo-community/HunyuanVideo-I2V): the image latent replaces
    the first latent frame, 4 channels in (16 in the real one), embedded guidance. latent_concat (the -33ch
    checkpoint): 4 noise + 4 image-latent + 1 mask channels, no guidance embedding. Both: a Llava encoder
    sees the prompt template with the image's 576 patch embeddings in place of `<image>`."""
    from diffusers import (FlowMatchEulerDiscreteScheduler, HunyuanVideoImageToVideoPipeline,
                           HunyuanVideoTransformer3DModel)
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration)

    concat = image_condition_type == "latent_concat"
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=2 * 4 + 1 if concat else 4, out_channels=4, num_attention_heads=2, attention_head_dim=10,
        num_layers=2, num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1,
        guidance_embeds=not concat, text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4),
        image_condition_type=image_condition_type)
    tokenizer = llava_llama3_tokenizer()
    pad, image_token = tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids("<image>")
    # the template's image_emb_len is 576: a 48-pixel image in 2-pixel patches gives 24 * 24 features
    vision = CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
                              image_size=48, patch_size=2, projection_dim=8)
    # the pipeline takes the hidden state two layers from the top: at least 3 layers
    text = LlamaConfig(bos_token_id=1, eos_token_id=2, pad_token_id=pad, hidden_size=16, intermediate_size=37,
                       num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=3,
                       vocab_size=len(tokenizer), hidden_act="gelu")
    llava = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, pad_token_id=pad,
                                                      image_token_index=image_token, image_seq_length=576)).eval()
    return HunyuanVideoImageToVideoPipeline(
        text_encoder=llava, tokenizer=tokenizer, transformer=transformer, vae=_hunyuan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=_hunyuan_clip(),
        tokenizer_2=clip_tokenizer(), image_processor=CLIPImageProcessor(size=48, crop_size=48))


def _mochi():
    from diffusers import (AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline,
                           MochiTransformer3DModel)

    transformer = MochiTransformer3DModel(patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2,
                                          pooled_projection_dim=16, in_channels=12, out_channels=None,
                                          qk_norm="rms_norm", text_embed_dim=32, time_embed_dim=4,
                                          activation_fn="swiglu", max_sequence_length=16)
    transformer.pos_frequencies.data = transformer.pos_frequencies.new_ones(transformer.pos_frequencies.shape)
    vae = AutoencoderKLMochi(latent_channels=12, out_channels=3, encoder_block_out_channels=(32, 32, 32, 32),
                             decoder_block_out_channels=(32, 32, 32, 32), layers_per_block=(1, 1, 1, 1, 1))
    # as genmo/mochi-1-preview ships it: sigmas run from noise (0) to data (1)
    return MochiPipeline(scheduler=FlowMatchEulerDiscreteScheduler(invert_sigmas=True), vae=vae, text_encoder=_t5_encoder(),
                         tokenizer=t5_tokenizer(), transformer=transformer)


def _svd():
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
        num_attention_heads=8, projection_class_embeddings_input_dim=96, addition_time_embed_dim=32)
    scheduler = EulerDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
        steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                       down_block_types=["DownEncoderBlock2D"] * 2, latent_channels=4)
    # SVD resizes the conditioning image to 224 before CLIP: the config must say so
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        intermediate_size=37, patch_size=32)).eval()
    return StableVideoDiffusionPipeline(vae=vae, image_encoder=enc, unet=unet, scheduler=scheduler,
                                        feature_extractor=CLIPImageProcessor(crop_size=224, size=224))


def _animatediff_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=2)


def _animatediff():
    from diffusers import AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = _animatediff_unet()
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4, norm_num_groups=2)  # 2x spatial
    text_encoder = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32,
                                                intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                                vocab_size=64, layer_norm_eps=1e-5)).eval()
    adapter = MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1, motion_norm_num_groups=2,
                            motion_num_attention_heads=4)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                              timestep_spacing="linspace", steps_offset=1)
    return AnimateDiffPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(), unet=unet,
                               motion_adapter=adapter, scheduler=scheduler)


def build_tiny_sd15_and_adapter(models_dir: str | Path) -> Path:
    """The AnimateDiff catalog layout: an SD 1.5 base folder and a separate motion-adapter folder,
    named as `hf download <repo> --local-dir <models_dir>/<repo name>` names them."""
    from diffusers import StableDiffusionPipeline

    models_dir = Path(models_dir)
    base, adapter = models_dir / "stable-diffusion-v1-5", models_dir / "animatediff-motion-adapter-v1-5-2"
    if not (base / "model_index.json").exists():
        anim = build_tiny_pipe("animatediff")
        torch.manual_seed(0)
        unet = _animatediff_unet()
        sd = StableDiffusionPipeline(vae=anim.vae, text_encoder=anim.text_encoder, tokenizer=anim.tokenizer, unet=unet,
                                     scheduler=anim.scheduler, safety_checker=None, feature_extractor=None,
                                     requires_safety_checker=False)
        sd.save_pretrained(base)
        anim.motion_adapter.save_pretrained(adapter)
    return models_dir


def build_tiny_pipe(kind: str, seed: int = 0):
    """The in-memory pipeline for a kind of repo (see TINY); weights are random from `seed`."""
    torch.manual_seed(seed)
    if kind.startswith("wan-"):
        return _wan(kind)
    if kind == "ltx":
        return _ltx()
    if kind.startswith("cogvideox-"):
        return _cogvideox(kind)
    if kind == "mochi":
        return _mochi()
    if kind == "hunyuan":
        return _hunyuan()
    if kind == "hunyuan-i2v":
        return _hunyuan_i2v("token_replace")
    if kind == "hunyuan-i2v-33ch":
        return _hunyuan_i2v("latent_concat")
    if kind == "svd":
        return _svd()
    if kind == "animatediff":
        return _animatediff()
    raise ValueError(f"no tiny builder for {kind!r}; kinds: {sorted(TINY)}")


def build_tiny_kind(kind: str, folder: str | Path, *, variant: str | None = None) -> Path:
    """Save the tiny pipeline of `kind` (see TINY) into `folder` (once) and return the folder.
    `variant`: save the weights as *.<variant>.safetensors, as hub repos that ship fp16 files do."""
    folder = Path(folder)
    if not (folder / "model_index.json").exists():
        build_tiny_pipe(kind).save_pretrained(folder, variant=variant)
    return folder
