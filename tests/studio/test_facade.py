"""The facade the UI, CLI and API use: branching from a clip, an extended chain stitched, an mp4 imported."""

import dataclasses

import numpy as np
import pytest

from pipelines.contract import (
    ExtendRequest,
    ImageToVideoRequest,
    RequestError,
    SweepRequest,
    TextToVideoRequest,
    VideoToVideoRequest,
)
from studio.media import MediaLimits
from studio.media.images import read_image
from studio.media.video import read_video


def make(facade, request, parent=None):
    sub = facade.submit_sweep(SweepRequest(request, 1), parent_id=parent)
    [status] = facade.wait(sub.job_ids)
    assert status.status == "done", status.error
    return facade.clip(status.clip_id)


def test_from_clip_takes_the_video_or_a_frame(studio):
    f = studio.facade
    root = make(f, TextToVideoRequest(prompt="a red circle", seed=1))
    frames, _ = read_video(root.video, MediaLimits())
    v2v = f.from_clip(VideoToVideoRequest(prompt="x", video="-"), root.id)
    assert v2v.video == str(root.video)
    for request, index in ((ImageToVideoRequest(prompt="x", image="-"), 0),
                           (ExtendRequest(prompt="x", image="-"), len(frames) - 1),
                           (ImageToVideoRequest(prompt="x", image="-"), 3)):
        pick = 3 if index == 3 else None
        branched = f.from_clip(request, root.id, pick)
        assert branched.image.startswith("inputs/")
        image = read_image(studio.files.resolve(branched.image), MediaLimits())
        assert np.array_equal(image, frames[index])
    with pytest.raises(RequestError, match="outside the clip's 8 frames"):
        f.from_clip(ImageToVideoRequest(prompt="x", image="-"), root.id, 8)
    with pytest.raises(RequestError, match="no clip 'nope'"):
        f.from_clip(ImageToVideoRequest(prompt="x", image="-"), "nope")
    with pytest.raises(RequestError, match="not used by mode t2v"):
        f.from_clip(TextToVideoRequest(prompt="x"), root.id)


def test_an_extended_chain_stitches_into_one_mp4(studio):
    f = studio.facade
    root = make(f, TextToVideoRequest(prompt="a red circle", seed=1))
    one = make(f, f.from_clip(ExtendRequest(prompt="on", image="-", seed=2), root.id), parent=root.id)
    two = make(f, f.from_clip(ExtendRequest(prompt="on", image="-", seed=3), one.id), parent=one.id)
    assert [v.id for v in f.chain(two.id)] == [root.id, one.id, two.id]
    assert [v.id for v in f.chain(root.id)] == [root.id]
    out = f.export_chain(two.id)
    stitched, info = read_video(out, MediaLimits())
    # each continuation starts on its parent's last frame, which the chain shows once
    assert len(stitched) == 8 + 7 + 7 and info == 8
    last_of_root, _ = read_video(root.video, MediaLimits())
    def gap(a, b):
        return np.abs(a.astype(int) - b.astype(int)).mean()

    # noise frames, encoded twice: the stitched frame 7 is the root's last frame, not its neighbour
    assert gap(stitched[7], last_of_root[7]) < gap(stitched[7], last_of_root[6]) / 3


def test_an_mp4_made_elsewhere_is_imported_with_its_recipe(studio, settings, registry, tmp_path):
    from studio.wiring import build_studio

    made = make(studio.facade, TextToVideoRequest(prompt="a blue square", seed=9, cfg_scale=3.0))
    moved = tmp_path / "downloaded.mp4"
    moved.write_bytes(made.video.read_bytes())
    other = build_studio(dataclasses.replace(settings, data_dir=tmp_path / "other"), registry, start=False)
    try:
        view = other.facade.import_mp4(moved)
        assert view.id == made.id and view.prompt == "a blue square" and view.seed == 9 and view.cfg_scale == 3.0
        assert view.video.read_bytes() == made.video.read_bytes() and view.thumb.is_file()
        assert other.facade.import_mp4(moved).id == made.id  # twice: still one clip
        assert len(other.gallery.list()) == 1
        request, _ = other.facade.recall_file(view.video)
        assert request.seed == 9 and request.prompt == "a blue square"
    finally:
        other.close()
    plain = tmp_path / "plain.mp4"
    from studio.media.video import write_mp4

    write_mp4(np.zeros((2, 16, 16, 3), np.uint8), 8, plain, {})
    with pytest.raises(RequestError, match="carries no recipe"):
        studio.facade.import_mp4(plain)


def test_downloads_are_named_from_the_recipe(studio):
    view = make(studio.facade, TextToVideoRequest(prompt="a red circle moving right", seed=5, steps=3))
    path = studio.facade.export(view.id, "mp4")
    assert path.name == "a-red-circle-moving-right-seed5-3steps-cfg2.mp4"
    assert path.read_bytes() == view.video.read_bytes()


def test_importing_needs_a_role_that_may_generate_and_the_importer_becomes_the_author(settings, registry,
                                                                                       tmp_path):
    """Importing adds clips as generating does: a viewer may not; a member's imports are theirs (not the
    exporter's, who may not even have an account here); the CLI (no account) keeps the recorded author."""
    from studio.accounts import NotAllowed
    from studio.wiring import build_studio

    maker = build_studio(dataclasses.replace(settings, data_dir=tmp_path / "maker", auth=True), registry)
    try:
        maker.accounts.add("ann", "ann-password", "member")
        ann = maker.accounts.get("ann")
        zipped = maker.facade.clip(maker.facade.wait(maker.facade.submit(
            TextToVideoRequest(prompt="zipped", steps=2), account=ann).job_ids)[0].clip_id)
        dropped = maker.facade.clip(maker.facade.wait(maker.facade.submit(
            TextToVideoRequest(prompt="dropped", steps=2), account=ann).job_ids)[0].clip_id)
        archive = maker.facade.export_zip([zipped.id], tmp_path / "clips.zip")
        mp4 = tmp_path / "dropped.mp4"
        mp4.write_bytes(dropped.video.read_bytes())
    finally:
        maker.close()
    assert zipped.author == dropped.author == "ann"

    here = build_studio(dataclasses.replace(settings, data_dir=tmp_path / "here", auth=True), registry, start=False)
    try:
        here.accounts.add("vic", "vic-password", "viewer")
        here.accounts.add("bob", "bob-password", "member")
        vic, bob = here.accounts.get("vic"), here.accounts.get("bob")
        with pytest.raises(NotAllowed, match="viewers cannot import"):
            here.facade.import_zip(archive, account=vic)
        with pytest.raises(NotAllowed, match="viewers cannot import"):
            here.facade.import_mp4(mp4, account=vic)
        assert here.gallery.list() == [] and not any((here.settings.data_dir / "clips").glob("*"))
        assert here.facade.import_zip(archive, account=bob) == (1, 0)
        assert here.facade.import_mp4(mp4, account=bob).author == "bob"
        assert {v.id: v.author for v in here.gallery.list()} == {zipped.id: "bob", dropped.id: "bob"}
        assert here.facade.import_zip(archive, account=here.accounts.get("bob")) == (0, 1)  # already here: as it was
    finally:
        here.close()

    cli = build_studio(dataclasses.replace(settings, data_dir=tmp_path / "cli"), registry, start=False)
    try:  # the local owner, no account: the clips keep who made them
        assert cli.facade.import_zip(archive) == (1, 0)
        assert cli.facade.import_mp4(mp4).author == "ann"
        assert {v.author for v in cli.gallery.list()} == {"ann"}
    finally:
        cli.close()
