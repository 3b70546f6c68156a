"""Money never moves without a permitted person: an invariant of the runner, not an admin switch."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from triage.contracts import MONEY_ACTIONS
from triage.models import Action, GatePolicy, PipelineRun, Ticket
from triage.pipeline.runner import run_pipeline

pytestmark = pytest.mark.django_db

REFUND_TICKET = "My grinder arrived with the hopper cracked in two. I want my money back for it."
MONEY_KINDS = [str(k) for k in MONEY_ACTIONS]


@pytest.fixture
def every_switch_off(db):
    """Every gate switch the policy has turned off (read from the model, so a switch added later is off too)."""
    switches = [f.name for f in GatePolicy._meta.get_fields() if f.name.endswith("_gate")]
    policy = GatePolicy.get_solo()
    for name in switches:
        setattr(policy, name, False)
    policy.save()
    assert switches and not any(getattr(GatePolicy.get_solo(), name) for name in switches)
    return switches


@pytest.fixture
def money_user(django_user_model):
    user = django_user_model.objects.create_user(username="senior", password="x-pass-12345", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="approve_money", content_type__app_label="approvals"))
    return user


def test_there_is_no_switch_for_money(every_switch_off):
    assert not [name for name in every_switch_off if "money" in name]


def test_with_every_gate_switch_off_a_refund_ticket_still_waits_for_a_person(every_switch_off, ingest):
    result = ingest(REFUND_TICKET, enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert (run.status, run.route) == (PipelineRun.Status.WAITING, PipelineRun.Route.HUMAN)
    assert Ticket.objects.get(pk=result.ticket.pk).status == Ticket.Status.AWAITING_APPROVAL
    assert Action.objects.filter(run=run).count() == 0
    approval = ApprovalRequest.objects.get(run=run)
    assert approval.money is True
    money = [v for v in run.steps.get(step="classify").verdicts if v["gate"] == "money"]
    assert len(money) == 1 and money[0]["passed"] is False


def test_with_every_gate_switch_off_an_amount_to_refund_still_waits_for_a_person(every_switch_off, ingest):
    result = ingest("Please refund the $42.50 you charged me twice for my Tidewater Club box.", enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert run.route == PipelineRun.Route.HUMAN and run.status == PipelineRun.Status.WAITING
    assert Action.objects.filter(run=run).count() == 0


def test_a_money_decision_by_a_permitted_person_is_carried_out_once(ingest, money_user):
    result = ingest(REFUND_TICKET, enqueue=False)
    run = run_pipeline(run_id=result.run.pk)
    approval = ApprovalRequest.objects.get(run=run)

    approval_decide(approval_id=approval.pk, actor=money_user, verdict="approve")
    run = run_pipeline(run_id=run.pk)

    assert run.status == PipelineRun.Status.COMPLETED
    done = Action.objects.filter(run=run, kind__in=MONEY_KINDS, status=Action.Status.DONE)
    assert done.count() == len([a for a in approval.proposed_actions if a["kind"] in MONEY_KINDS]) >= 1


def test_a_resolution_not_taken_by_a_permitted_person_moves_no_money(ingest, django_user_model):
    result = ingest(REFUND_TICKET, enqueue=False)
    run = run_pipeline(run_id=result.run.pk)
    approval = ApprovalRequest.objects.get(run=run)
    agent = django_user_model.objects.create_user(username="agent", password="x-pass-12345", is_staff=True)
    # Written by anything but approval_decide (a shell, a bug, an admin edit): no permitted person behind it.
    PipelineRun.objects.filter(pk=run.pk).update(
        status=PipelineRun.Status.QUEUED,
        resolution={
            "verdict": "approve",
            "actions": approval.proposed_actions,
            "reply": approval.draft or "ok",
            "category": approval.proposed_category,
            "reason": "",
            "decided_by": agent.pk,
        },
    )

    run = run_pipeline(run_id=run.pk)

    assert run.status == PipelineRun.Status.FAILED
    assert "money-approval permission" in run.error
    assert Action.objects.filter(run=run).count() == 0


def test_a_permission_revoked_after_the_decision_moves_no_money(ingest, money_user):
    result = ingest(REFUND_TICKET, enqueue=False)
    run = run_pipeline(run_id=result.run.pk)
    approval = ApprovalRequest.objects.get(run=run)
    approval_decide(approval_id=approval.pk, actor=money_user, verdict="approve")
    money_user.user_permissions.clear()

    run = run_pipeline(run_id=run.pk)

    assert run.status == PipelineRun.Status.FAILED
    assert Action.objects.filter(run=run, kind__in=MONEY_KINDS).count() == 0


def test_a_shadow_run_with_the_gates_off_sends_nothing_to_the_helpdesk(ingest, settings):
    calls = []
    settings.TRIAGE_WRITEBACK_BACKENDS = {"test": "tests.triage.pipeline.steps.test_execute.recording_writer"}
    recording_writer.calls = calls  # type: ignore[attr-defined]  # a function attribute as the call log
    result = ingest(REFUND_TICKET, enqueue=False)
    shadow = PipelineRun.objects.create(ticket=result.ticket, gates_enabled=False)

    run = run_pipeline(run_id=shadow.pk)

    assert run.route == PipelineRun.Route.AUTO
    assert Action.objects.filter(run=run, kind__in=MONEY_KINDS).exists()
    assert all(a.result.get("recorded") is True for a in Action.objects.filter(run=run))
    assert calls == []


def recording_writer(*, action, ticket):
    recording_writer.calls.append(action.kind)  # type: ignore[attr-defined]  # the call log set by the test
    return {"sent": True}
