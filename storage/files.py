"""The file store: clips, thumbnails, sidecars, uploaded inputs and exports under one data dir.

Layout (paths handed out are relative to `root`, with forward slashes):
    clips/<id>.mp4   H.264 video, the recipe embedded in its metadata
    clips/<id>.jpg   thumbnail (middle frame)
    clips/<id>.json  sidecar: the recipe
    inputs/<sha[:2]>/<sha>.<ext>   uploaded inputs, content-addressed
    exports/<id>.<fmt>             webm/gif conversions, cached

Every file is written under a temporary name in its final directory and moved into place
with `os.replace`, so a reader never sees half a file and a failure leaves nothing behind.

With an object store (`storage.objects.ObjectStore`, STUDIO_STORAGE_URL), clips and inputs are also
uploaded there before their rows are committed, and `fetch` brings a file another machine wrote into this
data dir when it is first read: the store is then the truth and the data dir a cache.

The store decodes and encodes no video: what writes a clip's mp4 and thumbnail and converts it for
export is a `ClipCodec` handed in by the composition root (`studio.media.codec.Mp4ClipCodec`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from storage.objects import ObjectStore

EXPORT_FORMATS = ("mp4", "webm", "gif")
TMP_MARK = ".tmp-"  # temporary files are named ".tmp-<random>-<final name>"
_CLIP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EXT = re.compile(r"^[a-z0-9]{1,8}$")


class UnsafePathError(ValueError):
    """A relative path points outside the data dir (traversal, absolute path, symlink out)."""


@dataclass(frozen=True)
class SavedClip:
    """Paths relative to the store's root."""

    video: str
    thumb: str
    sidecar: str


@dataclass(frozen=True)
class StoredInput:
    path: str  # relative to the store's root
    sha256: str
    created: bool = False  # this call wrote the file (it was not there from an earlier upload)

    def to_json(self) -> dict[str, str]:
        """The entry for a gallery row's `inputs` column: {"path": ..., "sha256": ...}."""
        return {"path": self.path, "sha256": self.sha256}


class ClipCodec(Protocol):
    """Encoding done by the media module; each method writes exactly the file it is given."""

    def write_video(self, frames: Any, fps: int, path: Path, metadata: dict[str, Any]) -> None: ...

    def write_thumbnail(self, frames: Any, path: Path) -> None: ...

    def convert(self, video_path: Path, out: Path, fmt: str) -> None: ...


