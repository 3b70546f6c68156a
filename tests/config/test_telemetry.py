"""Traces leave the building over OTLP/HTTP: one ticket's trace as a collector receives it, and a collector
that is down costing the run nothing. Everything real: the SDK, the OTLP/HTTP exporter, the anthropic SDK
against its loopback Messages API, the helpdesk write-back against a loopback Zendesk."""

from __future__ import annotations

import json
import logging
import os
import threading
from decimal import Decimal

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from config.telemetry import TraceContextFilter, telemetry_flush, telemetry_setup
from integrations.tracing import tracer
from tests.config.otlp_receiver import BlackHole, OtlpReceiver, ReceivedSpan, render, tree, waterfall_png
from tests.integrations.helpdesks.stubs import fixture_body
from tests.integrations.llm.fake_anthropic import FakeAnthropic, answer, classification
from triage.models import Category, PipelineRun, Ticket
from triage.pipeline.runner import run_pipeline

WARRANTY = (
    "Hello, the burr grinder I bought in March stopped turning on. How long is the warranty on grinders, "
    "and how do I make a warranty claim?"
)
PASSWORD = "How do I reset my password? The link in the email has expired."
LATE_ORDER = "Where is my order? It was due on Monday and tracking has not moved."
FINISHED = (PipelineRun.Status.COMPLETED, PipelineRun.Status.WAITING)
SHOWN = (
    "triage.step",
    "triage.route",
    "triage.gates.failed",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "triage.action.kind",
    "http.response.status_code",
)


@pytest.fixture
def exporting(monkeypatch):
    """Tracing on, by the standard environment, for one test; off again afterwards."""

    def _on(endpoint: str, **env: str) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "triage-under-test")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert telemetry_setup() is True

    yield _on
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert telemetry_setup() is False


@pytest.fixture
def claude(settings, db):
    """The real anthropic SDK against the loopback Messages API; the local classifier always unsure."""
    from integrations.llm.breaker import breakers_reset

    breakers_reset()
    Category.objects.update(confidence_threshold=1.0)
    settings.TRIAGE_CLASSIFY_CASCADE = ["anthropic"]
    settings.TRIAGE_DRAFT_PROVIDERS = ["local"]
    settings.ANTHROPIC_API_KEY = "sk-test"
    settings.TRIAGE_ANTHROPIC_MODELS = {"classify": ["claude-haiku-4-5"], "draft": ["claude-haiku-4-5"]}
    settings.TRIAGE_DAILY_SPEND_CAP = 0
    with FakeAnthropic([answer(classification("equipment_warranty"))]) as fake:
        settings.ANTHROPIC_BASE_URL = fake.base_url
        yield fake
    breakers_reset()


def zendesk_webhook_body() -> bytes:
    """Zendesk's documented `ticket created` event (the intake fixture), about a grinder's warranty."""
    event = json.loads(fixture_body("zendesk/ticket_created_event.json"))
    event["detail"]["subject"] = "Grinder warranty"
    event["detail"]["description"] = f"<p>{WARRANTY}</p>"
    return json.dumps(event).encode()


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def test_one_ticket_is_one_trace_run_steps_model_calls_and_write_backs_linked_to_its_webhook(
    exporting, claude, helpdesk_source, stub_helpdesk, sign, client, django_capture_on_commit_callbacks, settings
):
    # given a collector, Claude and a Zendesk, all on loopback
    settings.TRIAGE_WRITEBACK_BREAKER_COOLDOWN = 0.0
    with OtlpReceiver() as collector:
        exporting(collector.endpoint)
        zendesk = stub_helpdesk("zendesk")
        source = helpdesk_source("zendesk", base_url=zendesk.base_url, api_user="7", api_token="api-token-123")
        body = zendesk_webhook_body()

        # when Zendesk delivers a ticket, and the run is worked after the request (on commit)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                f"/webhooks/zendesk/{source.pk}",
                data=body,
                content_type="application/json",
                headers=sign("zendesk", body),
            )
        assert response.status_code == 202, response.content
        assert telemetry_flush(timeout=10)

        # then
        ticket = Ticket.objects.get(pk=response.json()["ticket"])
        run = PipelineRun.objects.get(ticket=ticket)
        assert run.status == PipelineRun.Status.COMPLETED and run.route == "auto", run.error
        spans = list(collector.spans)

    request = one(spans, "POST /webhooks/<str:vendor>/<int:source_id>")
    run_span = one(spans, "run")
    assert {s.service for s in spans} == {"triage-under-test"}

    # The request: a SERVER span, and the run stored its W3C context.
    assert request.kind == "server" and request.attributes["http.response.status_code"] == 202
    assert run.trace_context["request"]["traceparent"].split("-")[1:3] == [request.trace_id, request.span_id]

    # The run: a trace of its own (worked later, by a worker), linked to the request that created it.
    assert run_span.parent_id == "" and run_span.trace_id != request.trace_id
    assert [(t, s) for t, s, _ in run_span.links] == [(request.trace_id, request.span_id)]
    assert run_span.attributes["triage.run.id"] == run.pk
    assert run_span.attributes["triage.ticket.id"] == ticket.pk
    assert run_span.attributes["triage.route"] == "auto"
    assert run_span.attributes["triage.run.status"] == "completed"
    assert run_span.attributes["triage.cost"] == pytest.approx(float(sum(s.cost for s in run.steps.all())))
    assert run_span.attributes["triage.cost"] > 0

    # Steps under the run, in the chain's order; model calls and write-backs under their steps.
    [root] = tree(collector.trace(run_span.trace_id))
    [request_root] = tree(collector.trace(request.trace_id))
    print(render([request_root, root], keys=SHOWN))
    if os.environ.get("TRIAGE_TRACE_FORWARD"):  # the same export requests, on to a tracing UI's OTLP/HTTP port
        collector.forward(os.environ["TRIAGE_TRACE_FORWARD"])
    if os.environ.get("TRIAGE_TRACE_PNG"):  # the README's picture: `TRIAGE_TRACE_PNG=docs/trace-otlp.png pytest ...`
        waterfall_png(
            [request_root, root],
            os.environ["TRIAGE_TRACE_PNG"],
            keys=SHOWN,
            title="One ticket as the test's OTLP/HTTP receiver got it: the webhook request's trace, then the run's "
            "trace (linked to it)",
        )
    assert root is run_span
    assert [c.name for c in root.children] == [
        "step retrieve",
        "step classify",
        "step lookup",  # skipped (no look-up tool mapped): still an attempt, with its span
        "step draft",
        "step validate",
        "step route",
        "step execute",
    ]
    steps = {c.attributes["triage.step"]: c for c in root.children}
    assert steps.pop("lookup").attributes["triage.step.status"] == "skipped"
    assert all(s.attributes["triage.step.status"] == "succeeded" for s in steps.values())
    assert steps["route"].attributes["triage.route"] == "auto"
    assert "groundedness" in steps["draft"].attributes["triage.gates.passed"]
    assert ("gate verdict", {"triage.gate": "groundedness", "triage.gate.passed": True}) in steps["draft"].events

    # Claude's call: the anthropic SDK's own span (GenAI conventions), one, under the classify step.
    [chat] = steps["classify"].children
    assert chat.name == "anthropic.messages.create" and chat.kind == "client"
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "anthropic"
    assert chat.attributes["gen_ai.request.model"] == "claude-haiku-4-5"
    assert chat.attributes["gen_ai.response.model"] == "claude-haiku-4-5"
    classify = run.steps.get(step="classify")
    assert chat.attributes["gen_ai.usage.input_tokens"] == classify.tokens_in == 2220
    assert chat.attributes["gen_ai.usage.output_tokens"] == classify.tokens_out == 60
    assert classify.model == "claude-haiku-4-5" == steps["classify"].attributes["triage.model"]
    assert Decimal(str(steps["classify"].attributes["triage.cost"])) == classify.cost

    [drafter] = steps["draft"].children
    assert drafter.name == "text_completion local-extractive"
    assert drafter.attributes["gen_ai.provider.name"] == "local"

    writes = steps["execute"].children
    assert {w.attributes["triage.action.kind"] for w in writes} == {a.kind for a in run.actions.all()}
    assert all(w.kind == "client" and w.attributes["triage.writer"] == "zendesk" for w in writes)
    assert zendesk.reply_posts == 1
    # Nothing of the ticket's text leaves in a span.
    assert not any("warranty on grinders" in str(s.attributes) for s in spans)


