"""Gallery organisation in storage: full-text search (SQLite FTS5, PostgreSQL tsvector), filters, keyset pages, stars, tags, notes,
lineage, and the migration that brings them to an existing gallery."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from storage.db import downgrade, make_engine, make_session_factory, upgrade
from storage.repositories import GalleryQuery, GalleryRepository, NotFound, QueryError
from tests.storage.test_repositories import make_clip

PROMPTS = ["a red circle moving right on navy", "a blue square moving up on beige",
           "a red square gliding left", "Sapphire triangle, very slow"]


@pytest.fixture
def repo(session):
    r = GalleryRepository(session)
    for n in range(40):
        c = make_clip(n, prompt=PROMPTS[n % 4], mode="t2v" if n % 2 else "v2v", model_id=f"m{n % 3}",
                      batch_id=f"b{n // 8}", seed=n, cfg_scale=float(n % 7), negative_prompt="blurry" if n < 4 else "")
        r.add(c)
    session.commit()
    return r


def ids(page):
    return [c.id for c in page.clips]


def test_full_text_search_matches_words_and_prefixes(repo):
    found = repo.search(GalleryQuery(text="red", limit=100)).clips
    assert len(found) == 20 and all("red" in c.prompt for c in found)
    assert len(repo.search(GalleryQuery(text="red squ", limit=100)).clips) == 10  # all words, as prefixes
    assert len(repo.search(GalleryQuery(text="SAPPHIRE", limit=100)).clips) == 10  # case folded
    assert len(repo.search(GalleryQuery(text="blurry", limit=100)).clips) == 4  # negative prompt too
    # FTS5 syntax in the box is text, not a query: no error, no injection
    assert len(repo.search(GalleryQuery(text='red"* -(', limit=100)).clips) == 20
    assert len(repo.search(GalleryQuery(text="red & !c:* |", limit=100)).clips) == 10  # nor PostgreSQL's tsquery
    assert repo.search(GalleryQuery(text="!!!")).clips == []


def test_search_follows_edits_and_deletes(repo, session):
    clip = repo.search(GalleryQuery(text="sapphire", limit=1)).clips[0]
    clip.prompt = "an emerald hexagon"
    session.commit()
    assert [c.id for c in repo.search(GalleryQuery(text="emerald")).clips] == [clip.id]
    repo.delete(clip.id)
    session.commit()
    assert repo.search(GalleryQuery(text="emerald")).clips == []


def test_filters_combine(repo):
    q = GalleryQuery(mode="t2v", model_id="m1", cfg_min=2, cfg_max=5, limit=100)
    got = repo.search(q).clips
    assert got and all(c.mode == "t2v" and c.model_id == "m1" and 2 <= c.cfg_scale <= 5 for c in got)
    assert [c.seed for c in repo.search(GalleryQuery(seed=7)).clips] == [7]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    window = repo.search(GalleryQuery(since=t0 + timedelta(seconds=10), until=t0 + timedelta(seconds=20), limit=100))
    assert sorted(c.seed for c in window.clips) == list(range(10, 20))
    assert len(repo.search(GalleryQuery(batch_id="b2", limit=100)).clips) == 8


@pytest.mark.parametrize("sort", ["newest", "oldest", "cfg", "steps", "seed"])
def test_keyset_pages_cover_everything_once_in_order(repo, sort):
    seen, cursor = [], None
    while True:
        page = repo.search(GalleryQuery(sort=sort, limit=7, after=cursor))
        seen += page.clips
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 40 and len({c.id for c in seen}) == 40
    whole = repo.search(GalleryQuery(sort=sort, limit=100)).clips
    assert [c.id for c in seen] == [c.id for c in whole]
    if sort == "newest":
        assert [c.seed for c in seen] == list(range(39, -1, -1))


def test_a_page_is_stable_when_new_clips_arrive(repo, session):
    first = repo.search(GalleryQuery(limit=10))
    repo.add(make_clip(99, created_at=datetime(2027, 1, 1, tzinfo=UTC)))  # newer than everything
    session.commit()
    second = repo.search(GalleryQuery(limit=10, after=first.next_cursor))
    assert second.clips[0].seed == 29  # offset paging would repeat seed 30 here


def test_bad_queries_name_the_field(repo):
    with pytest.raises(QueryError, match="sort"):
        repo.search(GalleryQuery(sort="random"))
    with pytest.raises(QueryError, match="limit"):
        repo.search(GalleryQuery(limit=0))
    with pytest.raises(QueryError, match="after"):
        repo.search(GalleryQuery(after="not-a-cursor"))
    with pytest.raises(QueryError, match="tag"):
        repo.search(GalleryQuery(tag="x" * 65))


def test_stars_tags_notes(repo, session):
    a, b = repo.search(GalleryQuery(limit=2)).clips
    repo.set_starred(a.id)
    repo.add_tags(a.id, ["keeper", "  red   ones ", "keeper"])
    repo.add_tags(b.id, ["keeper"])
    repo.set_note(a.id, "best motion so far")
    session.commit()
    assert ids(repo.search(GalleryQuery(starred=True))) == [a.id]
    assert set(ids(repo.search(GalleryQuery(tag="keeper")))) == {a.id, b.id}
    assert ids(repo.search(GalleryQuery(tag="red ones"))) == [a.id]
    assert repo.get(a.id).tags == ["keeper", "red ones"] and repo.get(a.id).note == "best motion so far"
    repo.remove_tags(a.id, ["keeper"])
    repo.set_starred(a.id, False)
    session.commit()
    assert repo.get(a.id).tags == ["red ones"]
    assert ids(repo.search(GalleryQuery(starred=True))) == []
    with pytest.raises(NotFound):
        repo.set_starred("nope")
    repo.delete(a.id)  # tags go with the clip
    session.commit()
    assert ids(repo.search(GalleryQuery(tag="red ones"))) == []


def test_lineage(repo, session):
    root, child, grandchild = repo.search(GalleryQuery(sort="oldest", limit=3)).clips
    child.parent_id, grandchild.parent_id = root.id, child.id
    session.commit()
    assert [c.id for c in repo.children(root.id)] == [child.id]
    assert [c.id for c in repo.ancestors(grandchild.id)] == [child.id, root.id]
    repo.delete(child.id)
    session.commit()
    assert repo.ancestors(grandchild.id) == []  # a deleted parent ends the chain


def test_migration_indexes_clips_made_before_it(blank_url):
    engine = make_engine(blank_url)
    upgrade(engine, "0001")
    cols = ("id", "batch_id", "created_at", "mode", "model_id", "model_version", "prompt", "negative_prompt",
            "seed", "steps", "cfg_scale", "frames", "fps", "width", "height", "params", "manifest", "inputs",
            "video_path", "thumb_path", "sidecar_path")
    values = ("old1", "b1", "2026-01-01 00:00:01.000000", "t2v", "m", "1", "an old violet kite", "", 1, 4, 5.0,
              8, 8, 32, 32, "{}", "{}", "{}", "c.mp4", "c.jpg", "c.json")
    with engine.begin() as conn:  # a row as version 0001 wrote it
        conn.execute(text(f"INSERT INTO clips ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"),
                     dict(zip(cols, values)))
    upgrade(engine)
    with make_session_factory(engine)() as s:
        found = GalleryRepository(s).search(GalleryQuery(text="violet"))
        assert [c.id for c in found.clips] == ["old1"] and found.clips[0].starred is False
    downgrade(engine, "0001")
    upgrade(engine)
    engine.dispose()


def _cursor(value, clip_id):
    return base64.urlsafe_b64encode(json.dumps([value, clip_id]).encode()).decode().rstrip("=")


def test_a_forged_cursor_is_refused(repo):
    """PostgreSQL refused to compare a column with a value of another type (a server error); SQLite compared
    anyway and gave a page. A cursor whose value cannot be one of the sort column's is refused on both."""
    for sort, value in (("seed", "abc"), ("cfg", "abc"), ("seed", True), ("steps", 1.5), ("seed", None),
                        ("seed", 2**63), ("steps", 2**31), ("cfg", [1]), ("cfg", 1e309), ("newest", 5)):
        with pytest.raises(QueryError, match="after"):
            repo.search(GalleryQuery(sort=sort, after=_cursor(value, "0" * 32)))
    with pytest.raises(QueryError, match="after"):
        repo.search(GalleryQuery(after=_cursor("2026-01-01T00:00:00+00:00", "a\x00b")))
    for sort in ("seed", "cfg", "steps"):  # a real one still works
        first = repo.search(GalleryQuery(sort=sort, limit=3))
        assert repo.search(GalleryQuery(sort=sort, limit=3, after=first.next_cursor)).clips


