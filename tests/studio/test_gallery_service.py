"""The gallery service over real jobs: search, stars, tags, notes and lineage as the UI and CLI see them."""

import pytest

from pipelines.contract import TextToVideoRequest
from studio.gallery import GalleryQuery, QueryError
from tests.support.fakes import TEST_SPEC


def make(studio, prompt, seeds=1):
    sub = studio.jobs.submit(TextToVideoRequest(prompt=prompt, model_id=TEST_SPEC.id, seed=5), seeds=seeds)
    return [s.clip_id for s in studio.jobs.wait(sub.job_ids, timeout=60)]


def test_search_star_tag_note_round_trip(studio):
    red = make(studio, "a red circle moving right", seeds=2)
    [blue] = make(studio, "a blue square rising")
    views, cursor = studio.gallery.search(GalleryQuery(text="red"))
    assert {v.id for v in views} == set(red) and cursor is None
    assert studio.gallery.star(blue).starred is True
    assert studio.gallery.tag(blue, ["keeper", "sky"]).tags == ("keeper", "sky")
    assert studio.gallery.tag(blue, ["sky"], remove=True).tags == ("keeper",)
    assert studio.gallery.note(blue, "try cfg 7").note == "try cfg 7"
    view = studio.gallery.get(blue)
    assert view.starred and view.tags == ("keeper",) and view.note == "try cfg 7"
    assert [v.id for v in studio.gallery.search(GalleryQuery(starred=True, tag="keeper"))[0]] == [blue]
    page, cursor = studio.gallery.search(GalleryQuery(limit=2))
    rest, end = studio.gallery.search(GalleryQuery(limit=2, after=cursor))
    assert len(page) == 2 and len(rest) == 1 and end is None
    with pytest.raises(KeyError):
        studio.gallery.star("missing")
    with pytest.raises(QueryError, match="sort"):
        studio.gallery.search(GalleryQuery(sort="nope"))
