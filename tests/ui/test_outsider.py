"""The launched app attacked from outside (#14): the hostile-input corpus over HTTP, and the wrong user
calling the page's gallery handlers on someone else's clip.

One studio with `--auth` serves the whole module (alice and bob are members, vic a viewer). Everything
goes over HTTP as a browser or a script would send it: a cookie session from `/login`, files through
`/gradio_api/upload`, the API at `/gradio_api/call/<name>`, and the page's handlers by `fn_index` at
`/gradio_api/queue/join` (their `gr.State`, such as the opened clip, lives in the session on the server).
"""

import dataclasses
import json
import shutil
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from pipelines.contract import (
    ImageToVideoRequest,
    InpaintRequest,
    TextToVideoRequest,
    VideoToVideoRequest,
)
from tests.support.hostile import corpus
from tests.ui.conftest import serving, test_registry

PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "vic": "vic-password"}
ENDPOINTS = {TextToVideoRequest: "text_to_video", ImageToVideoRequest: "image_to_video",
             VideoToVideoRequest: "video_to_video", InpaintRequest: "inpaint"}


@dataclasses.dataclass
class Served:
    url: str
    studio: object
    data: Path  # the data dir; uploads land in its tmp/, as `studio serve` sets it up

    def files(self, folder: str) -> set[Path]:
        root = self.data / folder
        return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from studio.settings import Settings
    from studio.wiring import build_studio

    data = tmp_path_factory.mktemp("outsider") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(data / "tmp"))  # where `serve` puts uploads: the data dir's tmp/
        studio = build_studio(Settings(data_dir=data, device="cpu", auth=True), test_registry())
        for name, role in (("alice", "member"), ("bob", "member"), ("vic", "viewer")):
            studio.accounts.add(name, PASSWORDS[name], role)
        with serving(studio) as url:
            yield Served(url, studio, data.resolve())


