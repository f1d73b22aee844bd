"""Do gallery rows and clip files agree? Used at startup and in tests."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    missing: dict[str, list[str]] = {}
    for clip_id, paths in rows.items():
        absent = []
        for rel in paths:
            try:
                ok = store.exists(rel)  # here, or in the object store when there is one
            except UnsafePathError:
                ok = False
            if not ok:
                absent.append(rel)
        if absent:
            missing[clip_id] = absent
    on_disk = store.clip_ids_on_disk() | (store.objects.clip_ids() if store.objects is not None else set())
    orphans = sorted(on_disk - rows.keys())
    return ConsistencyReport(missing, orphans)
