"""Settings: command-line flags over environment variables over defaults. Built explicitly, never at import."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from studio.media.limits import MediaLimits

DEFAULT_PORT = 7860
APP_DIR_NAME = "video-diffusion-studio"


def default_data_dir(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """One data dir per user, wherever the studio is started from (the platform's convention):
    Linux `$XDG_DATA_HOME` or `~/.local/share`, macOS `~/Library/Application Support`, Windows `%LOCALAPPDATA%`."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    home = Path(env.get("HOME") or Path.home())
    if platform.startswith("win"):
        base = Path(env["LOCALAPPDATA"]) if env.get("LOCALAPPDATA") else home / "AppData" / "Local"
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else home / ".local" / "share"
    return base / APP_DIR_NAME


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None  # None: SQLite `gallery.db` in the data dir
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    share: bool = False
    device: str = "auto"  # "auto" picks cuda when present
    torch_threads: int | None = None  # None: torch's default
    max_upload_mb: int = 200  # these three are the media limits (`media_limits`) every reader enforces
    max_input_pixels: int = 4096 * 4096
    max_input_frames: int = 2000
    default_model: str | None = None
    auth: bool = False  # every route behind a login (`--auth`, STUDIO_AUTH=required)
    # Sign in with Hugging Face instead of passwords: on a Space with `hf_oauth: true` (the platform sets
    # SYSTEM=spaces and OAUTH_CLIENT_ID). Roles come from the Space's variables: STUDIO_ADMINS and
    # STUDIO_MEMBERS (comma-separated names, `*` for everyone signed in); the Space's owner is an admin;
    # everyone else who signs in is a viewer.
    hf_login: bool = False
    notice: str | None = None  # a line the page shows on top (a Space without persistent storage)
    admins: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    # where people reach the studio (`https://studio.example.com`), for links made outside a browser
    # (`studio share create`); the page uses the address the browser used. None: http://<host>:<port>
    public_url: str | None = None
    # RIFE's weights for frame interpolation: a local file only, never downloaded (STUDIO_RIFE_WEIGHTS).
    # None: <data dir>/models/rife/flownet.pkl (`rife_weights_path`). Where the file exists, interpolation
    # uses RIFE unless a method is named; otherwise optical flow.
    rife_weights: Path | None = None
    # where generations run: "local" (this process) or "ray" (a pool of Ray actors; `pip install -e ".[ray]"`)
    executor: str = "local"
    ray_address: str | None = None  # the Ray cluster to join (RAY_ADDRESS); None: start a local one
    ray_workers: int | None = None  # at most this many Ray workers (None: one per GPU, or per CPU without GPUs)
    # several front ends on one PostgreSQL database (and one data dir, one cluster): the queue is the database's
    # (storage/claims.py). STUDIO_SHARED_QUEUE=1; refused with SQLite
    shared_queue: bool = False
    # the clips' and inputs' shared home on several machines: an fsspec URL (`s3://bucket/studio`,
    # `file:///mnt/shared/studio`), STUDIO_STORAGE_URL; options for its file system as JSON in
    # STUDIO_STORAGE_OPTIONS (an endpoint, say). None: the data dir is the only copy (storage/objects.py)
    storage_url: str | None = None
    storage_options: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        from studio.space import detect

        env = os.environ if env is None else env
        space = detect(env)  # on a Hugging Face Space: where the platform expects it, data on its volume
        data_dir = (Path(env["STUDIO_DATA_DIR"]) if env.get("STUDIO_DATA_DIR")
                    else (space.data_dir if space is not None and space.data_dir else default_data_dir(env)))
        s = cls(
            data_dir=data_dir,
            host=space.host if space is not None else "127.0.0.1",
            port=space.port if space is not None else DEFAULT_PORT,
            notice=space.notice if space is not None else None,
            database_url=env.get("DATABASE_URL") or None,
            device=env.get("STUDIO_DEVICE", "auto"),
            torch_threads=int(env["STUDIO_TORCH_THREADS"]) if env.get("STUDIO_TORCH_THREADS") else None,
            max_upload_mb=int(env.get("STUDIO_MAX_UPLOAD_MB", 200)),
            max_input_pixels=int(env.get("STUDIO_MAX_INPUT_PIXELS", 4096 * 4096)),
            max_input_frames=int(env.get("STUDIO_MAX_INPUT_FRAMES", 2000)),
            default_model=env.get("STUDIO_DEFAULT_MODEL") or None,
            auth=env.get("STUDIO_AUTH", "").strip().lower() == "required",
            hf_login=env.get("SYSTEM") == "spaces" and bool(env.get("OAUTH_CLIENT_ID")),
            admins=_names(env.get("STUDIO_ADMINS", "")) + _names(env.get("SPACE_AUTHOR_NAME", "")),
            members=_names(env.get("STUDIO_MEMBERS", "")),
            public_url=(env.get("STUDIO_PUBLIC_URL") or "").strip().rstrip("/") or None,
            rife_weights=Path(env["STUDIO_RIFE_WEIGHTS"]).expanduser() if env.get("STUDIO_RIFE_WEIGHTS") else None,
            executor=(env.get("STUDIO_EXECUTOR") or "local").strip().lower(),
            ray_address=env.get("RAY_ADDRESS") or None,
            ray_workers=int(env["STUDIO_RAY_WORKERS"]) if env.get("STUDIO_RAY_WORKERS") else None,
            shared_queue=(env.get("STUDIO_SHARED_QUEUE") or "").strip().lower() in ("1", "true", "yes", "on"),
            storage_url=(env.get("STUDIO_STORAGE_URL") or "").strip() or None,
            storage_options=env.get("STUDIO_STORAGE_OPTIONS") or None,
        )
        return replace(s, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def accounts_on(self) -> bool:
        """Every route needs a signed-in user: passwords (`auth`) or Sign in with Hugging Face (`hf_login`)."""
        return self.auth or self.hf_login

    def role_for(self, name: str) -> str:
        """The role of someone signed in with Hugging Face, from the Space's variables."""
        if name in self.admins:
            return "admin"
        if name in self.members or "*" in self.members:
            return "member"
        return "viewer"

    @property
    def base_url(self) -> str:
        """The studio's address for links printed by the CLI: STUDIO_PUBLIC_URL, else where `serve` listens."""
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def rife_weights_path(self) -> Path:
        """Where RIFE's weights file is looked for: STUDIO_RIFE_WEIGHTS, else <data dir>/models/rife/flownet.pkl."""
        return self.rife_weights if self.rife_weights is not None else self.data_dir / "models" / "rife" / "flownet.pkl"

    @property
    def media_limits(self) -> "MediaLimits":
        """The one set of limits handed to every probe, decode and mask read."""
        from studio.media.limits import MediaLimits

        return MediaLimits(max_upload_mb=self.max_upload_mb, max_pixels=self.max_input_pixels,
                           max_frames=self.max_input_frames)

    @property
    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())