class Session:
    """One signed-in browser (or script): a cookie session and a session hash for the page's state."""

    def __init__(self, url: str, name: str):
        self.http = httpx.Client(base_url=url, timeout=60)
        r = self.http.post("/login", data={"username": name, "password": PASSWORDS[name]})
        assert r.status_code == 200 and self.http.cookies, r.text
        self.session_hash = uuid.uuid4().hex[:11]
        self._config: dict | None = None

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = self.http.get("/config").json()
        return self._config

    def upload(self, path: Path, refused_ok: bool = False) -> dict | str:
        """Upload a file as the page does; the FileData a handler or the API takes (with `refused_ok`, a
        refusal comes back as "415 <detail>")."""
        r = self.http.post("/gradio_api/upload", files=[("files", (path.name, path.read_bytes()))])
        if refused_ok and r.status_code == 415:
            return f"415 {r.json()['detail']}"
        assert r.status_code == 200, r.text
        [server_path] = r.json()
        return {"path": server_path, "orig_name": path.name, "size": path.stat().st_size,
                "meta": {"_type": "gradio.FileData"}}

    # ---- the public API -------------------------------------------------------------------------
    def call(self, api_name: str, **values) -> tuple[str, object]:
        """POST /gradio_api/call/<api_name> with every parameter (defaults from /gradio_api/info, as a
        raw caller reads them); see `call_raw`."""
        params = self.http.get("/gradio_api/info").json()["named_endpoints"][f"/{api_name}"]["parameters"]
        data = [values.pop(p["parameter_name"]) if p["parameter_name"] in values else p.get("parameter_default")
                for p in params]
        assert not values, f"no such parameters: {values}"
        return self.call_raw(api_name, data)

    def call_raw(self, api_name: str, data: list) -> tuple[str, object]:
        """POST /gradio_api/call/<api_name>; (event, data) of the stream's last event: ("complete", outputs)
        or ("error", the error message). Each call is a new session: a handler's state inputs are empty."""
        body = json.dumps({"data": data}).encode()  # json.dumps: NaN and lone surrogates go as a script sends them
        r = self.http.post(f"/gradio_api/call/{api_name}", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        stream = self.http.get(f"/gradio_api/call/{api_name}/{r.json()['event_id']}").text
        event, payload = None, None
        for line in stream.splitlines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = json.loads(line.split(":", 1)[1])
        if event == "error":
            return event, payload.get("error") if isinstance(payload, dict) else payload
        return event, payload

    # ---- the page's handlers ----------------------------------------------------------------------
    def fn_index(self, elem_id: str, trigger: str) -> int:
        """The handler a component's event runs (the page knows it as its dependency id)."""
        [comp] = [c["id"] for c in self.config["components"] if c.get("props", {}).get("elem_id") == elem_id]
        found = [d["id"] for d in self.config["dependencies"] if [comp, trigger] in d["targets"]]
        assert len(found) == 1, (elem_id, trigger, found)
        return found[0]

    def defaults(self, fn_index: int, **by_elem_id) -> list:
        """What the page sends for a handler's inputs: each component's value as built (None for state),
        with some replaced by elem_id."""
        dep = next(d for d in self.config["dependencies"] if d["id"] == fn_index)
        comps = {c["id"]: c for c in self.config["components"]}
        out = []
        for cid in dep["inputs"]:
            props = comps[cid].get("props", {})
            elem = props.get("elem_id")
            out.append(by_elem_id[elem] if elem in by_elem_id else
                       None if comps[cid]["type"] == "state" else props.get("value"))
        return out

    def join(self, fn_index: int, data: list) -> dict:
        """Run a handler through the queue as the page does; its process_completed message."""
        r = self.http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "trigger_id": None,
                                                           "session_hash": self.session_hash, "event_data": None})
        assert r.status_code == 200, r.text
        event_id = r.json()["event_id"]
        with self.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session_hash}) as s:
            for line in s.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                        return msg
        raise AssertionError(f"handler {fn_index} never completed")

    def api_name(self, fn_index: int) -> str:
        """The name a page handler can be called by at /gradio_api/call/ (hidden from the API page, not closed)."""
        return next(d for d in self.config["dependencies"] if d["id"] == fn_index)["api_name"]

    def handler(self, elem_id: str, trigger: str, **by_elem_id) -> dict:
        fn = self.fn_index(elem_id, trigger)
        return self.join(fn, self.defaults(fn, **by_elem_id))

    def open_clip(self, clip_id: str) -> None:
        """Click a tile: the page script writes the id into the hidden box; the clip becomes the session's
        selected one, which star, tags, note and delete act on."""
        msg = self.handler("gallery-open", "change", **{"gallery-open": f"{clip_id}#1"})
        assert msg["success"], msg

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def as_user(served):
    opened = []

    def sign_in(name: str) -> Session:
        s = Session(served.url, name)
        opened.append(s)
        return s

    yield sign_in
    for s in opened:
        s.close()


def refusal(msg: dict) -> str:
    """The error text of a handler that was refused (and failed: not a success with a message)."""
    assert not msg["success"], msg
    error = (msg.get("output") or {}).get("error")
    assert isinstance(error, str) and error, f"no message: {msg}"
    return error


def make_clip(served: Served, name: str, prompt: str):
    from studio.facade import SweepRequest

    f = served.studio.facade
    sub = f.submit_sweep(SweepRequest(TextToVideoRequest(prompt=prompt, steps=2), 1),
                         account=served.studio.accounts.get(name))
    [status] = f.wait(sub.job_ids, timeout=60)
    assert status.status == "done", status.error
    return f.clip(status.clip_id)


def state_of(served: Served, clip_id: str):
    """What a change would touch: the row's editable fields and the clip's files."""
    view = served.studio.facade.clip(clip_id)
    if view is None:
        return None
    return (view.starred, tuple(view.tags), view.note, view.author, view.video.read_bytes(),
            view.thumb.is_file())


# ---- 1. the hostile-input corpus over HTTP ------------------------------------------------------------
NOT_UPLOADABLE = {"a missing file", "a folder", "NUL in a path"}  # named as server paths, as an attacker would


