"""Composition root: settings -> storage -> model registry -> services. Used by app.py and the CLI."""

from __future__ import annotations

import logging
import os
import platform
import time

import sqlalchemy.exc
from dataclasses import dataclass
from functools import cache, partial
from importlib import metadata
from pathlib import Path

from pipelines.contract import ModelRegistry
from pipelines.rife import RIFE_VERSION, load_rife
from sqlalchemy.engine import make_url

from storage.consistency import check_consistency
from storage.db import default_database_url, make_engine, make_session_factory, upgrade
from storage.files import FileStore
from storage.lease import DataDirBusy, DataDirError, DataDirLease
from storage.objects import ObjectStore, StorageUnavailable
from storage.repositories import GalleryRepository
from studio.accounts import AccountService
from studio.executors import EXECUTORS, ExecutorUnavailable, RayExecutor
from studio.facade import StudioFacade
from studio.loras import LoraLibrary, lora_dir
from studio.space import detect as detect_space
from studio.space import zero_gpu_runner
from studio.gallery import GalleryService
from studio.jobs import JobService
from studio.media import MediaService
from studio.media.codec import Mp4ClipCodec
from studio.media.interpolate import RifeWeights
from studio.reviews import SECRET_NAME, ReviewService
from studio.settings import Settings

log = logging.getLogger("studio")
SHARED_GRACE_S = 3600.0  # a shared data dir: leftovers younger than this may be another front end's work
__all__ = ["DataDirBusy", "DataDirError", "ExecutorUnavailable", "Studio", "build_executor", "build_registry",
           "build_studio", "launch", "recover"]


@dataclass
class Studio:
    settings: Settings
    registry: ModelRegistry
    jobs: JobService
    gallery: GalleryService
    files: FileStore
    engine: object
    media: MediaService
    accounts: AccountService
    reviews: ReviewService
    lease: DataDirLease | None = None

    @property
    def facade(self) -> StudioFacade:
        """What the UI, CLI and API get: jobs, gallery, media and model specs, nothing more."""
        return StudioFacade(self.settings, self.registry, self.jobs, self.gallery, self.media, self.files,
                            self.accounts, self.reviews)

    def close(self) -> None:
        self.jobs.stop()
        self.registry.unload()
        self.engine.dispose()
        if self.lease is not None:
            self.lease.release()


