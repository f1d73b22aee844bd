"""Running on a Hugging Face Space (#15): what the platform's environment says, and what follows from it.

The platform sets `SYSTEM=spaces` and `SPACE_ID`; with `hf_oauth: true` in the README's metadata it also
sets `OAUTH_CLIENT_ID` and friends (Sign in with Hugging Face: see `Settings.hf_login`). Persistent storage,
when the Space has it, is mounted at `/data` (`STUDIO_SPACE_VOLUME` names another place, for tests).

Started on a Space with no arguments, the studio:
- listens where the platform expects (`GRADIO_SERVER_NAME`/`GRADIO_SERVER_PORT`, else 0.0.0.0:7860);
- keeps the data dir (`<volume>/studio`) and the model cache (`HF_HOME=<volume>/huggingface`) on the
  persistent volume when one is mounted, and otherwise says on the page that the gallery is lost at restart;
- runs generation inside ZeroGPU's `spaces.GPU` when the Space has ZeroGPU hardware.
Nothing here imports torch or Gradio; `detect` only reads the environment and the file system.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

DEFAULT_VOLUME = "/data"
EPHEMERAL_NOTICE = ("This Space has no persistent storage: the gallery and every clip are lost when it restarts. "
                    "Its owner can add storage in the Space's settings (then /data keeps them).")


@dataclass(frozen=True)
class Space:
    id: str
    volume: Path | None  # persistent storage, when mounted and writable
    zero_gpu: bool
    host: str
    port: int

    @property
    def data_dir(self) -> Path | None:
        return self.volume / "studio" if self.volume is not None else None

    @property
    def model_cache(self) -> Path | None:
        return self.volume / "huggingface" if self.volume is not None else None

    @property
    def notice(self) -> str | None:
        """What the page says about this Space (None when nothing needs saying)."""
        return None if self.volume is not None else EPHEMERAL_NOTICE


def detect(env: Mapping[str, str] | None = None) -> Space | None:
    """The Space this process runs on, or None when it is not on one."""
    env = os.environ if env is None else env
    if env.get("SYSTEM") != "spaces":
        return None
    volume = Path(env.get("STUDIO_SPACE_VOLUME") or DEFAULT_VOLUME)
    usable = volume.is_dir() and os.access(volume, os.W_OK)
    return Space(
        id=env.get("SPACE_ID", ""),
        volume=volume if usable else None,
        zero_gpu=env.get("SPACES_ZERO_GPU", "").lower() in ("1", "true"),
        host=env.get("GRADIO_SERVER_NAME") or "0.0.0.0",
        port=int(env.get("GRADIO_SERVER_PORT") or env.get("PORT") or 7860),
    )


def prepare_environment(env: "os._Environ[str] | dict[str, str] | None" = None) -> Space | None:
    """On a Space with a volume: the model cache goes there too. Call before anything imports
    huggingface_hub (it reads HF_HOME once, at import)."""
    env = os.environ if env is None else env
    space = detect(env)
    if space is not None and space.model_cache is not None and not env.get("HF_HOME"):
        env["HF_HOME"] = str(space.model_cache)
    return space


def gpu_seconds(request: Any) -> int:
    """How long a ZeroGPU slice one clip needs, from its request: a base for loading plus a share for the
    work (steps x frames x pixels against a 49-frame 832x480 clip at 30 steps, about two minutes on a slice)."""
    steps = getattr(request, "steps", None) or 30
    frames = getattr(request, "frames", None) or 49
    pixels = (getattr(request, "width", None) or 832) * (getattr(request, "height", None) or 480)
    work = steps * frames * pixels / (30 * 49 * 832 * 480)
    return int(min(300, max(30, 20 + 100 * work)))


def zero_gpu_runner(space: Space | None) -> Callable[..., Any] | None:
    """A runner `run(fn, request, *args)` that calls `fn(*args)` inside `spaces.GPU(duration=...)`, sized from
    the request; None when not on ZeroGPU (or the `spaces` package is missing), so generation runs directly."""
    if space is None or not space.zero_gpu:
        return None
    try:
        import spaces  # the platform's package; absent everywhere else
    except ImportError:
        return None

    def run(fn: Callable[..., Any], request: Any, *args: Any) -> Any:
        return spaces.GPU(duration=gpu_seconds(request))(fn)(*args)

    return run