class FileStore:
    def __init__(self, root: Path | str, codec: ClipCodec | None = None, objects: "ObjectStore | None" = None):
        self.root = Path(root)
        self._codec = codec  # None: a store that only reads, removes and takes inputs
        self.objects = objects  # None: the data dir is the only copy (a shared mount, or one machine)

    @property
    def codec(self) -> ClipCodec:
        if self._codec is None:
            raise RuntimeError("this FileStore was built without a clip codec: build it with "
                               "FileStore(root, codec=Mp4ClipCodec()) as studio.wiring does")
        return self._codec

    # ---- paths -------------------------------------------------------------------------------
    def clip_paths(self, clip_id: str) -> SavedClip:
        _check_clip_id(clip_id)
        return SavedClip(f"clips/{clip_id}.mp4", f"clips/{clip_id}.jpg", f"clips/{clip_id}.json")

    def resolve(self, rel: str) -> Path:
        """Absolute path of `rel` inside root; UnsafePathError for anything that leaves it."""
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise UnsafePathError(f"{rel!r} is not a relative path inside the data dir")
        if rel.startswith(("/", "\\")) or Path(rel).is_absolute() or re.match(r"^[A-Za-z]:", rel):
            raise UnsafePathError(f"{rel!r} is absolute; expected a path relative to the data dir")
        root = self.root.resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise UnsafePathError(f"{rel!r} points outside the data dir")
        return target

    def fetch(self, rel: str) -> Path:
        """`resolve(rel)`, first downloading the file from the object store when this data dir has no copy
        (a clip or input another machine wrote). Read files through this; a missing one stays missing."""
        path = self.resolve(rel)
        if self.objects is not None and not path.is_file():
            self.objects.get(rel, path)
        return path

    def _upload(self, rels: list[str]) -> None:
        """Put files of this data dir in the object store (all of them, or none: a failure removes those
        already put and raises)."""
        if self.objects is None:
            return
        done: list[str] = []
        try:
            for rel in rels:
                self.objects.put(self.resolve(rel), rel)
                done.append(rel)
        except BaseException:
            for rel in done:
                try:
                    self.objects.remove(rel)
                except Exception:
                    pass
            raise

    def _write_new(self, rel: str, write: Callable[[Path], Any]) -> None:
        """Write a new file at `rel` atomically and put it in the object store (a job may run on another
        machine, which reads it from there); if the upload fails the file is removed again."""
        final = self.resolve(rel)
        final.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(final, write)
        try:
            self._upload([rel])
        except BaseException:
            final.unlink(missing_ok=True)
            raise

    def _dir(self, name: str) -> Path:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ---- secrets -----------------------------------------------------------------------------
    def secret(self, name: str, size: int = 32) -> bytes:
        """A random key kept in `<root>/<name>.key` (what signs review links): made once, readable by this
        user only (mode 0600), never served (the server serves clips by id and only exports/ and inputs/ by
        path). Two processes starting at once agree on one key: it is written under a temporary name and
        linked into place, which fails if the other was first."""
        if not re.match(r"^[a-z0-9-]{1,32}$", name):
            raise ValueError(f"secret name {name!r}")
        final = self.root / f"{name}.key"
        for _ in range(2):
            try:
                key = bytes.fromhex(final.read_text(encoding="ascii").strip())
                if len(key) >= 16:
                    return key
                raise ValueError("too short")
            except FileNotFoundError:
                pass
            except ValueError:
                raise ValueError(f"{final.name} in the data dir is not a key this studio wrote; remove it "
                                 "to make a new one (links made with the old key stop working)") from None
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = _tmp_name(final)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(os.urandom(size).hex() + "\n")
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    pass  # another process made it first: read theirs
                except OSError:  # a file system without hard links
                    if not final.exists():
                        os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
        raise RuntimeError(f"could not make {final.name} in the data dir")

    # ---- clips -------------------------------------------------------------------------------
    def save_clip(self, clip_id: str, frames: Any, fps: int, recipe: dict[str, Any]) -> SavedClip:
        """Write the video (recipe embedded), thumbnail and sidecar atomically: all three or none."""
        return self._write_clip(clip_id, lambda codec, tmp: codec.write_video(frames, fps, tmp, recipe), frames,
                                recipe)

    def adopt_clip(self, clip_id: str, video: bytes, frames: Any, recipe: dict[str, Any]) -> SavedClip:
        """Take an mp4 made elsewhere as it is (bytes unchanged), with a thumbnail from its decoded
        `frames` and `recipe` as the sidecar: all three or none."""
        return self._write_clip(clip_id, lambda codec, tmp: tmp.write_bytes(video), frames, recipe)

    def _write_clip(self, clip_id: str, write_video: Callable[[ClipCodec, Path], Any], frames: Any,
                    recipe: dict[str, Any]) -> SavedClip:
        rel = self.clip_paths(clip_id)
        codec = self.codec
        try:
            sidecar_text = json.dumps(recipe, indent=2, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"recipe for clip {clip_id} is not JSON-serialisable: {e}") from None
        clips = self._dir("clips")
        finals = [clips / Path(r).name for r in (rel.video, rel.thumb, rel.sidecar)]
        if any(p.exists() for p in finals):
            raise FileExistsError(f"clip {clip_id} already has files in {clips}")
        temps = [_tmp_name(p) for p in finals]
        moved: list[Path] = []
        try:
            write_video(codec, temps[0])
            codec.write_thumbnail(frames, temps[1])
            temps[2].write_text(sidecar_text + "\n", encoding="utf-8")
            for tmp, final in zip(temps, finals):
                os.replace(tmp, final)
                moved.append(final)
            self._upload([rel.video, rel.thumb, rel.sidecar])  # before the row is committed: see objects.py
        except BaseException:
            for p in temps + moved:
                p.unlink(missing_ok=True)
            raise
        return rel

    def place(self, rel: str, data: bytes) -> bool:
        """Write `data` at `rel` (under clips/ or inputs/) atomically, unless a file is already there.
        Returns whether it wrote. For imports: the bytes are taken as they are, nothing is decoded."""
        if not isinstance(rel, str) or rel.split("/", 1)[0] not in ("clips", "inputs"):
            raise UnsafePathError(f"{rel!r} is not a file of clips/ or inputs/")
        if self.resolve(rel).exists() or (self.objects is not None and self.objects.exists(rel)):
            return False
        self._write_new(rel, lambda tmp: tmp.write_bytes(data))
        return True

    def remove_clip(self, clip_id: str) -> None:
        """Delete a clip's files and exports; missing files are fine."""
        rel = self.clip_paths(clip_id)
        for r in (rel.video, rel.thumb, rel.sidecar):
            (self.root / r).unlink(missing_ok=True)
            if self.objects is not None:
                self.objects.remove(r)
        shutil.rmtree(self.root / "exports" / clip_id, ignore_errors=True)

    def remove_files(self, rel_paths: list[str | None] | tuple[str | None, ...]) -> None:
        """Delete the given relative paths (e.g. what `GalleryRepository.delete` returned)."""
        for rel in rel_paths:
            if rel:
                self.resolve(rel).unlink(missing_ok=True)
                if self.objects is not None:
                    self.objects.remove(rel)

    def read_sidecar(self, clip_id: str) -> dict[str, Any]:
        return json.loads(self.fetch(self.clip_paths(clip_id).sidecar).read_text(encoding="utf-8"))

    def clip_ids_on_disk(self) -> set[str]:
        """Ids with a finished video under clips/ (temporary files excluded)."""
        clips = self.root / "clips"
        if not clips.is_dir():
            return set()
        return {p.stem for p in clips.glob("*.mp4") if not p.name.startswith(TMP_MARK)}

    def sweep_temp(self, older_than_s: float = 3600.0) -> list[str]:
        """Remove temporary files left by a crash; returns their relative paths."""
        removed = []
        cutoff = time.time() - older_than_s
        for d in ("clips", "inputs", "exports"):
            base = self.root / d
            if not base.is_dir():
                continue
            for p in base.rglob(TMP_MARK + "*"):
                if p.is_file() and p.stat().st_mtime < cutoff:
                    p.unlink(missing_ok=True)
                    removed.append(p.relative_to(self.root).as_posix())
        return removed

    # ---- inputs ------------------------------------------------------------------------------
    def save_input(self, src: Path | str) -> StoredInput:
        """Copy an uploaded file into inputs/<sha[:2]>/<sha>.<ext> (deduplicated by content)."""
        src = Path(src)
        digest = hashlib.sha256()
        with src.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        ext = src.suffix.lower().lstrip(".")
        ext = ext if _EXT.match(ext) else "bin"
        return self._store_input(sha, ext, lambda tmp: shutil.copyfile(src, tmp))

    def save_input_image(self, image: np.ndarray) -> StoredInput:
        """Store an array (e.g. a mask layer from an image editor) as a content-addressed PNG."""
        arr = np.ascontiguousarray(image)
        sha = hashlib.sha256(repr((arr.shape, str(arr.dtype))).encode() + arr.tobytes()).hexdigest()
        return self._store_input(sha, "png", lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))

    def _store_input(self, sha: str, ext: str, write: Callable[[Path], Any]) -> StoredInput:
        rel = f"inputs/{sha[:2]}/{sha}.{ext}"
        final = self.root / rel
        if final.exists():
            if self.objects is not None and not self.objects.exists(rel):  # kept before the store was set up
                self._upload([rel])
            return StoredInput(rel, sha)
        self._write_new(rel, write)
        return StoredInput(rel, sha, created=True)

    # ---- exports -----------------------------------------------------------------------------
    def export(self, clip_id: str, fmt: Literal["mp4", "webm", "gif"], name: str | None = None) -> Path:
        """A downloadable file of the clip in exports/<id>/, named `name` (a readable file name the
        caller makes from the recipe; default the id): the mp4 linked or copied, a webm/gif converted."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
        video = self.fetch(self.clip_paths(clip_id).video)
        if not video.is_file():
            raise FileNotFoundError(f"clip {clip_id} has no video file")
        out = self.export_path(name or clip_id, fmt, clip_id)
        if out.is_file() and out.stat().st_mtime >= video.stat().st_mtime:
            return out
        if fmt == "mp4":
            atomic_write(out, lambda tmp: shutil.copyfile(video, tmp))
            return out
        codec = self.codec
        atomic_write(out, lambda tmp: codec.convert(video, tmp, fmt))
        return out


    def export_path(self, name: str, suffix: str, clip_id: str | None = None) -> Path:
        """Where a download goes: exports/[<clip id>/]<name>.<suffix>, the name made safe (its folder is
        created; write it with `atomic_write`, so a crash leaves only a temporary file `sweep_temp` removes)."""
        folder = self._dir("exports")
        if clip_id is not None:
            _check_clip_id(clip_id)
            folder = folder / clip_id
            folder.mkdir(exist_ok=True)
        return folder / f"{_safe_stem(name) or 'export'}.{suffix}"


def _safe_stem(name: str | None) -> str:
    """A file name stem of letters, digits, '-', '_' and '.', at most 100 characters."""
    if not name:
        return ""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return stem[:100].rstrip("-.")


def _check_clip_id(clip_id: str) -> None:
    if not isinstance(clip_id, str) or not _CLIP_ID.match(clip_id):
        raise ValueError(f"clip id {clip_id!r} must be 1 to 64 letters, digits, '-' or '_'")


def _tmp_name(final: Path) -> Path:
    """A temporary sibling that keeps the final extension (ffmpeg and PIL pick formats by it)."""
    return final.with_name(f"{TMP_MARK}{uuid.uuid4().hex[:12]}-{final.name}")


def atomic_write(final: Path, write: Callable[[Path], Any]) -> None:
    tmp = _tmp_name(final)
    try:
        write(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
