"""The look-up step against the loopback shop MCP server: grounding, the argument gate, retries, fallback."""

from __future__ import annotations

import pytest

from approvals.models import ApprovalRequest
from integrations.models import McpTool
from triage.models import Category, LookupTool, PipelineRun, StepRun
from triage.pipeline.runner import run_pipeline


@pytest.fixture
def orders_looked_up(shop_row):
    """Every category looks the customer's order up with the shop's order_status (whatever the classifier
    decides, the ticket is looked up)."""
    tool = McpTool.objects.get(server=shop_row, name="order_status")
    LookupTool.objects.bulk_create(LookupTool(category=c, tool=tool) for c in Category.objects.all())
    return tool


def finished(run: PipelineRun, step: str) -> StepRun:
    return run.steps.get(step=step, status__in=StepRun.FINISHED)


def test_a_look_up_grounds_the_draft(ingest, shop, orders_looked_up):
    result = ingest("Where is my order A-10423? It was supposed to arrive last week.", enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    lookup = finished(run, "lookup")
    assert lookup.status == StepRun.Status.SUCCEEDED
    assert lookup.output["arguments"] == {"order_id": "A-10423"}
    assert lookup.output["result"]["estimated_delivery"] == "2026-12-02"
    assert lookup.model == "mcp:Tidewater shop/order_status"
    assert lookup.latency_ms > 0  # measured wall-clock time: only its sign is known
    assert [v["gate"] for v in lookup.verdicts] == ["tool_arguments"] and lookup.verdicts[0]["passed"]
    draft = finished(run, "draft")
    assert "estimated delivery: 2026-12-02" in draft.output["body"]
    assert "tracking number: 1Z999AA10123456784" in draft.output["body"]
    grounded = next(v for v in draft.verdicts if v["gate"] == "groundedness")
    assert grounded["passed"], grounded["reason"]
    assert "look-up" in grounded["reason"]
    assert shop.shop.calls["order_status"] == 1


def test_a_malformed_argument_is_stopped_by_the_gate_and_never_reaches_the_tool(ingest, shop, orders_looked_up):
    result = ingest("Where is my order 10423? It was supposed to arrive last week.", enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    lookup = finished(run, "lookup")
    assert lookup.status == StepRun.Status.ESCALATED
    (verdict,) = lookup.verdicts
    assert verdict["gate"] == "tool_arguments" and not verdict["passed"]
    assert "order_id: '10423' does not match" in verdict["reason"]
    assert shop.shop.calls["order_status"] == 0
    assert run.status == PipelineRun.Status.WAITING
    approval = ApprovalRequest.objects.get(run=run)
    assert "tool_arguments" in approval.failed_gates
    assert "order_id: '10423' does not match" in approval.reason


def test_a_ticket_without_an_order_number_goes_to_a_person_with_the_reason(ingest, shop, orders_looked_up):
    result = ingest("My parcel has not arrived yet and it was supposed to come last week.", enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    lookup = finished(run, "lookup")
    assert lookup.status == StepRun.Status.ESCALATED
    assert "'order_id' is a required property" in lookup.verdicts[0]["reason"]
    assert shop.shop.calls["order_status"] == 0
    assert run.status == PipelineRun.Status.WAITING


def test_a_look_up_that_keeps_failing_is_retried_then_goes_to_a_person(ingest, shop, orders_looked_up):
    shop.shop.fail_next["order_status"] = 10
    result = ingest("Where is my order A-10423? It was supposed to arrive last week.", enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    attempts = list(run.steps.filter(step="lookup").order_by("attempt").values_list("status", flat=True))
    assert attempts == ["failed", "failed", "failed", "escalated"]  # the default policy: 3 attempts
    assert shop.shop.calls["order_status"] == 3
    assert "payment provider timed out" in run.steps.filter(step="lookup", status="failed").first().error
    assert run.status == PipelineRun.Status.WAITING
    assert "step_failed" in ApprovalRequest.objects.get(run=run).failed_gates
    # The draft was still written, from the passages alone, for the person who takes it over.
    assert "estimated delivery" not in finished(run, "draft").output.get("body", "")


def test_a_resumed_run_restores_the_look_up_instead_of_asking_again(ingest, shop, orders_looked_up):
    result = ingest("Where is my order A-10423? It was supposed to arrive last week.", enqueue=False)
    run = run_pipeline(run_id=result.run.pk)
    StepRun.objects.filter(run=run, step__in=["draft", "validate", "route", "execute"]).delete()
    ApprovalRequest.objects.filter(run=run).delete()
    PipelineRun.objects.filter(pk=run.pk).update(status=PipelineRun.Status.RUNNING)

    run = run_pipeline(run_id=run.pk)

    assert shop.shop.calls["order_status"] == 1
    assert "estimated delivery: 2026-12-02" in finished(run, "draft").output["body"]
