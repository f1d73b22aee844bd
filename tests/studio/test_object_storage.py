"""#17: clips and inputs in shared storage (STUDIO_STORAGE_URL, through fsspec), for front ends on several
machines. Two studios here have data dirs of their own ("two machines") and share one gallery database and
one store (a `file://` URL: a mounted bucket). What one makes, the other shows, serves, branches from and
deletes; a clip is uploaded before its row is committed, so an upload that fails leaves no row and no file.
"""

from __future__ import annotations

import pytest

from pipelines.contract import TextToVideoRequest, VideoToVideoRequest
from storage.objects import ObjectStore, StorageUnavailable
from tests.support.fakes import TEST_SPEC


@pytest.fixture
def machines(tmp_path, registry):
    from studio.settings import Settings
    from studio.wiring import build_studio

    bucket = tmp_path / "bucket"
    db = f"sqlite:///{tmp_path / 'gallery.db'}"
    built = []

    def machine(name: str, **kw):  # type: ignore[no-untyped-def]
        settings = Settings(data_dir=tmp_path / name, device="cpu", database_url=db,
                            storage_url=f"file://{bucket}", **kw)
        studio = build_studio(settings, registry)
        built.append(studio)
        return studio

    yield machine, bucket
    for s in built:
        s.close()


def test_a_clip_made_on_one_machine_is_shown_served_and_branched_on_another(machines):
    machine, bucket = machines
    a = machine("machine-a")
    sub = a.facade.submit(TextToVideoRequest(prompt="a red circle", model_id=TEST_SPEC.id, seed=3))
    [done] = a.facade.wait(sub.job_ids, timeout=30)
    assert done.status == "done"
    clip_id = done.clip_id
    assert sorted(p.name for p in (bucket / "clips").iterdir()) == sorted(f"{clip_id}.{e}" for e in ("jpg", "json", "mp4"))
    made = (a.settings.data_dir / "clips" / f"{clip_id}.mp4").read_bytes()
    a.close()

    b = machine("machine-b")
    assert not (b.settings.data_dir / "clips" / f"{clip_id}.mp4").exists()
    view = b.facade.clip(clip_id)  # fetched from the store into b's data dir
    assert view.video.read_bytes() == made and view.thumb.is_file()
    assert b.facade.clip_file("thumb", clip_id).is_file()
    assert b.gallery.list()[0].id == clip_id
    request = b.facade.from_clip(VideoToVideoRequest(prompt="blue", model_id=TEST_SPEC.id, seed=1, video="-"), clip_id)
    sub = b.facade.submit(request, parent_id=clip_id)
    [child] = b.facade.wait(sub.job_ids, timeout=30)
    assert child.status == "done", child.error
    child_view = b.facade.clip(child.clip_id)
    stored_input = child_view.inputs["video"]["path"]
    assert (bucket / stored_input).is_file()  # the input another machine's worker would read
    assert (bucket / "clips" / f"{child.clip_id}.mp4").is_file()

    assert b.gallery.delete(clip_id)
    assert not any(p.name.startswith(clip_id) for p in (bucket / "clips").iterdir())


def test_a_failed_upload_leaves_no_row_and_no_file(machines, monkeypatch):
    machine, bucket = machines
    a = machine("machine-a")

    def refuse(self, local, rel):  # type: ignore[no-untyped-def]
        if rel.endswith(".json"):  # the third of a clip's three objects: the first two are already up
            raise OSError(28, "No space left on the bucket's device")
        return original(self, local, rel)

    original = ObjectStore.put
    monkeypatch.setattr(ObjectStore, "put", refuse)
    sub = a.facade.submit(TextToVideoRequest(prompt="a red circle", model_id=TEST_SPEC.id, seed=3))
    [failed] = a.facade.wait(sub.job_ids, timeout=30)
    assert failed.status == "failed" and failed.clip_id is None
    assert a.gallery.list() == []
    assert not list((a.settings.data_dir / "clips").glob("*.mp4"))
    assert not (bucket / "clips").exists() or not [p for p in (bucket / "clips").iterdir()]


