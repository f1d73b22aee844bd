"""A hostile-input corpus (#14): each input is refused with a message naming the field, nothing is left in
the data dir, and the studio keeps working. The corpus is in tests/support/hostile.py."""

import pytest

from pipelines.contract import ImageToVideoRequest, RequestError
from tests.support.hostile import corpus


def test_every_hostile_input_is_refused_cleanly_and_the_studio_keeps_working(studio, tmp_path, sample_video,
                                                                              sample_image):
    cases = corpus(tmp_path, sample_video, sample_image)
    refused = {}
    for name, (cls, fields, field) in cases.items():
        kwargs = {"prompt": "go", **fields}
        with pytest.raises(RequestError) as e:
            studio.facade.submit(cls(**kwargs))
        refused[name] = e.value
        assert e.value.field == field, (name, e.value)
        assert len(str(e.value)) < 400, (name, str(e.value)[:100])  # a message, not a dump
        assert "Traceback" not in str(e.value)
    data = studio.settings.data_dir
    inputs = data / "inputs"
    assert not inputs.exists() or not [p for p in inputs.rglob("*") if p.is_file()], "an input was left behind"
    assert not (data / "clips").exists() or not any((data / "clips").iterdir())
    ok = studio.facade.submit(ImageToVideoRequest(prompt="still fine", image=str(sample_image), steps=2))
    [status] = studio.facade.wait(ok.job_ids, timeout=60)
    assert status.status == "done"
