"""A local diffusers folder through the studio's own path: registry resolver, job service, files, gallery row."""

import numpy as np
import pytest

from pipelines.contract import REQUEST_TYPES, InpaintRequest, RequestError, TextToVideoRequest
from tests.support.tiny_diffusers import CASES, SIZE, TINY, build_tiny_kind


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    return build_tiny_kind("wan-t2v", tmp_path_factory.mktemp("tiny-wan") / "wan")


@pytest.fixture
def real_studio(settings):
    from studio.wiring import build_studio

    s = build_studio(settings)  # the registry the app uses: embedded, catalog, local-folder resolver
    yield s
    s.close()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-kinds")
    return lambda kind: build_tiny_kind(kind, root / kind)


@pytest.mark.parametrize("kind, mode", CASES)
def test_every_family_and_mode_through_the_job_service(real_studio, tiny_folder, kind, mode, sample_image,
                                                       sample_video, sample_mask):
    """What the UI does: a typed request with uploaded files, submitted to the job service, saved, recorded."""
    frames = TINY[kind].frames
    media = {"image": str(sample_image), "video": str(sample_video), "mask": str(sample_mask)}
    cls = REQUEST_TYPES[mode]
    folder = str(tiny_folder(kind))
    size = max(SIZE, int(real_studio.registry.spec(folder).limits.width.min))  # SVD sizes are multiples of 64
    req = cls(prompt="a red ball moves left", model_id=folder, seed=2, steps=2,
              frames=frames, width=size, height=size, **{k: media[k] for k in cls.media_fields})
    sub = real_studio.jobs.submit(req)
    [status] = real_studio.jobs.wait(sub.job_ids, timeout=180)
    assert status.status == "done", status.error
    clip = real_studio.gallery.get(status.clip_id)
    assert (clip.mode, clip.frames, clip.width, clip.height) == (mode, frames, size, size)
    assert clip.manifest["profile"] == clip.profile and clip.manifest["diffusers"]
    assert set(clip.inputs) == set(cls.media_fields)


def test_local_folder_generates_through_the_job_service(real_studio, wan_folder):
    req = TextToVideoRequest(prompt="a cat runs", model_id=str(wan_folder), seed=3, steps=2, frames=5,
                             width=32, height=32)
    sub = real_studio.jobs.submit(req)
    [status] = real_studio.jobs.wait(sub.job_ids, timeout=120)
    assert status.status == "done", status.error
    clip = real_studio.gallery.get(status.clip_id)
    assert clip.model_id == str(wan_folder) and clip.frames == 5 and clip.video.is_file()
    assert clip.manifest["diffusers"] and clip.manifest["profile"] == clip.profile
    assert clip.profile is not None  # the default profile is recorded on the row


def test_latent_blend_inpaint_through_the_job_service(real_studio, wan_folder, sample_video, tmp_path):
    from PIL import Image

    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255
    Image.fromarray(mask).save(tmp_path / "half.png")
    req = InpaintRequest(prompt="a dog", model_id=str(wan_folder), seed=1, steps=2, frames=5, width=32,
                         height=32, video=str(sample_video), mask=str(tmp_path / "half.png"))
    [status] = real_studio.jobs.wait(real_studio.jobs.submit(req).job_ids, timeout=120)
    assert status.status == "done", status.error


def test_uncached_hub_model_is_refused_with_the_download_command(real_studio):
    """The catalog entry's missing() names the weights: the job service refuses before queueing a job
    that could only fail, and the message ends with the command that fetches them."""
    with pytest.raises(RequestError) as err:
        real_studio.jobs.submit(TextToVideoRequest(prompt="x", model_id="wan2.1-t2v-1.3b", steps=2))
    msg = str(err.value)
    assert err.value.field == "model_id" and "Traceback" not in msg
    assert msg.splitlines()[-1] == "hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers"


def test_out_of_memory_reaches_the_job_as_advice(real_studio, wan_folder, monkeypatch):
    """The backend raises the contract's OutOfMemory(hint): the job service words it once, with the
    family's advice (before, a RuntimeError subclass whose message the service did not recognise)."""
    from pipelines.diffusers.backend import DiffusersBackend

    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(DiffusersBackend, "_call_kwargs", boom)
    req = TextToVideoRequest(prompt="a cat", model_id=str(wan_folder), seed=1, steps=2, frames=5, width=32, height=32)
    [status] = real_studio.jobs.wait(real_studio.jobs.submit(req).job_ids, timeout=120)
    assert status.status == "failed"
    # a local Wan folder starts on the family's first profile, quality; the next lower one is balanced
    assert status.error.startswith("out of memory: the model was unloaded; try the 'balanced' profile (")
    assert "UMT5" in status.error
