"""The LoRA folder: `STUDIO_LORA_DIR`, else `<data dir>/loras`. Names resolve to files there (or are paths).

`resolve` pins a request's LoRAs before the job is queued: each name becomes a file (its recipe name is the
file name when it lies in the folder, else the path given) with its sha256. A recalled request carries the
sha256 it was made with; a file that changed since is refused, so a recall never silently differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
from pathlib import Path

from pipelines.contract import RequestError
from pipelines.contract.loras import SUFFIX, LoraRef, describe, read_shapes


def lora_dir(data_dir: str | Path, env=None) -> Path:  # type: ignore[no-untyped-def]
    env = os.environ if env is None else env
    return Path(env["STUDIO_LORA_DIR"]).expanduser() if env.get("STUDIO_LORA_DIR") else Path(data_dir) / "loras"


class LoraLibrary:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256
        self._lock = threading.Lock()

    def files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.suffix == SUFFIX and p.is_file())

    def names(self) -> list[str]:
        return [p.name for p in self.files()]

    def list(self) -> list[dict]:
        """Each file: name, family guess (from key names), rank, size in bytes (error when unreadable)."""
        out = []
        for p in self.files():
            row: dict = {"name": p.name, "size": p.stat().st_size, "recommended": self.recommended(p.name)}
            try:
                row.update({k: v for k, v in describe(read_shapes(p)).items() if k != "tensors"})
            except (OSError, ValueError) as e:
                row.update({"family": None, "rank": None, "error": str(e)})
            out.append(row)
        return out

    def recommended(self, name: str) -> dict:
        """The sidecar `<lora>.json` next to a folder file: {"steps": int, "cfg": float} (what it has of them)."""
        stem = Path(str(name).split(":")[0]).name.removesuffix(SUFFIX)
        path = self.folder / f"{stem}.json"
        try:
            raw = json.loads(path.read_text()) if path.is_file() and path.stat().st_size < 65536 else {}
        except (OSError, ValueError):
            return {}
        out: dict = {}
        if not isinstance(raw, dict):
            return out
        steps, cfg = raw.get("steps"), raw.get("cfg", raw.get("cfg_scale"))
        if isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= 1000:
            out["steps"] = steps
        if isinstance(cfg, (int, float)) and not isinstance(cfg, bool) and math.isfinite(cfg) and 0 <= cfg <= 100:
            out["cfg"] = float(cfg)
        return out

    def path_of(self, name: str) -> Path:
        """A name in the folder (with or without .safetensors), or a path. RequestError when there is no such file."""
        candidates = []
        if "/" not in name and os.sep not in name:
            candidates += [self.folder / name, self.folder / (name + SUFFIX)]
        candidates.append(Path(name).expanduser())
        for c in candidates:
            if c.is_file():
                if c.suffix != SUFFIX:
                    raise RequestError("loras", f"{name} is not a .safetensors file")
                return c.resolve()
        known = ", ".join(self.names()) or "none"
        raise RequestError("loras", f"no LoRA {name!r} in the LoRA folder (it has: {known}) and no such file")

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._hashes:
                return self._hashes[key]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        with self._lock:
            self._hashes[key] = digest
        return digest

    def pin(self, ref: LoraRef) -> LoraRef:
        """The reference with its file's path and sha256 (and the file name as its name, for a file in the folder)."""
        path = self.path_of(ref.name)
        digest = self.sha256(path)
        if ref.sha256 and ref.sha256 != digest:
            raise RequestError("loras", f"{ref.name} has changed since the clip was made (sha256 {digest[:12]}, "
                                        f"the recipe has {ref.sha256[:12]}); put the original file back")
        try:
            in_folder = path.parent == self.folder.resolve()
        except OSError:
            in_folder = False
        return dataclasses.replace(ref, name=path.name if in_folder else ref.name, path=str(path), sha256=digest)
