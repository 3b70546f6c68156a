"""Periodic jobs run from every sweeper when due: no process of their own to deploy."""

from __future__ import annotations

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
