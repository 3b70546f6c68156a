"""Every reply a decision sends is checked again: money promises and personal data, whoever wrote it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from approvals.models import ApprovalRequest, Decision
from approvals.services import MoneyPermissionRequired, ReplyRefused, approval_decide
from tests.factories import snapshot
from triage.models import Action, PipelineRun

pytestmark = pytest.mark.django_db

PROMISE = "Hello,\n\nWe have refunded $500 to your card. It shows within 3 business days."


def decide(client, approval, htmx: bool = False, **data):
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(reverse("approvals:decide", args=[approval.pk]), data, headers=headers)


def unchanged(approval, before) -> None:
    after = snapshot(approval)
    assert after == before
    assert after["status"] == ApprovalRequest.Status.PENDING and after["actions"] == 0 and after["decisions"] == 0


def test_an_agent_editing_in_a_money_promise_on_a_non_money_approval_is_refused(agent_client, paused):
    # given: an ordinary ticket (no money action), and an agent without the money permission
    approval = paused()
    before = snapshot(approval)

    # when
    response = decide(agent_client, approval, verdict="edit", reply=PROMISE)

    # then: 403, it says why, nothing changed and nothing was sent
    page = response.content.decode()
    assert response.status_code == 403
    assert "tells the customer money has moved or will move" in page and "We have refunded $500" in page
    assert "money-approval permission" in page
    unchanged(approval, before)


def test_a_money_permitted_user_without_a_money_action_is_refused_too(client, money_agent, paused):
    # given: the permission, but a decision that moves no money (order_status: reply and solve)
    approval = paused()
    before = snapshot(approval)
    client.force_login(money_agent)

    # when
    response = decide(client, approval, verdict="edit", reply=PROMISE)

    # then
    page = response.content.decode()
    assert response.status_code == 422
    assert "This decision moves no money" in page
    unchanged(approval, before)


def test_the_same_reply_on_a_refund_decision_by_a_permitted_user_is_sent(
    client, money_agent, paused, django_capture_on_commit_callbacks
):
    # given: a refund ticket, whose decision carries a refund action
    approval = paused(body="My order arrived damaged, please refund me.", money=True)
    assert [a["kind"] for a in approval.proposed_actions] == ["set_category", "set_priority", "send_reply", "refund"]
    client.force_login(money_agent)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = decide(client, approval, verdict="edit", reply=PROMISE)

    # then: approved, carried out, the edited reply sent once and the refund recorded
    assert response.status_code == 302
    approval.refresh_from_db()
    assert approval.status == ApprovalRequest.Status.APPROVED
    run = PipelineRun.objects.get(pk=approval.run_id)
    assert run.status == PipelineRun.Status.COMPLETED
    assert Action.objects.get(run=run, kind="send_reply").payload["body"] == PROMISE
    assert Action.objects.filter(run=run, kind="refund", status=Action.Status.DONE).count() == 1


def test_approving_an_unedited_draft_that_promises_money_is_refused_for_an_agent(agent_client, paused):
    # given: a draft that already says money moved (the chain's draft gate would have stopped it)
    approval = paused()
    ApprovalRequest.objects.filter(pk=approval.pk).update(draft=PROMISE)
    before = snapshot(approval)

    response = decide(agent_client, approval, verdict="approve")

    assert response.status_code == 403
    unchanged(approval, before)


@pytest.mark.parametrize(
    ("reply", "shown"),
    [
        ("Hello,\n\nThe card 4111 1111 1111 1111 was charged twice.", "card number(s) ending …1111"),
        ("Hello,\n\nI have copied jo.bloggs@example.org, who ordered it.", "jo.bloggs@example.org"),
        ("Hello,\n\nPlease call Jo on +44 20 7946 0958.", "+442079460958"),
    ],
)
def test_personal_data_is_refused_for_everyone(client, make_user, paused, reply, shown):
    # given: even a superuser with every permission, on a refund decision
    approval = paused(body="Refund me please", money=True)
    before = snapshot(approval)
    client.force_login(make_user("boss", roles=("agent", "money"), superuser=True))

    # when
    response = decide(client, approval, verdict="edit", reply=reply)

    # then
    page = response.content.decode()
    assert response.status_code == 422
    assert "The reply contains personal data" in page and shown in page
    unchanged(approval, before)


def test_a_refused_edit_comes_back_in_the_card_as_written(agent_client, paused):
    # given
    approval = paused()
    edited = "Hello Sam,\n\nWe have refunded $500 to your card."

    # when: the inbox (htmx) asks
    response = decide(agent_client, approval, htmx=True, verdict="edit", reply=edited)

    # then: just the card, with the reason and the person's own text in an open edit panel
    page = response.content.decode()
    assert response.status_code == 403 and "<html" not in page
    assert f'id="approval-{approval.pk}"' in page and 'role="alert"' in page
    assert '<details class="panel-edit" data-panel="edit" open>' in page
    assert "Hello Sam,\n\nWe have refunded $500 to your card.</textarea>" in page


def test_the_service_raises_and_records_nothing(agent, money_agent, paused):
    approval = paused()

    with pytest.raises(MoneyPermissionRequired):
        approval_decide(approval_id=approval.pk, actor=agent, verdict="edit", reply=PROMISE)
    with pytest.raises(ReplyRefused):
        approval_decide(approval_id=approval.pk, actor=money_agent, verdict="edit", reply=PROMISE)

    assert not Decision.objects.filter(approval=approval).exists()


def test_knowledge_base_policy_quoted_by_an_agent_is_not_a_promise(
    agent_client, paused, django_capture_on_commit_callbacks
):
    # given: a knowledge-base sentence that reads like a promise out of context, quoted word for word
    from triage.models import EMBEDDING_DIMENSIONS, Article, Chunk

    policy = "If you cancel before it is roasted, contact us and we will refund that delivery in full."
    article = Article.objects.create(slug="club-cancel", title="Cancel your Club", body=policy)
    Chunk.objects.create(
        article=article,
        ordinal=0,
        text=f"## Cancelling\n\n{policy}",
        embedding=[0.0] * (EMBEDDING_DIMENSIONS - 1) + [1.0],
    )
    approval = paused()
    reply = f"Hello,\n\n{policy}"

    # when: an agent without the money permission sends it, and then only its promising half
    with django_capture_on_commit_callbacks(execute=True):
        quoted = decide(agent_client, approval, verdict="edit", reply=reply)
    other = paused()
    cut = decide(agent_client, other, verdict="edit", reply="Hello,\n\nWe will refund that delivery in full.")

    # then: the policy goes out; the promise cut from it does not
    assert quoted.status_code == 302
    assert Action.objects.get(run_id=approval.run_id, kind="send_reply").payload["body"] == reply
    assert cut.status_code == 403


def test_a_rejection_is_not_checked(agent_client, paused):
    approval = paused()
    ApprovalRequest.objects.filter(pk=approval.pk).update(draft=PROMISE)

    response = decide(agent_client, approval, verdict="reject", reason="Spam")

    assert response.status_code == 302
    assert ApprovalRequest.objects.get(pk=approval.pk).status == ApprovalRequest.Status.REJECTED


def test_an_agent_may_take_the_promise_out_of_a_draft_and_send_the_rest(
    agent_client, paused, django_capture_on_commit_callbacks
):
    # given: an ordinary ticket whose draft promised money (so it waits), and an agent without the permission
    approval = paused()
    ApprovalRequest.objects.filter(pk=approval.pk).update(draft=PROMISE)
    fixed = "Hello,\n\nA member of our team is looking at your order and will write back today."

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = decide(agent_client, approval, verdict="edit", reply=fixed)

    # then
    assert response.status_code == 302
    assert Action.objects.get(run_id=approval.run_id, kind="send_reply").payload["body"] == fixed
    assert not Action.objects.filter(run_id=approval.run_id, kind__in=["refund", "credit", "cancel_order"]).exists()