def test_the_hostile_corpus_is_refused_over_http_and_nothing_is_left_behind(served, as_user, tmp_path,
                                                                            sample_video, sample_image, capfd):
    bob = as_user("bob")  # a member: what refuses these is validation, not the role
    cases = corpus(tmp_path, sample_video, sample_image)
    rows = [c.id for c in served.studio.gallery.list()]
    inputs, clips = served.files("inputs"), served.files("clips")
    capfd.readouterr()
    problems = []
    for name, (cls, fields, field) in cases.items():
        values = {"prompt": "go", **fields}
        for media in cls.media_fields:
            if media in values:
                path = values[media]
                values[media] = ({"path": path, "meta": {"_type": "gradio.FileData"}} if name in NOT_UPLOADABLE
                                 else bob.upload(Path(path), refused_ok=True))
        refused_upload = next((v for v in values.values() if isinstance(v, str) and v.startswith("415 ")), None)
        if refused_upload is not None:  # judged by its content at the upload: never stored
            if "is not an image, a video or a zip" not in refused_upload:
                problems.append(f"{name}: upload refused without the reason: {refused_upload!r}")
            continue
        if "model_id" in values:
            values["model"] = values.pop("model_id")
        event, error = bob.call(ENDPOINTS[cls], **values)
        if event != "error" or not isinstance(error, str) or not error:
            problems.append(f"{name}: not refused with a message ({event}: {error!r})")
        elif field not in error:
            problems.append(f"{name}: the message does not name {field}: {error[:200]!r}")
        elif len(error) > 400 or "Traceback" in error:
            problems.append(f"{name}: a dump, not a message: {error[:200]!r}")
        elif any(where in error for where in (str(served.data), str(tmp_path.resolve()), "/tmp/")):
            problems.append(f"{name}: a server path in the answer: {error!r}")
        assert bob.http.get("/gradio_api/info").status_code == 200, f"the server stopped answering after {name}"
    assert not problems, "\n".join(problems)
    _, err = capfd.readouterr()
    assert "Traceback" not in err, err[-2000:]  # refusals are one log line each
    assert [c.id for c in served.studio.gallery.list()] == rows, "a refused request left a clip"
    assert served.files("inputs") == inputs, "a refused request left an input"
    assert served.files("clips") == clips, "a refused request left clip files"
    left = [p.name for p in (served.data / "tmp").rglob("*") if p.is_file()]
    assert left == [], f"refused uploads left in data/tmp: {left}"  # refused at upload, or dropped after the call

    # and the studio still works for everyone
    event, out = bob.call("image_to_video", prompt="still fine", image=bob.upload(sample_image), steps=2)
    assert event == "complete", out
    served.studio.facade.delete(out[1][0]["id"])


# ---- 2. the wrong user on the page's gallery handlers -------------------------------------------------
MUTATING = [  # (the component, its event, inputs to send): every gallery handler that changes a clip
    ("gallery-star", "click", {}),
    ("gallery-save-tags", "click", {"gallery-tags": "stolen"}),
    ("gallery-tags", "submit", {"gallery-tags": ""}),  # removes every tag
    ("gallery-save-note", "click", {"gallery-note": "bob was here"}),
    ("gallery-confirm-delete", "click", {}),
]


@pytest.fixture
def alices_clip(served):
    view = make_clip(served, "alice", "alice's clip")
    f = served.studio.facade
    alice = served.studio.accounts.get("alice")
    f.star(view.id, account=alice)
    f.tag(view.id, ["mine", "keep"], account=alice)
    f.note(view.id, "alice's note", account=alice)
    yield view.id
    f.delete(view.id)


