"""Do gallery rows and clip files agree? Used at startup and in tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from storage.files import FileStore, UnsafePathError
from storage.repositories import GalleryRepository


@dataclass(frozen=True)
class ConsistencyReport:
    missing_files: dict[str, list[str]] = field(default_factory=dict)  # clip id -> absent paths
    orphan_clip_ids: list[str] = field(default_factory=list)  # videos on disk with no row

    @property
    def ok(self) -> bool:
        return not self.missing_files and not self.orphan_clip_ids


def check_consistency(gallery: GalleryRepository, store: FileStore) -> ConsistencyReport:
    """Rows whose files are missing (or unsafe), and clip videos on disk that no row refers to."""
    rows = gallery.all_file_paths()
    stored = store.objects.listing("clips") if store.objects is not None else set()  # one call, not one per file
    missing: dict[str, list[str]] = {}
    for clip_id, paths in rows.items():
        absent = []
        for rel in paths:
            try:
                ok = store.resolve(rel).is_file() or rel in stored  # here, or in the object store
            except UnsafePathError:
                ok = False
            if not ok:
                absent.append(rel)
        if absent:
            missing[clip_id] = absent
    on_disk = store.clip_ids_on_disk() | {Path(rel).stem for rel in stored if rel.endswith(".mp4")}
    orphans = sorted(on_disk - rows.keys())
    return ConsistencyReport(missing, orphans)