def test_a_collector_that_never_answers_neither_fails_nor_holds_up_runs(exporting, ingest):
    # given a collector that accepts connections and never answers, and an exporter that would wait a minute
    hole = BlackHole()
    exported_on: list[str] = []
    exporting_now = threading.Event()

    class WatchedExporter(OTLPSpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            exported_on.append(threading.current_thread().name)
            exporting_now.set()
            try:
                return super().export(spans)
            finally:
                exporting_now.clear()

    try:
        exporting(hole.endpoint, OTEL_EXPORTER_OTLP_TIMEOUT="60")
        telemetry_setup(exporter=WatchedExporter)

        # when a first run's spans are being exported into the black hole
        first = run_pipeline(run_id=ingest(PASSWORD, enqueue=False).run.pk)
        assert first.status in FINISHED, first.error
        assert hole.connected.wait(30), "the exporter never tried to reach the collector"
        assert exporting_now.wait(30)

        # then a second run is worked to its end while that export still hangs
        run = run_pipeline(run_id=ingest(LATE_ORDER, enqueue=False).run.pk)
        assert run.status in FINISHED, run.error
        assert exporting_now.is_set(), "the export returned: the collector was expected to hold it"
        assert exported_on and threading.current_thread().name not in exported_on
        assert all(name.startswith("OtelBatch") for name in exported_on)
        # and a bounded flush gives up rather than wait for the collector
        assert telemetry_flush(timeout=0.2) is False
    finally:
        hole.release()


def test_a_collector_on_a_closed_port_does_not_fail_a_run(exporting, ingest):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    exporting(f"http://127.0.0.1:{port}", OTEL_EXPORTER_OTLP_TIMEOUT="2")

    run = run_pipeline(run_id=ingest(PASSWORD, enqueue=False).run.pk)

    assert run.status in FINISHED, run.error


def test_log_lines_in_a_span_carry_its_trace_and_span_ids(exporting, caplog):
    with OtlpReceiver() as collector:
        exporting(collector.endpoint)
        log = logging.getLogger("triage.test")
        handler_filter = TraceContextFilter()
        with caplog.at_level(logging.INFO, logger="triage.test"):
            caplog.handler.addFilter(handler_filter)
            log.info("outside any span")
            with tracer().start_as_current_span("work") as span:
                log.info("inside the span")
            caplog.handler.removeFilter(handler_filter)
    # only this test's logger: a background sweeper left by an earlier test may log at the same time
    outside, inside = [r for r in caplog.records if r.name == "triage.test"]
    assert not hasattr(outside, "trace_id")
    context = span.get_span_context()
    assert inside.trace_id == f"{context.trace_id:032x}" and inside.span_id == f"{context.span_id:016x}"


def test_without_a_collector_nothing_is_set_up_and_spans_are_no_ops(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert telemetry_setup() is False
    with tracer().start_as_current_span("nothing") as span:
        assert not span.is_recording()