@pytest.mark.parametrize("who", ["bob", "vic"])
def test_another_user_cannot_change_a_clip_through_the_page(served, as_user, alices_clip, who):
    user = as_user(who)
    before = state_of(served, alices_clip)
    user.open_clip(alices_clip)
    for elem_id, trigger, values in MUTATING:
        error = refusal(user.handler(elem_id, trigger, **values))
        assert "only alice or an admin may change" in error, (elem_id, trigger, error)
        assert state_of(served, alices_clip) == before, (elem_id, trigger)
        # by its name at /gradio_api/call: a new session, so no clip is open and nothing can change
        fn = user.fn_index(elem_id, trigger)
        user.call_raw(user.api_name(fn), user.defaults(fn, **values))
        assert state_of(served, alices_clip) == before, (elem_id, trigger, "by name")
    event, error = user.call("delete_clip", clip_id=alices_clip)  # the public API's delete
    assert event == "error" and "only alice or an admin" in error, error
    assert state_of(served, alices_clip) == before


@pytest.mark.parametrize("who, words", [("bob", "only alice or an admin may share"),
                                       ("vic", "viewers cannot share")])
def test_another_user_cannot_share_alices_clip_or_resolve_its_comments(served, as_user, alices_clip, who, words):
    """A review link shows a clip outside the login: only its maker (or an admin) may make one. Nor may another
    user resolve the comments reviewers left on it, or revoke the maker's link."""
    f = served.studio.facade
    alice = served.studio.accounts.get("alice")
    link = f.share("clip", [alices_clip], account=alice)
    comment = f.review_comment(link.token, 0, "a reviewer", "the circle jumps")
    user = as_user(who)
    user.open_clip(alices_clip)
    for elem_id in ("gallery-share", "gallery-share-group"):
        error = refusal(user.handler(elem_id, "click"))
        assert words in error, (elem_id, error)
    error = refusal(user.handler("gallery-resolve", "change", **{"gallery-resolve": f"{comment.id}:1#1"}))
    assert "may resolve" in error, error
    error = refusal(user.handler("gallery-revoke", "click", **{"gallery-revoke-pick": link.token}))
    # refused by Gradio already (not one of the links this user's list offers), else by the facade
    assert "may revoke" in error or "not in the list of choices" in error, error
    assert [r.id for r in f.reviews() if r.state == "active"] == [link.id]
    assert f.clip_comments(alices_clip)[0].resolved is False
    f.revoke_review(link.token, account=alice)


def test_every_handler_of_the_page_leaves_another_users_clip_alone(served, as_user, alices_clip):
    """Not only the handlers listed above: bob opens alice's clip and fires every handler of the page
    with what the page would send. Alice's clip is unchanged afterwards, whatever each one answered."""
    bob = as_user("bob")
    before = state_of(served, alices_clip)
    clips_before = {c.id for c in served.studio.gallery.list()}
    fired = 0
    for dep in bob.config["dependencies"]:
        if not dep.get("backend_fn") or not dep.get("queue", True):
            continue
        bob.open_clip(alices_clip)  # again each time: a handler may have closed it (opening "" does)
        bob.join(dep["id"], bob.defaults(dep["id"]))
        fired += 1
        assert state_of(served, alices_clip) == before, dep["api_name"]
    assert fired > 40
    for c in served.studio.gallery.list():  # what the handlers made (the default prompt is empty: nothing)
        if c.id not in clips_before:
            assert c.author == "bob"
            served.studio.facade.delete(c.id)


def test_a_viewer_cannot_generate_from_the_page(served, as_user):
    vic = as_user("vic")
    rows = [c.id for c in served.studio.gallery.list()]
    fn = vic.fn_index("t2v-generate", "click")
    msg = vic.join(fn, vic.defaults(fn, **{"t2v-prompt": "a red circle"}))
    statuses = [d for d in msg["output"]["data"] if isinstance(d, str)]
    assert any("viewers cannot generate" in s for s in statuses), msg
    event, error = vic.call("text_to_video", prompt="a red circle")
    assert event == "error" and "viewers cannot generate" in error
    assert [c.id for c in served.studio.gallery.list()] == rows