def test_text_no_database_can_hold(repo, session):
    """PostgreSQL refuses NUL characters in text (SQLite stored them): they are refused naming the field, and
    looking up an id that holds one finds nothing, on both backends."""
    clip = repo.search(GalleryQuery(limit=1)).clips[0]
    for change, field in ((lambda: repo.add_tags(clip.id, ["a\x00b"]), "tag"),
                          (lambda: repo.remove_tags(clip.id, ["a\x00b"]), "tag"),
                          (lambda: repo.set_note(clip.id, "a\x00b"), "note"),
                          (lambda: repo.set_note(clip.id, "\ud800"), "note")):
        with pytest.raises(QueryError, match=field):
            change()
    for field in ("mode", "model_id", "tag", "author", "sweep_id", "batch_id"):
        with pytest.raises(QueryError, match=field):
            repo.search(GalleryQuery(**{field: "a\x00b"}))
    for bad in (2**63, -(2**63) - 1, "7", True):
        with pytest.raises(QueryError, match="seed"):
            repo.search(GalleryQuery(seed=bad))
    with pytest.raises(QueryError, match="cfg_min"):
        repo.search(GalleryQuery(cfg_min="2"))
    assert repo.get("a\x00b") is None and repo.delete("a\x00b") is None and repo.resolve_prefix("abc\x00def") is None
    with pytest.raises(NotFound):
        repo.set_starred("a\x00b")
    session.rollback()  # the session is still usable: nothing reached the database
    assert repo.get(clip.id).tags == [] and repo.get(clip.id).note == ""


def test_job_and_user_lookups_with_a_nul_find_nothing(session):
    from storage.repositories import JobRepository, UserRepository

    assert JobRepository(session).get("a\x00b") is None and UserRepository(session).get("a\x00b") is None
    with pytest.raises(NotFound):
        JobRepository(session).mark_failed("a\x00b", "x")
    assert UserRepository(session).remove("a\x00b") is False
