"""A full disk (#14): a job is refused before it runs when there is no room, and a job whose end cannot be
written is never taken for one still to run: the reserve makes room, the journal carries it to the next start."""

import errno
import sqlite3

import pytest

from pipelines.contract import TextToVideoRequest
from storage.models import Job
from storage.space import DiskSpace, is_disk_full
from studio.jobs import JobService
from studio.wiring import build_studio

T2V = dict(prompt="a red circle", seed=1)


def _rows(studio) -> dict[str, str]:
    with studio.jobs._session_factory() as s:
        return {j.id: j.status for j in s.query(Job).all()}


def test_no_room_refuses_the_job_before_it_runs(studio, monkeypatch):
    monkeypatch.setattr(studio.jobs.space, "min_free", 1 << 62)
    sub = studio.jobs.submit(TextToVideoRequest(**T2V))
    [status] = studio.jobs.wait(sub.job_ids, timeout=30)
    assert status.status == "failed" and "disk is full" in status.error and "free some space" in status.error
    assert str(studio.settings.data_dir.resolve()) not in status.error  # no server path
    assert _rows(studio)[status.job_id] == "failed" and studio.gallery.list() == []
    monkeypatch.setattr(studio.jobs.space, "min_free", 0)
    [again] = studio.jobs.wait(studio.jobs.submit(TextToVideoRequest(**T2V)).job_ids, timeout=30)
    assert again.status == "done"


def test_the_reserve_makes_room_to_record_a_failure(studio, backend, monkeypatch):
    reserve = studio.jobs.space.reserve_path
    assert reserve.stat().st_size == studio.jobs.space.reserve_bytes  # taken at start
    real_write = JobService._write_end
    calls = []

    def full_until_room_is_made(self, *a):
        calls.append(reserve.exists())
        if reserve.exists():
            raise sqlite3.OperationalError("database or disk is full")
        return real_write(self, *a)

    monkeypatch.setattr(JobService, "_write_end", full_until_room_is_made)
    backend.fail_with = RuntimeError("boom")
    [status] = studio.jobs.wait(studio.jobs.submit(TextToVideoRequest(**T2V)).job_ids, timeout=30)
    assert status.status == "failed" and calls == [True, False]  # the second try had the reserve's room
    assert _rows(studio)[status.job_id] == "failed"
    backend.fail_with = None
    monkeypatch.setattr(JobService, "_write_end", real_write)
    [ok] = studio.jobs.wait(studio.jobs.submit(TextToVideoRequest(**T2V)).job_ids, timeout=30)
    assert ok.status == "done" and reserve.exists()  # taken back once there was room


def test_an_end_that_cannot_be_written_is_journaled_and_never_rerun(settings, registry, backend, monkeypatch):
    studio = build_studio(settings, registry)

    def always_full(self, *a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(JobService, "_write_end", always_full)
    backend.fail_with = RuntimeError("boom")
    [status] = studio.jobs.wait(studio.jobs.submit(TextToVideoRequest(**T2V)).job_ids, timeout=30)
    assert status.status == "failed"
    assert _rows(studio)[status.job_id] == "running"  # the database could not take the end
    assert [e[0] for e in studio.jobs.space.journaled()] == [status.job_id]
    studio.close()  # the disk is still full at exit
    monkeypatch.undo()
    backend.fail_with = None
    again = build_studio(settings, registry)
    try:
        rows = _rows(again)
        assert rows[status.job_id] == "failed"  # from the journal, not re-queued
        assert again.jobs.status(status.job_id).status == "failed"
        assert again.gallery.list() == [] and not again.jobs.space.journal_path.exists()
    finally:
        again.close()


def test_disk_full_is_recognised_through_causes():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("could not write the clip") from inner
    except RuntimeError as e:
        assert is_disk_full(e)
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not is_disk_full(RuntimeError("boom"))


def test_reserve_and_journal_round_trip(tmp_path):
    space = DiskSpace(tmp_path, reserve_bytes=1 << 20)
    assert space.hold() and space.reserve_path.stat().st_size == 1 << 20
    assert space.release() and not space.release()
    assert space.journal("a", "failed", "boom") and space.journal("b", "cancelled", None)
    space.journal_path.write_text(space.journal_path.read_text() + '{"job": "c", "sta')  # torn by a crash
    assert space.journaled() == [("a", "failed", "boom"), ("b", "cancelled", None)]
    space.clear_journal()
    assert space.journaled() == []


@pytest.mark.parametrize("free, refused", [(10 << 20, True), (1 << 30, False)])
def test_shortage_names_the_free_space(tmp_path, monkeypatch, free, refused):
    space = DiskSpace(tmp_path)
    monkeypatch.setattr(space, "free_bytes", lambda: free)
    assert (space.shortage() is not None) is refused
    if refused:
        assert "10 MB free" in space.shortage()
