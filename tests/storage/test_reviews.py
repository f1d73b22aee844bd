"""Review links in storage (migration 0005): links, comments, votes (one per voter and clip, the clip's count in
step), the gallery sorted and filtered by votes with keyset pages, and what deleting a clip takes along."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select

from storage.db import downgrade, make_engine, make_session_factory, upgrade
from storage.models import Clip, Review, ReviewComment, ReviewVote
from storage.repositories import GalleryQuery, GalleryRepository, NotFound, QueryError, ReviewRepository
from tests.storage.test_repositories import make_clip

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def clips(session):
    repo = GalleryRepository(session)
    out = [repo.add(make_clip(n, seed=n, prompt=f"clip number {n}")) for n in range(12)]
    session.commit()
    return out


def review(session, clip_ids, rid="r" * 22, **kw) -> Review:
    r = ReviewRepository(session).add(Review(id=rid, kind="compare", clip_ids=list(clip_ids), created_at=T0, **kw))
    session.commit()
    return r


def vote(session, clip_id, voter, rid="r" * 22, on=True) -> bool:
    got = ReviewRepository(session).set_vote(
        ReviewVote(clip_id=clip_id, voter=voter, review_id=rid, reviewer=voter.rsplit(":", 1)[-1]), on)
    session.commit()
    return got


def test_a_link_is_kept_listed_and_revoked(session, clips):
    repo = ReviewRepository(session, clock=lambda: T0 + timedelta(hours=1))
    r = review(session, [clips[0].id, clips[1].id], author="ann", expires_at=T0 + timedelta(days=7))
    session.expire_all()
    got = repo.get(r.id)
    assert got.clip_ids == [clips[0].id, clips[1].id] and got.comments_allowed is True
    assert got.expires_at == T0 + timedelta(days=7) and got.revoked_at is None
    review(session, [clips[2].id], rid="s" * 22, author="bob")
    assert [x.id for x in repo.list("ann")] == [r.id]
    assert {x.id for x in repo.list(everyone=True)} == {r.id, "s" * 22}
    assert [x.id for x in repo.for_clip(clips[2].id)] == ["s" * 22]
    assert repo.revoke(r.id).revoked_at == T0 + timedelta(hours=1)
    assert repo.revoke(r.id).revoked_at == T0 + timedelta(hours=1)  # a second revoke keeps the first time
    with pytest.raises(NotFound):
        repo.revoke("nope")
    assert repo.get("a\x00b") is None
    with pytest.raises(ValueError, match="kind"):
        Review(id="x", kind="everything", clip_ids=[])


def test_comments_are_kept_as_text_and_resolved(session, clips):
    r = review(session, [clips[0].id, clips[1].id])
    repo = ReviewRepository(session, clock=lambda: T0 + timedelta(minutes=5))
    markup = "<script>alert(1)</script> at 1.2 s the object splits"
    first = repo.add_comment(ReviewComment(review_id=r.id, clip_id=clips[0].id, reviewer="Zoë", text=markup,
                                           at_seconds=1.2, created_at=T0))
    repo.add_comment(ReviewComment(review_id=r.id, clip_id=clips[1].id, reviewer="ann", account="ann", text="fine",
                                   created_at=T0 + timedelta(seconds=1)))
    session.commit()
    session.expire_all()
    [got] = repo.comments(clip_id=clips[0].id)
    assert (got.text, got.at_seconds, got.reviewer, got.resolved) == (markup, 1.2, "Zoë", False)
    assert [c.reviewer for c in repo.comments(review_id=r.id)] == ["Zoë", "ann"]
    assert repo.count_comments(r.id) == 2
    done = repo.resolve(first.id, True, by="ann")
    assert (done.resolved, done.resolved_by, done.resolved_at) == (True, "ann", T0 + timedelta(minutes=5))
    again = repo.resolve(first.id, False)
    assert (again.resolved, again.resolved_by, again.resolved_at) == (False, None, None)
    with pytest.raises(NotFound):
        repo.resolve("nope")
    for bad in ("a\x00b", "\ud800"):
        with pytest.raises(QueryError, match="text"):
            repo.add_comment(ReviewComment(review_id=r.id, clip_id=clips[0].id, reviewer="x", text=bad))
    session.rollback()
    assert repo.comments(clip_id="a\x00b") == []


def test_one_vote_per_voter_and_clip_and_the_count_follows(session, clips):
    a, b = clips[0].id, clips[1].id
    review(session, [a, b])
    review(session, [a], rid="s" * 22)
    assert vote(session, a, "guest:r:zoe") is True
    assert vote(session, a, "guest:r:zoe") is True  # again: still one
    assert vote(session, a, "account:ann") is True
    assert vote(session, a, "account:ann", rid="s" * 22) is True  # the same account through another link: still one
    assert vote(session, b, "account:ann") is True
    repo = ReviewRepository(session)
    assert repo.vote_counts([a, b, "missing"]) == {a: 2, b: 1}
    assert GalleryRepository(session).get(a).votes == 2  # the loaded clip sees the new count
    assert repo.voted("account:ann", [a, b]) == {a, b} and repo.voted("guest:r:zoe", [a, b]) == {a}
    assert vote(session, a, "guest:r:zoe", on=False) is False
    assert vote(session, a, "guest:r:zoe", on=False) is False  # taking back twice: no negative count
    session.expire_all()
    assert GalleryRepository(session).get(a).votes == 1
    assert [v.voter for v in repo.votes(clip_id=a)] == ["account:ann"]
    assert len(repo.votes(review_id="r" * 22)) == 2


def test_deleting_a_clip_takes_its_comments_and_votes(session, clips):
    a, b = clips[0].id, clips[1].id
    r = review(session, [a, b])
    ReviewRepository(session).add_comment(ReviewComment(review_id=r.id, clip_id=a, reviewer="x", text="hm"))
    vote(session, a, "guest:r:x")
    vote(session, b, "guest:r:x")
    GalleryRepository(session).delete(a)
    session.commit()
    assert session.scalars(select(ReviewComment)).all() == []
    assert [v.clip_id for v in session.scalars(select(ReviewVote))] == [b]
    assert ReviewRepository(session).get(r.id).clip_ids == [a, b]  # the link still lists it; the page skips it


def test_most_votes_pages_by_keyset_and_has_votes_filters(session, clips):
    review(session, [c.id for c in clips])
    for n, clip in enumerate(clips):  # clip n gets n % 4 votes: ties on every count
        for k in range(n % 4):
            vote(session, clip.id, f"guest:r:v{k}")
    repo = GalleryRepository(session)
    seen, cursor = [], None
    while True:
        page = repo.search(GalleryQuery(sort="votes", limit=5, after=cursor))
        seen += page.clips
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 12 and len({c.id for c in seen}) == 12
    assert [c.votes for c in seen] == sorted((n % 4 for n in range(12)), reverse=True)
    assert [c.id for c in seen] == [c.id for c in repo.search(GalleryQuery(sort="votes", limit=100)).clips]
    voted = repo.search(GalleryQuery(has_votes=True, limit=100)).clips
    assert sorted(c.seed for c in voted) == [n for n in range(12) if n % 4]
    assert len(repo.search(GalleryQuery(has_votes=False, limit=100)).clips) == 3
    assert repo.search(GalleryQuery(has_votes=True, text="number", sort="votes", limit=1)).clips[0].votes == 3
    import base64
    import json

    forged = base64.urlsafe_b64encode(json.dumps(["many", clips[0].id]).encode()).decode().rstrip("=")
    with pytest.raises(QueryError, match="after"):
        repo.search(GalleryQuery(sort="votes", after=forged))


def test_migration_0005_keeps_clips_and_their_search(blank_url):
    """A gallery made at 0004 gets votes = 0 and the new tables; full-text search still finds its clips, and
    going back to 0004 (SQLite drops the column in place) keeps them searchable too."""
    engine = make_engine(blank_url)
    upgrade(engine, "0004")
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO clips (id, job_id, batch_id, created_at, mode, model_id, model_version, prompt, "
            "negative_prompt, seed, steps, cfg_scale, frames, fps, width, height, params, manifest, inputs, "
            "video_path, thumb_path, sidecar_path, starred, note) VALUES ('c1', NULL, 'b', :t, 't2v', 'm', '1', "
            "'a violet kite', '', 1, 4, 5.0, 8, 8, 32, 32, '{}', '{}', '{}', 'v', 't', 's', false, '')"),
            {"t": T0.replace(tzinfo=None)})
    upgrade(engine)
    insp = inspect(engine)
    assert {"reviews", "review_comments", "review_votes"} <= set(insp.get_table_names())
    with make_session_factory(engine)() as s:
        [clip] = GalleryRepository(s).search(GalleryQuery(text="violet")).clips
        assert clip.votes == 0
    downgrade(engine, "0004")
    assert "reviews" not in inspect(engine).get_table_names()
    assert "votes" not in {c["name"] for c in inspect(engine).get_columns("clips")}
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            found = conn.execute(text("SELECT rowid FROM clips_fts WHERE clips_fts MATCH 'violet'")).all()
            assert len(found) == 1
    upgrade(engine)
    with make_session_factory(engine)() as s:
        assert [c.id for c in GalleryRepository(s).search(GalleryQuery(text="kite")).clips] == ["c1"]
    engine.dispose()


def test_a_clip_made_through_the_orm_starts_with_no_votes(session):
    clip = GalleryRepository(session).add(make_clip(1))
    session.commit()
    assert session.get(Clip, clip.id).votes == 0