@cache
def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("video-diffusion-studio", "torch", "diffusers", "transformers", "numpy", "safetensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def gguf_dir(data_dir: str | Path, env=None) -> Path:  # type: ignore[no-untyped-def]
    """Where GGUF transformer files live: `STUDIO_GGUF_DIR`, else `<data dir>/gguf`."""
    env = os.environ if env is None else env
    return Path(env["STUDIO_GGUF_DIR"]).expanduser() if env.get("STUDIO_GGUF_DIR") else Path(data_dir) / "gguf"


def build_registry(settings: Settings, extra_entries: dict | None = None) -> ModelRegistry:
    from pipelines.diffusers import catalog_entries, gguf_resolver, local_model_resolver
    from pipelines.embedded.backend import EMBEDDED_SPEC, embedded_entry

    ggufs = gguf_dir(settings.data_dir)
    entries = {EMBEDDED_SPEC.id: embedded_entry()}
    entries.update(catalog_entries(gguf_dir=ggufs))
    entries.update(extra_entries or {})
    return ModelRegistry(
        entries,
        device=settings.resolved_device,
        resolvers=[gguf_resolver(ggufs), local_model_resolver],
        default_id=settings.default_model or EMBEDDED_SPEC.id,
    )


def build_executor(settings: Settings, extra_entries: dict | None = None):  # type: ignore[no-untyped-def]
    """None for the local executor (generation in this process); a RayExecutor for `ray`: each of its workers
    builds the same registry in its own process (`extra_entries` must then pickle)."""
    if settings.executor not in EXECUTORS:
        raise ExecutorUnavailable(f"unknown executor {settings.executor!r}; pick one of: {', '.join(EXECUTORS)}")
    if settings.executor == "local":
        return None
    return RayExecutor(partial(build_registry, settings, extra_entries), address=settings.ray_address,
                       max_workers=settings.ray_workers, torch_threads=settings.torch_threads)


def build_studio(settings: Settings, registry: ModelRegistry | None = None, *, start: bool = True,
                 holder: str = "studio", executor=None) -> Studio:  # type: ignore[no-untyped-def]
    """Everything wired. With `start`, this process becomes the data dir's one writer: it takes the lease
    (DataDirBusy names the process that holds it), recovers from a crash (temporary files, clip files
    without a row, jobs that were running) and starts the worker. `executor`: where generations run (None:
    in this process; see build_executor), started and stopped with the job service."""
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    lease = None
    url = settings.database_url or default_database_url(settings.data_dir)
    if settings.shared_queue and make_url(url).get_backend_name() != "postgresql":
        raise DataDirError("a shared queue (STUDIO_SHARED_QUEUE) needs a PostgreSQL database (DATABASE_URL); "
                           "SQLite keeps one front end per data dir")
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if start:
            lease = DataDirLease(settings.data_dir)
            lease.acquire(holder, shared=settings.shared_queue)
    except OSError as e:
        raise DataDirError(f"cannot use the data dir {settings.data_dir}: {e.strerror or e}") from None
    try:
        engine = make_engine(url)
        try:
            upgrade(engine)
        except (OSError, sqlalchemy.exc.OperationalError) as e:
            engine.dispose()
            reason = str(getattr(e, "orig", None) or e).splitlines()[0][:200]
            raise DataDirError(f"cannot open the gallery database of {settings.data_dir}: {reason}") from None
        session_factory = make_session_factory(engine)
        try:
            objects = ObjectStore.from_settings(settings.storage_url, settings.storage_options)
            if objects is not None and start:
                objects.check()
        except StorageUnavailable as e:
            engine.dispose()
            raise DataDirError(str(e)) from None
        files = FileStore(settings.data_dir, codec=Mp4ClipCodec(), objects=objects)
        if start:  # with a shared queue another front end may be saving a clip right now: only old leftovers
            recover(files, session_factory, grace_s=SHARED_GRACE_S if settings.shared_queue or objects else 0.0)
        registry = registry or build_registry(settings)
        # RIFE's network is built from the weights file's bytes when a job needs it (torch imported then)
        media = MediaService(files, settings.media_limits,
                             rife=RifeWeights(settings.rife_weights_path, load_rife, RIFE_VERSION))
        jobs = JobService(registry, session_factory, files, media, library_versions=library_versions,
                          runner=zero_gpu_runner(detect_space()),  # None off ZeroGPU: generation runs directly
                          loras=LoraLibrary(lora_dir(settings.data_dir)), executor=executor,
                          shared_queue=holder if settings.shared_queue else None)
        gallery = GalleryService(session_factory, files)
        try:
            reviews = ReviewService(session_factory, gallery, files.secret(SECRET_NAME))
        except (OSError, ValueError) as e:
            raise DataDirError(f"cannot use the review links' key in {settings.data_dir}: {e}") from None
        if start:
            jobs.start()
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    return Studio(settings, registry, jobs, gallery, files, engine, media, AccountService(session_factory), reviews,
                  lease)


def recover(files: FileStore, session_factory, *, grace_s: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    """After a crash: remove every temporary file (only the lease holder writes, so none is in use) and
    the files of clips whose row was never committed; report rows whose files are gone. `grace_s` (a shared
    queue, whose other front ends write into the same data dir): only files older than that."""
    for rel in files.sweep_temp(older_than_s=grace_s):
        log.info("removed a temporary file a crash left: %s", rel)
    with session_factory() as session:
        report = check_consistency(GalleryRepository(session), files)
    for clip_id in report.orphan_clip_ids:
        if grace_s and _age_s(files, clip_id) < grace_s:
            continue  # another front end may be about to commit its row
        log.warning("clip files %s had no gallery row (the studio stopped before committing it): removed", clip_id)
        files.remove_clip(clip_id)
    for clip_id, paths in report.missing_files.items():
        log.warning("clip %s: files missing from the data dir: %s", clip_id, ", ".join(paths))


def _age_s(files: FileStore, clip_id: str) -> float:
    rel = files.clip_paths(clip_id).video
    try:
        return time.time() - files.resolve(rel).stat().st_mtime
    except (OSError, ValueError):
        return files.objects.age_s(rel) if files.objects is not None else float("inf")


def launch(settings: Settings) -> None:
    """Build everything and serve the web studio until interrupted."""
    from studio.ui.app import serve

    studio = build_studio(settings, holder=f"studio serve on {settings.host}:{settings.port}",
                          executor=build_executor(settings))
    try:
        serve(studio.facade, block=True)  # serve points Gradio's temp dir into the data dir first
    finally:
        studio.close()
