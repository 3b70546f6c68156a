"""The RQ worker class: models and thresholds ready before the fork, the sweeper run between jobs and while idle."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone

from integrations import embeddings
from triage import autonomy
from triage.learning import classifier_activate
from triage.models import PipelineRun, TrainedClassifier
from triage.pipeline import router
from triage.pipeline.router import Router
from triage.selectors import classifier_latest
from triage.worker import TriageWorker

pytestmark = pytest.mark.django_db

PASSWORD_TICKET = "I forgot my password and the reset email never arrives, how do I get back into my account?"


@pytest.fixture
def worker(settings, monkeypatch):
    settings.TRIAGE_QUEUE_BACKEND = "rq"
    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:6379/14", "DEFAULT_TIMEOUT": 120}}
    settings.TRIAGE_SWEEP_INTERVAL = 7
    queue = django_rq.get_queue("default")
    queue.connection.flushdb()
    # The worker closes (or recycles) its database connection around a sweep and before forking; here
    # the connection holds the test's transaction, which a close would end, so only those closes are left out.
    monkeypatch.setattr("triage.preload.connections.close_all", lambda: None)
    monkeypatch.setattr("triage.tasks.connections.close_all", lambda: None)
    monkeypatch.setattr("triage.tasks.close_old_connections", lambda: None)
    monkeypatch.setattr("triage.tasks.connections_close_quietly", lambda: None)
    # What the worker loads and chooses stays with this test (its classifier versions are rolled back).
    monkeypatch.setattr(router, "_classifier_cache", dict(router._classifier_cache))
    monkeypatch.setattr(autonomy, "_cache", {})
    yield TriageWorker([queue], connection=queue.connection)
    queue.connection.flushdb()


def test_the_worker_loads_the_models_before_any_job(monkeypatch, settings):
    # given: no model loaded in this process yet
    monkeypatch.setattr(embeddings, "_singleton", None)
    monkeypatch.setattr(router, "_classifier_cache", {})
    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:6379/14", "DEFAULT_TIMEOUT": 120}}
    monkeypatch.setattr("triage.preload.connections.close_all", lambda: None)
    queue = django_rq.get_queue("default")

    # when
    worker = TriageWorker([queue], connection=queue.connection)

    # then
    assert embeddings._singleton is not None
    assert list(router._classifier_cache) != []
    assert (worker.maintenance_interval, worker.dequeue_timeout) == (int(settings.TRIAGE_SWEEP_INTERVAL), 15)


def test_the_worker_chooses_the_thresholds_before_any_job_so_a_work_horse_does_not(monkeypatch, settings):
    """A work-horse forked from the worker inherits its memory and loses its own when it exits: thresholds
    chosen in the horse (importing MAPIE and scikit-learn, about 0.25 s) would be chosen again in every job."""
    # given: no thresholds chosen in this process yet
    monkeypatch.setattr(autonomy, "_cache", {})
    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:6379/14", "DEFAULT_TIMEOUT": 120}}
    monkeypatch.setattr("triage.preload.connections.close_all", lambda: None)
    queue = django_rq.get_queue("default")
    TriageWorker([queue], connection=queue.connection)
    assert classifier_latest() is not None

    # when: a run's router is built as a work-horse builds it, with choosing made impossible
    def no_choosing(**_):
        raise AssertionError("the thresholds were chosen again after the worker's preload")

    monkeypatch.setattr(autonomy, "calibration_set", no_choosing)
    thresholds = Router.for_run(PipelineRun()).thresholds

    # then: the worker's choice is used
    assert thresholds is not None


def test_the_worker_renews_the_thresholds_before_they_expire_and_loads_a_promoted_classifier(worker, monkeypatch):
    # given: the worker's preload, then the clock two sweep intervals short of the choice's time-to-live
    chosen = []
    real_set = autonomy.calibration_set
    monkeypatch.setattr(autonomy, "calibration_set", lambda **kw: chosen.append(kw["classifier"].pk) or real_set(**kw))
    [(stamp, _)] = autonomy._cache.values()
    now = stamp + autonomy.CHOICE_TTL_SECONDS - 2 * 7 + 1
    monkeypatch.setattr(autonomy.time, "monotonic", lambda: now)
    active = classifier_latest().pk

    # when: a maintenance pass
    worker.run_maintenance_tasks()

    # then: chosen again in the worker, ahead of its expiry (a work-horse would otherwise choose for itself)
    assert chosen == [active]
    [(renewed, _)] = autonomy._cache.values()
    assert renewed == now

    # given: a new classifier version made active (a promotion, or an admin's roll-back)
    latest = TrainedClassifier.objects.get(pk=active)
    promoted = TrainedClassifier.objects.create(
        model=latest.model,
        blob=latest.blob,
        labels=latest.labels,
        example_count=latest.example_count,
        suggested_threshold=latest.suggested_threshold,
        calibration=latest.calibration,
    )
    classifier_activate(version_id=promoted.pk, actor=None)

    # when
    worker.run_maintenance_tasks()

    # then: the new version loaded and its thresholds chosen, in the worker, and the one it replaced let go
    assert chosen == [active, promoted.pk]
    assert list(router._classifier_cache) == [promoted.pk]

    # and a pass with nothing moved chooses nothing
    worker.run_maintenance_tasks()
    assert chosen == [active, promoted.pk]


def test_the_worker_sweeps_in_its_maintenance_and_hands_back_a_lost_run(worker, ingest):
    # given: a run whose worker was killed -9 an hour ago
    run = ingest(PASSWORD_TICKET, enqueue=False).run
    past = timezone.now() - timedelta(hours=1)
    PipelineRun.objects.filter(pk=run.pk).update(
        status=PipelineRun.Status.RUNNING, lease_expires_at=past, queued_at=past, takes=1
    )

    # when
    worker.run_maintenance_tasks()

    # then: the run is back in the queue, and the wake-up follows the sweep interval
    queue = django_rq.get_queue("default")
    assert queue.job_ids == [f"triage-run-{run.pk}"]
    assert (worker.maintenance_interval, worker.dequeue_timeout) == (7, 7)


def test_a_work_horse_sends_its_jobs_spans_before_it_exits(monkeypatch, ingest, settings):
    """A work-horse leaves by `os._exit` (no exit handlers): the job's spans are sent when the job is done."""
    from config.telemetry import telemetry_setup
    from tests.config.otlp_receiver import OtlpReceiver

    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:6379/6", "DEFAULT_TIMEOUT": 120}}
    monkeypatch.setattr("triage.preload.connections.close_all", lambda: None)
    queue = django_rq.get_queue("default")
    queue.connection.flushdb()
    run = ingest(PASSWORD_TICKET, enqueue=False).run
    with OtlpReceiver() as collector:
        # A schedule delay of a minute: only the work-horse's own flush can send the spans in time.
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
        # The tracer provider is installed once per process with the service name in force then: the same
        # name as tests/config/test_telemetry.py's, whichever of the two runs first.
        monkeypatch.setenv("OTEL_SERVICE_NAME", "triage-under-test")
        try:
            worker = TriageWorker([queue], connection=queue.connection)
            job = queue.enqueue("triage.tasks.run_task", run.pk, job_id=f"triage-run-{run.pk}")
            worker._is_horse = True  # what `main_work_horse` sets in the forked child

            worker.perform_job(job, queue)

            names = [s.name for s in collector.spans]
        finally:
            monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
            telemetry_setup()
            queue.connection.flushdb()
    assert PipelineRun.objects.get(pk=run.pk).status == PipelineRun.Status.COMPLETED
    assert "run" in names and "step classify" in names
