from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage.consistency import check_consistency
from storage.db import Clip, GalleryRepository
from storage.files import FileStore, SavedClip, UnsafePathError

RECIPE = {"clip_id": "c0ffee", "params": {"schema_version": 1, "prompt": "a ball", "seed": 7}}


class FakeCodec:
    """Writes recognisable bytes instead of encoding: the store's job is placing files, not codecs
    (the real codec, studio.media.codec.Mp4ClipCodec, is tested in tests/studio/test_media.py)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def write_video(self, frames, fps, path, metadata):
        self.calls.append(("video", len(frames), fps, metadata))
        path.write_bytes(b"video " + repr(metadata).encode())

    def write_thumbnail(self, frames, path):
        self.calls.append(("thumb", len(frames)))
        path.write_bytes(b"thumb")

    def convert(self, video_path, out, fmt):
        self.calls.append(("convert", video_path.name, fmt))
        out.write_bytes(fmt.encode() + b" of " + video_path.read_bytes())


def leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_save_clip_writes_video_thumb_and_sidecar(tmp_path: Path, frames: np.ndarray) -> None:
    codec = FakeCodec()
    store = FileStore(tmp_path, codec=codec)
    saved = store.save_clip("c0ffee", frames, 8, RECIPE)
    assert saved == SavedClip("clips/c0ffee.mp4", "clips/c0ffee.jpg", "clips/c0ffee.json")
    assert leftovers(tmp_path) == ["clips/c0ffee.jpg", "clips/c0ffee.json", "clips/c0ffee.mp4"]
    assert codec.calls == [("video", 8, 8, RECIPE), ("thumb", 8)]  # the recipe goes into the video too
    assert store.resolve(saved.video).read_bytes() == b"video " + repr(RECIPE).encode()
    assert store.read_sidecar("c0ffee") == RECIPE
    with pytest.raises(FileExistsError):
        store.save_clip("c0ffee", frames, 8, RECIPE)
    store.remove_clip("c0ffee")
    store.remove_clip("c0ffee")  # idempotent
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("failing", ["video", "thumb", "replace"])
def test_save_clip_is_atomic(tmp_path: Path, frames: np.ndarray, monkeypatch, failing: str) -> None:
    codec = FakeCodec()
    store = FileStore(tmp_path, codec=codec)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if failing == "video":
        monkeypatch.setattr(codec, "write_video", boom)
    elif failing == "thumb":
        monkeypatch.setattr(codec, "write_thumbnail", boom)
    else:  # the second of three moves fails: the first must be undone
        real_replace, calls = os.replace, []

        def flaky(src, dst):
            calls.append(dst)
            if len(calls) == 2:
                raise OSError("disk full")
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="disk full"):
        store.save_clip("abc", frames, 8, RECIPE)
    assert leftovers(tmp_path) == []


def test_save_clip_rejects_bad_ids_and_recipes(tmp_path: Path, frames: np.ndarray) -> None:
    store = FileStore(tmp_path, codec=FakeCodec())
    with pytest.raises(ValueError, match="clip id"):
        store.save_clip("../evil", frames, 8, RECIPE)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        store.save_clip("abc", frames, 8, {"x": object()})
    assert leftovers(tmp_path) == []


def test_resolve_refuses_paths_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = FileStore(root)
    (root / "clips").mkdir(parents=True)
    assert store.resolve("clips/a.mp4") == (root / "clips" / "a.mp4").resolve()
    for bad in ("../secret.txt", "clips/../../secret.txt", "/etc/passwd", "", "a\x00b"):
        with pytest.raises(UnsafePathError):
            store.resolve(bad)
    (tmp_path / "outside").mkdir()
    (root / "clips" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePathError, match="outside the data dir"):
        store.resolve("clips/link/file.mp4")


def test_save_input_is_content_addressed(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "data")
    src = tmp_path / "Upload.PNG"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src)
    a = store.save_input(src)
    b = store.save_input(src)
    assert (a.path, a.sha256) == (b.path, b.sha256) and a.path == f"inputs/{a.sha256[:2]}/{a.sha256}.png"
    assert a.created and not b.created  # the second upload of the same bytes finds the first
    assert store.resolve(a.path).read_bytes() == src.read_bytes()
    assert a.to_json() == {"path": a.path, "sha256": a.sha256}
    m = store.save_input_image(np.full((4, 4), 255, np.uint8))
    assert m.path.endswith(".png")
    with Image.open(store.resolve(m.path)) as png:
        assert png.format == "PNG" and np.asarray(png).min() == 255
    assert leftovers(tmp_path / "data") == sorted([a.path, m.path])


def test_export_converts_once_and_caches(tmp_path: Path, frames: np.ndarray) -> None:
    codec = FakeCodec()
    store = FileStore(tmp_path, codec=codec)
    store.save_clip("clip1", frames, 8, RECIPE)
    mp4 = store.export("clip1", "mp4")
    assert mp4 == tmp_path / "exports" / "clip1" / "clip1.mp4"
    assert mp4.read_bytes() == (tmp_path / "clips" / "clip1.mp4").read_bytes()
    named = store.export("clip1", "mp4", "a red circle / seed 7")
    assert named.name == "a-red-circle-seed-7.mp4"  # a readable name, nothing that leaves the folder
    webm = store.export("clip1", "webm")
    assert webm == tmp_path / "exports" / "clip1" / "clip1.webm" and webm.read_bytes().startswith(b"webm of video")
    gif = store.export("clip1", "gif")
    mtime = webm.stat().st_mtime_ns
    assert store.export("clip1", "webm").stat().st_mtime_ns == mtime  # cached
    assert [c for c in codec.calls if c[0] == "convert"] == [("convert", "clip1.mp4", "webm"),
                                                             ("convert", "clip1.mp4", "gif")]
    assert leftovers(tmp_path / "exports") == ["clip1/a-red-circle-seed-7.mp4", "clip1/clip1.gif", "clip1/clip1.mp4",
                                               "clip1/clip1.webm"] and gif.is_file()
    with pytest.raises(ValueError, match="export format"):
        store.export("clip1", "avi")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        store.export("nope", "gif")
    store.remove_clip("clip1")
    assert leftovers(tmp_path) == []


def test_a_failed_export_leaves_nothing(tmp_path: Path, frames: np.ndarray, monkeypatch) -> None:
    codec = FakeCodec()
    store = FileStore(tmp_path, codec=codec)
    store.save_clip("clip1", frames, 8, RECIPE)

    def half_then_fail(video_path, out, fmt):
        out.write_bytes(b"half")
        raise OSError("encoder died")

    monkeypatch.setattr(codec, "convert", half_then_fail)
    with pytest.raises(OSError, match="encoder died"):
        store.export("clip1", "gif")
    assert leftovers(tmp_path / "exports") == []


def test_a_store_without_codec_says_how_to_build_one(tmp_path: Path, frames: np.ndarray) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(RuntimeError, match="without a clip codec"):
        store.save_clip("abc", frames, 8, RECIPE)
    assert leftovers(tmp_path) == []


def test_rows_and_files_agree(tmp_path: Path, session, frames: np.ndarray) -> None:
    store, gallery = FileStore(tmp_path, codec=FakeCodec()), GalleryRepository(session)

    def add(clip_id: str) -> None:
        saved = store.save_clip(clip_id, frames[:2], 8, RECIPE)
        gallery.add(Clip.from_params(
            {"mode": "t2v", "model_id": "m", "prompt": "p", "seed": 1, "steps": 1, "cfg_scale": 1.0,
             "frames": 2, "fps": 8, "width": 48, "height": 32}, id=clip_id, batch_id="b", model_version="1",
            video_path=saved.video, thumb_path=saved.thumb, sidecar_path=saved.sidecar))

    add("one")
    add("two")
    session.commit()
    assert check_consistency(gallery, store).ok
    store.resolve("clips/two.jpg").unlink()
    store.save_clip("orphan", frames[:2], 8, RECIPE)
    report = check_consistency(gallery, store)
    assert report.missing_files == {"two": ["clips/two.jpg"]} and report.orphan_clip_ids == ["orphan"]
    store.remove_files(gallery.delete("one"))
    session.commit()
    assert not (tmp_path / "clips" / "one.mp4").exists()


def test_sweep_temp(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    (tmp_path / "clips").mkdir()
    stale = tmp_path / "clips" / ".tmp-123-x.mp4"
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    (tmp_path / "clips" / ".tmp-456-y.mp4").write_bytes(b"fresh")
    assert store.sweep_temp() == ["clips/.tmp-123-x.mp4"]
    assert store.clip_ids_on_disk() == set()
