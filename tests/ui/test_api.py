"""The public Gradio API against a launched studio (test backend)."""

from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.support.fakes import TEST_SPEC


@pytest.fixture
def client(app_url):
    url, studio = app_url
    return Client(url, verbose=False), studio


def test_endpoints_are_named_and_defaulted(client):
    c, _ = client
    api = c.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/text_to_video", "/image_to_video", "/video_to_video", "/inpaint"):
        assert name in api
    params = {p["parameter_name"]: p for p in api["/text_to_video"]["parameters"]}
    assert not params["prompt"]["parameter_has_default"]
    assert all(p["parameter_has_default"] for n, p in params.items() if n != "prompt")


def test_text_to_video_with_only_a_prompt(client):
    c, studio = client
    video, clips = c.predict(prompt="a red circle", api_name="/text_to_video")
    assert video.endswith(".mp4")
    assert clips[0]["model"] == TEST_SPEC.id and clips[0]["mode"] == "t2v"
    assert studio.gallery.get(clips[0]["id"]).seed == clips[0]["seed"]


def test_seeds_and_settings(client):
    c, _ = client
    _, clips = c.predict(prompt="x", seed=5, seeds=2, steps=2, api_name="/text_to_video")
    assert [k["seed"] for k in clips] == [5, 6] and clips[0]["steps"] == 2


def test_media_endpoints(client, sample_image, sample_video, sample_mask):
    c, _ = client
    _, clips = c.predict(prompt="go", image=handle_file(str(sample_image)), api_name="/image_to_video")
    assert clips[0]["mode"] == "i2v"
    _, clips = c.predict(prompt="go", video=handle_file(str(sample_video)), strength=0.3, api_name="/video_to_video")
    assert clips[0]["mode"] == "v2v"
    _, clips = c.predict(prompt="go", video=handle_file(str(sample_video)), mask=handle_file(str(sample_mask)),
                         api_name="/inpaint")
    assert clips[0]["mode"] == "inpaint"


def test_bad_value_is_a_readable_error(client):
    c, studio = client
    with pytest.raises(Exception, match="width: 33 must be a multiple of 8"):
        c.predict(prompt="x", width=33, api_name="/text_to_video")
    assert studio.gallery.list() == []


def test_clips_are_served_by_id_and_nothing_by_path(client, tmp_path):
    import urllib.error
    import urllib.request

    c, studio = client
    video, clips = c.predict(prompt="x", api_name="/text_to_video")
    base = c.src.rstrip("/")
    view = studio.gallery.get(clips[0]["id"])
    assert Path(video).read_bytes() == view.video.read_bytes()  # the client got the clip, through its id
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")

    def status(path, route="/gradio_api/file="):
        try:
            with urllib.request.urlopen(f"{base}{route}{path}") as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert status(clips[0]["video_url"], "") == 200 and status(clips[0]["thumb_url"], "") == 200
    assert status(f"/media/clip/{'0' * 32}.mp4", "") == 404  # no such clip
    assert status("/media/clip/../gallery.db", "") == 404
    assert status(view.video) in (403, 404)  # the clips folder is not served by path
    assert status(view.video.with_suffix(".json")) in (403, 404)
    assert status(secret) in (403, 404)
    assert status("/etc/passwd") in (403, 404)
    assert status(f"{studio.settings.data_dir.resolve()}/../secret.txt") in (403, 404)


def test_a_sweep_through_the_api(client):
    c, studio = client
    _, clips = c.predict(prompt="a red circle", seed=3, seeds=2, vary=["cfg=2,4"], api_name="/text_to_video")
    assert len(clips) == 4 and len({k["sweep"] for k in clips}) == 1 and clips[0]["sweep"]
    assert sorted((k["axes"]["cfg"], k["seed"]) for k in clips) == [(2.0, 3), (2.0, 4), (4.0, 3), (4.0, 4)]
    assert "path" not in clips[0]  # no server paths for callers of the web API
    assert clips[0]["warnings"] == []  # the test model names no words it does not know
    with pytest.raises(Exception, match="'zoom' is not an axis"):
        c.predict(prompt="x", vary=["zoom=2"], api_name="/text_to_video")


def test_extend_a_clip_through_the_api(client):
    c, studio = client
    _, [root] = c.predict(prompt="a red circle", api_name="/text_to_video")
    _, [child] = c.predict(prompt="on and on", clip=root["id"], api_name="/extend")
    assert child["mode"] == "extend" and child["parent"] == root["id"]
    with pytest.raises(Exception, match="no clip 'nope'"):
        c.predict(prompt="x", clip="nope", api_name="/extend")


def test_refused_input_is_one_log_line_not_a_traceback(client, capfd):
    c, _ = client
    capfd.readouterr()
    with pytest.raises(Exception, match="width"):
        c.predict(prompt="x", width=33, api_name="/text_to_video")
    _, err = capfd.readouterr()
    assert "Traceback" not in err


def test_the_api_page_types_its_outputs(client):
    c, _ = client
    api = c.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/text_to_video", "/extend"):
        returns = api[name]["returns"]
        assert [r["python_type"]["type"] for r in returns] == ["filepath", "list[dict(str, Any)]"]


