"""Read and manage the gallery for the UI and CLI, without them touching SQLAlchemy.

`GalleryQuery` and `QueryError` come from storage and are re-exported for the facade and the CLI.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from storage.files import FileStore, UnsafePathError, atomic_write
from storage.models import Clip, ClipTag, utcnow
from storage.repositories import GalleryQuery, GalleryRepository, NotFound, QueryError
from pipelines.contract import GenerationRequest, request_from_params


@dataclass(frozen=True)
class ClipView:
    id: str
    batch_id: str
    created_at: str
    mode: str
    model_id: str
    model_version: str
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    cfg_scale: float
    frames: int
    fps: int
    width: int
    height: int
    strength: float | None
    profile: str | None
    generation_seconds: float
    video: Path  # absolute paths inside the data dir
    thumb: Path
    params: dict[str, Any]
    manifest: dict[str, Any]
    inputs: dict[str, Any]
    starred: bool = False
    tags: tuple[str, ...] = ()
    note: str = ""
    parent_id: str | None = None
    sweep_id: str | None = None
    axes: dict[str, Any] | None = None
    author: str | None = None
    votes: int = 0  # reviewers' votes through review links

    @property
    def caption(self) -> str:
        return f"seed {self.seed} · {self.mode} · {self.prompt[:60]}"


class GalleryService:
    def __init__(self, session_factory: Callable, files: FileStore):
        self._session_factory = session_factory
        self.files = files

    def _view(self, c) -> ClipView:
        return ClipView(
            id=c.id, batch_id=c.batch_id, created_at=c.created_at.isoformat(timespec="seconds"),
            mode=c.mode, model_id=c.model_id, model_version=c.model_version, prompt=c.prompt,
            negative_prompt=c.negative_prompt, seed=c.seed, steps=c.steps, cfg_scale=c.cfg_scale,
            frames=c.frames, fps=c.fps, width=c.width, height=c.height, strength=c.strength,
            profile=c.profile, generation_seconds=c.generation_seconds,
            video=self.files.resolve(c.video_path), thumb=self.files.resolve(c.thumb_path),
            params=dict(c.params), manifest=dict(c.manifest or {}), inputs=dict(c.inputs or {}),
            starred=bool(c.starred), tags=tuple(c.tags), note=c.note or "", parent_id=c.parent_id,
            sweep_id=c.sweep_id, axes=dict(c.axes) if c.axes else None, author=c.author, votes=c.votes or 0,
        )

    def list(self, mode: str | None = None, model_id: str | None = None, limit: int = 100, offset: int = 0) -> list[ClipView]:
        with self._session_factory() as session:
            rows = GalleryRepository(session).list(mode=mode, model_id=model_id, limit=limit, offset=offset)
            return [self._view(c) for c in rows]

    def search(self, query: GalleryQuery) -> tuple[list[ClipView], str | None]:
        """One page of clips and the cursor of the next page (None on the last). Raises QueryError."""
        with self._session_factory() as session:
            page = GalleryRepository(session).search(query)
            return [self._view(c) for c in page.clips], page.next_cursor

    def star(self, clip_id: str, starred: bool = True) -> ClipView:
        return self._change(clip_id, lambda repo: repo.set_starred(clip_id, starred))

    def tag(self, clip_id: str, tags: list[str], *, remove: bool = False) -> ClipView:
        return self._change(clip_id, lambda repo: (repo.remove_tags if remove else repo.add_tags)(clip_id, tags))

    def note(self, clip_id: str, text: str) -> ClipView:
        return self._change(clip_id, lambda repo: repo.set_note(clip_id, text))

    def children(self, clip_id: str) -> list[ClipView]:
        with self._session_factory() as session:
            return [self._view(c) for c in GalleryRepository(session).children(clip_id)]

    def ancestors(self, clip_id: str) -> list[ClipView]:
        """Parents, nearest first."""
        with self._session_factory() as session:
            return [self._view(c) for c in GalleryRepository(session).ancestors(clip_id)]

    def _change(self, clip_id: str, change) -> ClipView:  # type: ignore[no-untyped-def]
        with self._session_factory() as session, session.begin():
            try:
                clip = change(GalleryRepository(session))
            except NotFound:
                raise KeyError(f"no clip {clip_id!r}") from None
            return self._view(clip)

    def get(self, clip_id: str) -> ClipView | None:
        """One clip, its video and thumbnail in this data dir (from the object store, when another machine
        made it and there is one), ready to read or serve."""
        with self._session_factory() as session:
            c = GalleryRepository(session).get(clip_id)
            if c is None:
                return None
            view = self._view(c)
            paths = (c.video_path, c.thumb_path)
        if self.files.objects is not None:
            for rel in paths:
                self.files.fetch(rel)
        return view

    def resolve_id(self, text: str) -> str | None:
        """`text` if it is a clip id, or the one clip id it is a prefix of (at least 6 characters)."""
        if not isinstance(text, str) or not text or len(text) > 32:
            return None
        with self._session_factory() as session:
            return GalleryRepository(session).resolve_prefix(text)

    def batch(self, batch_id: str) -> list[ClipView]:
        """The clips made by one submission (one per seed), in seed order, for side-by-side comparison."""
        with self._session_factory() as session:
            return [self._view(c) for c in GalleryRepository(session).by_batch(batch_id)]

    def models(self) -> list[str]:
        with self._session_factory() as session:
            return GalleryRepository(session).distinct_models()

    def delete(self, clip_id: str) -> bool:
        """Remove the row and its files together: the row first (so a failure leaves the row), then the files."""
        with self._session_factory() as session, session.begin():
            found = GalleryRepository(session).delete(clip_id)
        if found is None:
            return False
        self.files.remove_clip(clip_id)
        return True

    def export(self, clip_id: str, fmt: str) -> Path:
        """A download named from the recipe (prompt, seed, steps, CFG), not from a hash."""
        view = self.get(clip_id)
        if view is None:
            raise KeyError(f"no clip {clip_id!r}")
        words = "-".join(view.prompt.split()[:6]) or view.mode
        name = f"{words}-seed{view.seed}-{view.steps}steps-cfg{view.cfg_scale:g}"
        return self.files.export(clip_id, fmt, name)

    def recall(self, clip_id: str) -> GenerationRequest:
        """The exact request a clip was made with (seed included); inputs point at the stored copies."""
        view = self.get(clip_id)
        if view is None:
            raise KeyError(f"no clip {clip_id!r}")
        return request_from_params(view.params)

    # ---- export and import ----------------------------------------------------------------------
    def export_zip(self, clip_ids: list[str], out: Path) -> Path:
        """One zip: each clip's mp4, thumbnail, sidecar and inputs, and `manifest.json` with every recipe,
        star, tag, note and lineage link. Written next to `out` first, then moved into place."""
        entries, files = [], []
        with self._session_factory() as session:
            repo = GalleryRepository(session)
            for clip_id in dict.fromkeys(clip_ids):
                clip = repo.get(clip_id)
                if clip is None:
                    raise QueryError("id", f"no clip {clip_id!r}")
                entry = {col: getattr(clip, col) for col in EXPORTED}
                entry["created_at"] = clip.created_at.isoformat()
                entry["tags"] = list(clip.tags)
                entries.append(entry)
                files += [clip.video_path, clip.thumb_path, clip.sidecar_path]
                files += [meta["path"] for meta in (clip.inputs or {}).values()
                          if isinstance(meta, dict) and isinstance(meta.get("path"), str)]
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
                z.writestr("manifest.json", json.dumps({"format": EXPORT_FORMAT, "clips": entries}, indent=2,
                                                        ensure_ascii=False))
                for rel in dict.fromkeys(files):
                    z.write(self.files.fetch(rel), rel)

        atomic_write(out, write)
        return out.resolve()

    def import_zip(self, path: Path, *, author: str | None = None) -> tuple[int, int]:
        """Add the clips of an exported zip: (added, already here). A clip already in the gallery (same
        id) is skipped, so importing twice adds nothing twice. QueryError for a zip that is not an export.
        `author`: who the added clips belong to (None: the author each was exported with)."""
        try:
            z = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as e:
            raise QueryError("file", f"{Path(path).name} is not a zip of exported clips ({e})") from None
        added = skipped = 0
        with z:
            try:
                manifest = json.loads(z.read("manifest.json"))
            except (KeyError, ValueError) as e:
                raise QueryError("file", f"{Path(path).name} has no readable manifest.json ({e})") from None
            if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
                raise QueryError("file", f"{Path(path).name} is not a studio export (format {EXPORT_FORMAT})")
            names = set(z.namelist())
            for entry in manifest.get("clips", []):
                with self._session_factory() as session, session.begin():
                    repo = GalleryRepository(session)
                    if repo.get(entry["id"]) is not None:
                        skipped += 1
                        continue
                    rels = [entry["video_path"], entry["thumb_path"], entry["sidecar_path"]]
                    rels += [m["path"] for m in (entry.get("inputs") or {}).values()
                             if isinstance(m, dict) and isinstance(m.get("path"), str)]
                    placed = []
                    try:
                        for rel in rels:
                            if rel not in names:
                                raise QueryError("file", f"the zip lacks {rel}")
                            if self.files.place(rel, z.read(rel)) and rel.startswith("clips/"):
                                placed.append(rel)
                        fields = {col: entry.get(col) for col in EXPORTED}
                        if author is not None:
                            fields["author"] = author
                        fields["created_at"] = datetime.fromisoformat(entry["created_at"])
                        clip = Clip(**fields)
                        clip.tag_rows = [ClipTag(tag=t) for t in entry.get("tags", [])]
                        repo.add(clip)
                    except UnsafePathError as e:
                        self.files.remove_files(placed)
                        raise QueryError("file", f"the zip names a file outside clips/ and inputs/: {e}") from None
                    except BaseException:
                        self.files.remove_files(placed)  # no row, no files: the row is rolled back
                        raise
                added += 1
        return added, skipped

    def import_mp4(self, path: Path, frames: Any, recipe: dict[str, Any], *, author: str | None = None) -> ClipView:
        """Add a clip from an mp4 this studio made (its `recipe` read from the mp4's metadata, `frames`
        decoded for the thumbnail). The clip keeps its id; if it is already here, nothing changes.
        `author`: who the clip belongs to (None: the author its recipe names)."""
        clip_id = recipe.get("clip_id")
        params = recipe.get("params")
        if not isinstance(clip_id, str) or not isinstance(params, dict):
            raise QueryError("file", f"{Path(path).name} carries no clip of this studio")
        existing = self.get(clip_id)
        if existing is not None:
            return existing
        request = request_from_params(params)
        if author is not None:
            recipe = {**recipe, "author": author}  # the sidecar says whose copy this is, as the row does
        saved = self.files.adopt_clip(clip_id, Path(path).read_bytes(), frames, recipe)
        stored = request.to_params()
        step = params.get("interpolation")
        if isinstance(step, dict) and isinstance(step.get("factor"), int):  # made by frame interpolation
            stored = {**stored, "interpolation": step}
            src_fps = step.get("source_fps", stored.get("fps"))
            fps = {"fps": src_fps * step["factor"]} if isinstance(src_fps, int) else {}
        else:
            fps = {}
        try:
            created = recipe.get("created_at")
            with self._session_factory() as session, session.begin():
                GalleryRepository(session).add(Clip.from_params(
                    stored, **fps, id=clip_id, job_id=None, batch_id=uuid.uuid4().hex,
                    sweep_id=recipe.get("sweep"), axes=recipe.get("axes"), parent_id=recipe.get("parent"),
                    author=recipe.get("author") if isinstance(recipe.get("author"), str) else None,
                    created_at=datetime.fromisoformat(created) if isinstance(created, str) else utcnow(),
                    model_id=str(recipe.get("model") or request.model_id),
                    model_version=str(recipe.get("model_version") or "?"),
                    frames=int(frames.shape[0]), width=int(frames.shape[2]), height=int(frames.shape[1]),
                    manifest=recipe.get("manifest") or {}, inputs={}, video_path=saved.video,
                    thumb_path=saved.thumb, sidecar_path=saved.sidecar, generation_seconds=0.0,
                ))
        except BaseException:
            self.files.remove_clip(clip_id)
            raise
        return self.get(clip_id)  # type: ignore[return-value]


EXPORT_FORMAT = 1
EXPORTED = ("id", "job_id", "batch_id", "mode", "model_id", "model_version", "prompt", "negative_prompt", "seed",
            "steps", "cfg_scale", "frames", "fps", "width", "height", "strength", "profile", "params", "manifest",
            "inputs", "video_path", "thumb_path", "sidecar_path", "generation_seconds", "starred", "note",
            "parent_id", "sweep_id", "axes", "author")

__all__ = ["ClipView", "GalleryQuery", "GalleryService", "QueryError"]
