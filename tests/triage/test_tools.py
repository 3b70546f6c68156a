"""Money tools only after a person: the refund reaches the shop's MCP tool once, from an approved decision by
someone with the money permission, with the action's idempotency key; failures retried, then shown."""

from __future__ import annotations

import pytest

from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from integrations.models import McpTool
from triage import writeback
from triage.models import Action, ActionTool, PipelineRun, StepRun
from triage.pipeline.runner import run_pipeline
from triage.tools import ToolRefused, action_tool_write
from triage.writeback import writebacks_retry

REFUND_TICKET = "Please refund my order A-10423, the coffee beans arrived stale and I want my money back."


@pytest.fixture
def refunds_through_shop(shop_row):
    return ActionTool.objects.create(kind="refund", tool=McpTool.objects.get(server=shop_row, name="create_refund"))


@pytest.fixture
def waiting_refund(ingest, refunds_through_shop):
    result = ingest(REFUND_TICKET, enqueue=False)
    run = run_pipeline(run_id=result.run.pk)
    assert run.status == PipelineRun.Status.WAITING
    approval = ApprovalRequest.objects.get(run=run)
    assert "refund" in [a["kind"] for a in approval.proposed_actions]
    return approval


def refund_of(run: PipelineRun) -> Action:
    return Action.objects.get(run=run, kind="refund")


def test_nothing_reaches_the_shop_before_a_person_decides(shop, waiting_refund):
    assert shop.shop.calls["create_refund"] == 0
    assert not Action.objects.filter(run=waiting_refund.run).exists()


def test_the_refund_tool_is_called_exactly_once_after_approval_even_when_the_run_is_retried(
    shop, waiting_refund, money_agent, django_capture_on_commit_callbacks, monkeypatch
):
    # The write-back after the refund fails once, so the execute step is retried with the refund already done.
    real = writeback.record_only
    failures = iter([RuntimeError("helpdesk hiccup")])

    def flaky(*, action, ticket):
        if action.kind == "send_reply" and (error := next(failures, None)) is not None:
            raise error
        return real(action=action, ticket=ticket)

    monkeypatch.setattr(writeback, "writer_for", lambda source: flaky)

    with django_capture_on_commit_callbacks(execute=True):
        approval_decide(approval_id=waiting_refund.pk, actor=money_agent, verdict="approve")
    run = PipelineRun.objects.get(pk=waiting_refund.run_id)
    # ... and the run is taken again by the queue and by the retry command: nothing is called again.
    run_pipeline(run_id=run.pk)
    writebacks_retry()

    run.refresh_from_db()
    assert run.status == PipelineRun.Status.COMPLETED
    assert list(run.steps.filter(step="execute").values_list("status", flat=True)) == ["failed", "succeeded"]
    refund = refund_of(run)
    key = refund.idempotency_key
    assert shop.shop.calls_by_key == {key: 1}
    assert shop.shop.meta_keys == [key]
    assert len(shop.shop.refunds) == 1
    assert refund.status == Action.Status.DONE and refund.attempts == 1
    assert refund.result["idempotency_key"] == key
    assert refund.result["tool"] == "create_refund"
    assert refund.result["arguments"]["order_id"] == "A-10423"
    assert refund.result["result"]["refund_id"] == "re_0001"


def test_the_refund_result_is_shown_on_the_trace(
    shop, waiting_refund, money_agent, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        approval_decide(approval_id=waiting_refund.pk, actor=money_agent, verdict="approve")
    client.force_login(money_agent)

    page = client.get(f"/tickets/{waiting_refund.ticket_id}/").content.decode()

    assert "re_0001" in page and "create_refund" in page


def test_a_failing_refund_tool_is_retried_by_policy_then_shown_failed_and_retried_later(
    shop, waiting_refund, money_agent, django_capture_on_commit_callbacks, settings
):
    settings.TRIAGE_TOOL_ATTEMPTS = 2
    shop.shop.fail_next["create_refund"] = 100

    with django_capture_on_commit_callbacks(execute=True):
        approval_decide(approval_id=waiting_refund.pk, actor=money_agent, verdict="approve")

    run = PipelineRun.objects.get(pk=waiting_refund.run_id)
    refund = refund_of(run)
    assert run.status == PipelineRun.Status.FAILED
    assert refund.status == Action.Status.FAILED
    assert "payment provider timed out" in refund.error
    # 3 execute attempts (the step policy), each trying the tool twice (TRIAGE_TOOL_ATTEMPTS), same key.
    assert shop.shop.calls_by_key == {refund.idempotency_key: 6}
    assert shop.shop.refunds == {}
    # The customer is not told of a refund the shop refused: the reply waits behind it.
    assert not Action.objects.filter(run=run, kind="send_reply").exists()

    shop.shop.fail_next["create_refund"] = 0
    counts = writebacks_retry()

    refund.refresh_from_db()
    assert counts["done"] == 1
    assert refund.status == Action.Status.DONE
    assert len(shop.shop.refunds) == 1
    # The run is handed back to the queue (the sweeper's job; here, by hand): the actions behind the refund
    # are carried out, the refund is not called again.
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.QUEUED
    run = run_pipeline(run_id=run.pk)
    assert run.status == PipelineRun.Status.COMPLETED
    assert Action.objects.get(run=run, kind="send_reply").status == Action.Status.DONE
    assert shop.shop.calls_by_key[refund.idempotency_key] == 7 and len(shop.shop.refunds) == 1


def test_a_money_tool_refuses_a_decision_without_the_money_permission(shop, waiting_refund, agent):
    run = waiting_refund.run
    run.resolution = {"verdict": "approve", "actions": waiting_refund.proposed_actions, "decided_by": agent.pk}
    run.save(update_fields=["resolution"])
    action = Action.objects.create(run=run, kind="refund", payload={"kind": "refund"}, idempotency_key="k-forged-1")

    with pytest.raises(ToolRefused, match="money-approval permission"):
        action_tool_write(action=action, ticket=run.ticket)

    assert shop.shop.calls["create_refund"] == 0


def test_a_refund_argument_that_is_not_the_customers_never_reaches_the_tool(shop, waiting_refund, money_agent):
    run = waiting_refund.run
    run.resolution = {"verdict": "approve", "actions": waiting_refund.proposed_actions, "decided_by": money_agent.pk}
    run.save(update_fields=["resolution"])
    ActionTool.objects.filter(kind="refund").update(
        arguments={"order_id": "const:A-99999", "idempotency_key": "idempotency_key"}
    )
    action = Action.objects.create(run=run, kind="refund", payload={"kind": "refund"}, idempotency_key="k-const-1")

    with pytest.raises(ToolRefused) as refused:
        action_tool_write(action=action, ticket=run.ticket)

    assert refused.value.verdict is not None and not refused.value.verdict.passed
    assert shop.shop.calls["create_refund"] == 0
    assert StepRun.objects.filter(run=run, step="execute").count() == 0
