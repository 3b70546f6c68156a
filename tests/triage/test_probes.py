"""/healthz, /readyz and /metrics as a load balancer and Prometheus see them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker

from config.embedded_db.base import DatabaseWrapper
from triage.models import PipelineRun
from triage.pipeline.runner import run_pipeline

ROOT = Path(__file__).resolve().parents[2]
REDIS_TEST_URL = "redis://127.0.0.1:6379/6"


def samples(response) -> dict[tuple[str, tuple], float]:
    text = response.content.decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_answers_without_touching_the_database(client):
    # No database fixture: any query would raise here.
    response = client.get("/healthz", headers={"Host": "10.0.0.5:8000"})

    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_probes_answer_any_host_over_plain_http_in_production(client, settings, db):
    # An address, not an allowed host name, over HTTP: what a load balancer sends.
    settings.ALLOWED_HOSTS = ["triage.example.com"]
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz", headers={"Host": "10.0.0.5:8000"}).status_code == 200
    assert client.get("/readyz", headers={"Host": "10.0.0.5:8000"}).status_code == 200
    assert client.get("/metrics", headers={"Host": "10.0.0.5:8000"}).status_code == 200
    assert client.post("/healthz").status_code == 405


def test_readyz_is_200_with_every_check_when_the_database_answers(client, db):
    response = client.get("/readyz")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["worker"]["ok"] is True  # tests work runs in the committing thread


def test_readyz_is_503_naming_the_database_when_it_is_unreachable(client, monkeypatch, db):
    port = closed_port()
    reachable = DatabaseWrapper.get_connection_params

    def unreachable(self):
        return {**reachable(self), "host": "127.0.0.1", "port": port}

    # New connections go to a port nothing listens on; this test's own connection stays as it is.
    monkeypatch.setattr(DatabaseWrapper, "get_connection_params", unreachable)

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is False
    assert "OperationalError" in body["checks"]["database"]["detail"]


def test_readyz_wants_redis_and_a_worker_seen_recently_when_the_queue_is_rq(client, settings, db):
    import redis

    settings.TRIAGE_QUEUE_BACKEND = "rq"
    settings.RQ_QUEUES = {"default": {"URL": REDIS_TEST_URL, "DEFAULT_TIMEOUT": 600}}
    from triage import probes

    probes._redis_client = None
    connection = redis.Redis.from_url(REDIS_TEST_URL)
    for stale in Worker.all(connection=connection):
        stale.register_death()

    # no worker: not ready
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"]["ok"] is True and checks["worker"]["ok"] is False
    assert "no RQ worker seen" in checks["worker"]["detail"]

    # a worker whose heartbeat is recent: ready
    worker = Worker(["default"], connection=connection, name=f"probe-test-{os.getpid()}")
    worker.register_birth()
    try:
        worker.heartbeat()
        assert client.get("/readyz").status_code == 200

        # the same worker, silent for longer than the window: not ready
        settings.TRIAGE_WORKER_SEEN_SECONDS = 0.0
        assert client.get("/readyz").json()["checks"]["worker"]["ok"] is False
    finally:
        worker.register_death()
        probes._redis_client = None


def test_readyz_is_503_when_redis_is_unreachable(client, settings, db):
    from triage import probes

    settings.TRIAGE_QUEUE_BACKEND = "rq"
    settings.RQ_QUEUES = {"default": {"URL": f"redis://127.0.0.1:{closed_port()}/6", "DEFAULT_TIMEOUT": 600}}
    probes._redis_client = None
    try:
        response = client.get("/readyz")
    finally:
        probes._redis_client = None

    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False


def test_the_in_process_worker_counts_as_seen_while_its_sweeper_comes_round(settings):
    from triage import probes, tasks

    settings.TRIAGE_QUEUE_BACKEND = "inprocess"
    saved = tasks._worker
    tasks._worker = None
    try:
        with pytest.raises(LookupError, match="has not started"):
            probes.worker_check()
        tasks._worker = tasks.InProcessWorker(workers=1)
        assert "in-process worker" in probes.worker_check()
        tasks._worker.seen = timezone.now() - timedelta(seconds=settings.TRIAGE_WORKER_SEEN_SECONDS + 5)
        with pytest.raises(LookupError, match="last seen"):
            probes.worker_check()
    finally:
        if tasks._worker is not None:
            tasks._worker.stop()
        tasks._worker = saved


def test_metrics_reports_queue_depth_and_the_oldest_queued_run_from_the_database(client, ingest):
    for text in ("Where is my parcel?", "How do I reset my password?"):
        ingest(text, enqueue=False)
    PipelineRun.objects.filter(status=PipelineRun.Status.QUEUED).update(
        queued_at=timezone.now() - timedelta(seconds=600)
    )

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    got = samples(response)
    assert got[("triage_queue_depth", ())] == 2
    assert 600 <= got[("triage_queue_oldest_age_seconds", ())] < 3600
    assert got[("triage_database_up", ())] == 1


def test_a_run_counts_its_outcome_step_latencies_and_failed_gates(client, ingest):
    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before_outcome = value("triage_runs_finished_total", outcome="awaiting_approval")
    before_money = value("triage_gate_failures_total", gate="money", step="classify")
    before_classify = value("triage_step_duration_seconds_count", step="classify", status="succeeded")

    run = run_pipeline(run_id=ingest("Please refund the $42.50 you charged me twice.", enqueue=False).run.pk)

    assert run.status == PipelineRun.Status.WAITING
    assert value("triage_runs_finished_total", outcome="awaiting_approval") == before_outcome + 1
    assert value("triage_gate_failures_total", gate="money", step="classify") == before_money + 1
    assert value("triage_step_duration_seconds_count", step="classify", status="succeeded") == before_classify + 1
    scraped = samples(client.get("/metrics"))
    assert scraped[("triage_runs_finished_total", (("outcome", "awaiting_approval"),))] == before_outcome + 1


def test_metrics_wants_the_bearer_token_when_one_is_set(client, settings, db):
    settings.TRIAGE_METRICS_TOKEN = "s3cr3t-scrape-token"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cr3t-scrape-token"})
    assert response.status_code == 200 and b"triage_queue_depth" in response.content


COUNT_IN_A_PROCESS = """
import os, sys, django
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
django.setup()
from triage import instruments
if sys.argv[1] != "-":
    instruments.metrics_process_adopt(sys.argv[1])
instruments.run_finished_count(outcome="auto_handled")
instruments.step_attempt_observe(step="draft", status="succeeded", seconds=0.3)
"""


def test_processes_sharing_a_multiprocess_directory_are_added_up_and_work_horses_share_their_workers_file(
    client, settings, tmp_path, db
):
    # given three processes counting into one directory: one on its own, two "work-horses" of one worker
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_DEV_MODE": "1"}
    for identity in ("-", "rqworker-4242", "rqworker-4242"):
        subprocess.run([sys.executable, "-c", COUNT_IN_A_PROCESS, identity], check=True, cwd=ROOT, env=env)
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)

    # when Prometheus scrapes
    got = samples(client.get("/metrics"))

    # then every process's counts are there, added up, and the two work-horses wrote one file
    assert got[("triage_runs_finished_total", (("outcome", "auto_handled"),))] == 3
    assert got[("triage_step_duration_seconds_count", (("status", "succeeded"), ("step", "draft")))] == 3
    assert sorted(p.name for p in tmp_path.iterdir() if "rqworker" in p.name) == [
        "counter_rqworker-4242.db",
        "histogram_rqworker-4242.db",
    ]
    assert got[("triage_queue_depth", ())] == 0  # the database figures are there too