@pytest.fixture
def exported(served, tmp_path):
    """A zip and an mp4 of two clips that are no longer in the gallery (made, exported, deleted)."""
    f = served.studio.facade
    for_zip, for_mp4 = make_clip(served, "alice", "zipped"), make_clip(served, "alice", "dropped")
    archive = f.export_zip([for_zip.id], tmp_path / "clips.zip")
    mp4 = tmp_path / "downloaded.mp4"
    shutil.copyfile(for_mp4.video, mp4)
    for v in (for_zip, for_mp4):
        f.delete(v.id)
    yield archive, for_zip.id, mp4, for_mp4.id
    for clip_id in (for_zip.id, for_mp4.id):
        f.delete(clip_id)


def test_a_viewer_cannot_import_and_a_member_imports_as_the_author(served, as_user, exported):
    archive, zip_id, mp4, mp4_id = exported
    vic, bob = as_user("vic"), as_user("bob")
    clips = served.files("clips")
    for user in (vic, bob):
        upload = user.upload(archive)
        msg = user.handler("gallery-import-zip", "upload", **{"gallery-import-zip": upload})
        if user is vic:
            assert "viewers cannot" in refusal(msg)
            assert served.studio.facade.clip(zip_id) is None and served.files("clips") == clips
        else:
            assert msg["success"], msg
            assert served.studio.facade.clip(zip_id).author == "bob"  # the importer, not who made it elsewhere
    for user in (vic, bob):
        upload = user.upload(mp4)
        msg = user.handler("gallery-drop", "upload", **{"gallery-drop": upload})  # recall: allowed to all
        assert msg["success"], msg
        msg = user.handler("gallery-import-dropped", "click", **{"gallery-drop": upload})
        if user is vic:
            assert "viewers cannot" in refusal(msg)
            assert served.studio.facade.clip(mp4_id) is None
        else:
            assert msg["success"], msg
            assert served.studio.facade.clip(mp4_id).author == "bob"


def test_a_viewer_cannot_import_by_the_handlers_names_either(served, as_user, exported):
    """The page's handlers are hidden from the API page but callable by name at /gradio_api/call, and
    the import ones take the file as a plain input (no state): the role check must hold there too."""
    archive, zip_id, mp4, mp4_id = exported
    vic = as_user("vic")
    for elem_id, trigger, path, clip_id in (("gallery-import-zip", "upload", archive, zip_id),
                                            ("gallery-import-dropped", "click", mp4, mp4_id)):
        fn = vic.fn_index(elem_id, trigger)
        upload = vic.upload(path)
        event, error = vic.call_raw(vic.api_name(fn), vic.defaults(fn, **{"gallery-import-zip": upload,
                                                                          "gallery-drop": upload}))
        assert event == "error" and "viewers cannot" in error, (elem_id, event, error)
        assert served.studio.facade.clip(clip_id) is None


def test_malformed_calls_get_a_message_and_the_server_keeps_answering(served, as_user):
    bob = as_user("bob")
    event, error = bob.call_raw("text_to_video", ["a red circle"])  # 1 of 13 values
    assert event == "error" and error.startswith("expected 13 values (prompt, negative_prompt,"), error
    fn = bob.fn_index("gallery-import-zip", "upload")
    msg = bob.join(fn, [])
    assert refusal(msg).startswith("expected 14 values"), msg
    server_file = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
    msg = bob.join(fn, bob.defaults(fn, **{"gallery-import-zip": server_file}))
    assert refusal(msg).startswith("gallery-import-zip: upload the file with the request"), msg
    event, error = bob.call("image_to_video", prompt="x", image=server_file)
    assert event == "error" and error.startswith("image: upload the file with the request"), error
    for path, body in (("/gradio_api/call/text_to_video", {"data": "x"}), ("/gradio_api/call/text_to_video", {}),
                       ("/gradio_api/queue/join", {"data": [], "fn_index": "x", "session_hash": "abc"})):
        assert bob.http.post(path, json=body).status_code == 422, (path, body)
    # what the app does not have (Gradio alone: a 500 and a traceback) is named; an outsider learns nothing
    for path, body, status, words in (
            ("/gradio_api/call/no_such_name", {"data": []}, 404, "there is no API endpoint 'no_such_name'"),
            ("/gradio_api/run/no_such_name", {"data": []}, 404, "there is no API endpoint 'no_such_name'"),
            ("/gradio_api/queue/join", {"data": [], "fn_index": 99999, "session_hash": "abc"}, 404,
             "there is no function 99999 in this app"),
            ("/gradio_api/queue/join", {"data": [], "session_hash": "abc"}, 400, "a queue join needs fn_index")):
        answer = bob.http.post(path, json=body)
        assert (answer.status_code, answer.json()["detail"][:len(words)]) == (status, words), (path, answer.text)
        with httpx.Client(base_url=served.url, timeout=30) as outsider:
            assert outsider.post(path, json=body).status_code == 401, path
    event, _ = bob.call_raw("list_clips", ["", False, 5])  # a call the app has still runs (its body handed on)
    assert event == "complete", event
    assert bob.http.get("/gradio_api/info").status_code == 200