def test_objects_without_a_row_are_removed_at_start_once_old(machines):
    import os
    import time

    machine, bucket = machines
    (bucket / "clips").mkdir(parents=True)
    orphan = "0" * 32
    for ext in ("mp4", "jpg", "json"):
        (bucket / "clips" / f"{orphan}.{ext}").write_bytes(b"x")
    young = "1" * 32
    (bucket / "clips" / f"{young}.mp4").write_bytes(b"x")
    old = time.time() - 2 * 3600
    for ext in ("mp4", "jpg", "json"):
        os.utime(bucket / "clips" / f"{orphan}.{ext}", (old, old))
    machine("machine-a")
    left = sorted(p.name for p in (bucket / "clips").iterdir())
    assert left == [f"{young}.mp4"]  # another machine may be about to commit the young one's row


def test_a_store_that_cannot_be_used_is_named_at_start(tmp_path, registry):
    from studio.settings import Settings
    from studio.wiring import DataDirError, build_studio

    with pytest.raises(DataDirError, match="nosuchproto"):
        build_studio(Settings(data_dir=tmp_path / "d", storage_url="nosuchproto://bucket/x"), registry)
    with pytest.raises(DataDirError, match="STUDIO_STORAGE_OPTIONS is not JSON"):
        build_studio(Settings(data_dir=tmp_path / "d", storage_url=f"file://{tmp_path}/b", storage_options="{"),
                     registry)
    with pytest.raises(StorageUnavailable):
        ObjectStore.from_settings("nosuchproto://bucket")


def test_settings_read_the_storage_url_from_the_environment(tmp_path):
    from studio.settings import Settings

    s = Settings.from_env({"STUDIO_DATA_DIR": str(tmp_path), "STUDIO_STORAGE_URL": "s3://bucket/studio",
                           "STUDIO_STORAGE_OPTIONS": '{"endpoint_url": "http://127.0.0.1:9000"}'})
    assert s.storage_url == "s3://bucket/studio" and "endpoint_url" in s.storage_options
    assert Settings.from_env({"STUDIO_DATA_DIR": str(tmp_path)}).storage_url is None


# ---- an S3 bucket: moto's S3 server on loopback stands in for it, through s3fs as in production --------------
@pytest.fixture
def s3_url():
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[s3]')")
    moto_server = pytest.importorskip("moto.server", reason="moto is not installed (pip install -e '.[test]')")
    import json

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"key": "studio-test", "secret": "studio-test", "endpoint_url": f"http://{host}:{port}",
               "client_kwargs": {"region_name": "eu-west-1"}}
    import s3fs

    s3fs.S3FileSystem(**options, skip_instance_cache=True).mkdir("studio-bucket")
    yield "s3://studio-bucket/team-a", json.dumps(options)
    server.stop()


def test_clips_go_to_an_s3_bucket_and_come_back_on_another_machine(tmp_path, registry, s3_url):
    from studio.settings import Settings
    from studio.wiring import build_studio

    url, options = s3_url
    db = f"sqlite:///{tmp_path / 'gallery.db'}"

    def machine(name):  # type: ignore[no-untyped-def]
        return build_studio(Settings(data_dir=tmp_path / name, device="cpu", database_url=db, storage_url=url,
                                     storage_options=options), registry)

    a = machine("machine-a")
    try:
        sub = a.facade.submit(TextToVideoRequest(prompt="a red circle", model_id=TEST_SPEC.id, seed=3))
        [done] = a.facade.wait(sub.job_ids, timeout=30)
        assert done.status == "done", done.error
        made = (a.settings.data_dir / "clips" / f"{done.clip_id}.mp4").read_bytes()
        assert a.files.objects.listing("clips") == {f"clips/{done.clip_id}.{e}" for e in ("mp4", "jpg", "json")}
    finally:
        a.close()
    b = machine("machine-b")
    try:
        view = b.facade.clip(done.clip_id)
        assert view.video.read_bytes() == made and view.thumb.is_file()
        assert b.files.read_sidecar(done.clip_id)["params"]["seed"] == 3
        assert b.gallery.delete(done.clip_id)
        assert b.files.objects.listing("clips") == set()
    finally:
        b.close()
