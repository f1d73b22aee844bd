"""Review links as a service, through the facade and the CLI: signed tokens (altered, unknown, expired and
revoked all refused alike), who may share and revoke, what reviewers may write, one vote per reviewer and clip,
the rate limits per link, the key in the data dir, and `studio share` / `studio gallery show --json`."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.contract import SweepRequest, TextToVideoRequest
from storage.db import make_session_factory
from studio.accounts import Account
from studio.cli import main
from studio.facade import CommentsOff, NotAllowed, RateLimited, ReviewError, ReviewNotFound
from studio.reviews import COMMENTS_PER_MINUTE, VOTES_PER_MINUTE, ReviewService, parse_expiry, sign

BOB, ANN, VIC = Account("bob", "member"), Account("ann", "admin"), Account("vic", "viewer")


def make(facade, n=3, prompt="a red circle", account=None, vary=()):
    from pipelines.contract import parse_axis

    sweep = SweepRequest(TextToVideoRequest(prompt=prompt, seed=1, frames=16), n, tuple(parse_axis(v) for v in vary))
    sub = facade.submit_sweep(sweep, account=account)
    statuses = facade.wait(sub.job_ids)
    assert all(s.status == "done" for s in statuses), [s.error for s in statuses]
    return [facade.clip(s.clip_id) for s in statuses]


def altered(token: str, at: int) -> str:
    c = token[at]
    return token[:at] + ("A" if c != "A" else "B") + token[at + 1:]


def test_a_link_opens_only_with_its_own_token(studio, tmp_path):
    f = studio.facade
    clips = make(f)
    review = f.share("compare", [c.id[:8] for c in clips[:2]])  # ids by their first 8 characters too
    assert review.clip_ids == (clips[0].id, clips[1].id) and review.state == "active" and review.expires_at is None
    assert review.path == f"/review/{review.token}" and len(review.token) == 45
    assert f.open_review(review.token).id == review.id
    assert f.find_review(f"http://host:7860{review.path}").id == review.id  # a whole URL names it too
    for bad in (altered(review.token, 3), altered(review.token, 30), review.token[:-1], review.id,
                review.token + "x", "", "../../etc/passwd", None, 7):
        with pytest.raises(ReviewNotFound):
            f.open_review(bad)
        assert f.find_review(bad) is None
    # the same id signed with another studio's key is not a link of this one
    other = sign(os.urandom(32), review.id)
    with pytest.raises(ReviewNotFound):
        f.open_review(f"{review.id}.{other}")
    assert f.review_file(review.token, "clip", 0) == clips[0].video
    assert f.review_file(review.token, "thumb", 1) == clips[1].thumb
    assert f.review_file(review.token, "clip", 2) is None  # the third clip is not in this link
    assert f.review_file(altered(review.token, 30), "clip", 0) is None


def test_the_key_is_private_made_once_and_kept(settings, registry):
    from studio.wiring import build_studio

    first = build_studio(settings, registry)
    try:
        [clip] = make(first.facade, 1)
        review = first.facade.share("clip", [clip.id])
        key = settings.data_dir / "review-links.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.parent == settings.data_dir  # not under exports/ or inputs/, the only folders served by path
    finally:
        first.close()
    again = build_studio(settings, registry)
    try:
        assert again.facade.open_review(review.token).id == review.id  # a restart keeps the links working
    finally:
        again.close()


@pytest.mark.parametrize("text, span", [("7d", timedelta(days=7)), ("12h", timedelta(hours=12)),
                                        ("30m", timedelta(minutes=30)), (" 2D ", timedelta(days=2)),
                                        (None, None), ("", None), ("never", None)])
def test_expiry_spans(text, span):
    assert parse_expiry(text) == span


@pytest.mark.parametrize("text", ["7", "7w", "-1d", "0d", "1.5h", "400d", "7d; drop table", "d"])
def test_bad_expiry_names_the_field(text):
    with pytest.raises(ReviewError, match="expires"):
        parse_expiry(text)


def test_expired_and_revoked_links_are_closed_alike(studio):
    clips = make(studio.facade, 2)
    now = [datetime(2026, 5, 1, tzinfo=UTC)]
    service = ReviewService(make_session_factory(studio.engine), studio.gallery,
                            (studio.settings.data_dir / "review-links.key").read_text().strip().encode(),
                            clock=lambda: now[0])
    review = service.create("compare", [c.id for c in clips], expires=timedelta(hours=1))
    assert service.open(review.token).state == "active"
    now[0] += timedelta(minutes=59)
    service.comment(review.token, 0, "Zoë", "still open")
    now[0] += timedelta(minutes=2)
    for attempt in (lambda: service.open(review.token), lambda: service.comment(review.token, 0, "Zoë", "late"),
                    lambda: service.vote(review.token, 0, "Zoë"), lambda: service.state(review.token)):
        with pytest.raises(ReviewNotFound):
            attempt()
    assert service.find(review.token).state == "expired"
    kept = service.create("clip", [clips[0].id])
    service.revoke(kept.token)
    with pytest.raises(ReviewNotFound):
        service.open(kept.token)
    assert service.find(kept.token).state == "revoked"
    with pytest.raises(ReviewNotFound):
        service.revoke(altered(kept.token, 30))


def test_what_a_reviewer_may_write(studio):
    f = studio.facade
    clips = make(f, 2)
    review = f.share("compare", [c.id for c in clips])
    t = review.token
    c = f.review_comment(t, 1, "  Zoë   K. ", "  at 1.2 s the object splits\r\nbadly  ", 1.2)
    assert (c.author, c.text, c.at, c.signed_in, c.clip_id) == ("Zoë K.", "at 1.2 s the object splits\nbadly", 1.2,
                                                                False, clips[1].id)
    assert f.review_comment(t, 0, "x", "whole clip").at is None
    assert f.review_comment(t, 0, "x", "the end", 2).at == 2.0  # 16 frames at 8 fps: 2 s long
    markup = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    assert f.review_comment(t, 0, "<b>x</b>", markup).text == markup  # stored as text: escaping is the page's job
    bad = [
        (dict(name=""), "name"), (dict(name="   "), "name"), (dict(name="x" * 65), "name"), (dict(name=None), "name"),
        (dict(name="a\x00b"), "name"), (dict(name="\ud800"), "name"), (dict(name="a\u202eb"), "name"),
        (dict(name="a\nb\x07"), "name"), (dict(name=["x"]), "name"),
        (dict(text=""), "text"), (dict(text="  \n "), "text"), (dict(text="x" * 2001), "text"), (dict(text=5), "text"),
        (dict(text="a\x00b"), "text"), (dict(text="\udfff"), "text"), (dict(text="bell\x07"), "text"),
        (dict(at=-0.1), "at"), (dict(at=2.5), "at"), (dict(at=math.nan), "at"), (dict(at=math.inf), "at"),
        (dict(at=True), "at"), (dict(at="1.2"), "at"),
        (dict(position=2), "clip"), (dict(position=-1), "clip"), (dict(position="0"), "clip"),
        (dict(position=True), "clip"), (dict(position=None), "clip"),
    ]
    for change, field in bad:
        args = {"position": 0, "name": "Zoë", "text": "fine", "at": None, **change}
        with pytest.raises(ReviewError, match=field):
            f.review_comment(t, args["position"], args["name"], args["text"], args["at"])
    assert f.review_comment(t, 0, "x" * 64, "y" * 2000).text == "y" * 2000  # the limits themselves are fine
    assert len(f.clip_comments(clips[0].id)) == 4 and len(f.clip_comments(clips[1].id)) == 1
    quiet = f.share("clip", [clips[0].id], comments=False)
    with pytest.raises(CommentsOff):
        f.review_comment(quiet.token, 0, "Zoë", "hello")
    assert f.review_vote(quiet.token, 0, "Zoë") == (1, True)  # voting is still open


def test_one_vote_per_reviewer_and_clip_changeable(studio):
    f = studio.facade
    clips = make(f, 3)
    one = f.share("compare", [c.id for c in clips])
    two = f.share("compare", [c.id for c in clips[:2]])
    assert f.review_vote(one.token, 0, "Zoë") == (1, True)
    assert f.review_vote(one.token, 0, "zoë ") == (1, True)  # the same name, however typed: still one vote
    assert f.review_vote(one.token, 0, "Max") == (2, True)
    assert f.review_vote(one.token, 0, "Max", False) == (1, False)  # changed their mind
    assert f.review_vote(one.token, 0, "Max", False) == (1, False)
    assert f.review_vote(one.token, 1, "ann", signed_in_as="ann") == (1, True)
    assert f.review_vote(two.token, 1, "whatever", signed_in_as="ann") == (1, True)  # an account: one voter everywhere
    assert f.review_vote(two.token, 1, "Zoë") == (2, True)  # a typed name is only a name within its link
    with pytest.raises(ReviewError, match="vote"):
        f.review_vote(one.token, 0, "Zoë", "yes")
    assert [c.votes for c in (f.clip(x.id) for x in clips)] == [1, 2, 0]
    state = f.review_state(one.token, "ZOË")
    assert [(c["votes"], c["mine"]) for c in state["clips"]] == [(1, True), (2, False), (0, False)]
    assert f.review_state(one.token, signed_in_as="ann")["clips"][1]["mine"] is True
    assert f.review_state(one.token, "\x00")["reviewer"] is None  # a bad name just shows no votes of its own
    assert {(v.reviewer, v.signed_in) for v in f.clip_votes(clips[1].id)} == {("ann", True), ("Zoë", False)}


def test_comments_and_votes_are_rate_limited_per_link(studio):
    clips = make(studio.facade, 2)
    t = [100.0]
    service = ReviewService(make_session_factory(studio.engine), studio.gallery, b"k" * 32, monotonic=lambda: t[0])
    a = service.create("compare", [c.id for c in clips])
    b = service.create("clip", [clips[0].id])
    for i in range(COMMENTS_PER_MINUTE):
        service.comment(a.token, 0, "spam", f"comment {i}")
    with pytest.raises(RateLimited) as refused:
        service.comment(a.token, 0, "other", "one more")
    assert 1 <= refused.value.retry_after <= 60 and "comments" in str(refused.value)
    service.comment(b.token, 0, "spam", "another link has its own budget")
    for i in range(VOTES_PER_MINUTE):
        service.vote(a.token, i % 2, f"voter {i}", True)
    with pytest.raises(RateLimited, match="votes"):
        service.vote(a.token, 0, "one more")
    t[0] += 61
    service.comment(a.token, 0, "spam", "a minute later")
    service.vote(a.token, 0, "a minute later")
    # refused comments never reached the database
    assert len(service.comments(review_id=a.id)) == COMMENTS_PER_MINUTE + 1


def test_who_may_share_revoke_and_resolve(settings, registry):
    from studio.wiring import build_studio

    built = build_studio(dataclasses.replace(settings, auth=True), registry)
    try:
        f = built.facade
        bobs = make(f, 2, account=BOB)
        anns = make(f, 1, account=ANN)
        with pytest.raises(NotAllowed, match="viewers cannot share"):
            f.share("clip", [bobs[0].id], account=VIC)
        with pytest.raises(NotAllowed, match="only ann or an admin"):
            f.share("compare", [bobs[0].id, anns[0].id], account=BOB)
        mine = f.share("batch", subject=bobs[0].batch_id, account=BOB)
        assert mine.author == "bob" and mine.clip_ids == tuple(c.id for c in bobs) and mine.kind == "batch"
        theirs = f.share("compare", [bobs[0].id, anns[0].id], account=ANN)  # an admin shares any clips
        assert [r.id for r in f.reviews(account=BOB)] == [mine.id]
        assert {r.id for r in f.reviews(account=ANN)} == {mine.id, theirs.id}
        assert f.reviews(account=VIC) == []
        with pytest.raises(NotAllowed, match="only ann or an admin may revoke"):
            f.revoke_review(theirs.token, account=BOB)
        comment = f.review_comment(mine.token, 0, "Zoë", "hm")
        with pytest.raises(NotAllowed):
            f.resolve_comment(comment.id, account=VIC)
        assert f.resolve_comment(comment.id, account=BOB).resolved is True
        assert f.resolve_comment(comment.id, False, account=ANN).resolved is False
        with pytest.raises(KeyError):
            f.resolve_comment("nope", account=ANN)
        assert f.revoke_review(mine.token, account=BOB).state == "revoked"
        assert f.revoke_review(theirs.token, account=ANN).state == "revoked"
        with pytest.raises(ReviewError, match="no clip"):
            f.share("clip", ["feedface"], account=ANN)
        with pytest.raises(ReviewError, match="2 to 9"):
            f.share("compare", [bobs[0].id], account=ANN)
        with pytest.raises(ReviewError, match="no sweep"):
            f.share("sweep", subject="0" * 32, account=ANN)
    finally:
        built.close()


def test_a_sweep_link_and_a_deleted_clip(studio):
    f = studio.facade
    clips = make(f, 2, vary=["cfg=2,3"])
    review = f.share("sweep", subject=clips[0].sweep_id)
    assert review.kind == "sweep" and len(review.clip_ids) == 4 and review.subject == clips[0].sweep_id
    f.review_vote(review.token, 1, "Zoë")
    f.delete(review.clip_ids[1])
    assert f.review_clips(f.open_review(review.token))[1] is None
    assert f.review_file(review.token, "clip", 1) is None
    with pytest.raises(ReviewError, match="deleted"):
        f.review_comment(review.token, 1, "Zoë", "gone?")
    assert f.review_state(review.token)["clips"][1] == {"clip": 1, "votes": 0, "mine": False, "comments": []}


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_share_create_list_revoke_and_gallery_show(studio, capsys, monkeypatch):
    monkeypatch.delenv("STUDIO_PUBLIC_URL", raising=False)
    data = studio.settings.data_dir
    clips = make(studio.facade, 2, vary=["cfg=2,3"])
    code, out, err = run(capsys, "share", "create", "--clip", clips[0].id[:8], "--expires", "7d", "--json",
                         "--data-dir", data)
    assert code == 0, err
    made = json.loads(out)
    assert set(made) == {"url", "token", "expires"}
    assert made["url"] == f"http://127.0.0.1:7860/review/{made['token']}"
    assert datetime.fromisoformat(made["expires"]) > datetime.now(UTC) + timedelta(days=6)
    code, out, _ = run(capsys, "share", "create", "--compare", f"{clips[0].id},{clips[1].id}", "--no-comments",
                       "--base-url", "https://studio.example.com/", "--data-dir", data)
    assert code == 0 and out.startswith("https://studio.example.com/review/")
    quiet = out.strip().rsplit("/", 1)[-1]
    code, out, _ = run(capsys, "share", "create", "--sweep", clips[0].sweep_id, "--json", "--data-dir", data)
    assert code == 0 and json.loads(out)["expires"] is None
    code, out, _ = run(capsys, "share", "list", "--json", "--data-dir", data)
    listed = json.loads(out)
    assert code == 0 and [r["kind"] for r in listed] == ["sweep", "compare", "clip"]
    assert listed[1]["comments"] is False and listed[1]["token"] == quiet and len(listed[0]["clips"]) == 4

    f = studio.facade
    f.review_comment(made["token"], 0, "Zoë", "<b>at 1.2 s</b> the object splits", 1.2)
    f.review_vote(made["token"], 0, "Zoë")
    code, out, _ = run(capsys, "gallery", "show", clips[0].id, "--json", "--data-dir", data)
    shown = json.loads(out)
    assert code == 0 and shown["votes"] == 1 and shown["voters"][0]["reviewer"] == "Zoë"
    [comment] = shown["comments"]
    assert {"author", "text", "at", "created_at", "resolved"} <= set(comment)
    assert (comment["author"], comment["text"], comment["at"], comment["resolved"]) == (
        "Zoë", "<b>at 1.2 s</b> the object splits", 1.2, False)
    code, out, _ = run(capsys, "gallery", "list", "--sort", "votes", "--json", "--data-dir", data)
    assert json.loads(out)[0]["id"] == clips[0].id and json.loads(out)[0]["votes"] == 1

    assert run(capsys, "share", "revoke", made["url"], "--data-dir", data)[0] == 0
    with pytest.raises(ReviewNotFound):
        f.open_review(made["token"])
    code, _, err = run(capsys, "share", "revoke", altered(quiet, 30), "--data-dir", data)
    assert code == 2 and "no such review link" in err and len(err.strip().splitlines()) == 1
    for argv, words in ((["share", "create", "--clip", "feedface00"], "no clip"),
                        (["share", "create", "--clip", clips[0].id, "--expires", "soon"], "expires"),
                        (["share", "create", "--compare", clips[0].id], "2 to 9"),
                        (["share", "create"], "one of the arguments")):
        code, _, err = run(capsys, *argv, "--data-dir", data)
        assert code == 2 and words in err, err


def test_a_token_that_begins_with_a_dash_is_revoked_from_the_command_line(studio, capsys, monkeypatch):
    """URL-safe base64 starts 1 id in 64 with `-`: argparse took such a token for an option. New ids never start
    so, and `share revoke` still takes the token of an older link that does (and one given after `--`)."""
    drawn = iter(["-older0000000000000000", "-second000000000000000", "plain00000000000000000"])
    monkeypatch.setattr("studio.reviews.secrets.token_urlsafe", lambda n: next(drawn))
    from studio.reviews import new_review_id
    assert new_review_id() == "plain00000000000000000"  # the two that begin with `-` were drawn again
    monkeypatch.undo()

    data = studio.settings.data_dir
    clips = make(studio.facade, 2)
    for review_id in ("-dashed000000000000000", "-another00000000000000"):
        monkeypatch.setattr("studio.reviews.new_review_id", lambda rid=review_id: rid)
        review = studio.facade.share("clip", [clips[0].id])
        assert review.token.startswith("-") and len(review_id) == 22
        argv = (["share", "revoke", review.token, "--data-dir", data] if review_id.startswith("-d")
                else ["share", "revoke", "--data-dir", data, "--", review.token])
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert out.strip() == f"revoked {review.token}"
        with pytest.raises(ReviewNotFound):
            studio.facade.open_review(review.token)
    code, _, err = run(capsys, "share", "revoke", "-x", "--data-dir", data)  # not a token: argparse still refuses it
    assert code == 2 and "required: token" in err