def test_a_member_cannot_make_the_server_open_a_folder_as_a_model(served, as_user, tmp_path):
    """By the page's own handlers (fn_index) and the API: a model id naming a folder on the server is
    refused before anything reads it (model_index.json would tell what the folder holds)."""
    bob = as_user("bob")
    folder = tmp_path / "private-model"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "WanPipeline", "secret": "dont-tell"}')
    rows = [c.id for c in served.studio.gallery.list()]
    [model] = [c["id"] for c in bob.config["components"] if c.get("props", {}).get("elem_id") == "t2v-model"]
    on_change = [d["id"] for d in bob.config["dependencies"] if [model, "change"] in d["targets"]]
    generate = bob.fn_index("t2v-generate", "click")
    assert len(on_change) == 2  # the settings it fills in, and the words it would not follow
    for fn in (*on_change, generate):
        msg = bob.join(fn, bob.defaults(fn, **{"t2v-model": str(folder), "t2v-prompt": "a red circle"}))
        text = json.dumps(msg)
        assert "WanPipeline" not in text and "dont-tell" not in text  # nothing read from the folder came back
        if fn == generate:
            assert "is a path on the server" in text, msg
    event, error = bob.call("text_to_video", prompt="a red circle", model=str(folder))
    assert event == "error" and "is a path on the server" in error
    assert [c.id for c in served.studio.gallery.list()] == rows


def test_the_prompt_preview_reads_only_uploads(tmp_path):
    """The i2v prompt note reads the image it is given (what the prompt will be read as). Given a path on the
    server instead of an upload (another user's stored input, any image), it must read nothing: an image's colour
    and shape would come back in the note. An upload of one's own is read, so the refusal is not an accident."""
    from PIL import Image

    from studio.settings import Settings
    from studio.wiring import build_studio

    data = tmp_path / "data"
    secret = tmp_path / "someone-elses.png"
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:40, 16:40] = (40, 180, 60)
    Image.fromarray(img).save(secret)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(data / "tmp"))
        studio = build_studio(Settings(data_dir=data, device="cpu", auth=True))  # the app's registry: embedded
        studio.accounts.add("bob", PASSWORDS["bob"], "member")
        try:
            with serving(studio) as url:
                bob = Session(url, "bob")
                fn = bob.fn_index("i2v-prompt", "change")
                own = bob.join(fn, bob.defaults(fn, **{"i2v-prompt": "moves up", "i2v-image": bob.upload(secret)}))
                assert "Read with the image as: *a green square moves up on a black background*" in json.dumps(own)
                for path in (str(secret), str(data / "studio.db"), "/etc/passwd"):
                    by_path = {"path": path, "orig_name": "x.png", "meta": {"_type": "gradio.FileData"}}
                    msg = bob.join(fn, bob.defaults(fn, **{"i2v-prompt": "moves up", "i2v-image": by_path}))
                    assert "Read with" not in json.dumps(msg) and "green" not in json.dumps(msg), (path, msg)
                    assert "paths on the server are not accepted" in refusal(msg), msg  # the studio's refusal
                bob.close()
        finally:
            studio.close()
