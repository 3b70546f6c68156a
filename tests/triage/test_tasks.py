"""Runs go through one enqueue function; with REDIS_URL they are worked by a real RQ worker."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import django_rq
import pytest
import redis
from django.urls import reverse
from django.utils import timezone
from rq import SimpleWorker
from rq.job import JobStatus

from integrations.tokens import api_token_issue
from triage import tasks
from triage.contracts import ActionKind, TicketIn
from triage.models import Action, PipelineRun, StepRun, Ticket
from triage.pipeline.runner import STEPS as runner_steps
from triage.pipeline.runner import run_pipeline
from triage.services import ticket_ingest

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
    assert run.steps.filter(status__in=StepRun.FINISHED).count() == len(runner_steps)
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


# --- recovery: runs_sweep hands back what the queue lost ---------------------------------------------

PASSWORD_TICKET = "I forgot my password and the reset email never arrives, how do I get back into my account?"
UNREACHABLE_REDIS = {"default": {"URL": "redis://127.0.0.1:1/11", "DEFAULT_TIMEOUT": 120}}


def _abandon(run, *, takes: int = 1) -> None:
    """The state a worker killed -9 mid-run leaves behind: RUNNING, its lease expired long ago."""
    past = timezone.now() - timedelta(hours=1)
    PipelineRun.objects.filter(pk=run.pk).update(
        status=PipelineRun.Status.RUNNING, lease_expires_at=past, queued_at=past, takes=takes
    )


def test_a_run_whose_lease_expired_is_picked_up_and_finishes(ingest):
    # given: a worker took the run, finished retrieve, and died
    result = ingest(PASSWORD_TICKET, enqueue=False)
    _abandon(result.run)
    StepRun.objects.create(run=result.run, step="retrieve", status=StepRun.Status.RUNNING)

    # when
    sweep = tasks.runs_sweep()

    # then
    run = PipelineRun.objects.get(pk=result.run.pk)
    assert sweep == tasks.Sweep(requeued=[run.pk], not_enqueued=[])
    assert (run.status, run.takes, run.lease_expires_at) == (PipelineRun.Status.COMPLETED, 2, None)
    assert run.steps.filter(status=StepRun.Status.FAILED, error__startswith="interrupted").count() == 1
    assert run.steps.filter(status__in=StepRun.FINISHED).count() == len(runner_steps)


def test_a_run_with_a_live_lease_or_fresh_in_the_queue_is_left_alone(ingest):
    # given: one run held by a live worker, one queued a moment ago
    held = ingest(PASSWORD_TICKET, enqueue=False).run
    PipelineRun.objects.filter(pk=held.pk).update(
        status=PipelineRun.Status.RUNNING,
        lease_expires_at=timezone.now() + timedelta(minutes=1),
        queued_at=timezone.now() - timedelta(hours=1),
    )
    fresh = ingest(PASSWORD_TICKET, enqueue=False).run

    # when
    sweep = tasks.runs_sweep()

    # then
    assert sweep == tasks.Sweep(requeued=[], not_enqueued=[])
    assert PipelineRun.objects.get(pk=held.pk).status == PipelineRun.Status.RUNNING
    assert PipelineRun.objects.get(pk=fresh.pk).status == PipelineRun.Status.QUEUED


def test_intake_with_redis_unreachable_answers_201_and_the_sweeper_finishes_the_run(
    settings, client, django_capture_on_commit_callbacks, caplog
):
    # given: an API client, and Redis down when its ticket is committed
    _, raw = api_token_issue(name="crm")
    settings.TRIAGE_QUEUE_BACKEND = "rq"
    settings.RQ_QUEUES = UNREACHABLE_REDIS

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/tickets",
            data=json.dumps({"external_id": "e-1", "body": PASSWORD_TICKET}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )

    # then: success, the rows are saved, the failure is logged, and the run waits for the sweeper
    assert response.status_code == 201, response.content
    run = PipelineRun.objects.get(ticket_id=response.json()["id"])
    assert run.status == PipelineRun.Status.QUEUED
    assert "could not be enqueued; the sweeper will enqueue it" in caplog.text
    # a sweep while Redis is still down changes nothing (the next one tries again)
    PipelineRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    with pytest.raises(redis.exceptions.ConnectionError):
        tasks.runs_sweep()
    assert PipelineRun.objects.get(pk=run.pk).status == PipelineRun.Status.QUEUED

    # when: a worker is available again (here one that works in the sweeping thread)
    settings.TRIAGE_QUEUE_BACKEND = "immediate"
    sweep = tasks.runs_sweep()

    # then
    assert sweep.requeued == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.ticket.status) == (PipelineRun.Status.COMPLETED, Ticket.Status.AUTO_HANDLED)


def test_a_run_never_enqueued_is_picked_up_by_a_real_rq_worker(
    rq_settings, settings, ingest, django_capture_on_commit_callbacks
):
    # given: the enqueue raised (Redis unreachable at commit)
    settings.RQ_QUEUES = UNREACHABLE_REDIS
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest(PASSWORD_TICKET)
    # ... and Redis is back a while later
    settings.RQ_QUEUES = {"default": {"URL": REDIS_TEST_URL, "DEFAULT_TIMEOUT": 120}}
    queue = django_rq.get_queue("default")
    assert queue.count == 0
    PipelineRun.objects.filter(pk=result.run.pk).update(queued_at=timezone.now() - timedelta(minutes=5))

    # when
    sweep = tasks.runs_sweep()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    # then
    run = PipelineRun.objects.get(pk=result.run.pk)
    assert sweep.requeued == [run.pk]
    assert (run.status, run.takes) == (PipelineRun.Status.COMPLETED, 1)
    assert run.steps.filter(status__in=StepRun.FINISHED).count() == len(runner_steps)


def test_two_sweepers_hand_a_run_over_once_and_a_doubled_job_does_no_second_work(
    rq_settings, ingest, django_capture_on_commit_callbacks
):
    # given: a run lost by the queue, and a stale duplicate job for it already in Redis
    queue = rq_settings
    result = ingest(PASSWORD_TICKET, enqueue=False)
    PipelineRun.objects.filter(pk=result.run.pk).update(queued_at=timezone.now() - timedelta(minutes=5))

    # when: two sweeps at the same moment (the second finds the run stamped by the first), then a
    # duplicate of the job anyway (an RQ re-delivery)
    now = timezone.now()
    first, second = tasks.runs_sweep(now=now), tasks.runs_sweep(now=now)
    queue.enqueue(tasks.run_task, result.run.pk)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    # then: one hand-over, two jobs worked, each step done once
    run = PipelineRun.objects.get(pk=result.run.pk)
    assert (first.requeued, second.requeued) == ([run.pk], [])
    assert len(queue.finished_job_registry) == 2
    assert (run.status, run.takes) == (PipelineRun.Status.COMPLETED, 1)
    assert run.steps.count() == len(runner_steps) and run.steps.filter(status__in=StepRun.FINISHED).count() == len(
        runner_steps
    )


def test_a_poison_run_stops_after_the_take_limit_and_a_person_sees_why(settings, ingest, agent_client):
    # given: a run that killed its worker three times, in classify
    settings.TRIAGE_RUN_MAX_TAKES = 3
    result = ingest(PASSWORD_TICKET, enqueue=False)
    _abandon(result.run, takes=3)
    StepRun.objects.create(run=result.run, step="classify", status=StepRun.Status.RUNNING)

    # when
    tasks.runs_sweep()

    # then: failed with a reason, no step run again, and the reason is on the ticket's trace
    run = PipelineRun.objects.select_related("ticket").get(pk=result.run.pk)
    assert (run.status, run.ticket.status) == (PipelineRun.Status.FAILED, Ticket.Status.FAILED)
    assert run.error.startswith("Stopped after 3 attempts: each worker that took this run stopped while working")
    assert "'classify' step" in run.error
    assert run.steps.count() == 1
    page = agent_client.get(reverse("ticket-trace", args=[run.ticket_id]))
    assert page.status_code == 200 and "Stopped after 3 attempts" in page.content.decode()
    assert tasks.runs_sweep() == tasks.Sweep(requeued=[], not_enqueued=[])


def test_a_resumed_execute_step_does_not_post_the_reply_twice(settings, helpdesk_source, stub_helpdesk):
    # given: a Zendesk ticket whose run posted its reply, then its worker died before recording it
    stub = stub_helpdesk("zendesk")
    source = helpdesk_source("zendesk", base_url=stub.base_url, api_user="7", api_token="api-token-123")
    run = ticket_ingest(
        ticket_in=TicketIn(
            source=source.ticket_source, external_id="5158", body=PASSWORD_TICKET, requester="sam@example.com"
        ),
        enqueue=False,
    ).run
    assert run_pipeline(run_id=run.pk).status == PipelineRun.Status.COMPLETED
    assert stub.reply_posts == 1
    claimed = timezone.now() - timedelta(seconds=60)
    Action.objects.filter(run=run, kind=ActionKind.SEND_REPLY).update(
        status=Action.Status.IN_FLIGHT, claimed_at=claimed, result=None
    )
    StepRun.objects.filter(run=run, step="execute").update(status=StepRun.Status.RUNNING)
    _abandon(run)

    # when: the sweeper hands the run back and it resumes in execute
    tasks.runs_sweep()

    # then: the reply was read back, not posted again; every step finished once more at most
    run.refresh_from_db()
    reply = Action.objects.get(run=run, kind=ActionKind.SEND_REPLY)
    assert run.status == PipelineRun.Status.COMPLETED
    assert (reply.status, reply.attempts, reply.result["reply"]) == (Action.Status.DONE, 2, "already posted")
    assert stub.reply_posts == 1
    assert run.steps.filter(step="execute", status=StepRun.Status.SUCCEEDED).count() == 1


def test_the_inprocess_worker_sweeps_on_its_own_and_holds_what_it_was_given(settings, monkeypatch):
    # given: an in-process worker sweeping every 50 ms, with a run in its pool that has not finished
    settings.TRIAGE_QUEUE_BACKEND = "inprocess"
    swept, release = threading.Event(), threading.Event()
    monkeypatch.setattr(tasks, "runs_sweep", lambda: swept.set())
    monkeypatch.setattr(tasks, "run_task", lambda run_id: release.wait(5))
    worker = tasks.InProcessWorker(workers=1, sweep_every=0.05)
    monkeypatch.setattr(tasks, "_worker", worker)

    # when
    worker.submit(41)

    # then: the sweeper ran without anyone calling it, and leaves run 41 to the pool that holds it
    assert swept.wait(5)
    assert (tasks.queue_holds(41), tasks.queue_holds(42)) == (True, False)
    release.set()
    worker.drain(timeout=5)
    assert tasks.queue_holds(41) is False
    worker.stop()


def test_the_web_processs_in_process_worker_loads_the_models_in_the_background_so_the_first_run_does_not(
    settings, monkeypatch
):
    """Measured on 2026-11-30 (a throw-away script timing `run_task` in a fresh process): the first run after a
    start took 2.35 s against 0.05 s for the next ones; with the models preloaded, 0.09 s."""
    from integrations import embeddings
    from triage import autonomy
    from triage.pipeline import router
    from triage.pipeline.router import Router
    from triage.selectors import classifier_latest

    # given: nothing loaded or chosen in this process yet
    settings.TRIAGE_QUEUE_BACKEND = "inprocess"
    monkeypatch.setattr(embeddings, "_singleton", None)
    monkeypatch.setattr(router, "_classifier_cache", {})
    monkeypatch.setattr(autonomy, "_cache", {})

    # when: the web process starts its in-process worker
    tasks.inprocess_start()

    # then: the models are loaded and the thresholds chosen in the background
    assert tasks._worker is not None and tasks._worker.preloaded.wait(120)
    assert embeddings._singleton is not None
    assert list(router._classifier_cache) == [classifier_latest().pk]

    def no_choosing(**_):
        raise AssertionError("a run chose the thresholds the worker had chosen")

    monkeypatch.setattr(autonomy, "calibration_set", no_choosing)
    assert Router.for_run(PipelineRun()).thresholds is not None


@pytest.mark.parametrize("models", [True, False])
def test_the_in_process_sweeper_keeps_the_models_ready_after_each_sweep_only_in_the_web_processs_worker(
    settings, monkeypatch, models
):
    # given: a sweeper every 50 ms, recording its sweeps and refreshes in order
    settings.TRIAGE_QUEUE_BACKEND = "inprocess"
    calls: list[str] = []
    refreshed = threading.Event()
    monkeypatch.setattr(tasks, "models_preload", lambda: calls.append("preload"))
    monkeypatch.setattr(tasks, "runs_sweep", lambda: calls.append("sweep"))
    monkeypatch.setattr(tasks, "models_refresh_safely", lambda: calls.append("refresh") or refreshed.set())

    # when
    worker = tasks.InProcessWorker(workers=1, sweep_every=0.05, models=models)
    try:
        # then: with the models, preloaded once and refreshed after every sweep; without, never
        assert refreshed.wait(5 if models else 0.5) is models
        assert worker.preloaded.is_set() is models
    finally:
        worker.stop()
    sweeps = [c for c in calls if c != "preload"]
    if models:
        assert calls.count("preload") == 1
        assert sweeps[:2] == ["sweep", "refresh"]
    else:
        assert calls.count("preload") == 0 and "refresh" not in calls and "sweep" in calls


def test_a_run_whose_work_horse_was_killed_is_taken_off_rqs_failed_list_and_finished(rq_settings, ingest):
    # given: RQ moved the job of a killed work-horse to its failed list; the run was left RUNNING
    queue = rq_settings
    run = ingest(PASSWORD_TICKET, enqueue=False).run
    tasks.submit(run.pk)
    job = queue.fetch_job(f"triage-run-{run.pk}")
    queue.remove(job)
    queue.failed_job_registry.add(job, ttl=600)
    job.set_status(JobStatus.FAILED)
    _abandon(run)

    # when
    sweep = tasks.runs_sweep()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    # then
    assert sweep.requeued == [run.pk]
    assert queue.failed_job_registry.get_job_ids() == []
    assert queue.finished_job_registry.get_job_ids() == [f"triage-run-{run.pk}"]
    assert PipelineRun.objects.get(pk=run.pk).status == PipelineRun.Status.COMPLETED
