"""What the UI, the CLI and validation know about a model without loading it: ranges, defaults, spec."""

from __future__ import annotations

from dataclasses import dataclass, field

MODES = ("t2v", "i2v", "v2v", "inpaint")


@dataclass(frozen=True)
class Range:
    """Inclusive bounds; ints must satisfy (value - offset) % multiple_of == 0 (Wan frames: 4k+1)."""

    min: float
    max: float
    multiple_of: int = 1
    offset: int = 0


@dataclass(frozen=True)
class ModelDefaults:
    steps: int
    cfg_scale: float
    frames: int
    fps: int
    width: int
    height: int
    strength: float = 0.6  # v2v default
    # inpaint default: 1 starts the masked region from noise; below 1 from the input noised to that t, so
    # that what the mask covers (where and how large the object is, how it moves) seeds the new content
    inpaint_strength: float = 1.0

    def strength_for(self, mode: str) -> float:
        """The strength a v2v or inpaint request gets when it gives none."""
        return self.inpaint_strength if mode == "inpaint" else self.strength


@dataclass(frozen=True)
class ModelLimits:
    steps: Range = Range(1, 100)
    cfg_scale: Range = Range(0.0, 20.0)
    frames: Range = Range(1, 256)
    fps: Range = Range(1, 60)
    width: Range = Range(16, 2048, 8)
    height: Range = Range(16, 2048, 8)


@dataclass(frozen=True)
class ModelSpec:
    """What the UI, the CLI and validation need to know about a model, without loading it."""

    id: str  # stable registry id, e.g. "embedded-shapes"
    version: str  # bumped whenever weights or sampling change results
    label: str
    family: str  # "embedded", "wan", "ltx", ...
    modes: tuple[str, ...]
    defaults: ModelDefaults
    limits: ModelLimits = field(default_factory=ModelLimits)
    description: str = ""
    profiles: tuple[str, ...] = ()  # speed/memory profiles; the first is the default; () = none

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"