def _raw_call(base: str, name: str, data: list) -> str:
    """POST raw JSON to /gradio_api/call/<name> and read the event stream's answer."""
    import json as _json
    import urllib.request

    body = _json.dumps({"data": data}).encode()
    req = urllib.request.Request(f"{base}/gradio_api/call/{name}", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        event_id = _json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{base}/gradio_api/call/{name}/{event_id}", timeout=60) as r:
        return r.read().decode()


@pytest.mark.parametrize("position, value, field", [
    (3, "abc", "seed"),  # text_to_video(prompt, negative_prompt, model, seed, seeds, steps, cfg_scale, ...)
    (6, [5], "cfg_scale"),
    (0, "a\u0000b", "prompt"),
    (4, "many", "seeds"),
])
def test_raw_json_of_the_wrong_type_gets_a_message_naming_the_field(client, position, value, field):
    c, studio = client
    data = ["a red circle", "", "", -1, 1, None, None, None, None, None, None, None, None]
    data[position] = value
    answer = _raw_call(c.src.rstrip("/"), "text_to_video", data)
    assert "event: error" in answer and field in answer, answer
    assert '"error": null' not in answer and "null" != answer.split("data:")[-1].strip()
    assert studio.gallery.list() == []


def _get(url: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}


def test_the_database_sidecars_and_lock_are_never_served(client):
    c, studio = client
    _, [clip] = c.predict(prompt="x", api_name="/text_to_video")
    base, data = c.src.rstrip("/"), studio.settings.data_dir.resolve()
    view = studio.gallery.get(clip["id"])
    status, headers = _get(f"{base}{clip['video_url']}")
    assert status == 200 and headers["content-type"].startswith("video/") and headers["x-content-type-options"] == "nosniff"
    for path in (data / "gallery.db", data / "gallery.db-wal", data / ".writer.lock", view.video,
                 data / "clips" / f"{clip['id']}.json", view.video.with_suffix(".json")):
        assert _get(f"{base}/gradio_api/file={path}")[0] in (403, 404), path


def test_an_uploaded_page_is_never_stored_or_rendered(client, tmp_path):
    import json as _json
    import urllib.error
    import urllib.request

    c, studio = client
    base = c.src.rstrip("/")
    page = tmp_path / "evil.html"
    page.write_text("<script>alert(1)</script>")
    boundary = "xxBOUNDARYxx"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"evil.html\"\r\n"
            f"Content-Type: text/html\r\n\r\n{page.read_text()}\r\n--{boundary}--\r\n").encode()
    req = urllib.request.Request(f"{base}/gradio_api/upload", body,
                                 {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as refused:  # judged by its content: not media, not stored
        urllib.request.urlopen(req, timeout=30)
    assert refused.value.code == 415 and "is not an image, a video or a zip" in refused.value.read().decode()
    tmp = studio.settings.data_dir / "tmp"
    assert not [p for p in tmp.rglob("*") if p.is_file() and p.name == "evil.html"]  # nothing left behind
    # a page named as an image is judged by its content too
    body = body.replace(b'filename="evil.html"', b'filename="cat.png"').replace(b"text/html", b"image/png")
    req = urllib.request.Request(f"{base}/gradio_api/upload", body,
                                 {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError, match="415"):
        urllib.request.urlopen(req, timeout=30)
    # a real image still uploads
    png = (tmp_path / "ok.png")
    from PIL import Image
    Image.new("RGB", (8, 8), "red").save(png)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"ok.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{base}/gradio_api/upload", body,
                                 {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        [stored] = _json.loads(r.read())
    status, headers = _get(f"{base}/gradio_api/file={stored}")
    assert status == 200 and headers["content-type"].startswith("image/")


@pytest.mark.parametrize("shape", ["plain", "dict", "filedata"])
def test_a_server_path_as_media_is_refused(client, tmp_path, sample_image, shape):
    import shutil

    c, studio = client
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    shutil.copyfile(sample_image, secret)
    value = {"plain": str(secret), "dict": {"path": str(secret)},
             "filedata": {"path": str(secret), "meta": {"_type": "gradio.FileData"}}}[shape]
    answer = _raw_call(c.src.rstrip("/"), "image_to_video", ["go", value])
    assert "event: error" in answer, answer
    assert studio.gallery.list() == []
    inputs = studio.settings.data_dir / "inputs"
    assert not inputs.exists() or not any(p.is_file() for p in inputs.rglob("*"))  # nothing was copied in


def test_loras_parameter_reaches_the_job_service(client, settings):
    c, _ = client
    folder = settings.data_dir / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "style.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(Exception, match="does not take LoRAs"):  # the test model is no diffusers model
        c.predict(prompt="x", loras=["style:0.5"], api_name="/text_to_video")
    with pytest.raises(Exception, match="no LoRA 'nope'.*style.safetensors"):
        c.predict(prompt="x", loras=["nope"], api_name="/text_to_video")
    with pytest.raises(Exception, match="pick a LoRA of the LoRA folder"):  # no server paths from callers
        c.predict(prompt="x", loras=["/etc/passwd"], api_name="/text_to_video")
    with pytest.raises(Exception, match="outside -4 to 4"):
        c.predict(prompt="x", loras=["style:9"], api_name="/text_to_video")


@pytest.mark.parametrize("where", ["model_id", "vary"])
def test_a_model_folder_on_the_server_is_refused(client, tmp_path, where):
    """The page and the API pick models by id: a path would make the server load whatever folder it names."""
    c, studio = client
    folder = tmp_path / "someone-elses-model"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    kwargs = ({"model": str(folder)} if where == "model_id"
              else {"vary": [f"model={studio.facade.default_model_id},{folder}"]})
    with pytest.raises(Exception, match="is a path on the server"):
        c.predict(prompt="x", api_name="/text_to_video", **kwargs)
    for sneaky in ("~/models/x", "../x", "a\\b"):
        with pytest.raises(Exception, match="is a path on the server"):
            c.predict(prompt="x", model=sneaky, api_name="/text_to_video")
    assert studio.gallery.list() == []
