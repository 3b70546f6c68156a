"""Periodic jobs run from every sweeper when due: no process of their own to deploy."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import django_rq
import pytest
from rq import SimpleWorker
from rq.job import JobStatus

from triage import schedule
from triage.schedule import ScheduledJob, scheduled_jobs_run_due


def test_a_job_runs_once_per_interval_and_a_failing_one_does_not_stop_the_others(monkeypatch):
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("database restarting")

    jobs = [ScheduledJob("broken", broken, 10), ScheduledJob("prune", lambda: calls.append("prune"), 10)]
    monkeypatch.setattr(schedule, "scheduled_jobs", lambda: jobs)
    monkeypatch.setattr(schedule, "_last_run", {})

    assert scheduled_jobs_run_due(now=100.0) == []  # the first beat is one interval after the start
    assert scheduled_jobs_run_due(now=105.0) == []
    assert scheduled_jobs_run_due(now=110.0) == ["broken", "prune"]
    assert scheduled_jobs_run_due(now=115.0) == []
    assert scheduled_jobs_run_due(now=121.0) == ["broken", "prune"]
    assert calls == ["broken", "prune", "broken", "prune"]


def test_the_checkpoint_retention_pass_is_scheduled_hourly_and_the_classifier_retrain_daily():
    assert [(job.name, job.every_seconds) for job in schedule.scheduled_jobs()] == [
        ("checkpoints-prune", 3600),
        ("deliveries-prune", 3600),
        ("classifier-retrain", 86400),
    ]
    assert [job.func.__name__ for job in schedule.scheduled_jobs()] == [
        "checkpoints_prune_task",
        "deliveries_prune_task",
        "classifier_retrain_task",
    ]


def test_the_classifier_retrain_is_detached_with_a_time_limit_and_the_retention_passes_are_not():
    jobs = {job.name: job for job in schedule.scheduled_jobs()}
    assert jobs["classifier-retrain"].detached_seconds == schedule.RETRAIN_TIMEOUT_SECONDS
    assert jobs["classifier-retrain"].command == ("retrain",)
    assert jobs["checkpoints-prune"].detached_seconds == jobs["deliveries-prune"].detached_seconds == 0


@pytest.fixture
def children(monkeypatch):
    """The detached jobs' processes of this test only; any left running is killed at the end."""
    mine: dict[str, schedule._Child] = {}
    monkeypatch.setattr(schedule, "_children", mine)
    monkeypatch.setattr(schedule, "_last_run", {})
    yield mine
    for child in mine.values():
        child.process.kill()
        child.process.wait(timeout=30)


def _wait_for(path: Path, *, seconds: float = 120.0) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)
    return path.read_text()


def test_with_the_in_process_worker_a_detached_job_runs_as_its_command_in_a_child_the_sweeper_does_not_wait_for(
    monkeypatch, settings, children, tmp_path
):
    settings.TRIAGE_QUEUE_BACKEND = "inprocess"
    marker = tmp_path / "ran"
    # The command runs in Django (`manage.py shell -c`), says it ran, then outlives the time limit.
    code = f"import os, pathlib, time; pathlib.Path({str(marker)!r}).write_text(str(os.getpid())); time.sleep(600)"
    called: list[str] = []
    job = ScheduledJob(
        "train", lambda: called.append("in the sweeper"), 10, detached_seconds=50, command=("shell", "-c", code)
    )
    monkeypatch.setattr(schedule, "scheduled_jobs", lambda: [job])

    scheduled_jobs_run_due(now=100.0)
    assert scheduled_jobs_run_due(now=110.0) == ["train"]
    first = children["train"].process
    assert schedule.children_reap(now=111.0) == {"train": None}  # returned while the child still runs
    assert _wait_for(marker) == str(first.pid)  # the command itself ran, in the child
    assert called == []  # not in the sweeper

    assert scheduled_jobs_run_due(now=120.0) == ["train"]  # a beat while it runs starts no second one
    assert children["train"].process is first and first.poll() is None

    schedule.children_reap(now=160.0)  # past its deadline (110 + 50): stopped
    assert first.wait(timeout=30) == -signal.SIGTERM
    assert schedule.children_reap(now=161.0) == {"train": -signal.SIGTERM}
    assert "train" not in children
    marker.unlink()
    scheduled_jobs_run_due(now=170.0)  # the next beat starts it again
    assert children["train"].process is not first
    assert _wait_for(marker) == str(children["train"].process.pid)


def test_with_the_immediate_backend_a_detached_job_runs_in_the_sweeper(monkeypatch, children):
    called: list[str] = []
    job = ScheduledJob("train", lambda: called.append("ran"), 10, detached_seconds=50, command=("retrain",))
    monkeypatch.setattr(schedule, "scheduled_jobs", lambda: [job])
    scheduled_jobs_run_due(now=100.0)
    assert scheduled_jobs_run_due(now=110.0) == ["train"]
    assert called == ["ran"] and children == {}


def detached_job_body() -> str:
    """A detached job for the RQ test: what a work-horse runs."""
    return "trained"


def test_with_rq_a_detached_job_is_enqueued_for_a_work_horse_with_its_time_limit_once_at_a_time(
    monkeypatch, settings, children
):
    settings.TRIAGE_QUEUE_BACKEND = "rq"
    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:6379/12", "DEFAULT_TIMEOUT": 120}}
    queue = django_rq.get_queue("default")
    queue.connection.flushdb()
    job = ScheduledJob("train", detached_job_body, 10, detached_seconds=3600, command=("retrain",))
    monkeypatch.setattr(schedule, "scheduled_jobs", lambda: [job])
    try:
        scheduled_jobs_run_due(now=100.0)
        assert scheduled_jobs_run_due(now=110.0) == ["train"]
        assert queue.job_ids == ["scheduled-train"] and children == {}
        enqueued = queue.fetch_job("scheduled-train")
        assert enqueued.timeout == 3600 and enqueued.func is detached_job_body

        scheduled_jobs_run_due(now=120.0)  # still queued: none more
        assert queue.job_ids == ["scheduled-train"]

        SimpleWorker([queue], connection=queue.connection).work(burst=True)
        assert enqueued.get_status(refresh=True) == JobStatus.FINISHED
        assert enqueued.return_value() == "trained"
        scheduled_jobs_run_due(now=130.0)  # finished: the next beat enqueues it again
        assert queue.job_ids == ["scheduled-train"]
        assert queue.fetch_job("scheduled-train").get_status() == JobStatus.QUEUED
    finally:
        queue.connection.flushdb()
