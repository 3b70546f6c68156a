"""Deciding from the inbox: approve, edit-then-approve, reject; the run carries it out exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals.models import ApprovalRequest, Decision
from approvals.services import AlreadyDecided, approval_decide
from tests.factories import snapshot
from triage.models import Action, PipelineRun, Ticket
from triage.pipeline.runner import run_pipeline
from triage.tasks import runs_sweep

pytestmark = pytest.mark.django_db


def decide(client, approval, htmx: bool = False, **data):
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(reverse("approvals:decide", args=[approval.pk]), data, headers=headers)


def test_approving_resumes_the_run_which_carries_out_the_actions_once(
    agent_client, agent, paused, django_capture_on_commit_callbacks
):
    approval = paused()

    with django_capture_on_commit_callbacks(execute=True):
        response = decide(agent_client, approval, verdict="approve", next="/?gate=confidence")

    assert response.status_code == 302 and response["Location"] == "/?gate=confidence"
    run = PipelineRun.objects.get(pk=approval.run_id)
    assert run.status == PipelineRun.Status.COMPLETED
    assert Ticket.objects.get(pk=approval.ticket_id).status == Ticket.Status.RESOLVED
    kinds = list(Action.objects.filter(run=run).values_list("kind", flat=True))
    assert kinds == ["set_category", "set_priority", "send_reply", "solve"]
    reply = Action.objects.get(run=run, kind="send_reply")
    assert reply.payload["body"] == approval.draft and reply.status == "done"

    run_pipeline(run_id=run.pk)  # a second delivery of the same job

    assert Action.objects.filter(run=run).count() == 4
    assert Action.objects.get(run=run, kind="send_reply").attempts == 1


def test_the_decision_is_audited_with_who_when_before_after_and_why(agent_client, agent, paused):
    approval = paused()
    started = timezone.now()

    decide(
        agent_client,
        approval,
        verdict="edit",
        category="shipping_delay",
        reply="Your parcel is on its way.\r\nSam",
        reason="It is a delay, not a status question",
    )

    decision = Decision.objects.get(approval=approval)
    assert decision.actor == agent and decision.verdict == "edit" and started <= decision.created_at <= timezone.now()
    assert decision.reason == "It is a delay, not a status question"
    assert decision.before["category"] == "order_status" and decision.before["reply"] == approval.draft
    assert decision.after["category"] == "shipping_delay"
    assert decision.after["reply"] == "Your parcel is on its way.\nSam"
    assert decision.after["actions"] == [
        {"kind": "set_category", "note": "shipping_delay", "amount": None, "currency": ""},
        {"kind": "set_priority", "note": "normal", "amount": None, "currency": ""},
        {"kind": "send_reply", "note": "", "amount": None, "currency": ""},
        {"kind": "solve", "note": "", "amount": None, "currency": ""},
    ]


def test_edit_then_approve_carries_out_the_edited_reply_and_category(
    agent_client, paused, django_capture_on_commit_callbacks
):
    approval = paused()

    with django_capture_on_commit_callbacks(execute=True):
        decide(agent_client, approval, verdict="edit", category="shipping_delay", reply="Edited reply.")

    run = PipelineRun.objects.get(pk=approval.run_id)
    assert Action.objects.get(run=run, kind="send_reply").payload["body"] == "Edited reply."
    assert Action.objects.get(run=run, kind="set_category").payload["note"] == "shipping_delay"
    assert run.resolution["category"] == "shipping_delay"


def test_rejecting_needs_a_reason_and_then_carries_out_nothing(
    agent_client, paused, django_capture_on_commit_callbacks
):
    approval = paused()
    before = snapshot(approval)

    refused = decide(agent_client, approval, htmx=True, verdict="reject", reason="  ")

    assert refused.status_code == 422 and "Say why you reject it" in refused.content.decode()
    assert snapshot(approval) == before

    with django_capture_on_commit_callbacks(execute=True):
        decide(agent_client, approval, verdict="reject", reason="Spam")

    run = PipelineRun.objects.get(pk=approval.run_id)
    assert run.status == PipelineRun.Status.COMPLETED and not run.actions.exists()
    assert Ticket.objects.get(pk=approval.ticket_id).status == Ticket.Status.REJECTED
    assert Decision.objects.get(approval=approval).after == {}


def test_an_empty_edited_reply_is_refused_and_nothing_changes(agent_client, paused):
    approval = paused()
    before = snapshot(approval)

    response = decide(agent_client, approval, verdict="edit", reply="   ")

    assert response.status_code == 422 and "The reply is empty." in response.content.decode()
    assert snapshot(approval) == before


def test_an_htmx_approval_swaps_the_card_in_place_and_updates_the_pending_count(agent_client, paused):
    approval = paused()
    paused()

    response = decide(agent_client, approval, htmx=True, verdict="approve")

    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert (
        f'id="approval-{approval.pk}"' in body
        and "card-decided" in body
        and "<strong>Approved</strong> by agent1" in body
    )
    assert 'id="pending-count" hx-swap-oob="true">1<' in body


def test_two_people_deciding_the_same_item_one_wins_the_other_is_told(client, agent, make_user, paused):
    approval = paused()
    other = make_user("agent2")
    client.force_login(agent)
    first = decide(client, approval, verdict="approve")
    client.force_login(other)

    second = decide(client, approval, htmx=True, verdict="reject", reason="too late")
    plain = decide(client, approval, verdict="approve")

    assert first.status_code == 302
    assert second.status_code == 409 and "already approved by agent1" in second.content.decode()
    assert plain.status_code == 409 and "already approved by agent1" in plain.content.decode()
    assert Decision.objects.filter(approval=approval).count() == 1
    assert ApprovalRequest.objects.get(pk=approval.pk).status == "approved"


def test_the_service_refuses_a_second_decision(agent, paused):
    approval = paused()
    approval_decide(approval_id=approval.pk, actor=agent, verdict="approve")

    with pytest.raises(AlreadyDecided):
        approval_decide(approval_id=approval.pk, actor=agent, verdict="reject", reason="changed my mind")

    assert Decision.objects.filter(approval=approval).count() == 1


def test_a_next_url_to_another_site_is_ignored(agent_client, paused):
    approval = paused()

    response = decide(agent_client, approval, verdict="approve", next="https://evil.example.com/")

    assert response["Location"] == reverse("approvals:inbox")


def test_the_approval_page_shows_one_card_and_its_decision(agent_client, agent, paused):
    approval = paused()
    approval_decide(approval_id=approval.pk, actor=agent, verdict="reject", reason="Duplicate")

    page = agent_client.get(reverse("approvals:detail", args=[approval.pk])).content.decode()

    assert "<strong>Rejected</strong> by agent1" in page and "Duplicate" in page


def test_a_decision_taken_while_redis_is_down_shows_carrying_out_until_the_sweeper_carries_it_out(
    settings, agent_client, paused, django_capture_on_commit_callbacks
):
    # given: Redis is unreachable when the decision commits
    approval = paused()
    settings.TRIAGE_QUEUE_BACKEND = "rq"
    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:1/11", "DEFAULT_TIMEOUT": 120}}

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = decide(agent_client, approval, verdict="approve")

    # then: the decision is saved and answered as usual; the card says it is not carried out yet
    assert response.status_code == 302
    run = PipelineRun.objects.get(pk=approval.run_id)
    assert run.status == PipelineRun.Status.QUEUED and not Action.objects.filter(run=run).exists()
    page = agent_client.get(reverse("approvals:detail", args=[approval.pk])).content.decode()
    assert 'data-outcome="carrying out"' in page and "Carrying out the decision (its run is queued)" in page

    # when: a worker is back and the sweeper finds the run after the grace period
    settings.TRIAGE_QUEUE_BACKEND = "immediate"
    PipelineRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    runs_sweep()

    # then
    assert PipelineRun.objects.get(pk=run.pk).status == PipelineRun.Status.COMPLETED
    assert Action.objects.filter(run=run, status="done").count() == 4
    page = agent_client.get(reverse("approvals:detail", args=[approval.pk])).content.decode()
    assert 'data-outcome="carried out"' in page


def test_a_decision_whose_run_failed_shows_the_reason_on_its_card(agent_client, agent, paused):
    approval = paused()
    approval_decide(approval_id=approval.pk, actor=agent, verdict="reject", reason="Duplicate")
    PipelineRun.objects.filter(pk=approval.run_id).update(
        status=PipelineRun.Status.FAILED, error="Stopped after 3 attempts: each worker that took this run stopped"
    )

    page = agent_client.get(reverse("approvals:detail", args=[approval.pk])).content.decode()

    assert 'data-outcome="failed"' in page
    assert 'Carrying out the decision failed: <span dir="auto">Stopped after 3 attempts' in page
