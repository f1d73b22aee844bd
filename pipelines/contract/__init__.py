"""The contract at the bottom of the studio: model spec and ranges, typed requests, the backend
protocol, the model registry and job status.

It imports nothing else of the project. Backends (`pipelines.embedded`, `pipelines.diffusers`)
depend only on it; the services in `studio/` depend on it and on `storage/`; the UI, CLI and API
depend on the services. `tests/test_layers.py` checks these arrows from the imports.
"""

from pipelines.contract.backend import (
    Backend,
    BatchBackend,
    Cancelled,
    MediaInputs,
    ModelLoadError,
    OutOfMemory,
    StepCallback,
    is_out_of_memory,
)
from pipelines.contract.jobs import TERMINAL, JobStatus
from pipelines.contract.loras import LoraRef, parse_lora
from pipelines.contract.registry import ModelRegistry, RegistryEntry, Resolver, UnknownModel
from pipelines.contract.requests import (
    DEFAULT_MODEL_ID,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    PARAMS_SCHEMA_VERSION,
    REQUEST_TYPES,
    ExtendRequest,
    GenerationRequest,
    ImageToVideoRequest,
    InpaintRequest,
    RequestError,
    TextToVideoRequest,
    VideoToVideoRequest,
    request_from_params,
)
from pipelines.contract.spec import MODES, ModelDefaults, ModelLimits, ModelSpec, Range
from pipelines.contract.sweeps import AXES, MAX_SWEEP_CLIPS, Axis, Cell, SweepRequest, make_axis, parse_axis

__all__ = [
    "Backend", "BatchBackend", "Cancelled", "MediaInputs", "ModelLoadError", "OutOfMemory", "StepCallback", "is_out_of_memory",
    "TERMINAL", "JobStatus", "LoraRef", "parse_lora",
    "ModelRegistry", "RegistryEntry", "Resolver", "UnknownModel",
    "DEFAULT_MODEL_ID", "MAX_PROMPT_CHARS", "MAX_SEED", "PARAMS_SCHEMA_VERSION", "REQUEST_TYPES",
    "ExtendRequest", "GenerationRequest", "ImageToVideoRequest", "InpaintRequest", "RequestError", "TextToVideoRequest",
    "VideoToVideoRequest", "request_from_params",
    "MODES", "ModelDefaults", "ModelLimits", "ModelSpec", "Range",
    "AXES", "MAX_SWEEP_CLIPS", "Axis", "Cell", "SweepRequest", "make_axis", "parse_axis",
]
