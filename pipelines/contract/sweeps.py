"""Sweeps: one request, a seed list, and up to two axes of other settings; every cell uses the same seeds.

    studio generate ... --seeds 3 --vary cfg=3,5,7 --vary "prompt=a red circle|a red square"

`parse_axis` reads one `--vary` value; `SweepRequest.cells()` lists the cells, the model axis outermost so
that each model loads once. The job service resolves and validates every cell against its model before
queueing anything.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

from pipelines.contract.requests import GenerationRequest, RequestError

MAX_AXES = 2
MAX_SWEEP_CLIPS = 64
MAX_SEEDS = 8
# axis name -> (request field, value type); the names are a public contract (CLI, API, clip JSON `axes`)
AXES: dict[str, tuple[str, type]] = {
    "cfg": ("cfg_scale", float),
    "steps": ("steps", int),
    "strength": ("strength", float),
    "frames": ("frames", int),
    "model": ("model_id", str),
    "prompt": ("prompt", str),
    "lora_weight": ("loras", float),  # the first LoRA's weight (the request must name one)
}
_COST_ORDER = ("model", "frames", "steps", "prompt", "lora_weight", "cfg", "strength")  # outermost first


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[Any, ...]

    @property
    def field(self) -> str:
        return AXES[self.name][0]


def parse_axis(text: str) -> Axis:
    """`cfg=3,5,7`, `steps=10,20`, `lora_weight=0,0.5,1`, `model=a,b`, `prompt=a red circle|a red square` -> Axis. RequestError("vary")."""
    name, sep, raw = str(text).partition("=")
    name = name.strip()
    if not sep:
        raise RequestError("vary", f"{text!r} is not NAME=VALUES (e.g. cfg=3,5,7)")
    return make_axis(name, raw.split("|") if name == "prompt" else raw.split(","))


def make_axis(name: str, values) -> Axis:  # type: ignore[no-untyped-def]
    """An axis from a name and raw values (strings or numbers), each converted and checked."""
    if name not in AXES:
        raise RequestError("vary", f"{name!r} is not an axis; axes: {', '.join(AXES)}")
    kind = AXES[name][1]
    out = []
    for raw in values:
        value = raw.strip() if isinstance(raw, str) else raw
        if value == "" or value is None:
            raise RequestError("vary", f"{name} has an empty value")
        try:
            if kind is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = int(value)
            elif kind is float:
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise RequestError("vary", f"{name}={raw!r} is not {'a whole number' if kind is int else 'a number'}") from None
        if value in out:
            raise RequestError("vary", f"{name} lists {value!r} twice")
        out.append(value)
    if not out:
        raise RequestError("vary", f"{name} has no values")
    return Axis(name, tuple(out))


@dataclass(frozen=True)
class Cell:
    axes: dict[str, Any]  # this cell's axis values, e.g. {"cfg": 5.0}
    request: GenerationRequest  # the base request with those values set (seed still the base seed)


@dataclass(frozen=True)
class SweepRequest:
    request: GenerationRequest
    seeds: int = 1
    axes: tuple[Axis, ...] = ()

    def validate(self) -> None:
        """Shape checks (names, counts); each cell's values are checked against its model by the job service."""
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or not 1 <= self.seeds <= MAX_SEEDS:
            raise RequestError("seeds", f"{self.seeds!r} is not a whole number from 1 to {MAX_SEEDS}")
        if len(self.axes) > MAX_AXES:
            raise RequestError("vary", f"{len(self.axes)} axes; a sweep has at most {MAX_AXES} besides the seeds")
        names = [a.name for a in self.axes]
        for name in names:
            if names.count(name) > 1:
                raise RequestError("vary", f"{name} is varied twice; give one --vary {name}=... with all values")
        for axis in self.axes:
            if axis.name == "strength" and not hasattr(self.request, "strength"):
                raise RequestError("vary", f"strength is not a setting of {self.request.mode}")
            if axis.name == "lora_weight" and not self.request.loras:
                raise RequestError("vary", "lora_weight varies the first LoRA's weight; the request has no LoRA")
        total = self.seeds * math.prod(len(a.values) for a in self.axes)
        if total > MAX_SWEEP_CLIPS:
            raise RequestError("vary", f"{total} clips; a sweep makes at most {MAX_SWEEP_CLIPS}")

    def cells(self) -> list[Cell]:
        """Every combination of axis values, the costliest axis (model) outermost."""
        ordered = sorted(self.axes, key=lambda a: _COST_ORDER.index(a.name))
        out = []
        for combo in itertools.product(*(a.values for a in ordered)):
            values = {a.name: v for a, v in zip(ordered, combo)}
            changes = {AXES[name][0]: v for name, v in values.items() if name != "lora_weight"}
            if "lora_weight" in values:
                first, *rest = self.request.loras
                changes["loras"] = (dataclasses.replace(first, weight=values["lora_weight"]), *rest)
            if changes.get("model_id", self.request.model_id) != self.request.model_id:
                changes["transformer_sha256"] = None  # the pin is the recalled model's file, not this one's
            out.append(Cell({a.name: values[a.name] for a in self.axes}, dataclasses.replace(self.request, **changes)))
        return out or [Cell({}, self.request)]
