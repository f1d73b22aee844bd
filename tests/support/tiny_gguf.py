"""Tiny transformers written to GGUF in code (the `gguf` package writes the file, offline).

`write_gguf` quantizes every matrix whose rows divide into the type's blocks (as the community converters
do; 1-D tensors stay float32) and, by default, names the tensors as the original Wan checkpoints do
(`blocks.0.self_attn.q.weight`), the layout the published files use and diffusers converts on load.
gguf-py writes Q8_0, Q5_0, Q4_0 (and friends); the K-quants (Q4_K, Q6_K) it only reads.
"""

from __future__ import annotations

from pathlib import Path

import torch

# diffusers -> original Wan names (the inverse of diffusers' convert_wan_transformer_to_diffusers, for the
# tensors a plain text-to-video Wan transformer has)
_WAN_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"), ("attn2", "cross_attn"), (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."),
    (".to_v.", ".v."), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"), ("proj_out", "head.head"),
    ("norm2", "norm__swap"), ("norm3", "norm2"), ("norm__swap", "norm3"),
]


def wan_original_name(key: str) -> str:
    if key == "scale_shift_table":
        return "head.modulation"
    for a, b in _WAN_ORIGINAL:
        key = key.replace(a, b)
    return key.replace("scale_shift_table", "modulation")


def wide_wan_transformer(seed: int = 0, head_dim: int = 16):
    """A tiny Wan transformer whose matrices are 32 wide (so Q8_0/Q4_0 blocks fit), otherwise as the tiny
    Wan pipeline's (tests/support/tiny_diffusers.py): 16 latent channels, text_dim 32."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=head_dim, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=64, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32).eval()


def write_gguf(model, path: Path, qtype: str = "Q8_0", *, original_names: bool = True,
               architecture: str = "wan") -> Path:
    import gguf

    kind = getattr(gguf.GGMLQuantizationType, qtype)
    block = gguf.GGML_QUANT_SIZES[kind][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), architecture)
    for key, value in model.state_dict().items():
        name = wan_original_name(key) if original_names else key
        array = value.detach().float().numpy()
        if array.ndim >= 2 and array.shape[-1] % block == 0:
            packed = gguf.quants.quantize(array, kind)
            writer.add_tensor(name, packed, raw_shape=packed.shape, raw_dtype=kind)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def build_wide_wan_folder(folder: Path) -> Path:
    """The tiny Wan pipeline with `wide_wan_transformer` as its transformer, saved as a hub-like folder."""
    from tests.support.tiny_diffusers import build_tiny_pipe

    folder = Path(folder)
    if not (folder / "model_index.json").exists():
        pipe = build_tiny_pipe("wan-t2v")
        pipe.transformer = wide_wan_transformer()
        pipe.register_modules(transformer=pipe.transformer)
        pipe.save_pretrained(folder)
    return folder
