"""An explicit registry of models: stable ids -> spec + loader. One backend stays loaded."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from pipelines.contract.backend import Backend, MediaInputs, ModelLoadError
from pipelines.contract.spec import ModelSpec


class UnknownModel(KeyError):
    def __init__(self, model_id: str, known: Iterable[str]):
        self.model_id = model_id
        super().__init__(f"unknown model {model_id!r}; known models: {', '.join(sorted(known))}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


@dataclass(frozen=True)
class RegistryEntry:
    spec: ModelSpec
    load: Callable[[str, "str | None"], Backend]  # (device, profile) -> backend
    # () -> None when the weights are here and the model can load, else a message that says what is
    # missing, ending with the command that fetches it on a line of its own. Cheap: no loading.
    missing: Callable[[], "str | None"] | None = None
    # (prompt) -> what the model will not follow in it ("unknown words: cat, piano"); cheap, no loading
    prompt_warnings: Callable[[str], "list[str]"] | None = None
    # (mode, prompt, conformed inputs) -> the prompt as the model will read it with its i2v image or v2v source,
    # or None when it is read as typed; cheap (pixels only, no loading). None: the model reads prompts as typed.
    prompt_read_as: Callable[[str, str, MediaInputs], "str | None"] | None = None
    # (LoRA name, path) -> None when the LoRA fits the model's denoiser, else why not; cheap (file headers only).
    # None: the model takes no LoRAs.
    check_lora: Callable[[str, str], "str | None"] | None = None
    # () -> sha256 of the one file the denoiser's weights come from when it is chosen by name (a GGUF
    # transformer), cached per (path, size, mtime); None: the weights are not one named file. The job service
    # pins it in the request and loading checks it, so a recall never runs on a changed file.
    weights_sha256: Callable[[], str] | None = None


# A resolver turns an id that is not in the table (a local folder, a hub repo id) into an entry, or None.
Resolver = Callable[[str], "RegistryEntry | None"]


MAX_MODEL_ID_CHARS = 256


class ModelRegistry:
    def __init__(
        self,
        entries: Mapping[str, RegistryEntry],
        *,
        device: str = "cpu",
        resolvers: Iterable[Resolver] = (),
        default_id: str | None = None,
    ):
        self._entries = dict(entries)
        self._resolvers = list(resolvers)
        self.device = device
        self.default_id = default_id or next(iter(self._entries))
        self._loaded: tuple[tuple[str, str | None, str | None], Backend] | None = None
        self._lock = threading.Lock()

    def specs(self) -> list[ModelSpec]:
        return [e.spec for e in self._entries.values()]

    def entry(self, model_id: str) -> RegistryEntry:
        if model_id in self._entries:
            return self._entries[model_id]
        if not isinstance(model_id, str) or not model_id.strip() or len(model_id) > MAX_MODEL_ID_CHARS \
                or "\x00" in model_id:
            shown = model_id if not isinstance(model_id, str) or len(model_id) <= 60 else model_id[:57] + "..."
            raise UnknownModel(shown, self._entries)
        for resolve in self._resolvers:
            try:
                found = resolve(model_id)
            except OSError:  # a name the file system refuses (too long, bad characters) is no folder
                found = None
            if found is not None:
                self._entries[model_id] = found
                return found
        raise UnknownModel(model_id, self._entries)

    def spec(self, model_id: str) -> ModelSpec:
        return self.entry(model_id).spec

    def missing(self, model_id: str) -> str | None:
        """None when `model_id` can be loaded here, else what is missing and the command that fetches it."""
        entry = self.entry(model_id)
        return entry.missing() if entry.missing is not None else None

    def prompt_warnings(self, model_id: str, prompt: str) -> list[str]:
        """What `model_id` will not follow in `prompt` (words it does not know); [] when it cannot tell."""
        entry = self.entry(model_id)
        return list(entry.prompt_warnings(prompt or "")) if entry.prompt_warnings is not None else []

    def weights_sha256(self, model_id: str) -> str | None:
        """sha256 of the model's single denoiser weights file (a GGUF transformer) as it is now, or None.
        OSError when the file cannot be read."""
        entry = self.entry(model_id)
        return entry.weights_sha256() if entry.weights_sha256 is not None else None

    def check_lora(self, model_id: str, name: str, path: str) -> str | None:
        """None when the LoRA file at `path` can be applied to `model_id`, else a message naming both."""
        entry = self.entry(model_id)
        if entry.check_lora is None:
            return f"model {entry.spec.label} ({model_id}) does not take LoRAs; pick a diffusers model"
        return entry.check_lora(name, path)

    def load(self, model_id: str, profile: str | None = None, weights_sha256: str | None = None) -> Backend:
        """Return the backend for `model_id` under `profile`, freeing whichever other one was loaded. A model
        whose weights are one named file is reloaded when the file changed; `weights_sha256` (a request's
        pin) refuses a file that is not the one the request was made for (ModelLoadError)."""
        with self._lock:
            entry = self.entry(model_id)
            try:
                current = entry.weights_sha256() if entry.weights_sha256 is not None else None
            except OSError as e:
                raise ModelLoadError(f"{model_id}: cannot read its transformer file ({e.strerror or e})") from None
            if weights_sha256 is not None and current != weights_sha256:
                raise ModelLoadError(f"{model_id}: its transformer file changed after the job was queued "
                                     f"(sha256 {str(current)[:12]}, the request has {weights_sha256[:12]}); "
                                     "put the original file back")
            key = (model_id, profile, current)
            if self._loaded and self._loaded[0] == key:
                return self._loaded[1]
            self._unload_locked()
            backend = entry.load(self.device, profile)
            self._loaded = (key, backend)
            return backend

    def unload(self) -> None:
        with self._lock:
            self._unload_locked()

    def _unload_locked(self) -> None:
        if self._loaded is None:
            return
        _, backend = self._loaded
        self._loaded = None
        backend.unload()  # the backend frees its weights and device memory (Backend.unload's contract)
