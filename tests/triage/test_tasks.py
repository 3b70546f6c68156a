"""Runs go through one enqueue function; with REDIS_URL they are worked by a real RQ worker."""

from __future__ import annotations

import django_rq
import pytest
from rq import SimpleWorker

from triage.models import PipelineRun, StepRun

pytestmark = pytest.mark.django_db

REDIS_TEST_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def rq_settings(settings):
    settings.TRIAGE_QUEUE_BACKEND = "rq"
    settings.RQ_QUEUES = {"default": {"URL": REDIS_TEST_URL, "DEFAULT_TIMEOUT": 120}}
    queue = django_rq.get_queue("default")
    queue.connection.flushdb()
    yield queue
    queue.connection.flushdb()


def test_a_ticket_goes_through_a_real_rq_worker_on_redis(rq_settings, ingest, django_capture_on_commit_callbacks):
    queue = rq_settings
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest("How do I reset my password? The reset link has expired twice.")
    assert PipelineRun.objects.get(pk=result.run.pk).status == PipelineRun.Status.QUEUED
    assert queue.job_ids == [f"triage-run-{result.run.pk}"]

    # RQ's own worker, in this process (SimpleWorker: no fork) so that it shares the test's transaction;
    # `manage.py rqworker` would reset the test's database connection between jobs.
    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    run = PipelineRun.objects.get(pk=result.run.pk)
    assert run.status == PipelineRun.Status.COMPLETED
    assert run.steps.filter(status__in=StepRun.FINISHED).count() == 6
    assert queue.count == 0 and len(queue.finished_job_registry) == 1


def test_the_inprocess_worker_runs_the_same_task(settings, ingest, django_capture_on_commit_callbacks, monkeypatch):
    from triage import tasks

    seen = []
    monkeypatch.setattr(tasks, "run_task", lambda run_id: seen.append(run_id))
    settings.TRIAGE_QUEUE_BACKEND = "inprocess"
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest("Where is my order TW-104233?")
    tasks.inprocess_drain(timeout=10)

    assert seen == [result.run.pk]
