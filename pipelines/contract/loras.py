"""LoRAs in a request, and what can be read from a LoRA file without torch (its safetensors header).

A request names each LoRA (a file in the studio's LoRA folder, or a path) with a weight. The job
service resolves the name to a file and pins its sha256 before queueing; the recipe records the
file name, the sha256 and the weight, so recall and sweeps reproduce the clip.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_LORAS = 4
WEIGHT_MIN, WEIGHT_MAX = -4.0, 4.0
MAX_HEADER_BYTES = 100 * 1024 * 1024
SUFFIX = ".safetensors"


@dataclass(frozen=True)
class LoraRef:
    """One LoRA of a request. `name`: a file name in the LoRA folder or a path; `sha256` and `path` are
    pinned by the job service (a recalled request carries the sha256 it was made with)."""

    name: str
    weight: float = 1.0
    sha256: str | None = None
    path: str | None = None

    @classmethod
    def of(cls, value: Any) -> "LoraRef":
        """A LoraRef from a LoraRef, a (name, weight) pair, a params dict or 'name[:weight]'."""
        if isinstance(value, LoraRef):
            return value
        if isinstance(value, dict):
            return cls(name=value.get("name"), weight=value.get("weight", 1.0), sha256=value.get("sha256"),
                       path=value.get("path"))
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(name=value[0], weight=value[1])
        if isinstance(value, str):
            return parse_lora(value)
        return cls(name=value)  # type: ignore[arg-type]  # validate() names what is wrong

    def problem(self) -> str | None:
        """What is wrong with this reference (shape only; the file is checked by the job service)."""
        if not isinstance(self.name, str) or not self.name.strip() or "\x00" in self.name or len(self.name) > 1024:
            return f"{self.name!r} is not a LoRA name or path"
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            return f"{self.name}: weight {w!r} is not a number"
        if not WEIGHT_MIN <= w <= WEIGHT_MAX:
            return f"{self.name}: weight {w:g} is outside {WEIGHT_MIN:g} to {WEIGHT_MAX:g}"
        return None

    def recipe(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "weight": float(self.weight)}


_WEIGHT = re.compile(r"^(.*):([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")


def parse_lora(text: str) -> LoraRef:
    """'name', 'name:0.8', '/path/to/x.safetensors:-0.5' -> LoraRef (weight 1 when none is given)."""
    text = str(text).strip()
    m = _WEIGHT.match(text)
    if m and m.group(1):
        return LoraRef(name=m.group(1), weight=float(m.group(2)))
    return LoraRef(name=text, weight=1.0)


# ---- the file, without torch ------------------------------------------------------------------------
def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from a safetensors file's header. ValueError when it is not one."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if not 2 <= n <= MAX_HEADER_BYTES:
            raise ValueError("not a safetensors file (bad header size)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, ValueError):
            raise ValueError("not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file")
    return {k: tuple(v.get("shape", ())) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


# key patterns that tell a family apart (diffusers names and the original repos' names); attention-only
# LoRAs on `transformer_blocks` fit several families and get no guess
_FAMILY_HINTS: list[tuple[str, str]] = [
    ("hunyuan", r"single_transformer_blocks|double_blocks\.|single_blocks\.|token_refiner"),
    ("ltx", r"adaln_single|caption_projection|scale_shift_table"),
    ("cogvideox", r"norm1\.linear|patch_embed\.text_proj|norm_final"),
    ("wan", r"(^|\.)blocks\.\d+\.|condition_embedder|self_attn\.q|cross_attn\.k"),
]


def describe(shapes: dict[str, tuple[int, ...]]) -> dict:
    """{"family": guess or None, "rank": the LoRA rank (or None), "tensors": count} from the key names."""
    rank = None
    for key, shape in shapes.items():
        if (".lora_A." in key or "lora_down" in key) and len(shape) >= 2:
            rank = int(shape[0])
            break
    family = None
    for name, pattern in _FAMILY_HINTS:
        rx = re.compile(pattern)
        if any(rx.search(k) for k in shapes):
            family = name
            break
    return {"family": family, "rank": rank, "tensors": len(shapes)}


def peft_targets(shapes: dict[str, tuple[int, ...]], prefix: str = "transformer.") -> dict[str, tuple[int, int]] | None:
    """For a LoRA in the diffusers/PEFT layout (`<prefix><module>.lora_A.weight` / `lora_B.weight`):
    {module: (out_features, in_features)} it expects; None for another layout (community files,
    which diffusers converts when loading)."""
    a = {k[len(prefix):-len(".lora_A.weight")]: s for k, s in shapes.items()
         if k.startswith(prefix) and k.endswith(".lora_A.weight")}
    b = {k[len(prefix):-len(".lora_B.weight")]: s for k, s in shapes.items()
         if k.startswith(prefix) and k.endswith(".lora_B.weight")}
    if not a or set(a) != set(b):
        return None
    out = {}
    for module, sa in a.items():
        sb = b[module]
        if len(sa) != 2 or len(sb) != 2:
            return None
        out[module] = (int(sb[0]), int(sa[1]))
    return out


def mismatch(targets: dict[str, tuple[int, int]], weights: dict[str, tuple[int, ...]]) -> str | None:
    """Why a PEFT-layout LoRA does not fit a denoiser whose weights have these shapes ({module.weight: shape}),
    or None when every module it targets exists with the right shape."""
    missing = [m for m in targets if f"{m}.weight" not in weights]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return f"it targets layers the model does not have ({missing[0]}{more})"
    for m, (out_f, in_f) in targets.items():
        shape = weights[f"{m}.weight"]
        if tuple(shape[:2]) != (out_f, in_f):
            return f"its layer {m} is {in_f}->{out_f} but the model's is {shape[1]}->{shape[0]}"
    return None
